"""The RLVR trainer: rollouts -> rewards -> advantages -> loss -> LoRA update (docs/methods.md §1, §3).

One step (`train`): the step's rollout groups from pipeline.step_groups (fresh training tasks
from a seeded shuffle, `g_ind` independent + `g_asst` assisted rollouts each; g_asst = 0 is
plain RLVR; plus the method parts the config switches on: ARPO branches, RRL replay groups,
AAPO reference rewards), turned into training sequences (views.py), advantages per group
(objectives.group_advantages; AAPO's momentum; ARPO's hard attribution), and ONE AdamW update
of the LoRA weights from all of them (gradient accumulation over micro-batches, grad-norm
clip); then RRL stores the step's promising prefixes. Rollouts are sampled from
a merged copy of the current weights (Policy.sampler()), so π_old is the current policy and
the recorded sampling log-probs are the PPO ratio's denominators (tests/test_trainer.py
checks the trainer's recomputed log-probs match them).

Metrics go to run_dir/metrics.jsonl under fixed names (METRICS, written grouped as `train/…`,
`speed/…`, `eval/…`, `agents/…` by names.metric_name; docs/metrics.md); agent-free held-out pass@1
is added at step 0, every `train_eval_every` steps and at the end. A checkpoint (LoRA
safetensors, optimizer, RNG states, step, data cursor, RRL buffer) is written atomically every
`checkpoint_every` steps; with `resume=True` a run continues exactly where its last
checkpoint left it. A non-finite loss or gradient skips the update and is counted.
"""

from __future__ import annotations

import json
import math
import random
import time
from pathlib import Path

import torch

from aipo_lite.agents.guard import agent_metrics, fallback_problem
from aipo_lite.config import Config
from aipo_lite.evaluation.agent_free import heldout_eval, warm_up
from aipo_lite.methods import arpo, rrl
from aipo_lite.methods import objectives as obj
from aipo_lite.methods.aapo import momentum
from aipo_lite.methods.loss import token_loss
from aipo_lite.methods.step import _completions_table, rollout_metrics, step_groups
from aipo_lite.methods.views import to_train_seqs
from aipo_lite.model.policy import load_policy
from aipo_lite.names import grouped
from aipo_lite.records import Prov, TrainSeq
from aipo_lite.rollout.groups import agents_from_config, detector_from_config
from aipo_lite.tasks.loading import from_config as tasks_from_config
from aipo_lite.training import checkpoint, runinfo, tracking
from aipo_lite.training.logprobs import micro_batches, sequence_logprobs

METRICS = ("step", "reward_mean", "reward_ind", "reward_asst", "zero_std_frac", "groups_kept",
           "arpo_branches_per_group", "arpo_branch_after_agent", "arpo_branch_reward", "rrl_replayed_frac",
           "rrl_buffer_size", "rrl_stored", "aapo_ref_reward",
           "clip_frac_low", "clip_frac_high", "entropy", "completion_len", "consult_rate",
           "consult_rate_verify", "consult_rate_knowledge", "consult_rate_reasoning",
           "consult_rate_tag", "consult_rate_entropy", "consult_rate_commit", "consult_rate_line",
           "assisted_per_group", "guided_groups",
           "agent_tokens", "agent_w_mean", "agent_w_min", "agent_w_max", "kl", "sampler_logp_gap", "sampler_kl",
           "hint_reliance", "tis_w_mean", "tis_capped_frac", "loss", "grad_norm",
           "skipped_update", "skipped_updates", "rollout_s", "update_s", "step_time", "tokens_per_s")


def _pad(rows: list[list], fill, dtype, device) -> torch.Tensor:
    C = max(len(r) for r in rows)
    return torch.tensor([list(r) + [fill] * (C - len(r)) for r in rows], dtype=dtype, device=device)


def agent_tokens(seqs: list[TrainSeq], device) -> tuple[torch.Tensor, torch.Tensor]:
    """Mask of the AGENT tokens of a padded micro-batch [rows, len] and their consult-span ids,
    made unique across rows (a span is one agent reply). The trainer intersects the mask with
    the view's in_loss; the weight probe (experiments.py) takes every agent token."""
    agent = _pad([s.kind for s in seqs], Prov.TEMPLATE, torch.long, device) == Prov.AGENT
    span = _pad([s.span for s in seqs], -1, torch.long, device)
    return agent, span + 1000 * torch.arange(len(seqs), device=device)[:, None]


