"""The trainer on the real policy: on-policy log-probs, non-finite skips, exact resume after SIGKILL."""

import copy
import dataclasses
import json
import math
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
from conftest import fill_lora

from aipo_lite.config import Config, ConfigError
from aipo_lite.methods.views import to_train_seqs
from aipo_lite.model import packed
from aipo_lite.model.policy import load_policy
from aipo_lite.records import Prov
from aipo_lite.rollout.detector import Detector
from aipo_lite.rollout.groups import agents_from_config, rollout_group
from aipo_lite.tasks.loading import load_tasks
from aipo_lite.training.trainer import assign_advantages, sequence_logprobs, update

ROOT = __import__("pathlib").Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def lora_policies():
    """lora_policies(dtype) -> the real policy in that dtype with one non-trivial adapter (the
    same LoRA values in every dtype), so the merged sampler differs from the base model."""
    cache = {}

    def get(dtype: str):
        if dtype not in cache:
            cfg = Config.from_profile("smoke", lora_r=4, rollout_max_new_tokens=20, g_ind=2, g_asst=2, dtype=dtype)
            policy = load_policy(cfg)
            fill_lora(policy.model, 0.02)
            policy.mark_updated()
            cache[dtype] = policy
        return cache[dtype]
    return get


@pytest.fixture(scope="module")
def lora_policy(lora_policies):
    return lora_policies("float32")


def _batch(policy, view="interactive"):
    cfg = policy.config
    tasks = load_tasks("synth", "test", ["add3", "units"], 1)
    eager = Detector(window=2, init_tokens=2, tau_abs=0.0, tau_rel=-100.0)  # consults early in every assisted row
    groups, _ = rollout_group(policy, tasks, agents_from_config(cfg), eager, 2, 2,
                              max_new_tokens=20, generator=1)
    return to_train_seqs(groups, policy.tokenizer, view=view)


def _gaps(logp, seqs):
    """trainer minus sampler log-prob of every generated token, flat."""
    return torch.cat([logp[b, :len(s.ids)].float().cpu() - torch.tensor(s.old_logp) for b, s in enumerate(seqs)])


@pytest.mark.slow
@pytest.mark.parametrize("dtype,weights", [("float32", "merged"), ("float32", "fp16"), ("bfloat16", "merged")])
def test_sampler_logprobs_match_the_trainer(lora_policies, dtype, weights):
    """fp32, merged copy: the log-probs the sampler recorded equal the trainer's (unmerged LoRA)
    recompute, so sampling is on-policy. bf16: they differ by bf16 rounding (merged weights
    rounded once vs per-op rounding, cached one-token decode vs a full forward): on average no
    more than twice the bf16 trainer's own deviation from the fp32 trainer on the same tokens
    (two independent roundings). fp32 with the fp16 copy ('auto' on an fp32 CPU): no more than
    twice the deviation of a trainer whose base weights are rounded to fp16. That gap is what the
    trainer logs and corrects (TIS)."""
    if weights == "fp16" and not packed.available():
        pytest.skip("torch without fbgemm")
    policy = lora_policies(dtype)
    saved = policy.config, policy._merged
    policy.config, policy._merged = dataclasses.replace(policy.config, sampler_weights=weights), None
    try:
        seqs = _batch(policy)
    finally:
        policy.config, policy._merged = saved
    assert any(k == Prov.AGENT for s in seqs for k in s.kind)  # feedback tokens are checked too
    with torch.no_grad():
        gaps = _gaps(sequence_logprobs(policy.model, seqs, 1.0, policy.device), seqs)
    if (dtype, weights) == ("float32", "merged"):
        assert gaps.abs().max() <= 2e-3, gaps
        return
    if weights == "fp16":
        exact, other = policy.model, copy.deepcopy(policy.model)
        with torch.no_grad():
            for name, p in other.named_parameters():
                if "lora_" not in name and p.dim() == 2:
                    p.copy_(p.half().float())
    else:
        exact, other = lora_policies("float32").model, policy.model
    with torch.no_grad():
        rounding = (_gaps(sequence_logprobs(other, seqs, 1.0, policy.device), seqs)
                    - _gaps(sequence_logprobs(exact, seqs, 1.0, policy.device), seqs))
    print(f"{dtype}/{weights} sampler/trainer gap {gaps.abs().mean():.4f} (max {gaps.abs().max():.3f}); "
          f"rounding {rounding.abs().mean():.4f}")
    assert gaps.abs().mean() <= 2 * rounding.abs().mean()


