"""ARPO, AAPO and RRL (docs/methods.md §4): hand-built traces, trees, groups and buffers; one
training step of every method part on the real policy."""

import math
import random

import pytest
import torch

from aipo_lite.config import Config, ConfigError
from aipo_lite.methods import arpo, rrl
from aipo_lite.methods.aapo import momentum
from aipo_lite.methods.views import to_train_seqs
from aipo_lite.records import TrainSeq
from aipo_lite.records import Prov
from aipo_lite.records import Rollout
from aipo_lite.tasks.loading import Task
from aipo_lite.training.trainer import assign_advantages, micro_batch_loss


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from aipo_lite.model.policy import resolve_model_path
    return AutoTokenizer.from_pretrained(resolve_model_path(Config()))


@pytest.fixture(scope="module", params=["float32", "bfloat16"])
def lora_policy(request):
    from conftest import fill_lora

    from aipo_lite.model.policy import load_policy
    policy = load_policy(Config.from_profile("smoke", lora_r=4, dtype=request.param))
    fill_lora(policy.model, 0.02)
    policy.mark_updated()
    return policy


TASK = Task("t1", "What is 5 + 2 + 6?", "13", ("5 + 2 = 7", "7 + 6 = 13"), kind="add3")
P, A = Prov.POLICY, Prov.AGENT


def _rollout(prov, ent, ids=None, reward=0.0, assisted=False, prefix_len=0, parent=-1):
    n = len(prov)
    return Rollout(TASK, assisted, [1, 2], ids or list(range(100, 100 + n)), list(prov), [-1.0] * n, list(ent), "",
                   "stop", reward=reward, prefix_len=prefix_len, parent=parent)


# --- ARPO ----------------------------------------------------------------------------------

def test_branch_probability_is_clipped_alpha_plus_beta_delta():
    assert arpo.branch_probability(0.0, 0.5, 0.2) == 0.5
    assert arpo.branch_probability(1.0, 0.5, 0.2) == pytest.approx(0.7)
    assert arpo.branch_probability(-1.0, 0.5, 0.2) == pytest.approx(0.3)
    assert arpo.branch_probability(10.0, 0.5, 0.2) == 1.0 and arpo.branch_probability(-10.0, 0.5, 0.2) == 0.0


def test_branch_points_after_each_agent_reply_with_entropy_change():
    # 4 policy tokens (entropy 1), an agent reply, 4 policy tokens (entropy 3), a reply, 2 policy tokens
    prov = [P] * 4 + [A] * 2 + [P] * 4 + [A] * 2 + [P] * 2
    ent = [1.0] * 4 + [0.0] * 2 + [3.0] * 4 + [0.0] * 2 + [2.0] * 2
    pts = arpo.branch_points(_rollout(prov, ent), k=2)
    assert pts == [(6, pytest.approx(2.0)), (12, pytest.approx(1.0))]  # H_after - H_init, H_init = 1
    assert arpo.branch_points(_rollout(prov, ent), k=3) == [(6, pytest.approx(2.0))]  # needs k tokens after


def test_plan_fills_the_budget_and_follows_the_probability():
    prov = [P] * 4 + [A] * 2 + [P] * 4 + [A] * 2 + [P] * 4
    hot = _rollout(prov, [1.0] * 4 + [0, 0] + [9.0] * 4 + [0, 0] + [9.0] * 4)   # ΔH = 8: P = 1
    cold = _rollout(prov, [9.0] * 4 + [0, 0] + [1.0] * 4 + [0, 0] + [1.0] * 4)  # ΔH = -8: P = 0
    rng = random.Random(0)
    assert arpo.plan([cold, hot], 2, 2, 0.5, 0.2, 1, rng) == [(1, 6), (1, 12)]
    assert arpo.plan([cold, hot], 3, 2, 0.5, 0.2, 2, rng) == [(1, 6), (1, 6), (1, 12)]  # Z = 2 copies a point
    # no point branches (alpha = beta = 0): the budget is still filled, at existing points
    out = arpo.plan([cold, hot], 4, 2, 0.0, 0.0, 1, rng)
    assert len(out) == 4 and set(out) <= {(0, 6), (0, 12), (1, 6), (1, 12)}
    # at ΔH = 0 a point branches with P = alpha: the first of two points is taken with
    # P = 0.3, else (neither branched, 0.7 * 0.7) half the time by the uniform fill
    flat = _rollout(prov, [1.0] * 16)
    hits = sum(arpo.plan([flat], 1, 2, 0.3, 0.2, 1, random.Random(s)) == [(0, 6)] for s in range(4000))
    assert hits / 4000 == pytest.approx(0.3 + 0.49 * 0.5, abs=0.025)


