"""Time and peak memory of training steps at a profile's configuration (one process per setting).

    .venv/bin/python benchmarks/train_step.py --profile demo --dtype float32
    .venv/bin/python benchmarks/train_step.py --profile demo --dtype bfloat16
    .venv/bin/python benchmarks/train_step.py --profile demo --dtype float32 --load-in-4bit

Runs `--steps` AIPO training steps (rollouts + one LoRA update each) in a temporary run dir and
prints rollout / update / step seconds per step and the process's peak RSS (CPU) or peak CUDA
memory. Sampling goes through a merged copy of the LoRA weights unless the base is 4-bit
(a 4-bit base cannot take a merge), so the 4-bit row also measures unmerged-LoRA sampling.
"""

import argparse
import json
import resource
import tempfile

import torch

from aipo_lite.config import Config
from aipo_lite.training.trainer import train

ap = argparse.ArgumentParser()
ap.add_argument("--profile", default="demo")
ap.add_argument("--dtype", default="auto")
ap.add_argument("--load-in-4bit", action="store_true")
ap.add_argument("--steps", type=int, default=2)
ap.add_argument("--overrides", default="{}")
args = ap.parse_args()

with tempfile.TemporaryDirectory() as d:
    cfg = Config.from_profile(args.profile, run_dir=d, dtype=args.dtype, load_in_4bit=args.load_in_4bit,
                              train_steps=args.steps, train_eval_every=0, checkpoint_every=0,
                              log_completions_every=0, **json.loads(args.overrides))
    cfg = Config(**{**cfg.to_dict(), "train_eval_problems_per_tier": 1, "train_eval_n": 1})
    hist = train(cfg, progress=False)
steps = [m for m in hist if "speed/step_time" in m]
def fmt(x, spec=".4f"):
    return "-" if x is None else format(x, spec)


for m in steps:
    print(f"step {m['step']}: rollout {m['speed/rollout_s']:.1f} s, update {m['speed/update_s']:.1f} s, "
          f"step {m['speed/step_time']:.1f} s, {m['speed/tokens_per_s']:.1f} rollout tok/s, {m['train/completion_len']:.0f} tokens/rollout; "
          f"sampler_logp_gap {fmt(m['train/sampler_logp_gap'])}, sampler_kl {fmt(m['train/sampler_kl'], '.5f')}, "
          f"tis_w_mean {fmt(m['train/tis_w_mean'])}, tis_capped_frac {fmt(m['train/tis_capped_frac'])}, "
          f"clip_frac_low {fmt(m['train/clip_frac_low'])}")
peak = (torch.cuda.max_memory_allocated() / 2**30 if torch.cuda.is_available()
        else resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20)
print(f"dtype={args.dtype} 4bit={args.load_in_4bit}: mean step {sum(m['speed/step_time'] for m in steps) / len(steps):.1f} s, "
      f"peak {'CUDA' if torch.cuda.is_available() else 'RSS'} {peak:.2f} GiB")