def micro_batch_loss(policy, seqs: list[TrainSeq], cfg: Config, n_seqs: int, n_tokens: int) -> tuple[torch.Tensor, dict]:
    """This micro-batch's share of the step loss (objectives.aggregate) and its statistics.

    POLICY tokens: with behaviour_logp='trainer' (default) the PPO ratio is pi_theta over the
    training model's own pre-update log-prob (its value is 1: the kit makes one optimizer step
    per rollout batch, so that log-prob is this forward's detached value, at no extra cost),
    and each token's loss is weighted by min(pi_trainer / pi_sampler, tis_cap): the decoupled
    PPO objective with truncated importance sampling, which stays correct when the sampler
    (a merged bf16 copy, another prompt for internalized tokens) is not the trainer. With
    'sampler' the ratio is pi_theta / pi_sampler, clipped. Either way the statistics measure
    the sampler/trainer gap on tokens trained under the prompt they were sampled with."""
    dev = policy.device
    logp = sequence_logprobs(policy.model, seqs, cfg.rollout_temperature, dev)
    kind = _pad([s.kind for s in seqs], Prov.TEMPLATE, torch.long, dev)
    in_loss = _pad([s.in_loss for s in seqs], False, torch.bool, dev)
    old = _pad([s.old_logp for s in seqs], math.nan, torch.float32, dev)
    adv = _pad([s.token_adv if s.token_adv is not None else [s.advantage] * len(s.ids) for s in seqs], 0.0,
               torch.float32, dev)
    same = ~torch.tensor([s.rescored for s in seqs], device=dev)[:, None]
    _, span = agent_tokens(seqs, dev)
    ref = None
    if cfg.kl_beta > 0:
        with torch.no_grad(), policy.model.disable_adapter():
            ref = sequence_logprobs(policy.model, seqs, cfg.rollout_temperature, dev)
    return token_loss(logp, kind, in_loss, old, adv, span, same, cfg, n_seqs, n_tokens, ref_logp=ref,
                      reliance_rows=torch.tensor([s.assisted and s.reward > 0 for s in seqs], device=dev))


def update(policy, opt, seqs: list[TrainSeq], cfg: Config) -> dict:
    """One optimizer step over all `seqs` (gradient accumulation). Skips it if non-finite."""
    params = [p for p in policy.model.parameters() if p.requires_grad]
    live = [s for s in seqs if any(s.in_loss)]
    n_seqs = len(live)
    n_tokens = sum(sum(s.in_loss) for s in live)
    out = {"loss": 0.0, "clip_frac_low": 0.0, "clip_frac_high": 0.0, "kl": 0.0, "grad_norm": 0.0,
           "agent_tokens": 0, "agent_w_mean": None, "agent_w_min": None, "agent_w_max": None,
           "sampler_logp_gap": None, "sampler_kl": None, "hint_reliance": None, "tis_w_mean": None, "tis_capped_frac": None, "skipped": 0}
    # a sequence with advantage 0 adds nothing to loss or gradient (unless the KL term is on):
    # it counts in the normalizers n_seqs / n_tokens but is not run through the model
    work = live if cfg.kl_beta > 0 else [s for s in live if s.advantage != 0 or any(s.token_adv or [])]
    opt.zero_grad(set_to_none=True)
    if not work:
        return out
    policy.model.train()
    total, ws, acc = 0.0, [], {}
    for batch in micro_batches(work, cfg.micro_batch_size):
        loss, st = micro_batch_loss(policy, batch, cfg, n_seqs, n_tokens)
        loss.backward()
        total += float(loss.detach())
        ws.append(st.pop("w"))
        acc = {k: acc.get(k, 0) + v for k, v in st.items()}
    pol, lo, hi, kl, gap_n = acc["pol_tokens"], acc["clip_low"], acc["clip_high"], acc["kl_sum"], acc["gap_n"]
    policy.model.eval()
    norm = torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm if cfg.max_grad_norm > 0 else float("inf"))
    w = torch.cat(ws)
    out.update(loss=total, grad_norm=float(norm), clip_frac_low=lo / max(pol, 1), clip_frac_high=hi / max(pol, 1),
               kl=kl / max(n_tokens, 1), agent_tokens=len(w), tis_w_mean=acc["tis_sum"] / max(pol, 1),
               tis_capped_frac=acc["tis_capped"] / max(pol, 1),
               sampler_logp_gap=acc["gap_abs_sum"] / gap_n if gap_n else None,
               sampler_kl=acc["gap_kl_sum"] / gap_n if gap_n else None,
               hint_reliance=acc["reliance_sum"] / acc["reliance_n"] if acc["reliance_n"] else None)
    if len(w):
        out.update(agent_w_mean=float(w.mean()), agent_w_min=float(w.min()), agent_w_max=float(w.max()))
    if math.isfinite(total) and math.isfinite(float(norm)):
        opt.step()
        policy.mark_updated()
    else:
        out["skipped"] = 1
        out["skip_cause"] = (f"non-finite {'loss' if not math.isfinite(total) else 'gradient norm'} "
                             f"(loss {total}, gradient norm {float(norm)})")
    opt.zero_grad(set_to_none=True)
    return out


