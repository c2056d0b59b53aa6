"""Atomic, exactly-resumable training checkpoints.

A checkpoint is a folder run_dir/checkpoints/step-NNNNNN holding
- adapter.safetensors: the LoRA weights (peft's adapter state dict),
- optimizer.pt: AdamW state,
- rng.pt: torch CPU (and CUDA) RNG, the rollout sampling generator, Python's `random`,
- state.json: step, data cursor, counters.
It is written into a temporary folder, fsynced, renamed into place, and only then is the
`latest` pointer file replaced (os.replace is atomic): a crash at any moment leaves either
the previous checkpoint or the new one, never a half-written one. Older checkpoints are
removed after the pointer moves. Metrics logged after the checkpoint's step are dropped on
resume (metrics.jsonl is rewritten atomically), so a resumed run's log equals an
uninterrupted run's.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import tempfile
from pathlib import Path

import torch


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


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
    (tmp / "state.json").write_text(json.dumps(state, indent=1))
    for f in tmp.iterdir():
        with open(f, "rb") as fh:
            os.fsync(fh.fileno())
    final = root / name
    if final.exists():
        shutil.rmtree(final)
    os.replace(tmp, final)
    _fsync_dir(root)
    _write_atomic(root / "latest", name)
    for old in root.iterdir():
        if old.is_dir() and old.name != name:
            shutil.rmtree(old, ignore_errors=True)
    return final


def latest(run_dir: str | Path) -> Path | None:
    pointer = Path(run_dir) / "checkpoints" / "latest"
    if not pointer.exists():
        return None
    path = pointer.parent / pointer.read_text().strip()
    return path if (path / "state.json").exists() else None


def load_adapter(model, path: str | Path) -> None:
    """Put a checkpoint's LoRA weights into a peft model."""
    from peft import set_peft_model_state_dict
    from safetensors.torch import load_file
    result = set_peft_model_state_dict(model, load_file(str(Path(path) / "adapter.safetensors")))
    unexpected = getattr(result, "unexpected_keys", [])
    if unexpected:
        raise RuntimeError(f"checkpoint {path} has weights this model lacks: {unexpected[:3]}")


def load(path: Path, model, optimizer, generator: torch.Generator) -> dict:
    """Restore weights, optimizer and RNG states; returns state.json's dict."""
    load_adapter(model, path)
    optimizer.load_state_dict(torch.load(path / "optimizer.pt", weights_only=False))
    rng = torch.load(path / "rng.pt", weights_only=False)
    torch.set_rng_state(rng["torch"])
    generator.set_state(rng["generator"])
    random.setstate(rng["python"])
    if "cuda" in rng and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(rng["cuda"])
    return json.loads((path / "state.json").read_text())


def truncate_metrics(path: Path, step: int) -> None:
    """Keep only metric lines with step <= `step` (the resumed run re-logs the rest)."""
    if not path.exists():
        return
    keep = []
    for line in path.read_text().splitlines():
        try:
            if json.loads(line)["step"] <= step:
                keep.append(line)
        except (json.JSONDecodeError, KeyError):  # a line torn by the crash
            pass
    _write_atomic(path, "".join(line + "\n" for line in keep))
