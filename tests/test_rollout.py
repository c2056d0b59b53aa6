"""Consultation rollouts on the real policy with rule agents."""

import pytest
import torch

from aipo_lite.agents.base import make_agent
from aipo_lite.agents.guard import Guarded
from aipo_lite.config import Config
from aipo_lite.records import Prov
from aipo_lite.rollout.detector import Detector
from aipo_lite.rollout.groups import rollout_group
from aipo_lite.tasks.loading import load_tasks
from aipo_lite.tasks.prompts import agent_free_prompt


def _agents():
    return {role: Guarded(make_agent(role)) for role in ("verify", "knowledge", "reasoning")}


@pytest.mark.slow
def test_group_structure_provenance_and_consults(real_policy):
    tok = real_policy.tokenizer
    tasks = load_tasks("synth", "test", tiers=["expr3", "units"], limit_per_tier=1)
    groups, stats = rollout_group(real_policy, tasks, _agents(), Detector(), g_ind=2, g_asst=3,
                                  consult_budget=2, max_new_tokens=40,
                                  generator=torch.Generator().manual_seed(0))
    assert [len(g) for g in groups] == [5] * len(tasks)
    consults = 0
    for task, group in zip(tasks, groups):
        for r in group:
            assert r.task is task
            assert len(r.ids) == len(r.prov) == len(r.logprobs) == len(r.entropies)
            assert sum(p == Prov.POLICY for p in r.prov) <= 40
            if not r.assisted:  # exactly evaluation's prompt, and never any agent token
                assert r.prompt_ids == tok.encode(agent_free_prompt(tok, task.question), add_special_tokens=False)
                assert set(r.prov) == {Prov.POLICY} and not r.consults
                continue
            assert "<verify>" in tok.decode(r.prompt_ids)  # the assisted prompt teaches the tags
            assert len(r.consults) <= 2
            for c in r.consults:
                consults += 1
                assert c.trigger in ("tag", "entropy", "commit") and c.agent in ("verify", "knowledge", "reasoning")
                if c.reply:  # the reply sits at c.at as TEMPLATE <feedback> AGENT reply TEMPLATE </feedback>
                    seg = r.prov[c.at:]
                    first_agent = seg.index(Prov.AGENT)
                    assert set(seg[:first_agent]) == {Prov.TEMPLATE}
                    n_agent = len(tok.encode(c.reply, add_special_tokens=False))
                    assert seg[first_agent:first_agent + n_agent] == [Prov.AGENT] * n_agent
                    assert tok.decode(r.ids[c.at + first_agent:c.at + first_agent + n_agent]) == c.reply
                    before = tok.decode(r.ids[:c.at + first_agent])
                    assert before.endswith("<feedback>")
                    if c.trigger != "tag":  # a detector's consult lands at a line end, never mid-word
                        assert before[:-len("<feedback>")].endswith("\n"), before
    assert consults > 0 and stats["forced_tokens"] > 0