@pytest.mark.slow
def test_update_changes_lora_and_skips_non_finite(lora_policy):
    cfg = lora_policy.config
    seqs = _batch(lora_policy, view="internalized")
    for s in seqs:  # every sequence gets some advantage
        s.reward = float(s.group == 0 and s.assisted)
    seqs, _ = assign_advantages(seqs, cfg)
    params = {n: p.detach().clone() for n, p in lora_policy.model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in lora_policy.model.parameters() if p.requires_grad], lr=1e-3)
    bad = [type(s)(**{**s.__dict__, "advantage": float("nan")}) for s in seqs]
    out = update(lora_policy, opt, bad, cfg)
    assert out["skipped"] == 1
    assert all(torch.equal(p, params[n]) for n, p in lora_policy.model.named_parameters() if p.requires_grad)
    version = lora_policy.version
    out = update(lora_policy, opt, seqs, cfg)
    assert out["skipped"] == 0 and out["grad_norm"] > 0 and out["agent_tokens"] > 0
    assert 0.5 <= out["agent_w_min"] <= out["agent_w_max"] <= 1.0  # aipo weight in [w_min, w_max]
    assert lora_policy.version == version + 1  # the sampler will re-merge
    assert any(not torch.equal(p, params[n]) for n, p in lora_policy.model.named_parameters() if p.requires_grad)


def test_unknown_training_names_raise_listing_valid_ones():
    for field, bad in [("algorithm", "ppo"), ("agent_weight", "magic"), ("view", "both"),
                       ("credit", "some"), ("baseline", "none")]:
        with pytest.raises(ConfigError, match=rf"^{field}='{bad}' is not valid; choose one of \["):
            Config.from_profile("smoke", **{field: bad})


TIMING = {"speed/rollout_s", "speed/update_s", "speed/step_time", "speed/tokens_per_s"}
OVERRIDES = dict(train_steps=3, prompts_per_step=2, g_ind=2, g_asst=2, rollout_max_new_tokens=16,
                 train_tiers=["add1d", "add3"], heldout_tiers=["add1d"], train_eval_problems_per_tier=2,
                 train_eval_n=2, train_eval_every=2, checkpoint_every=2, log_completions_every=0,
                 lora_r=4,
                 # every method part at once (pipeline.py): the RRL buffer, ARPO's draws and AAPO's
                 # reference rollouts must resume exactly too
                 arpo_branches=1, advantage="aapo", rrl_groups=1, rrl_max_group_reward=1.0)


def _trainer(run_dir):
    cmd = [sys.executable, "-m", "aipo_lite.training.trainer", "--profile", "smoke", "--run-dir", str(run_dir),
           "--overrides", json.dumps(OVERRIDES)]
    return subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _metrics(run_dir):
    lines = (run_dir / "metrics.jsonl").read_text().splitlines()
    return [{k: v for k, v in json.loads(line).items() if k not in TIMING} for line in lines]


@pytest.mark.slow
def test_sigkill_after_checkpoint_then_resume_equals_uninterrupted(tmp_path):
    whole, broken = tmp_path / "whole", tmp_path / "broken"
    p = _trainer(whole)
    assert p.wait(timeout=900) == 0, p.stdout.read()[-3000:]
    p = _trainer(broken)
    pointer = broken / "checkpoints" / "latest"
    deadline = time.time() + 900
    while not (pointer.exists() and pointer.read_text().strip() == "step-000002"):
        assert p.poll() is None and time.time() < deadline, p.stdout.read()[-3000:] if p.poll() is not None else "timeout"
        time.sleep(0.2)
    os.kill(p.pid, signal.SIGKILL)
    p.wait()
    assert len(_metrics(broken)) < len(_metrics(whole))  # it really was cut short
    p = _trainer(broken)
    out = p.communicate(timeout=900)[0]
    assert p.returncode == 0, out[-3000:]
    assert "resumed from" in out and "step-000002" in out
    assert _metrics(broken) == _metrics(whole)
    assert [m["step"] for m in _metrics(whole)] == [0, 1, 2, 3]
    assert any(m.get("train/rrl_replayed_frac") for m in _metrics(whole) if m["step"] > 2)  # replays after the cut