def test_hard_attribution_on_a_hand_built_tree():
    # parent (adv 1.0) of length 6; branch b1 shares its first 2 tokens (adv -1.0), b2 its first 4 (adv 0.5)
    out = arpo.hard_advantages([2, 4], [-1.0, 0.5], 1.0, 6)
    assert out == pytest.approx([(1 - 1 + 0.5) / 3] * 2 + [(1 + 0.5) / 2] * 2 + [1.0] * 2)


def test_no_prefix_token_counted_twice_in_the_loss(tok):
    ids = tok.encode("5 + 2 = 7.\n7 + 6 = 13.\nAnswer: 13", add_special_tokens=False)
    parent = _rollout([P] * len(ids), [1.0] * len(ids), ids, reward=1.0)
    at = tok.encode("5 + 2 = 7.\n", add_special_tokens=False).__len__()
    branch = _rollout([P] * len(ids), [1.0] * len(ids), ids, reward=0.0, prefix_len=at, parent=0)
    seqs = to_train_seqs([[parent, branch]], tok)
    assert sum(seqs[0].in_loss) == len(ids) and seqs[1].in_loss == [False] * at + [True] * (len(ids) - at)
    assert sum(seqs[0].in_loss) + sum(seqs[1].in_loss) == len(ids) + len(ids) - at  # shared tokens once
    cfg = Config.from_profile("smoke", arpo_branches=1, arpo_attribution="hard")
    assign_advantages(seqs, cfg)
    arpo.apply_hard([[parent, branch]], seqs, tok, cfg)
    assert seqs[0].advantage > 0 > seqs[1].advantage
    assert seqs[0].token_adv == pytest.approx([0.0] * at + [seqs[0].advantage] * (len(ids) - at), abs=1e-6)


# --- AAPO ----------------------------------------------------------------------------------

def _seq(reward, ref, assisted=False, group=0):
    return TrainSeq([1], [5, 6], [P, P], [-1.0, -1.0], [True, True], [-1, -1], assisted=assisted, group=group,
                    reward=reward, ref_reward=ref)


def test_aapo_advantage_by_hand_including_groups_grpo_gives_nothing():
    assert momentum(1, 0) == 0.28 and momentum(0, 1) == -0.2 and momentum(1, 1) == 0.0
    cfg = Config.from_profile("smoke", advantage="aapo", g_asst=0, g_ind=4)
    # rewards [1, 0, 1, 0], reference [0, 0, 1, 1]: grpo +-1 (std 0.5), momentum [.28, 0, 0, -.2]
    seqs = [_seq(r, q) for r, q in zip([1, 0, 1, 0], [0, 0, 1, 1])]
    assign_advantages(seqs, cfg)
    assert [s.advantage for s in seqs] == pytest.approx([1.28, -1.0, 1.0, -1.2], abs=1e-5)
    # all rewards equal (GRPO: zero) but the reference differs: AAPO still has a signal
    seqs = [_seq(r, q, group=1) for r, q in zip([0, 0, 0, 0], [1, 0, 0, 1])]
    assign_advantages(seqs, cfg)
    assert [s.advantage for s in seqs] == pytest.approx([-0.2, 0.0, 0.0, -0.2])
    grpo = [_seq(0, 1, group=1) for _ in range(4)]
    assign_advantages(grpo, Config.from_profile("smoke", g_asst=0, g_ind=4))
    assert all(s.advantage == 0 for s in grpo)