@pytest.mark.slow
def test_inline_guidance_is_the_policys_next_line_under_the_agent_free_prompt(real_policy):
    """guidance_form='inline': the assisted rows use evaluation's prompt; each reply is written
    as the next line (AGENT tokens, `reply\\n`, no tags) at a line end; the reward reads the
    text after the last reply."""
    from aipo_lite.rollout.consult import inline_line
    from aipo_lite.rollout.groups import _final_text
    assert inline_line("Next: 10 + 8 = 18.") == "10 + 8 = 18." and inline_line("Fact: 1 h =\n60 min") == "1 h = 60 min"
    tok = real_policy.tokenizer
    tasks = load_tasks("synth", "test", tiers=["add3", "expr3"], limit_per_tier=2)
    groups, stats = rollout_group(real_policy, tasks, _agents(), Detector(), g_ind=0, g_asst=4,
                                  consult_budget=2, max_new_tokens=40, generator=0, guidance_form="inline")
    answered = 0
    for task, group in zip(tasks, groups):
        for r in group:
            assert r.prompt_ids == tok.encode(agent_free_prompt(tok, task.question), add_special_tokens=False)
            assert "<feedback>" not in r.text
            for c in (c for c in r.consults if c.reply):
                answered += 1
                seg = r.prov[c.at:]
                first = seg.index(Prov.AGENT)
                assert set(seg[:first]) <= {Prov.TEMPLATE} and first <= 1  # at most the newline after EOS
                assert c.reply == inline_line(c.reply)  # recorded as written: no label, one line
                body = tok.encode(c.reply + "\n", add_special_tokens=False)
                assert r.ids[c.at + first:c.at + first + len(body)] == body
                assert seg[first:first + len(body)] == [Prov.AGENT] * len(body)
                assert tok.decode(r.ids[:c.at + first]).endswith("\n")  # a line of its own
            if any(c.reply for c in r.consults):
                last = max(i for i, p in enumerate(r.prov) if p != Prov.POLICY)
                assert _final_text(r, tok) == tok.decode(r.ids[last + 1:], skip_special_tokens=True)
    assert answered > 0


def test_unknown_guidance_form_is_one_clear_error():
    from aipo_lite.config import Config, ConfigError
    with pytest.raises(ConfigError, match=r"^guidance_form='hints' is not valid"):
        Config(guidance_form="hints")
    with pytest.raises(ValueError, match=r"guidance_form='hints' is not valid"):
        rollout_group(None, [], {}, Detector(), 1, 1, guidance_form="hints")


def test_consults_of_one_step_go_out_concurrently_with_the_same_result(tiny_model_dir):
    """A slow agent server must not serialize a step: with concurrency 8, eight rows' consults
    that fall due together overlap; the rollouts are the same as one at a time."""
    import time as _time

    from aipo_lite.model.policy import load_policy

    import threading

    class Slow:
        role = "reasoning"

        def __init__(self):
            self.lock, self.now, self.most = threading.Lock(), 0, 0

        def respond(self, req):
            with self.lock:
                self.now += 1
                self.most = max(self.most, self.now)
            _time.sleep(0.3)
            with self.lock:
                self.now -= 1
            return f"Next: {req.task.answer} is the answer."

    policy = load_policy(Config(model=tiny_model_dir, lora_r=0, dtype="float32", device="cpu"))
    tasks = load_tasks("synth", "test", ["add1d"], 4)
    out = {}
    for n in (1, 8):
        slow = Slow()
        agents = {"reasoning": Guarded(slow)}
        groups, _ = rollout_group(policy, tasks, agents, Detector(use_entropy=False, verify_before_commit=False,
                                                                  every_line=True),
                                  0, 2, consult_budget=1, max_new_tokens=6, generator=0, guidance_form="inline",
                                  concurrency=n)
        out[n] = (slow.most, [(r.ids, r.prov) for g in groups for r in g])
        assert agents["reasoning"].calls == 8 and not agents["reasoning"].faults
    assert out[1][1] == out[8][1]
    # 8 consults fall due before the first token: one at a time, or all 8 in flight together
    # (counted inside the agent, so the machine's speed does not enter)
    assert out[1][0] == 1 and out[8][0] == 8, (out[1][0], out[8][0])


def test_a_task_drawn_twice_in_one_step_gets_two_groups(tiny_model_dir):
    """Groups are by position, not task id: a duplicate is two groups of G, each trained once."""
    from aipo_lite.model.policy import load_policy
    policy = load_policy(Config(model=tiny_model_dir, lora_r=0, dtype="float32", device="cpu"))
    (t,) = load_tasks("synth", "test", ["add1d"], 1)
    groups, _ = rollout_group(policy, [t, t], {}, Detector(use_entropy=False, verify_before_commit=False),
                              2, 0, max_new_tokens=4, generator=0)
    assert [len(g) for g in groups] == [2, 2] and groups[0] is not groups[1]