def _tiny_seq(tok):
    from aipo_lite.records import TrainSeq
    prompt = tok.encode("What is 5 + 2 + 6?", add_special_tokens=False)
    parts = [("5 + 2 = 7.\n", Prov.POLICY), ("<feedback>", Prov.TEMPLATE), ("Next: 7 + 6 = 13.", Prov.AGENT),
             ("</feedback>\n", Prov.TEMPLATE), ("Answer: 13", Prov.POLICY)]
    ids, kind = [], []
    for text, k in parts:
        t = tok.encode(text, add_special_tokens=False)
        ids, kind = ids + t, kind + [k] * len(t)
    span = [0 if k == Prov.AGENT else -1 for k in kind]
    return TrainSeq(prompt, ids, kind, [-1.0] * len(ids), [True] * len(ids), span, advantage=1.0, assisted=True)


@pytest.mark.parametrize("dtype,four_bit", [("float32", False), ("bfloat16", False), ("float32", True)])
def test_update_on_tiny_model_in_each_precision_and_template_tokens_never_count(tiny_model_dir, dtype, four_bit):
    from aipo_lite.training.trainer import micro_batch_loss
    cfg = Config(model=tiny_model_dir, lora_r=4, dtype=dtype, load_in_4bit=four_bit, device="cpu")
    policy = load_policy(cfg)
    seq = _tiny_seq(policy.tokenizer)
    loss, _ = micro_batch_loss(policy, [seq], cfg, 1, sum(seq.in_loss))
    template_off = type(seq)(**{**seq.__dict__, "in_loss": [k != Prov.TEMPLATE for k in seq.kind]})
    loss_off, _ = micro_batch_loss(policy, [template_off], cfg, 1, sum(seq.in_loss))
    assert torch.equal(loss, loss_off)  # in_loss on a TEMPLATE token changes nothing
    before = {n: p.detach().clone() for n, p in policy.model.named_parameters() if p.requires_grad}
    opt = torch.optim.AdamW([p for p in policy.model.parameters() if p.requires_grad], lr=1e-2)
    out = update(policy, opt, [seq], cfg)
    assert out["skipped"] == 0 and math.isfinite(out["loss"]) and out["grad_norm"] > 0
    assert any(not torch.equal(p, before[n]) for n, p in policy.model.named_parameters() if p.requires_grad)


def _policy_only_seq(tok, old_logp):
    from aipo_lite.records import TrainSeq
    prompt = tok.encode("What is 5 + 2 + 6?", add_special_tokens=False)
    ids = tok.encode("5 + 2 = 7. 7 + 6 = 13.\nAnswer: 13", add_special_tokens=False)
    old = old_logp if old_logp is not None else [-1.0] * len(ids)
    return TrainSeq(prompt, ids, [Prov.POLICY] * len(ids), list(old), [True] * len(ids), [-1] * len(ids),
                    advantage=1.0)


