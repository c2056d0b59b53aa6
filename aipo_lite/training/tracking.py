"""Experiment tracking: the run's metrics.jsonl lines, also sent to the trackers in `report_to`.

TRL's convention: `report_to` names the backends (`none`, or any of `tensorboard`, `trackio`,
`wandb`, comma-separated). Every tracker gets exactly the lines metrics.jsonl gets, under the
same names (`train/…`, `eval/…`, `agents/…`, `speed/…`; docs/metrics.md), at the run's step:
per-step training metrics and, on their steps, the held-out evaluation. The run's name is its
folder's name (a grid's `<arm>-s<seed>-<key>`), its project `report_project` (one project for
every arm × seed of a grid), and its config the run's Config. Nothing leaves the machine:

- `tensorboard`: event files in `<run_dir>/tensorboard` (`tensorboard --logdir <run_dir>/..`);
- `wandb`: offline mode (`WANDB_MODE=offline`), files in `<run_dir>/wandb` (`wandb sync` uploads
  them later if you want); a resumed run continues the same wandb run id;
- `trackio`: its local database (`TRACKIO_DIR`, default ~/.cache/huggingface/trackio;
  `trackio show` opens the dashboard). trackio 0.43 pins pillow < 13, so it is not in the dev
  extra: its test (tests/test_runs.py) skips unless trackio is installed, and passed in a venv
  with trackio 0.43.0 and pillow 12.3 (docs/speed.md, the tests table).

metrics.jsonl stays the record the kit reads; a tracker that fails to start raises before the
first step, naming the backend and the package to install (the `track` extra).
"""

from __future__ import annotations

import hashlib
import math
from pathlib import Path

from aipo_lite.training import runinfo


def backends(report_to: str) -> list[str]:
    """The backends a report_to value names ([] for 'none')."""
    names = [b.strip() for b in report_to.split(",") if b.strip()]
    return [] if names in ([], ["none"]) else names


class MetricsLog:
    """Appends each metrics line to metrics.jsonl and sends it to every tracker."""

    def __init__(self, path: Path, trackers: list):
        self.path, self.trackers = path, trackers

    def append(self, record: dict) -> None:
        runinfo.append_metrics(self.path, record)
        values = {k: float(v) for k, v in record.items()
                  if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)}
        for t in self.trackers:
            t.log(values, int(record["step"]))

    def close(self) -> None:
        for t in self.trackers:
            t.close()


class _TensorBoard:
    def __init__(self, run: Path, config: dict):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError as e:
            raise ImportError("report_to='tensorboard' needs the tensorboard package: pip install -e '.[track]'") from e
        self.writer = SummaryWriter(log_dir=str(run / "tensorboard"))
        self.writer.add_text("config", "\n".join(f"    {k}: {v!r}" for k, v in sorted(config.items())), 0)

    def log(self, values: dict, step: int) -> None:
        for k, v in values.items():
            self.writer.add_scalar(k, v, step)
        self.writer.flush()  # nothing lost if the run dies

    def close(self) -> None:
        self.writer.close()


class _Wandb:
    def __init__(self, run: Path, config: dict, project: str, run_id: str):
        try:
            import wandb
        except ImportError as e:
            raise ImportError("report_to='wandb' needs the wandb package: pip install -e '.[track]'") from e
        (run / "wandb").mkdir(parents=True, exist_ok=True)
        self.run = wandb.init(project=project, name=run.name, id=run_id, dir=str(run), config=config,
                              mode="offline", resume="allow", reinit="create_new")

    def log(self, values: dict, step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


class _Trackio:
    def __init__(self, run: Path, config: dict, project: str):
        try:
            import trackio
        except ImportError as e:
            raise ImportError("report_to='trackio' needs the trackio package: pip install trackio") from e
        self.run = trackio.init(project=project, name=run.name, config=config, resume="allow")

    def log(self, values: dict, step: int) -> None:
        self.run.log(values, step=step)

    def close(self) -> None:
        self.run.finish()


def open_log(cfg, run: Path) -> MetricsLog:
    """The run's metrics log with the trackers of cfg.report_to started (config logged once)."""
    config = cfg.to_dict()
    run_id = hashlib.sha256(str(run.resolve()).encode()).hexdigest()[:16]  # a resumed run continues its tracker run
    made = {"tensorboard": lambda: _TensorBoard(run, config), "wandb": lambda: _Wandb(run, config, cfg.report_project, run_id),
            "trackio": lambda: _Trackio(run, config, cfg.report_project)}
    return MetricsLog(run / "metrics.jsonl", [made[b]() for b in backends(cfg.report_to)])
