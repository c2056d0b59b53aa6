"""How often is a killed-and-resumed training run inexact? The procedure of
tests/test_trainer.py::test_sigkill_after_checkpoint_then_resume_equals_uninterrupted, repeated.

    .venv/bin/python benchmarks/resume_loop.py --runs 20
    .venv/bin/python benchmarks/resume_loop.py --runs 20 --dtype float32 --no-kill
    .venv/bin/python benchmarks/resume_loop.py --runs 8 --no-kill --overrides '{"num_threads": 1}'

One uninterrupted run (the test's config: smoke profile, 4 steps, every method part), then
`--runs` times: a second run is SIGKILLed as soon as its `latest` checkpoint reads step-000002,
the run dir is copied aside, and the run is resumed; its metrics (timings aside) are compared
with the uninterrupted run's. `--no-kill`: resume each time from a copy of the first killed
run's checkpoint instead (no kill in the loop). Inexact runs keep their dir and logs under
--out; the last line is `inexact <k> of <n>`. Each run takes ~40 s on 2 cores.
"""

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
from test_trainer import OVERRIDES, TIMING  # noqa: E402  (the test's own config)

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--runs", type=int, default=10)
ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
ap.add_argument("--no-kill", action="store_true", help="resume from copies of one checkpoint")
ap.add_argument("--overrides", default="{}", help="JSON dict of Config fields on top of the test's")
ap.add_argument("--out", default="runs/resume_loop", help="emptied first; inexact runs stay there")
args = ap.parse_args()
overrides = {**OVERRIDES, "dtype": args.dtype, **json.loads(args.overrides)}
out = Path(args.out)
shutil.rmtree(out, ignore_errors=True)
out.mkdir(parents=True)


def trainer(run_dir: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "aipo_lite.training.trainer", "--profile", "smoke", "--run-dir",
                             str(run_dir), "--overrides", json.dumps(overrides)], cwd=ROOT,
                            stdout=open(log, "w"), stderr=subprocess.STDOUT)


def metrics(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING}
            for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def killed_at_step_2(run_dir: Path, log: Path) -> None:
    p, pointer = trainer(run_dir, log), run_dir / "checkpoints" / "latest"
    while not (pointer.exists() and pointer.read_text().strip() == "step-000002"):
        if p.poll() is not None:
            raise SystemExit(f"the run ended before its step-2 checkpoint; see {log}")
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()


assert trainer(out / "whole", out / "whole.log").wait() == 0, "the uninterrupted run failed"
whole = metrics(out / "whole")
if args.no_kill:
    killed_at_step_2(out / "killed", out / "killed.log")
inexact = 0
for i in range(args.runs):
    run = out / f"run{i}"
    if args.no_kill:
        shutil.copytree(out / "killed", run)
    else:
        killed_at_step_2(run, out / f"run{i}.kill.log")
        shutil.copytree(run, out / f"run{i}.at_kill")
    assert trainer(run, out / f"run{i}.resume.log").wait() == 0, f"resume {i} failed"
    got = metrics(run)
    differ = [m["step"] for m, w in zip(got, whole) if m != w] + ([] if len(got) == len(whole) else ["length"])
    inexact += bool(differ)
    print(f"run {i}: {'INEXACT at steps ' + str(differ) if differ else 'exact'}", flush=True)
    if not differ:
        for p in out.glob(f"run{i}*"):
            shutil.rmtree(p) if p.is_dir() else p.unlink()
print(f"inexact {inexact} of {args.runs}")