def assign_advantages(seqs: list[TrainSeq], cfg: Config) -> tuple[list[TrainSeq], float]:
    """Per-group advantages in place; DAPO drops equal-reward groups. (kept seqs, zero-std fraction).
    advantage='sft': an assisted rollout's advantage is its reward, any other's 0 (distillation);
    'aapo': the group advantage plus the clipped momentum against the paired reference reward."""
    groups: dict[int, list[TrainSeq]] = {}
    for s in seqs:
        groups.setdefault(s.group, []).append(s)
    kept, zero = [], 0
    for g in groups.values():
        r = torch.tensor([s.reward for s in g], dtype=torch.float32)
        zero += int(not obj.keep_group(r))
        if cfg.advantage == "sft":
            for s in g:
                s.advantage = float(s.reward) if s.assisted else 0.0
            kept += g
            continue
        if cfg.algorithm == "dapo" and not obj.keep_group(r):
            continue
        ind = [s for s in g if not s.assisted]
        asst = [s for s in g if s.assisted]
        a_ind, a_asst = obj.group_advantages(torch.tensor([s.reward for s in ind]),
                                             torch.tensor([s.reward for s in asst]),
                                             cfg.algorithm, cfg.baseline)
        for s, a in [*zip(ind, a_ind.tolist()), *zip(asst, a_asst.tolist())]:
            s.advantage = a
            if cfg.advantage == "aapo":  # AAPO's momentum against the paired reference rollout
                s.advantage += momentum(s.reward, s.ref_reward, cfg.aapo_clip_low, cfg.aapo_clip_high)
        kept += g
    return kept, zero / max(len(groups), 1)


class TrainingStopped(RuntimeError):
    """A safety stop: updates skipped in a row, or an LLM agent that mostly fell back."""