def test_aapo_loss_is_advantage_weighted_log_likelihood_token_mean(lora_policy):
    tok = lora_policy.tokenizer
    cfg = Config.from_profile("smoke", advantage="aapo", tis_cap=0)
    seqs = [TrainSeq(tok.encode("Q: 2+2?", add_special_tokens=False), tok.encode(t, add_special_tokens=False),
                     [], [], [], [], advantage=a) for t, a in [("4.\nAnswer: 4", 1.28), ("5", -0.2)]]
    for s in seqs:
        n = len(s.ids)
        s.kind, s.old_logp, s.in_loss, s.span = [P] * n, [-1.0] * n, [True] * n, [-1] * n
    n_tok = sum(len(s.ids) for s in seqs)
    loss, _ = micro_batch_loss(lora_policy, seqs, cfg, 2, n_tok)
    from aipo_lite.training.logprobs import sequence_logprobs
    with torch.no_grad():
        lp = sequence_logprobs(lora_policy.model, seqs, cfg.rollout_temperature, lora_policy.device)
    want = sum(-s.advantage * lp[b, :len(s.ids)].sum() for b, s in enumerate(seqs)) / n_tok
    assert float(loss.detach()) == pytest.approx(float(want), rel=1e-3 if lp.dtype == torch.float32 else 2e-2)


# --- RRL -----------------------------------------------------------------------------------

def test_replay_buffer_insert_evict_stale_take():
    buf = rrl.ReplayBuffer(capacity=2, max_age=3, max_replays=2)
    buf.insert(rrl.Entry("a", [1], 0.5, added=0))
    buf.insert(rrl.Entry("b", [2], 0.2, added=1))
    buf.insert(rrl.Entry("c", [3], 0.4, added=2))      # full: the least promising (b) goes
    assert sorted(e.task_id for e in buf.entries) == ["a", "c"]
    buf.insert(rrl.Entry("c", [3], 0.9, added=2))      # same (task, prefix): refreshed, not doubled
    assert len(buf) == 2 and max(e.promise for e in buf.entries) == 0.9
    buf.expire(4)                                     # a was added at 0: 4 - 0 > 3, stale
    assert [e.task_id for e in buf.entries] == ["c"]
    assert [e.task_id for e in buf.take(3)] == ["c"] and len(buf) == 1
    assert [e.task_id for e in buf.take(3)] == ["c"] and len(buf) == 0  # max_replays reached
    state = rrl.ReplayBuffer(4, 3, 2, [{"task_id": "x", "prefix": [7], "promise": 1.0, "added": 0, "replays": 1}])
    assert state.state() == [{"task_id": "x", "prefix": [7], "promise": 1.0, "added": 0, "replays": 1}]


def test_take_gives_at_most_one_entry_per_task_most_promising_first():
    buf = rrl.ReplayBuffer(8, 10, 5)
    for i, (t, p) in enumerate([("a", 0.1), ("a", 0.9), ("b", 0.5)]):
        buf.insert(rrl.Entry(t, [i], p, added=i))
    assert [(e.task_id, e.promise) for e in buf.take(3)] == [("a", 0.9), ("b", 0.5)]


def test_prefix_cut_after_the_agent_line_or_at_a_line_end_never_the_answer(tok):
    text = ["5 + 2 = 7.\n", "7 + 6 = 13.\n", "Answer: 13"]
    ids, kind = [], []
    for t, k in zip(text, [P, A, P]):
        e = tok.encode(t, add_special_tokens=False)
        ids, kind = ids + e, kind + [k] * len(e)
    n1, n2 = (len(tok.encode("".join(text[:i]), add_special_tokens=False)) for i in (1, 2))
    assert rrl.cut(ids, kind, tok, 0.5) == n2                 # right after the agent's line
    assert rrl.cut(ids, [P] * len(ids), tok, 0.1) == n1       # line end nearest 10%
    assert rrl.cut(ids, [P] * len(ids), tok, 0.99) == n2      # never past the answer line
    only = tok.encode("Answer: 13", add_special_tokens=False)
    assert rrl.cut(only, [P] * len(only), tok, 0.5) == 0


def test_replayed_prefix_never_enters_the_loss(tok):
    ids = tok.encode("5 + 2 = 7.\n7 + 6 = 13.\nAnswer: 13", add_special_tokens=False)
    n = 6
    r = Rollout(TASK, False, [1, 2], ids, [P] * len(ids), [math.nan] * n + [-1.0] * (len(ids) - n),
                [1.0] * len(ids), "", "stop", prefix_len=n)
    (s,) = to_train_seqs([[r]], tok)
    assert s.in_loss == [False] * n + [True] * (len(ids) - n)


