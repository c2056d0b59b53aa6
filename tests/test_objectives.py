"""Loss math (aipo_lite.methods.objectives) against hand-computed values written as literals."""

import math

import pytest
import torch

from aipo_lite.methods import objectives as ob

D = torch.float64


def T(*xs):
    return torch.tensor(xs, dtype=D)


def close(actual, expected, tol=1e-5):
    expected = torch.as_tensor(expected, dtype=D)
    assert actual.shape == expected.shape, (actual.shape, expected.shape)
    assert torch.allclose(actual.to(D), expected, atol=tol, rtol=0), (actual, expected)


# --- choices -------------------------------------------------------------------------------

def test_check_choice_message_lists_valid_names():
    ob.check_choice("algorithm", "grpo", ob.ALGORITHMS)
    with pytest.raises(ValueError) as e:
        ob.check_choice("algorithm", "ppo", ob.ALGORITHMS)
    assert str(e.value) == "algorithm='ppo' is not valid; choose one of ['grpo', 'drgrpo', 'dapo', 'rloo']"
    with pytest.raises(ValueError, match=r"agent_weight='x'.*'aipo'"):
        ob.agent_token_loss(T(0.0), torch.tensor([0]), T(1.0), "x")
    with pytest.raises(ValueError, match="baseline"):
        ob.group_advantages(T(1.0), T(0.0), "grpo", "both")


def test_eps_high_defaults():
    assert ob.eps_high("dapo", 0.2, 0.0) == 0.28
    assert ob.eps_high("grpo", 0.2, 0.0) == 0.2
    assert ob.eps_high("rloo", 0.1, 0.0) == 0.1
    assert ob.eps_high("grpo", 0.2, 0.3) == 0.3
    assert ob.eps_high("dapo", 0.2, 0.4) == 0.4


# --- advantages ----------------------------------------------------------------------------

@pytest.mark.parametrize("algorithm, rewards, expected", [
    # mean 0.5, population std 0.5: 0.5 / 0.500001
    ("grpo", (1, 0, 0, 1), (0.999998, -0.999998, -0.999998, 0.999998)),
    ("dapo", (1, 0, 0, 1), (0.999998, -0.999998, -0.999998, 0.999998)),
    # mean 0.25, std sqrt(0.1875) = 0.4330127: 0.75/0.4330137, -0.25/0.4330137
    ("grpo", (1, 0, 0, 0), (1.732047, -0.577349, -0.577349, -0.577349)),
    ("drgrpo", (1, 0, 0, 0), (0.75, -0.25, -0.25, -0.25)),
    ("drgrpo", (1, 0, 0, 1), (0.5, -0.5, -0.5, 0.5)),
    # leave-one-out means: 0, 1/3, 1/3, 1/3
    ("rloo", (1, 0, 0, 0), (1.0, -0.333333, -0.333333, -0.333333)),
    # leave-one-out means: 1/3, 2/3, 2/3, 1/3
    ("rloo", (1, 0, 0, 1), (0.666667, -0.666667, -0.666667, 0.666667)),
])
def test_base_advantages(algorithm, rewards, expected):
    close(ob.base_advantages(T(*rewards), algorithm), expected)


@pytest.mark.parametrize("algorithm", ob.ALGORITHMS)
def test_base_advantages_degenerate_groups(algorithm):
    close(ob.base_advantages(T(1.0), algorithm), [0.0])
    close(ob.base_advantages(T(1, 1, 1), algorithm), [0.0, 0.0, 0.0])
    close(ob.base_advantages(T(0.3, 0.3), algorithm), [0.0, 0.0])
    assert ob.base_advantages(torch.zeros(0), algorithm).shape == (0,)
    assert ob.base_advantages(torch.tensor([1, 0]), algorithm).is_floating_point()  # int rewards


