"""Atomic, verified, exactly-resumable training checkpoints that hold data, never code.

A checkpoint is a folder run_dir/checkpoints/step-NNNNNN holding
- adapter.safetensors: the LoRA weights (peft's adapter state dict),
- optimizer.pt: AdamW state, rng.pt: torch CPU (and CUDA) RNG, the rollout sampling generator
  and Python's `random` (both read with torch.load(weights_only=True): tensors, numbers and
  containers only; a pickle that would run code is refused with a CheckpointError),
- state.json: step, data cursor, counters, and `files`: each file's size and SHA-256.
It is written into a temporary folder, fsynced, renamed into place, re-read and verified
against its manifest, and only then is the `latest` pointer replaced (os.replace is atomic)
and are older step folders removed: a crash at any moment leaves an intact checkpoint.

`latest` trusts nothing it has not verified: a missing, empty or garbled pointer, or one that
names a damaged folder, falls back to the newest step folder whose files match its manifest
(saying so); if step folders exist and none is intact, it raises a CheckpointError naming the
damaged file, and nothing is deleted. On resume, metric lines logged after the checkpoint's
step are dropped (metrics.jsonl is rewritten atomically, never deleted), so a resumed run's log
equals an uninterrupted run's.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
import tempfile
from pathlib import Path

import torch

STEP = re.compile(r"^step-(\d{6,})$")


class CheckpointError(RuntimeError):
    """A checkpoint file is damaged, unreadable or not plain data; the message names it."""


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def _digest(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def save(run_dir: str | Path, model, optimizer, generator: torch.Generator, state: dict) -> Path:
    from peft import get_peft_model_state_dict
    from safetensors.torch import save_file

    root = Path(run_dir) / "checkpoints"
    root.mkdir(parents=True, exist_ok=True)
    name = f"step-{state['step']:06d}"
    tmp = Path(tempfile.mkdtemp(prefix=name + ".tmp-", dir=root))
    weights = {k: v.detach().cpu().contiguous() for k, v in get_peft_model_state_dict(model).items()}
    save_file(weights, str(tmp / "adapter.safetensors"))
    torch.save(optimizer.state_dict(), tmp / "optimizer.pt")
    rng = {"torch": torch.get_rng_state(), "generator": generator.get_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        rng["cuda"] = torch.cuda.get_rng_state_all()
    torch.save(rng, tmp / "rng.pt")
    files = {f.name: {"bytes": f.stat().st_size, "sha256": _digest(f)} for f in sorted(tmp.iterdir())}
    (tmp / "state.json").write_text(json.dumps({**state, "files": files}, indent=1))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    final = root / name
    if final.exists():  # a folder of the same step (a damaged one, or a resumed run's re-save)
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    problem = damage(final)
    if problem:  # the disk did not keep what was written: keep every older checkpoint
        raise CheckpointError(f"the checkpoint just written does not verify: {problem}")
    write_atomic(root / "latest", name)
    for old in root.iterdir():
        if old.is_dir() and old.name != name and (STEP.match(old.name) or ".tmp-" in old.name):
            shutil.rmtree(old, ignore_errors=True)
    return final


def damage(path: Path) -> str | None:
    """None if the step folder matches its manifest, else what is wrong (naming the file)."""
    state_file = path / "state.json"
    try:
        state = json.loads(state_file.read_text())
        files = state["files"] if "files" in state else None
        int(state["step"])
    except FileNotFoundError:
        return f"{state_file} is missing"
    except (json.JSONDecodeError, KeyError, TypeError, ValueError, UnicodeDecodeError) as e:
        return f"{state_file} is damaged ({type(e).__name__}: {e})"
    if files is None:  # written before manifests: the files must at least be there
        files = {n: None for n in ("adapter.safetensors", "optimizer.pt", "rng.pt")}
    for name, want in files.items():
        f = path / name
        if not f.exists():
            return f"{f} is missing"
        if want is not None and (f.stat().st_size != want["bytes"] or _digest(f) != want["sha256"]):
            return f"{f} is damaged (its size or SHA-256 differs from state.json's manifest)"
    return None


def _steps(root: Path) -> list[Path]:
    found = [p for p in root.iterdir() if p.is_dir() and STEP.match(p.name)] if root.is_dir() else []
    return sorted(found, key=lambda p: int(STEP.match(p.name)[1]), reverse=True)


def step_of(ckpt: Path) -> int:
    """The training step a checkpoint folder holds."""
    return json.loads((Path(ckpt) / "state.json").read_text())["step"]


def latest(run_dir: str | Path, log=print) -> Path | None:
    """The checkpoint to resume from: `latest`'s folder if intact, else the newest intact step
    folder; None if the run has none; CheckpointError if every step folder is damaged."""
    root = Path(run_dir) / "checkpoints"
    pointer = root / "latest"
    named = None
    if pointer.exists():
        try:
            text = pointer.read_text().strip()
        except (OSError, UnicodeDecodeError):
            text = ""
        named = root / text if STEP.match(text) else None
        if named is not None and (named.is_dir() and damage(named) is None):
            return named
    steps = _steps(root)
    problems = []
    for step in steps:
        problem = damage(step)
        if problem is None:
            if pointer.exists():
                log(f"warning: {pointer} {'names ' + str(named) if named else 'is empty or garbled'}; "
                    f"resuming from the newest intact checkpoint, {step}")
            return step
        problems.append(problem)
    if problems:
        raise CheckpointError(f"no intact checkpoint in {root}: " + "; ".join(problems)
                              + ". Nothing was deleted; move the damaged folders away to start over.")
    if named is not None or (pointer.exists() and not steps):
        raise CheckpointError(f"{pointer} names {named or 'nothing readable'}, and {root} holds no step folder")
    return None


def load_adapter(model, path: str | Path) -> None:
    """Put a checkpoint's LoRA weights into a peft model."""
    from peft import set_peft_model_state_dict
    from safetensors import SafetensorError
    from safetensors.torch import load_file
    file = Path(path) / "adapter.safetensors"
    try:
        weights = load_file(str(file))
    except (SafetensorError, OSError) as e:
        raise CheckpointError(f"{file} is unreadable: {e}") from e
    result = set_peft_model_state_dict(model, weights)
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise CheckpointError(f"checkpoint {path} has weights this model lacks: {unexpected[:3]}")