# --- composition ---------------------------------------------------------------------------

def test_config_names_the_parts_and_rejects_invalid_combinations():
    assert Config(g_asst=0).method == "grpo" and Config().method == "aipo"
    assert Config(arpo_branches=2, advantage="aapo", rrl_groups=1).method == "aipo+arpo+aapo+rrl"
    assert Config(advantage="sft").method == "sft"
    for bad, field in [(dict(advantage="aapo", algorithm="dapo"), "advantage"),
                       (dict(advantage="sft", arpo_branches=1), "advantage"),
                       (dict(advantage="sft", g_asst=0), "advantage"),
                       (dict(rrl_groups=4, prompts_per_step=4), "rrl_groups"),
                       (dict(arpo_attribution="both"), "arpo_attribution"),
                       (dict(arpo_alpha=1.5), "arpo_alpha")]:
        with pytest.raises(ConfigError, match=rf"^{field}="):
            Config(**bad)


@pytest.mark.slow
@pytest.mark.parametrize("parts", [  # every part in at least one run; parts that combine share one
    dict(g_asst=0, arpo_branches=2, advantage="aapo"),  # ARPO and AAPO on independent rollouts alone
    dict(arpo_branches=2, arpo_attribution="hard", advantage="aapo", rrl_groups=1, rrl_max_group_reward=1.0),
    dict(advantage="sft", agent_weight="sft", credit="all")])
def test_every_method_trains_on_the_real_policy(tmp_path, parts):
    from aipo_lite.training.trainer import METRICS, train
    cfg = Config.from_profile("smoke", run_dir=str(tmp_path), train_steps=2, prompts_per_step=2,
                              train_tiers=["add1d"], rollout_max_new_tokens=16, log_completions_every=0, **parts)
    hist = train(cfg, progress=False)
    assert [m["step"] for m in hist] == [0, 1, 2]
    from aipo_lite.names import metric_name
    logged = {k for m in hist for k in m if not k.startswith(("eval/", "agents/"))}
    fixed = {metric_name(k) for k in METRICS}
    assert logged <= fixed, logged - fixed  # fixed metric names
    agent_keys = {k for m in hist for k in m if k.startswith("agents/")}  # agents/<role>/<count>
    assert agent_keys >= {f"agents/{r}/{c}" for r in ("verify", "knowledge", "reasoning")
                          for c in ("calls", "ok", "fallbacks", "failed")}, agent_keys
    last = hist[-1]
    if cfg.arpo_branches:
        assert last["train/arpo_branches_per_group"] == 2
    if cfg.advantage == "aapo":
        assert last["train/aapo_ref_reward"] is not None
    if cfg.rrl_groups:
        assert last["train/rrl_buffer_size"] is not None and hist[1]["train/rrl_replayed_frac"] == 0.0