@pytest.mark.parametrize("algorithm, baseline, a_ind, a_asst", [
    # r_ind = [1,0,0,0], r_asst = [1,1]; r_all mean 0.5, std 0.5
    ("grpo", "independent", (1.732047, -0.577349, -0.577349, -0.577349), (1.499997, 1.499997)),
    ("dapo", "independent", (1.732047, -0.577349, -0.577349, -0.577349), (1.499997, 1.499997)),
    ("drgrpo", "independent", (0.75, -0.25, -0.25, -0.25), (0.75, 0.75)),
    ("rloo", "independent", (1.0, -0.333333, -0.333333, -0.333333), (0.75, 0.75)),
    ("grpo", "mixed", (0.999998, -0.999998, -0.999998, -0.999998), (0.999998, 0.999998)),
    ("drgrpo", "mixed", (0.5, -0.5, -0.5, -0.5), (0.5, 0.5)),
    # loo means over 6: r=1 -> 2/5, r=0 -> 3/5
    ("rloo", "mixed", (0.6, -0.6, -0.6, -0.6), (0.6, 0.6)),
    ("grpo", "split", (1.732047, -0.577349, -0.577349, -0.577349), (0.0, 0.0)),
    ("rloo", "split", (1.0, -0.333333, -0.333333, -0.333333), (0.0, 0.0)),
])
def test_group_advantages(algorithm, baseline, a_ind, a_asst):
    got_ind, got_asst = ob.group_advantages(T(1, 0, 0, 0), T(1, 1), algorithm, baseline)
    close(got_ind, a_ind)
    close(got_asst, a_asst)


def test_independent_baseline_gives_signal_where_the_policy_alone_never_succeeds():
    # r_ind = [0,0], r_asst = [1,0]: r_all mean 0.25, std 0.4330127 -> 1/0.4330137 = 2.309396
    a_ind, a_asst = ob.group_advantages(T(0, 0), T(1, 0), "grpo", "independent")
    close(a_ind, [0.0, 0.0])
    close(a_asst, [2.309396, 0.0])
    # an assisted success never pushes the policy's own (equally good) attempts down
    a_ind, _ = ob.group_advantages(T(1, 0), T(1, 1), "grpo", "independent")
    close(a_ind, [0.999998, -0.999998])


@pytest.mark.parametrize("algorithm", ob.ALGORITHMS)
@pytest.mark.parametrize("baseline", ob.BASELINES)
def test_equal_rewards_give_zero_advantages_and_empty_r_ind(algorithm, baseline):
    for value in (0.0, 1.0):
        a_ind, a_asst = ob.group_advantages(torch.full((3,), value, dtype=D),
                                            torch.full((2,), value, dtype=D), algorithm, baseline)
        close(a_ind, [0.0] * 3)
        close(a_asst, [0.0] * 2)
    a_ind, a_asst = ob.group_advantages(torch.zeros(0, dtype=D), T(1, 0), algorithm, baseline)
    assert a_ind.shape == (0,)
    expected = {"grpo": (0.999998, -0.999998), "dapo": (0.999998, -0.999998),
                "drgrpo": (0.5, -0.5), "rloo": (1.0, -1.0)}[algorithm]
    close(a_asst, expected)


def test_keep_group():
    assert ob.keep_group(T(1, 0, 0))
    assert not ob.keep_group(T(1, 1, 1))
    assert not ob.keep_group(T(0.0))
    assert not ob.keep_group(torch.zeros(0))


# --- token losses --------------------------------------------------------------------------

def test_policy_token_loss_clip_flags_and_gradients():
    ratio = T(0.5, 0.5, 1.0, 1.5, 1.5)
    adv = T(-1, 1, 1, 1, -1)
    logp = ratio.log().requires_grad_()
    loss, low, high = ob.policy_token_loss(logp, torch.zeros(5, dtype=D), adv, 0.2, 0.28)
    close(loss, [0.8, -0.5, -1.0, -1.28, 1.5])
    assert low.tolist() == [True, False, False, False, False]
    assert high.tolist() == [False, False, False, True, False]
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    close(grad, [0.0, -0.5, -1.0, 0.0, 1.5])  # -A * ratio, zero where clipped


def test_policy_token_loss_broadcasts_sequence_advantages():
    logp = torch.zeros(2, 3, dtype=D, requires_grad=True)
    loss, low, high = ob.policy_token_loss(logp, logp.detach(), T(2, -1), 0.2, 0.2)
    close(loss, [[-2.0] * 3, [1.0] * 3])
    assert not low.any() and not high.any()


P = (0.05, 0.5, 0.9)
A = (1.0, -2.0, 0.5)


