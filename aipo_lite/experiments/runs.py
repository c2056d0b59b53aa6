"""The experiments notebooks 03-05 and benchmarks/ablation.py run: arms at equal budget,
trained-policy loading, the agent-weight probe, and the capability-boundary comparison.

Equal budget (docs/methods.md §3, issue 4): every arm has the same seed, steps, prompts per step
and rollouts per prompt. `grpo` is plain RLVR: all g_ind + g_asst rollouts independent, no
agents. `aipo` is the config as given (g_ind independent + g_asst assisted).
Each arm trains in a folder named by its training settings (runinfo.py): re-running a notebook
with the same settings resumes (does not retrain); a changed setting trains anew.
"""

from __future__ import annotations

import dataclasses
import shutil
from pathlib import Path

import torch

from aipo_lite.arms import ARMS
from aipo_lite.config import Config
from aipo_lite.evaluation.agent_free import EvalResult, pass_at_k
from aipo_lite.methods import objectives as obj
from aipo_lite.model.policy import load_policy
from aipo_lite.records import Prov
from aipo_lite.training import checkpoint
from aipo_lite.training.runinfo import named_run_dir, read_metrics
from aipo_lite.training.trainer import agent_tokens, micro_batches, sequence_logprobs, train


def arm_config(cfg: Config, arm: str, root: str | Path, **overrides) -> Config:
    """The config of one arm under `root`: 'grpo' (no agents; arms.ARMS' definition) or 'aipo'
    (as configured), in the folder root/<arm>-<key of its training settings> (runinfo.py): a
    changed setting trains into a new folder, an unchanged one resumes."""
    if arm == "grpo":
        overrides = {**ARMS["grpo"](cfg), **overrides}
    return named_run_dir(dataclasses.replace(cfg, **overrides), root, arm)


def extend_to_wall_time(cfg: Config, target_seconds: float, name: str, progress: bool = True) -> list[dict]:
    """Continue a finished run (a copy of it, in `name`) until its summed step time reaches
    `target_seconds`: the equal-wall-time arm. The step count is extrapolated from the
    run's mean step time; resume makes the continuation exact."""
    hist = read_metrics(cfg.run_dir)
    per_step = sum(m["speed/step_time"] for m in hist if "speed/step_time" in m) / max(cfg.train_steps, 1)
    steps = max(cfg.train_steps, round(target_seconds / per_step))
    dst = continued_dir(cfg, name)
    if not dst.exists():
        shutil.copytree(cfg.run_dir, dst)
    return train(dataclasses.replace(cfg, run_dir=str(dst), train_steps=steps), progress=progress)




def continued_dir(cfg: Config, name: str) -> Path:
    """Where extend_to_wall_time continues cfg's run: `name-<key of the run's settings>` beside it."""
    return Path(cfg.run_dir).parent / f"{name}-{Path(cfg.run_dir).name.rsplit('-', 1)[-1]}"


def wall_time(history: list[dict]) -> float:
    return sum(m.get("speed/step_time", 0.0) for m in history)


def load_trained(cfg: Config, run_dir: str | Path | None = None):
    """The policy with the adapter of run_dir's latest checkpoint (the base policy if run_dir is None)."""
    policy = load_policy(cfg)
    if run_dir is not None:
        ckpt = checkpoint.latest(run_dir)
        if ckpt is None:
            raise FileNotFoundError(f"no checkpoint in {run_dir}: train it first (notebook 04)")
        checkpoint.load_adapter(policy.model, ckpt)
        policy.mark_updated()
    return policy


def solved_table(base: EvalResult, trained: EvalResult, k: int) -> dict[str, dict[str, int]]:
    """Per tier: problems solved at k (pass@k > 0 from the samples) by base only / trained only / both / neither."""
    out: dict[str, dict[str, int]] = {}
    trained_by_id = {p["id"]: p for p in trained.problems}
    for p in base.problems:
        q = trained_by_id[p["id"]]
        b, t = pass_at_k(p["n"], p["correct"], k) > 0, pass_at_k(q["n"], q["correct"], k) > 0
        key = {(True, False): "base only", (False, True): "trained only", (True, True): "both"}.get((b, t), "neither")
        for tier in (p["kind"], "all"):
            out.setdefault(tier, {"base only": 0, "trained only": 0, "both": 0, "neither": 0})[key] += 1
    return out


def weight_probe(policy, seqs, cfg: Config) -> dict[str, dict]:
    """For one batch of training sequences: each agent-weight mode's weights on the real agent
    tokens and the LoRA gradient norm of the agent-token loss alone (advantage +1, mean over
    agent tokens). One forward per micro-batch (trainer.micro_batches) serves all modes: each
    mode's backward keeps the graph and its gradient is summed into its own buffer."""
    dev = policy.device
    params = [p for p in policy.model.parameters() if p.requires_grad]
    n_total = sum(k == Prov.AGENT for s in seqs for k in s.kind)
    eps_hi = obj.eps_high(cfg.algorithm, cfg.clip_eps_low, cfg.clip_eps_high)
    grads = {mode: [torch.zeros_like(p, dtype=torch.float32) for p in params] for mode in obj.WEIGHTS}
    probs, ws = [], {mode: [] for mode in obj.WEIGHTS}
    for chunk in micro_batches(seqs, cfg.micro_batch_size):
        logp = sequence_logprobs(policy.model, chunk, cfg.rollout_temperature, dev)
        agent, span = agent_tokens(chunk, dev)
        lp, sp = logp[agent], span[agent]
        probs.append(lp.detach().exp().cpu())
        for i, mode in enumerate(obj.WEIGHTS):
            loss, w = obj.agent_token_loss(lp, sp, torch.ones_like(lp), mode, cfg.agent_w_min, cfg.agent_w_max,
                                           cfg.luffy_gamma, cfg.clip_eps_low, eps_hi)
            got = torch.autograd.grad(loss.sum() / max(n_total, 1), params, retain_graph=i + 1 < len(obj.WEIGHTS),
                                      allow_unused=True)
            for acc, g in zip(grads[mode], got):
                if g is not None:
                    acc += g.float()
            ws[mode].append(w.cpu())
    prob = torch.cat(probs)
    return {mode: {"prob": prob, "w": torch.cat(ws[mode]),
                   "grad_norm": float(torch.sqrt(sum((g ** 2).sum() for g in grads[mode])))}
            for mode in obj.WEIGHTS}
