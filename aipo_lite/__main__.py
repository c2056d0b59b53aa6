"""One command line for the kit (also installed as the `aipo-lite` script):

    python -m aipo_lite train     --profile demo --run-dir runs/x --overrides '{"train_steps": 4}'
    python -m aipo_lite eval      --profile demo [--adapter runs/x] [--out eval.json] --overrides '{...}'
    python -m aipo_lite grid      --profile demo --out runs/grid --overrides '{"grid_seeds": [0, 1, 2]}'
    python -m aipo_lite notebooks --profile demo --out runs/demo [--only 04 05]
    python -m aipo_lite trl       --profile smoke --run-dir runs/trl
    python -m aipo_lite export    RUN_DIR OUT [--merged]   (a PEFT adapter folder, or a merged model)

Every command takes a preset (`--profile`) and Config fields as a JSON object (`--overrides`),
validated before any work: a bad one exits with status 2 and one message naming the field.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from aipo_lite.config import Config, ConfigError

COMMANDS = {"train": "aipo_lite.training.trainer", "notebooks": "aipo_lite.run_notebooks", "trl": "aipo_lite.integrations.trl_bridge",
            "export": "aipo_lite.integrations.export"}


def _config(argv: list[str], name: str, *extra: tuple[str, dict]) -> tuple[Config, argparse.Namespace]:
    ap = argparse.ArgumentParser(prog=f"aipo-lite {name}", description=__doc__.split("\n\n")[0])
    ap.add_argument("--profile", default="demo", help="preset from aipo_lite.config.PROFILES")
    ap.add_argument("--overrides", default="{}", help="JSON object of Config fields")
    for flag, kw in extra:
        ap.add_argument(flag, **kw)
    args = ap.parse_args(argv)
    overrides = json.loads(args.overrides)
    if not isinstance(overrides, dict):
        raise ConfigError("--overrides must be a JSON object of Config fields")
    return Config.from_profile(args.profile, **overrides), args


def evaluate_command(argv: list[str]) -> int:
    """Agent-free pass@k of the base policy or of a run's adapter on eval_tiers' test problems."""
    cfg, args = _config(argv, "eval", ("--adapter", dict(default=None, help="a run folder: evaluate its last checkpoint")),
                        ("--out", dict(default=None, help="write the result JSON here")))
    from aipo_lite.evaluation.agent_free import (
        evaluate,  # lazy: a bad config exits before the training stack (torch) loads
    )
    from aipo_lite.experiments.runs import (
        load_trained,  # lazy: a bad config exits before the training stack (torch) loads
    )
    from aipo_lite.tasks.loading import from_config  # lazy: a bad config exits before the training stack (torch) loads
    tasks = from_config(cfg, "test", cfg.eval_tiers, cfg.eval_problems_per_tier)
    result = evaluate(load_trained(cfg, args.adapter), tasks, cfg)
    print(result.table_markdown())
    if args.out:
        result.save(args.out)
    return 0


def grid_command(argv: list[str]) -> int:
    """Train grid_arms x grid_seeds on grid_overrides (resumable), evaluate agent-free, print the table."""
    cfg, args = _config(argv, "grid", ("--out", dict(required=True, help="root folder of the grid's runs")))
    from aipo_lite.experiments import grid  # lazy: a bad config exits before the training stack (torch) loads
    from aipo_lite.tasks.loading import from_config  # lazy: a bad config exits before the training stack (torch) loads
    base, root, n = grid.base_config(cfg), Path(args.out), cfg.grid_eval_n
    grid.train_grid(base, cfg.grid_arms, cfg.grid_seeds, root, profile=args.profile)
    tests = from_config(base, "test", base.heldout_tiers, cfg.grid_eval_problems_per_tier, field="heldout_tiers")
    rows = grid.table(grid.collect(base, cfg.grid_arms, cfg.grid_seeds, root, tests, n), base.heldout_tiers, sorted({1, n}))
    print(grid.markdown(rows, sorted({1, n})))
    (root / "table.json").write_text(json.dumps(rows, indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = {**COMMANDS, "eval": evaluate_command, "grid": grid_command}
    if not argv or argv[0] not in commands:
        print(__doc__, file=sys.stderr)
        print(f"error: the first argument must be one of {sorted(commands)}", file=sys.stderr)
        return 2
    name, rest = argv[0], argv[1:]
    try:
        run = commands[name] if callable(commands[name]) else importlib.import_module(commands[name]).main
        return run(rest) or 0
    except (ConfigError, json.JSONDecodeError, FileNotFoundError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
