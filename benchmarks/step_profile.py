"""Where one training step's seconds go, phase by phase (exclusive times: a phase's own seconds,
without the phases it calls), at a profile's configuration.

    ONEDNN_MAX_CPU_ISA=AVX2 MKL_ENABLE_INSTRUCTIONS=AVX2 \\
        .venv/bin/python benchmarks/step_profile.py --profile demo --dtype float32 --steps 4

Phases: `merge` (rewriting the sampling copy's weights after an update), `prefill` (prompts and
agent feedback through the sampler), `sampling` (the decode loop: one token per row per call),
`agents` (the agents' replies), `hook` (the consult logic around them), `forward` (the trainer's
log-probs with gradient), `loss`, `backward`, `optimizer` (clip + AdamW), `other` (the rest of
the step: rewards, sequences, advantages, metrics). The first step is reported apart (warm-up:
the sampling copy is built there). Prints a markdown table of seconds per step (mean over the
rest) and writes it as JSON with --json.
"""

import argparse
import json
import tempfile
import time
from collections import defaultdict

import torch

import aipo_lite.agents.guard as guard
import aipo_lite.engine.decode as decode
import aipo_lite.model.policy as policy_mod
import aipo_lite.rollout.consult as consult
import aipo_lite.training.trainer as trainer
from aipo_lite.config import Config

ap = argparse.ArgumentParser()
ap.add_argument("--profile", default="demo")
ap.add_argument("--dtype", default="auto")
ap.add_argument("--steps", type=int, default=4)
ap.add_argument("--overrides", default="{}")
ap.add_argument("--json", default=None)
args = ap.parse_args()

own: dict[str, float] = defaultdict(float)  # exclusive seconds per phase, this step
stack: list[list] = []


def timed(name, fn):
    def wrapper(*a, **k):
        entry = [name, 0.0]  # [phase, seconds of timed callees]
        stack.append(entry)
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            dt = time.perf_counter() - t
            stack.pop()
            own[name] += dt - entry[1]
            if stack:
                stack[-1][1] += dt
    return wrapper


def patch(obj, attr, name):
    setattr(obj, attr, timed(name, getattr(obj, attr)))


patch(policy_mod, "_remerge", "merge")
patch(decode, "prefill", "prefill")
patch(decode, "run", "sampling")
patch(guard.Guarded, "respond", "agents")
patch(consult.Assist, "__call__", "hook")
patch(trainer, "sequence_logprobs", "forward")
patch(trainer, "token_loss", "loss")
patch(torch.Tensor, "backward", "backward")
patch(torch.optim.AdamW, "step", "optimizer")
patch(torch.nn.utils, "clip_grad_norm_", "optimizer")
patch(trainer, "heldout_eval", "eval")

per_step: list[dict] = []
orig_update, orig_groups = trainer.update, trainer.step_groups


def step_groups(*a, **k):  # a step starts with its rollouts
    own.clear()
    own["_t0"] = time.perf_counter()
    return orig_groups(*a, **k)


def update(*a, **k):
    out = orig_update(*a, **k)
    t = time.perf_counter() - own.pop("_t0")
    phases = dict(own)
    phases["other"] = t - sum(phases.values())
    per_step.append({"step_s": t, **phases})
    return out


trainer.step_groups, trainer.update = step_groups, update
with tempfile.TemporaryDirectory() as d:
    cfg = Config.from_profile(args.profile, run_dir=d, dtype=args.dtype, train_steps=args.steps,
                              train_eval_every=0, checkpoint_every=0, log_completions_every=0,
                              train_eval_problems_per_tier=1, train_eval_n=1, **json.loads(args.overrides))
    trainer.train(cfg, progress=False)

order = ["merge", "prefill", "sampling", "agents", "hook", "forward", "loss", "backward", "optimizer", "other"]
rest = per_step[1:] or per_step
mean = {k: sum(s.get(k, 0.0) for s in rest) / len(rest) for k in order + ["step_s"]}
print(f"| phase | s/step (steps 2..{len(per_step)}) | step 1 |\n|---|---|---|")
for k in order:
    print(f"| {k} | {mean[k]:.3f} | {per_step[0].get(k, 0.0):.3f} |")
print(f"| **step** | **{mean['step_s']:.3f}** | {per_step[0]['step_s']:.3f} |")
print(f"threads {torch.get_num_threads()}, dtype {args.dtype}, profile {args.profile}, steps {len(per_step)}")
if args.json:
    with open(args.json, "w") as f:
        json.dump({"mean": mean, "steps": per_step, "args": vars(args)}, f, indent=1)