def _lora_grad(policy, seq, cfg):
    from aipo_lite.training.trainer import micro_batch_loss
    policy.model.zero_grad(set_to_none=True)
    loss, st = micro_batch_loss(policy, [seq], cfg, 1, len(seq.ids))
    loss.backward()
    grad = torch.cat([p.grad.flatten().float() for p in policy.model.parameters() if p.requires_grad])
    return loss.detach(), grad, st


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_tis_objective_weights_each_token_by_its_truncated_trainer_over_sampler_ratio(tiny_model_dir, dtype):
    """behaviour_logp='trainer': loss = mean_t -A * min(pi_trainer / pi_sampler, cap) * ratio_t with
    ratio = pi_theta / pi_trainer = 1, so its gradient is -A * w_t * grad log pi_t; and the logged
    gap and KL are those of the sampler log-probs given."""
    from aipo_lite.training.trainer import sequence_logprobs
    cfg = Config(model=tiny_model_dir, lora_r=4, dtype=dtype, tis_cap=2.0)
    policy = load_policy(cfg)
    for name, p in policy.model.named_parameters():
        if "lora_B" in name:
            p.data.normal_(0, 0.1, generator=torch.Generator(device=p.device).manual_seed(0))
    tok = policy.tokenizer
    probe = _policy_only_seq(tok, None)
    with torch.no_grad():
        trainer = sequence_logprobs(policy.model, [probe], 1.0, policy.device)[0].float().cpu()
    delta = torch.linspace(-1.5, 1.5, len(probe.ids))  # sampler = trainer + delta
    seq = _policy_only_seq(tok, (trainer + delta).tolist())
    loss, grad, st = _lora_grad(policy, seq, cfg)
    w = torch.exp(-delta).clamp(max=2.0)
    # the same gradient, written out: sum_t -A * w_t * log pi_t / T
    policy.model.zero_grad(set_to_none=True)
    logp = sequence_logprobs(policy.model, [seq], 1.0, policy.device)[0]
    (-(w.to(logp.device) * logp).sum() / len(seq.ids)).backward()
    manual = torch.cat([p.grad.flatten().float() for p in policy.model.parameters() if p.requires_grad])
    torch.testing.assert_close(grad, manual, rtol=1e-4, atol=1e-6)
    assert st["clip_low"] == st["clip_high"] == 0 and st["tis_capped"] == int((-delta > math.log(2.0)).sum())
    assert st["gap_abs_sum"] / st["gap_n"] == pytest.approx(float(delta.abs().mean()), abs=1e-5)
    k3 = (torch.exp(-delta) + delta - 1).mean()
    assert st["gap_kl_sum"] / st["gap_n"] == pytest.approx(float(k3), abs=1e-5)
    # no mismatch: the TIS objective and the plain PPO ratio against the sampler give one gradient
    on_policy = _policy_only_seq(tok, trainer.tolist())
    _, g_tis, _ = _lora_grad(policy, on_policy, cfg)
    _, g_ppo, _ = _lora_grad(policy, on_policy, Config(**{**cfg.to_dict(), "behaviour_logp": "sampler"}))
    torch.testing.assert_close(g_tis, g_ppo, rtol=1e-4, atol=1e-6)
    # cap 0: no correction, every weight 1
    _, g_off, st = _lora_grad(policy, seq, Config(**{**cfg.to_dict(), "tis_cap": 0.0}))
    torch.testing.assert_close(g_off, g_tis, rtol=1e-4, atol=1e-6)
    assert st["tis_sum"] == len(seq.ids)


def _logp_and_grad(policy, seqs, share):
    from aipo_lite.training.trainer import sequence_logprobs
    policy.model.zero_grad(set_to_none=True)
    logp = sequence_logprobs(policy.model, seqs, 1.0, policy.device, share_prefix=share)
    live = torch.tensor([[i < len(s.ids) for i in range(logp.shape[1])] for s in seqs], device=logp.device)
    (logp * live).sum().backward()
    grad = torch.cat([p.grad.flatten().float() for p in policy.model.parameters() if p.requires_grad])
    return logp.detach().float().cpu() * live.cpu(), grad.cpu()


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_shared_prefix_forward_gives_the_same_logprobs_and_lora_gradient(tiny_model_dir, dtype):
    """The prompt prefix all rows share runs once and is expanded: same log-probs, same gradient,
    up to the summation order: within twice the model's own rounding, measured against the same
    computation one precision up (fp32 against fp64, bf16 against fp32). A constant bound (1e-5
    relative) held on CPU but not on an H100, whose fp32 kernels split sums differently by shape."""
    from aipo_lite.records import TrainSeq
    from aipo_lite.tasks.prompts import agent_free_prompt

    def seqs_for(policy):
        tok = policy.tokenizer
        out = []
        for q, a in [("What is 2 + 3?", "2 + 3 = 5.\nAnswer: 5"), ("What is 12 + 30 - 4?", "12 + 30 = 42."),
                     ("What is 7 + 6 + 1?", "7 + 6 = 13. 13 + 1 = 14.\nAnswer: 14")]:
            p, ids = tok.encode(agent_free_prompt(tok, q), add_special_tokens=False), tok.encode(a, add_special_tokens=False)
            out.append(TrainSeq(p, ids, [Prov.POLICY] * len(ids), [0.0] * len(ids), [True] * len(ids), [-1] * len(ids)))
        return out

    from test_policy import _tiny_lora_policy
    policy = _tiny_lora_policy(tiny_model_dir, dtype, scale=0.1)
    seqs = seqs_for(policy)
    lp_shared, g_shared = _logp_and_grad(policy, seqs, True)
    lp_plain, g_plain = _logp_and_grad(policy, seqs, False)
    exact = _tiny_lora_policy(tiny_model_dir, "float32", scale=0.1)
    if dtype == "float32":
        exact.model.double()
    lp_exact, g_exact = _logp_and_grad(exact, seqs, False)
    assert (lp_shared - lp_plain).abs().max() <= 2 * (lp_plain - lp_exact).abs().max()
    assert (g_shared - g_plain).norm() <= 2 * (g_plain - g_exact).norm()