@pytest.mark.parametrize("mode, w", [
    ("sft", (1.0, 1.0, 1.0)),
    ("is", (0.05, 0.5, 0.9)),
    ("is_clip", (0.0, 0.0, 0.9)),  # clip region [0.8, 1.2]
    # 0.1 p / (p + 0.1)^2: 0.005/0.0225, 0.05/0.36, 0.09/1.0
    ("luffy", (0.222222, 0.138889, 0.09)),
    # jnanliu/rllm's form: pi, floored at 0.1 only where A < 0 (the middle token has A = -2 but
    # pi = 0.5 > 0.1: pi); the first token (pi 0.05 < 0.1) has A = +1: pi, vanishing
    ("rllm", (0.05, 0.5, 0.9)),
])
def test_agent_weight_gradients(mode, w):
    logp = T(*P).log().requires_grad_()
    loss, got_w = ob.agent_token_loss(logp, torch.tensor([0, 1, 2]), T(*A), mode)
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    close(got_w, w)
    close(grad, [-a * wi for a, wi in zip(A, w)])
    assert not got_w.requires_grad


def test_rllm_weight_floors_the_push_down_of_improbable_tokens():
    """The pessimistic max of jnanliu/rllm's compute_policy_loss for an off-policy token, by hand:
    loss = max(-A pi, -A clamp_min(pi, 0.1 pi / sg(pi))). A < 0, pi = 0.05: the floor term wins,
    value -A * 0.1, d loss / d log pi = -A * 0.1; A < 0, pi = 0.5 and A > 0, pi = 0.05: -A pi."""
    logp = T(0.05, 0.5, 0.05).log().requires_grad_()
    adv = T(-2.0, -2.0, 3.0)
    loss, w = ob.agent_token_loss(logp, torch.tensor([0, 1, 2]), adv, "rllm")
    pi = logp.exp()
    floor = 0.1 * pi / pi.detach()
    ref = torch.maximum(-adv * pi, -adv * torch.maximum(pi, floor))  # their clamp_min, written as a max
    close(loss, ref.detach().tolist())
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    (ref_grad,) = torch.autograd.grad(ref.sum(), logp)
    close(grad, ref_grad.tolist())
    close(grad, [2.0 * 0.1, 2.0 * 0.5, -3.0 * 0.05])
    close(w, [0.1, 0.5, 0.05])


def test_luffy_loss_value_and_gamma():
    logp = T(0.5).log().requires_grad_()
    loss, w = ob.agent_token_loss(logp, torch.tensor([0]), T(1.0), "luffy", gamma=0.5)
    close(loss, [-0.5])  # -0.5 / (0.5 + 0.5)
    close(w, [0.25])  # 0.5 * 0.5 / 1.0^2


@pytest.mark.parametrize("w_min, w_max, w7, w3", [
    # span 7 = tokens (0.05, 0.5): geometric mean sqrt(0.025) = 0.158114; span 3 = (0.9)
    (0.5, 1.0, 0.5, 0.9),  # floored
    (0.1, 1.0, 0.158114, 0.9),  # inside the range
    (0.1, 0.8, 0.158114, 0.8),  # capped
])
def test_aipo_span_weight_is_clipped_geometric_mean(w_min, w_max, w7, w3):
    logp = T(0.05, 0.9, 0.5).log().requires_grad_()  # spans interleaved, ids not contiguous
    span = torch.tensor([7, 3, 7])
    adv = T(1.0, -1.0, 2.0)
    loss, w = ob.agent_token_loss(logp, span, adv, "aipo", w_min=w_min, w_max=w_max)
    close(w, [w7, w3, w7])
    (grad,) = torch.autograd.grad(loss.sum(), logp)
    close(grad, [-1.0 * w7, 1.0 * w3, -2.0 * w7])


def test_aipo_three_token_span():
    # (0.5 * 0.5 * 0.9) ** (1/3) = 0.225 ** (1/3) = 0.608220
    logp = T(0.5, 0.5, 0.9).log().requires_grad_()
    _, w = ob.agent_token_loss(logp, torch.tensor([4, 4, 4]), T(1, 1, 1), "aipo", w_min=0.0)
    close(w, [0.608220] * 3)


def test_agent_token_loss_empty():
    loss, w = ob.agent_token_loss(torch.zeros(0, dtype=D, requires_grad=True),
                                  torch.zeros(0, dtype=torch.long), torch.zeros(0, dtype=D), "aipo")
    assert loss.shape == (0,) and w.shape == (0,)


def test_kl_k3():
    # d = log 0.25 - log 0.5 = -ln 2: 0.5 + 0.693147 - 1
    close(ob.kl_k3(T(0.5, 0.3).log(), T(0.25, 0.3).log()), [0.193147, 0.0])


# --- aggregation ---------------------------------------------------------------------------

LOSS = [[1, 2, 3], [4, 5, 6], [float("nan"), 8, 9], [10, 11, 12]]  # NaN sits under the mask
MASK = [[1, 1, 0], [1, 1, 1], [0, 0, 0], [1, 0, 0]]