def test_hard_attribution_maps_a_branch_point_into_an_internalized_assisted_parent(tok):
    """An assisted parent is trained internalized (tags stripped, its committed wrong answer
    dropped, the reply as its own line): the branch point after the feedback block covers
    exactly the parent's tokens up to and including the agent's line."""
    from aipo_lite.records import Consult
    parts = [("5 + 2 = 7.\nAnswer: 9\n", P), ("<feedback>", Prov.TEMPLATE), ("Next: 7 + 6 = 13.", A),
             ("</feedback>\n", Prov.TEMPLATE), ("7 + 6 = 13.\nAnswer: 13", P)]
    ids, prov, consults = [], [], []
    for i, (text, p) in enumerate(parts):
        if i == 1:
            consults.append(Consult(len(ids), "commit", "verify", "", parts[2][0], "ok"))
        t = tok.encode(text, add_special_tokens=False)
        ids, prov = ids + t, prov + [p] * len(t)
    parent = Rollout(TASK, True, [1, 2, 3], ids, prov, [-0.5] * len(ids), [1.0] * len(ids), "", "stop", consults,
                     reward=1.0)
    at = len(ids) - len(tok.encode(parts[4][0], add_special_tokens=False))  # first token after the block
    branch = Rollout(TASK, True, [1, 2, 3], ids, prov, [-0.5] * len(ids), [1.0] * len(ids), "", "stop", [],
                     reward=0.0, prefix_len=at, parent=0)
    cfg = Config.from_profile("smoke", arpo_branches=1, arpo_attribution="hard", g_ind=0, g_asst=2)
    seqs = to_train_seqs([[parent, branch]], tok, cfg.view, cfg.credit, cfg.prompt_style)
    assign_advantages(seqs, cfg)
    arpo.apply_hard([[parent, branch]], seqs, tok, cfg)
    s = seqs[0]
    shared = tok.decode(s.ids[:len([a for a in s.token_adv if a != s.advantage])])
    assert shared == "5 + 2 = 7.\nNext: 7 + 6 = 13.\n"  # the dropped "Answer: 9" line is not in it
    mean = (s.advantage + seqs[1].advantage) / 2
    n = len(tok.encode("5 + 2 = 7.\n", add_special_tokens=False))
    assert s.token_adv[:n] == pytest.approx([mean] * n) and s.token_adv[-1] == pytest.approx(s.advantage)


def test_grid_intervals_hold_the_seed_spread_and_differences_say_when_they_exclude_zero():
    from aipo_lite.experiments import grid

    def res(per_seed_correct):
        return {"evals": [[{"n": 4, "correct": c, "kind": "recall"} for c in seed] for seed in per_seed_correct],
                "metrics": []}
    results = {"grpo": res([[0, 0, 0, 0]] * 3), "same": res([[0, 0, 0, 0]] * 3),
               "good": res([[4, 3, 4, 4], [3, 4, 4, 3], [4, 4, 3, 4]]), "one_seed": res([[4, 4, 4, 4], [0] * 4, [0] * 4])}
    rows = {r["arm"]: r for r in grid.table(results, ["recall"], [1])}
    assert rows["good"]["pass@1"]["per_seed"] == pytest.approx([0.9375, 0.875, 0.9375])
    # one good seed of three: the flat mean is 1/3, and the interval spans most of [0, 1]
    lo, hi = rows["one_seed"]["pass@1"]["lo"], rows["one_seed"]["pass@1"]["hi"]
    assert lo == 0.0 and hi == 1.0
    d = {x["arm"]: x for x in grid.differences(results, "grpo", "recall", 1)}
    assert d["good"]["beyond_interval"] and not d["same"]["beyond_interval"] and not d["one_seed"]["beyond_interval"]
    with pytest.raises(ValueError, match=r"arm='nope' is not valid"):
        grid.arm_config(Config(), "nope", 0, "/tmp")


def test_every_grid_arm_keeps_the_rollouts_per_step_and_the_algorithm_arms_change_only_that():
    """Equal budget: every arm samples the base's G rollouts per prompt (ARPO's branches and
    RRL's replays included); drgrpo/dapo/rloo are GRPO's arm with another algorithm, and their
    aipo_ arms AIPO's."""
    from aipo_lite.arms import ARMS, OTHER_ALGORITHMS
    from aipo_lite.experiments import grid
    base = Config.from_profile("demo")
    g = base.g_ind + base.g_asst
    for arm in ARMS:
        c = grid.arm_config(base, arm, 0, "/tmp/r")
        assert c.g_ind + c.g_asst + c.arpo_branches == g, arm
    for a in OTHER_ALGORITHMS:
        plain, aipo = grid.arm_config(base, a, 0, "/tmp/r"), grid.arm_config(base, f"aipo_{a}", 0, "/tmp/r")
        grpo, ref = grid.arm_config(base, "grpo", 0, "/tmp/r"), grid.arm_config(base, "aipo", 0, "/tmp/r")
        assert plain.algorithm == aipo.algorithm == a
        assert {**plain.to_dict(), "algorithm": "grpo", "run_dir": ""} == {**grpo.to_dict(), "run_dir": ""}
        assert {**aipo.to_dict(), "algorithm": "grpo", "run_dir": ""} == {**ref.to_dict(), "run_dir": ""}