def _load_data(file: Path):
    """torch.load of plain data only (tensors, numbers, strings, containers)."""
    try:
        return torch.load(file, weights_only=True)
    except Exception as e:  # noqa: BLE001 - unpickling, truncation and format errors alike
        raise CheckpointError(f"{file} is not a readable data-only checkpoint file ({type(e).__name__}: "
                              f"{str(e)[:300]}); it is refused, nothing in it was run") from e


def load(path: Path, model, optimizer, generator: torch.Generator) -> dict:
    """Restore weights, optimizer and RNG states; returns state.json's dict."""
    problem = damage(path)
    if problem:
        raise CheckpointError(problem)
    opt_state, rng = _load_data(path / "optimizer.pt"), _load_data(path / "rng.pt")
    load_adapter(model, path)
    try:
        optimizer.load_state_dict(opt_state)
        torch.set_rng_state(rng["torch"])
        generator.set_state(rng["generator"])
        random.setstate(rng["python"])
    except (KeyError, TypeError, ValueError, RuntimeError) as e:
        raise CheckpointError(f"{path}: optimizer.pt or rng.pt does not fit this run ({type(e).__name__}: {e})") from e
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    state = json.loads((path / "state.json").read_text())
    state.pop("files", None)
    return state


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only metric lines with step <= `step` (the resumed run re-logs the rest)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError, TypeError):  # a line torn by the crash
            pass
    write_atomic(path, "".join(line + "\n" for line in keep))
