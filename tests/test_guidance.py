"""Guidance schedules (guidance.py): fading and guiding only the problems that failed."""

import pytest

from aipo_lite.config import Config, ConfigError
from aipo_lite.methods import guidance
from aipo_lite.rollout.detector import Detector, Trigger


def test_assisted_share_fades_linearly_to_zero_and_keeps_the_group_size():
    cfg = Config(g_ind=2, g_asst=4, guidance_fade_steps=8)
    assert [guidance.assisted_per_group(cfg, s) for s in (0, 2, 4, 6, 8, 20)] == [4, 3, 2, 1, 0, 0]
    assert guidance.assisted_per_group(Config(g_ind=2, g_asst=4), 1000) == 4  # 0 = no fading


class _FakeRollout:
    def __init__(self, assisted, reward):
        self.assisted, self.reward = assisted, reward


def test_guide_only_failed_guides_exactly_the_groups_whose_independent_rollouts_all_failed(monkeypatch):
    calls = []

    def fake_group(policy, tasks, agents, detector, g_ind, g_asst, **kw):
        calls.append(([t for t in tasks], g_ind, g_asst))
        groups = [[_FakeRollout(False, 1.0 if t == "easy" else 0.0) for _ in range(g_ind)]
                  + [_FakeRollout(True, 0.0) for _ in range(g_asst)] for t in tasks]
        return groups, {"steps": 1, "policy_tokens": 10, "forced_tokens": 0}

    monkeypatch.setattr(guidance, "rollout_group", fake_group)
    cfg = Config(g_ind=2, g_asst=3, guide_only_failed=True)
    groups, stats = guidance.step_rollouts(None, ["easy", "hard", "easy"], {}, None, cfg, 0, None)
    assert calls[0] == (["easy", "hard", "easy"], 2, 0)               # independent rollouts first
    assert (["hard"], 0, 3) in calls and (["easy", "easy"], 3, 0) in calls
    assert [len(g) for g in groups] == [5, 5, 5]                      # equal budget per group
    assert [sum(r.assisted for r in g) for g in groups] == [0, 3, 0]  # only the failed one is guided
    assert stats["guided_groups"] == pytest.approx(1 / 3) and stats["policy_tokens"] == 30
    faded = Config(g_ind=2, g_asst=3, guide_only_failed=True, guidance_fade_steps=4)
    calls.clear()
    groups, stats = guidance.step_rollouts(None, ["hard"], {}, None, faded, 4, None)
    assert calls == [(["hard"], 5, 0)] and stats["assisted_per_group"] == 0  # faded out: one pass


def test_guidance_options_are_validated():
    with pytest.raises(ConfigError, match=r"^guide_only_failed=True .*g_ind >= 1"):
        Config(g_ind=0, g_asst=4, guide_only_failed=True)
    with pytest.raises(ConfigError, match=r"^guidance_fade_steps=-1 "):
        Config(guidance_fade_steps=-1)


def test_every_line_trigger_guides_each_line_through_the_reasoning_agent():
    d = Detector(every_line=True)
    assert d.check("", [], None) == Trigger("line", "reasoning", "")  # before the first token too
    assert d.check("5 + 2 = 7.\n", [], None) == Trigger("line", "reasoning", "")
    assert d.check("5 + 2 = 7", [], None) is None
    assert d.check("5 + 2 = 7.\nAnswer: 7\n", [], None) == Trigger("commit", "verify", "")  # commit first


@pytest.mark.slow
def test_line_guidance_writes_the_first_step_before_the_policy_starts(real_policy):
    """detector_every_line, budget 1, inline form, on the recall tier: every assisted rollout
    starts with the agent's line (the fact), then the policy continues on its own."""
    from aipo_lite.agents.base import make_agent
    from aipo_lite.agents.guard import Guarded
    from aipo_lite.records import Prov
    from aipo_lite.rollout.groups import rollout_group
    from aipo_lite.tasks.loading import load_tasks
    tok = real_policy.tokenizer
    tasks = load_tasks("synth", "test", tiers=["recall"], limit_per_tier=3)
    agents = {role: Guarded(make_agent(role)) for role in ("verify", "knowledge", "reasoning")}
    groups, _ = rollout_group(real_policy, tasks, agents, Detector(every_line=True), g_ind=1, g_asst=2,
                              consult_budget=1, max_new_tokens=12, generator=0, guidance_form="inline")
    for task, group in zip(tasks, groups):
        for r in (r for r in group if r.assisted):
            line = tok.encode(f"{task.facts[0]}.\n", add_special_tokens=False)
            assert r.consults[0].at == 0 and r.consults[0].trigger == "line"
            assert r.ids[:len(line)] == line and r.prov[:len(line)] == [Prov.AGENT] * len(line)
            assert Prov.POLICY in r.prov[len(line):]


@pytest.mark.slow
def test_line_guidance_alternates_hint_and_policy_line(real_policy):
    """With a budget for every step (add3: two steps), hints and policy lines alternate: a
    hint never follows a hint directly."""
    from aipo_lite.agents.base import make_agent
    from aipo_lite.agents.guard import Guarded
    from aipo_lite.records import Prov
    from aipo_lite.rollout.groups import rollout_group
    from aipo_lite.tasks.loading import load_tasks
    tasks = load_tasks("synth", "test", tiers=["add3"], limit_per_tier=2)
    agents = {role: Guarded(make_agent(role)) for role in ("verify", "knowledge", "reasoning")}
    groups, _ = rollout_group(real_policy, tasks, agents, Detector(every_line=True, use_entropy=False),
                              g_ind=0, g_asst=2, consult_budget=3, max_new_tokens=24, generator=0,
                              guidance_form="inline")
    for r in (r for g in groups for r in g):
        answered = [c for c in r.consults if c.reply]
        assert answered and answered[0].at == 0
        for a, b in zip(answered, answered[1:]):  # policy tokens between consecutive hints
            assert Prov.POLICY in r.prov[a.at:b.at]
