"""A run's adapter in the standard formats, for tools outside the kit.

    python -m aipo_lite export RUN_DIR OUT            # a PEFT adapter folder
    python -m aipo_lite export RUN_DIR OUT --merged   # a full model folder, the adapter merged in

The adapter folder (`adapter_config.json` + `adapter_model.safetensors`, peft's own
`save_pretrained`) loads with `PeftModel.from_pretrained(base, OUT)`, where `base` is the model
the run trained (`base_model_name_or_path` in adapter_config.json: for `model="smollm2"` the
kit's safetensors copy of the GGUF, `aipo_lite.model.policy.resolve_model_path`); it serves with
vLLM's LoRA support like any PEFT adapter. `--merged` writes `merge_and_unload()`'s model and the
tokenizer, loadable with `AutoModelForCausalLM.from_pretrained(OUT)` alone. Both are written from
the run's latest verified checkpoint, with the run's own config (`config.json`), in float32 and
never 4-bit (a 4-bit base cannot take a merged adapter).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from aipo_lite.config import Config


def run_config(run_dir: str | Path) -> Config:
    """The config a run trained with (its config.json), on the CPU in float32, not 4-bit."""
    path = Path(run_dir) / "config.json"
    if not path.exists():
        raise FileNotFoundError(f"{run_dir} is not a run folder: it has no config.json")
    fields = {f.name for f in dataclasses.fields(Config)}
    saved = {k: v for k, v in json.loads(path.read_text()).items() if k in fields}
    return Config(**{**saved, "run_dir": str(run_dir), "dtype": "float32", "device": "cpu", "load_in_4bit": False})


def export(run_dir: str | Path, out: str | Path, merged: bool = False) -> Path:
    """Write the run's latest adapter to `out` as a PEFT adapter folder (or, `merged`, a full model folder)."""
    from aipo_lite.experiments.runs import load_trained

    cfg = run_config(run_dir)
    if cfg.lora_r == 0:
        raise ValueError(f"{run_dir} trained no adapter (lora_r=0): nothing to export")
    policy = load_trained(cfg, run_dir)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    if merged:
        model = policy.model.merge_and_unload()
        model.save_pretrained(out)
    else:
        policy.model.save_pretrained(out)
    policy.tokenizer.save_pretrained(out)
    return out


def main(argv: list[str]) -> int:
    import argparse

    ap = argparse.ArgumentParser(prog="aipo-lite export", description=__doc__.split("\n\n")[0])
    ap.add_argument("run_dir", help="a run folder (its latest checkpoint is exported)")
    ap.add_argument("out", help="the folder to write")
    ap.add_argument("--merged", action="store_true", help="a full model folder with the adapter merged in")
    args = ap.parse_args(argv)
    path = export(args.run_dir, args.out, args.merged)
    print(f"wrote {'a merged model' if args.merged else 'a PEFT adapter'} to {path}")
    return 0