def train(cfg: Config, policy=None, progress: bool = True, start_eval: dict | None = None) -> list[dict]:
    """Train per `cfg` (resuming from run_dir's checkpoint when cfg.resume). Returns the metrics.

    Before any work the run folder is checked (runinfo.py): a folder that holds a run trained
    with other training settings raises a ConfigError naming each differing field; one that
    already holds more steps than `train_steps` too. A finished run with the same settings is
    returned as it is; a shorter one continues exactly from its last intact checkpoint.

    `start_eval`: the step-0 held-out evaluation when the caller already has it (the metrics of
    another arm's step 0). At step 0 every arm's policy is the base model (LoRA B = 0), and the
    evaluation is seeded, so arms with the same seed, held-out slice, evaluation settings and
    model get identical step-0 evaluations; notebook 04 computes it once for both arms."""
    from tqdm.auto import tqdm

    for name, value, valid in [("algorithm", cfg.algorithm, obj.ALGORITHMS), ("agent_weight", cfg.agent_weight, obj.WEIGHTS),
                               ("view", cfg.view, obj.VIEWS), ("credit", cfg.credit, obj.CREDITS),
                               ("baseline", cfg.baseline, obj.BASELINES)]:
        obj.check_choice(name, value, valid)
    run = Path(cfg.run_dir)
    metrics_path = run / "metrics.jsonl"
    tasks = tasks_from_config(cfg, "train", cfg.train_tiers, field="train_tiers")
    held = tasks_from_config(cfg, "test", cfg.heldout_tiers, cfg.train_eval_problems_per_tier, field="heldout_tiers")
    record = runinfo.training(cfg, tasks)
    ckpt, done = runinfo.open_run(run, cfg, record)
    if ckpt is not None and done >= cfg.train_steps:
        print(f"{run} is already trained to step {cfg.train_steps} with these settings ({ckpt.name}); nothing to do")
        return runinfo.read_metrics(run)
    torch.manual_seed(cfg.seed)
    random.seed(cfg.seed)
    policy = policy or load_policy(cfg)
    if not policy.has_lora:
        raise ValueError("train() needs a LoRA policy: set lora_r > 0")
    runinfo.write(run, cfg, record)
    log = tracking.open_log(cfg, run)  # metrics.jsonl and the report_to trackers
    agents, detector = agents_from_config(cfg), detector_from_config(cfg)
    opt = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad],
                            lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    gen = torch.Generator(device=policy.device).manual_seed(cfg.seed)
    state = {"step": 0, "cursor": 0, "skipped_updates": 0}
    if ckpt is not None:
        state = checkpoint.load(ckpt, policy.model, opt, gen)
        policy.mark_updated()
        checkpoint.truncate_metrics(metrics_path, state["step"])
        warm_up(policy, cfg, held)
        print(f"resumed from {ckpt} (step {state['step']})")
    history = runinfo.read_metrics(run)
    if state["step"] == 0 and not history:
        given = {k: v for k, v in (start_eval or {}).items() if k.startswith("eval/")}
        history.append({"step": 0, **(given or heldout_eval(policy, cfg, held))})
        log.append(history[-1])
    bar = tqdm(range(state["step"], cfg.train_steps), initial=state["step"], total=cfg.train_steps,
               desc="train", disable=not progress)
    buffer = rrl.ReplayBuffer(cfg.rrl_capacity, cfg.rrl_max_age, cfg.rrl_max_replays, state.get("rrl")) \
        if cfg.rrl_groups else None
    skipped_in_row = 0
    for step in bar:
        t0 = time.perf_counter()
        before = agent_metrics(agents)
        groups, replays, rstats = step_groups(policy, tasks, buffer, agents, detector, cfg, step, state["cursor"], gen)
        t1 = time.perf_counter()
        all_seqs = to_train_seqs(groups + replays, policy.tokenizer, cfg.view, cfg.credit, cfg.prompt_style)
        seqs, zero_frac = assign_advantages(all_seqs, cfg)
        if cfg.arpo_branches and cfg.arpo_attribution == "hard":
            arpo.apply_hard(groups, all_seqs, policy.tokenizer, cfg)
        up = update(policy, opt, seqs, cfg)
        t2 = time.perf_counter()
        state["step"], state["cursor"] = step + 1, state["cursor"] + rstats["fresh"]
        skipped, cause = up.pop("skipped"), up.pop("skip_cause", None)
        state["skipped_updates"] += skipped
        skipped_in_row = skipped_in_row + 1 if skipped else 0
        m = {"step": step + 1, **rollout_metrics(groups + replays), "zero_std_frac": zero_frac,
             **{k: v for k, v in rstats.items() if k in METRICS},
             "groups_kept": len({s.group for s in seqs}), **up, "skipped_update": skipped,
             "skipped_updates": state["skipped_updates"],
             "rollout_s": t1 - t0, "update_s": t2 - t1, "step_time": t2 - t0,
             "tokens_per_s": (rstats["policy_tokens"] + rstats["forced_tokens"]) / max(t1 - t0, 1e-9),
             **agent_metrics(agents, before)}
        if buffer is not None:
            m["rrl_stored"] = rrl.harvest(buffer, groups, policy.tokenizer, cfg, step)
            buffer.expire(step + 1)
            m["rrl_buffer_size"], state["rrl"] = len(buffer), buffer.state()
        last = step + 1 == cfg.train_steps
        if last or (cfg.train_eval_every and (step + 1) % cfg.train_eval_every == 0):
            m.update(heldout_eval(policy, cfg, held))
        m = grouped(m)
        history.append(m)
        log.append(m)
        bar.set_postfix(reward=f"{m['train/reward_mean']:.2f}", loss=f"{m['train/loss']:.3f}")
        if cfg.log_completions_every and (step + 1) % cfg.log_completions_every == 0:
            bar.write(f"step {step + 1}\n{_completions_table(groups)}")
        if skipped_in_row >= cfg.max_skipped_in_row:
            raise TrainingStopped(f"stopped at step {step + 1}: {skipped_in_row} updates in a row were skipped "
                                  f"(max_skipped_in_row={cfg.max_skipped_in_row}); the last for a {cause}. "
                                  f"Metrics up to this step are in {metrics_path}.")
        if why := fallback_problem(agents, cfg.agent_max_fallback_rate):
            raise TrainingStopped(f"stopped at step {step + 1}: {why}. Per-step counts: {metrics_path}")
        if last or (cfg.checkpoint_every and (step + 1) % cfg.checkpoint_every == 0):
            checkpoint.save(run, policy.model, opt, gen, state)
    log.close()
    return history


def main(argv: list[str] | None = None) -> None:
    """python -m aipo_lite.training.trainer --profile demo --run-dir runs/x --overrides '{"train_steps": 4}'"""
    import argparse
    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--profile", default="demo")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--overrides", default="{}", help="JSON dict of Config fields")
    args = ap.parse_args(argv)
    train(Config.from_profile(args.profile, run_dir=args.run_dir, **json.loads(args.overrides)), progress=False)  # load_policy sets num_threads


if __name__ == "__main__":
    main()