@pytest.mark.parametrize("algorithm, expected", [
    ("grpo", 5.5),  # seq means 1.5, 5, 10 over 3 sequences
    ("rloo", 5.5),
    ("drgrpo", 3.111111),  # (3 + 15 + 10) / max_len 3 / 3 sequences
    ("dapo", 4.666667),  # 28 / 6 tokens
])
@pytest.mark.parametrize("as_bool", [False, True])
def test_aggregate_micro_batches_sum_to_whole_batch(algorithm, expected, as_bool):
    loss, mask = torch.tensor(LOSS, dtype=D), torch.tensor(MASK, dtype=D)
    mask = mask.bool() if as_bool else mask
    kw = dict(algorithm=algorithm, max_len=3, n_seqs=3, n_tokens=6)
    whole = ob.aggregate(loss, mask, **kw)
    parts = sum(ob.aggregate(loss[i:j], mask[i:j], **kw) for i, j in ((0, 1), (1, 3), (3, 4)))
    close(whole.reshape(1), [expected])
    close(parts.reshape(1), [expected])
    empty = ob.aggregate(loss[2:3], mask[2:3], **kw)
    assert empty.item() == 0.0


@pytest.mark.parametrize("algorithm", ob.ALGORITHMS)
def test_zero_variance_group_gives_zero_gradient_end_to_end(algorithm):
    a_ind, a_asst = ob.group_advantages(T(1, 1), T(1, 1), algorithm, "independent")
    adv = torch.cat([a_ind, a_asst])  # 4 sequences
    logp = torch.log(torch.full((4, 5), 0.3, dtype=D)).requires_grad_()
    old = torch.log(torch.full((4, 5), 0.5, dtype=D))
    mask = torch.ones(4, 5, dtype=torch.bool)
    eps_hi = ob.eps_high(algorithm, 0.2, 0.0)
    pol, _, _ = ob.policy_token_loss(logp, old, adv, 0.2, eps_hi)
    agent, _ = ob.agent_token_loss(logp[2:].reshape(-1), torch.arange(10) // 5,
                                   a_asst.repeat_interleave(5), "aipo")
    total = ob.aggregate(pol, mask, algorithm, 5, 4, 20) + ob.aggregate(
        agent.reshape(2, 5), mask[2:], algorithm, 5, 4, 20)
    (grad,) = torch.autograd.grad(total, logp)
    assert torch.count_nonzero(grad) == 0
    assert not ob.keep_group(T(1, 1, 1, 1))
    assert math.isfinite(total.item())


def test_hint_reliance_is_the_log_prob_under_the_agent_free_prompt_minus_under_guidance():
    """Per assisted success: (sum of the trainer's log pi over agent and policy tokens, minus the
    sampler's log pi of the policy tokens in their guided context) / scored tokens; rows that are
    not assisted successes and template tokens do not count."""
    from types import SimpleNamespace

    from aipo_lite.methods.loss import token_loss
    from aipo_lite.records import Prov
    nan = float("nan")
    logp = torch.tensor([[-2.0, -1.0, -0.5, -0.25, -9.0], [-3.0, -3.0, -3.0, -3.0, -3.0]])
    kind = torch.tensor([[Prov.AGENT, Prov.AGENT, Prov.POLICY, Prov.POLICY, Prov.TEMPLATE]] + [[Prov.POLICY] * 5])
    sampler = torch.tensor([[nan, nan, -0.4, -0.35, nan], [-3.0] * 5])
    cfg = SimpleNamespace(algorithm="grpo", clip_eps_low=0.2, clip_eps_high=0.0, advantage="group",
                          behaviour_logp="trainer", tis_cap=2.0, agent_weight="aipo", agent_w_min=0.5,
                          agent_w_max=1.0, luffy_gamma=0.1, kl_beta=0.0, rollout_max_new_tokens=5)
    _, st = token_loss(logp, kind, torch.ones(2, 5, dtype=torch.bool), sampler, torch.ones(2, 5),
                       torch.tensor([[0, 0, -1, -1, -1], [-1] * 5]), torch.ones(2, 1, dtype=torch.bool), cfg, 2, 8,
                       reliance_rows=torch.tensor([True, False]))
    expected = (-2.0 - 1.0 + (-0.5 + 0.4) + (-0.25 + 0.35)) / 4
    assert st["reliance_n"] == 1 and abs(st["reliance_sum"] - expected) < 1e-6
