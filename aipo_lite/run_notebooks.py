"""The main job: execute the notebook sequence headless with papermill.

    python -m aipo_lite.run_notebooks --profile demo --out runs/demo
    python -m aipo_lite.run_notebooks --profile smoke --out /tmp/smoke --only 00 \\
        --overrides '{"eval_n": 4, "eval_ks": [1, 2, 4]}'

Every notebook takes the same three papermill parameters: `profile` (a preset in
aipo_lite.config.PROFILES), `run_dir` (its output folder) and `overrides` (Config fields).
Under --out you get the executed notebooks, one folder of figures/results per notebook and
summary.json (status and wall time of each). The overrides and --only names are validated
before anything runs; a bad one is reported naming the field (exit status 2).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import time
from pathlib import Path

from aipo_lite.config import Config, ConfigError

NOTEBOOK_DIR = Path(os.environ.get("AIPO_LITE_NOTEBOOKS", Path(__file__).resolve().parent.parent / "notebooks"))


RESERVED = ("profile", "run_dir")  # papermill parameters of their own, not overrides


def notebooks(only: list[str] | None = None) -> list[Path]:
    """The notebooks to run; an `only` name that matches none raises ConfigError listing them."""
    found = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
    if not found:  # an installed (non-editable) package: the notebooks are the checkout's
        raise ConfigError(f"no notebooks at {NOTEBOOK_DIR}: run from a checkout of aipo_lite (or set AIPO_LITE_NOTEBOOKS)")
    if only:
        unknown = [o for o in only if not any(nb.name.startswith(o) for nb in found)]
        if unknown:
            raise ConfigError(f"--only {unknown} matches no notebook; the notebooks are "
                              f"{[nb.stem for nb in found]} (give a prefix such as 04)")
        found = [nb for nb in found if any(nb.name.startswith(o) for o in only)]
    return found


def check_overrides(overrides) -> None:
    """Overrides must be a dict of Config fields other than the reserved papermill parameters."""
    if not isinstance(overrides, dict):
        raise ConfigError("--overrides must be a JSON object of Config fields")
    reserved = [k for k in RESERVED if k in overrides]
    if reserved:
        raise ConfigError(f"--overrides may not set {reserved}: use --profile for the preset and --out for "
                          "the run folder (each notebook gets its own folder under it)")


def run(profile: str, out: Path, overrides: dict | None = None, only: list[str] | None = None,
        log_output: bool = True) -> dict:
    import papermill as pm

    overrides = overrides or {}
    check_overrides(overrides)
    Config.from_profile(profile, **overrides)  # fail before executing anything
    chosen = notebooks(only)
    out.mkdir(parents=True, exist_ok=True)
    summary = {"profile": profile, "overrides": overrides, "notebooks": []}
    for nb in chosen:
        run_dir = out / nb.stem
        entry = {"notebook": nb.name, "run_dir": str(run_dir)}
        print(f"== {nb.name} -> {out / nb.name}", flush=True)
        start = time.perf_counter()
        try:
            pm.execute_notebook(str(nb), str(out / nb.name), cwd=str(NOTEBOOK_DIR),
                                parameters={"profile": profile, "run_dir": str(run_dir.resolve()),
                                            "overrides": overrides},
                                kernel_name="python3", progress_bar=False, log_output=log_output)
            entry["status"] = "ok"
        except Exception as e:  # papermill's error carries the failing cell's traceback
            entry["status"] = "failed"
            entry["error"] = f"{type(e).__name__}: {e}"[-2000:]
        entry["seconds"] = round(time.perf_counter() - start, 1)
        # the largest finished kernel so far (the OS's accounting of reaped child processes): a
        # notebook that raises it is the one that set the peak
        entry["peak_rss_gb_so_far"] = round(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 2**20, 2)
        summary["notebooks"].append(entry)
        (out / "summary.json").write_text(json.dumps(summary, indent=1))
        print(f"== {nb.name}: {entry['status']} in {entry['seconds']} s", flush=True)
        if entry["status"] != "ok":
            break
    return summary


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="demo", help="preset from aipo_lite.config.PROFILES")
    ap.add_argument("--out", default="runs/demo", help="run folder")
    ap.add_argument("--overrides", default="{}", help="JSON object of Config fields")
    ap.add_argument("--only", nargs="*", help="run only notebooks whose names start with these")
    args = ap.parse_args(argv)
    try:
        overrides = json.loads(args.overrides)
        summary = run(args.profile, Path(args.out), overrides, args.only)
    except (ConfigError, json.JSONDecodeError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = [n for n in summary["notebooks"] if n["status"] != "ok"]
    for n in failed:
        print(f"FAILED {n['notebook']}: {n['error']}", file=sys.stderr)
    print(f"run folder: {args.out} ({len(summary['notebooks']) - len(failed)} notebooks ok)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