def test_micro_batches_group_similar_lengths_and_pack_prompts_with_a_shared_prefix():
    """The trainer's cut: each sequence once, at most `size` rows, short and long rollouts
    apart; prompts that share a long prefix (a step's questions after one system prompt and
    one-shot example) go into one micro-batch, whose forward runs that prefix once."""
    from aipo_lite.records import TrainSeq
    from aipo_lite.training.trainer import micro_batches

    def seq(prompt, n):
        return TrainSeq(list(prompt), [7] * n, [Prov.POLICY] * n, [0.0] * n, [True] * n, [-1] * n)
    seqs = [seq((1, 2, 3), n) for n in (40, 3, 4, 41, 5, 39)] + [seq((1, 2, 4), n) for n in (9, 9)]
    batches = micro_batches(seqs, 4)
    assert sorted(id(s) for b in batches for s in b) == sorted(id(s) for s in seqs)  # each once
    assert all(len(b) <= 4 for b in batches)
    lengths = sorted(sorted(len(s.ids) for s in b) for b in batches)
    assert lengths == [[3, 4, 5], [9, 9], [39, 40, 41]]  # short and long rollouts apart
    system = list(range(100, 160))  # 60 shared tokens, then each question's own
    step = [seq([*system, q, q + 1], 16) for q in (1, 5, 9, 13) for _ in range(4)]
    packed = micro_batches(step, 16)
    assert len(packed) == 1 and len(packed[0]) == 16
    assert [len(b) for b in micro_batches(step, 6)] in ([4, 6, 6], [6, 4, 6], [6, 6, 4])
    from aipo_lite.training.logprobs import MAX_POSITIONS
    long = [seq([*system, q, q + 1], 60) for q in (1, 5) for _ in range(8)]  # 16 x (2 + 60) positions
    cut = micro_batches(long, 16)
    assert all(60 + len(b) * 62 <= MAX_POSITIONS for b in cut) and sum(map(len, cut)) == 16  # memory bound


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_both_arms_of_notebook_04_share_one_step0_evaluation(tmp_path, monkeypatch, dtype):
    """Notebook 04 evaluates step 0 once (train(start_eval=)): at step 0 the GRPO and the AIPO
    arm are both the base model (LoRA B = 0, whatever A is) under the same seeded evaluation, so
    their held-out evaluations are identical; given one, train() does not sample it again."""
    from aipo_lite.evaluation.agent_free import heldout_eval
    from aipo_lite.experiments.runs import arm_config
    from aipo_lite.tasks.loading import from_config
    from aipo_lite.training import trainer
    cfg = Config.from_profile("smoke", dtype=dtype, heldout_tiers=["add1d", "add3"], train_eval_problems_per_tier=4,
                              train_eval_n=4, train_steps=1, train_eval_every=0, checkpoint_every=0,
                              train_tiers=["add1d"], rollout_max_new_tokens=16, log_completions_every=0)
    held = from_config(cfg, "test", cfg.heldout_tiers, cfg.train_eval_problems_per_tier)
    evals = {}
    for seed, arm in enumerate(("grpo", "aipo")):
        acfg = arm_config(cfg, arm, tmp_path)
        torch.manual_seed(100 + seed)  # a different LoRA A in each arm: B = 0 makes it irrelevant
        evals[arm] = heldout_eval(load_policy(acfg), acfg, held)
    assert evals["grpo"] == evals["aipo"]
    assert 0 < evals["grpo"]["eval/pass1/add1d"] < 1  # a real evaluation, not a degenerate one
    if dtype != "float32":
        return
    calls = []
    real = trainer.heldout_eval
    monkeypatch.setattr(trainer, "heldout_eval", lambda *a: calls.append(1) or real(*a))
    hist = trainer.train(arm_config(cfg, "aipo", tmp_path), progress=False, start_eval={"step": 0, **evals["grpo"]})
    assert hist[0] == {"step": 0, **evals["aipo"]}
    assert len(calls) == 1 and "eval/pass1" in hist[-1]  # only the end-of-run evaluation sampled
    assert trainer.train(arm_config(cfg, "aipo", tmp_path), progress=False)[0] == hist[0]  # resumed: as written
