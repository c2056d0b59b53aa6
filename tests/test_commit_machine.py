"""The commit machine (commit_machine.py) decides exactly what rewards.COMMITTED decides."""

import random

import pytest

from aipo_lite.engine.commit_machine import _char_dfa, char_class, commit_machine
from aipo_lite.tasks.rewards import COMMITTED


@pytest.fixture(scope="module")
def tok():
    from transformers import AutoTokenizer

    from aipo_lite.config import Config
    from aipo_lite.model.policy import resolve_model_path
    return AutoTokenizer.from_pretrained(resolve_model_path(Config()))


def first_commit_regex(tok, ids):
    for k in range(len(ids)):
        if COMMITTED.search(tok.decode(ids[:k + 1], skip_special_tokens=True)):
            return k
    return None


def first_commit_machine(m, ids):
    state = 0
    for k, t in enumerate(ids):
        state = m.step(state, t)
        if m.accepts(state):
            return k
    return None


def test_character_automaton_matches_the_regex_on_random_strings():
    delta, accept = _char_dfa()
    rng = random.Random(0)
    alphabet = list("answerANSWERboxed*:=\n\\{} 05x.é") + ["\t", "ſ"]
    for _ in range(5000):
        s = "".join(rng.choice(alphabet) for _ in range(rng.randint(0, 20)))
        state, first = 0, None
        for i, ch in enumerate(s):
            state = delta[state, char_class(ch)]
            if state == accept:
                first = i
                break
        expect = next((i for i in range(len(s)) if COMMITTED.search(s[:i + 1])), None)
        assert first == expect, repr(s)


CASES = ["Answer: 12\n", "answer = 7 apples\n", "**Answer:** 5\n", "Answer:\n12\n", "Answer: x\nAnswer: 3\n",
         "So 5 + 3 = 8.\nAnswer: 8", "The result is \\boxed{42} done", "\\boxed{x}\\boxed {7}", "ANSWER : -4.\n\n",
         "answers: 4\n", "An answer is 4\n", "no commit here 123\n", "Answer 5\n", "Answer: 1 hour = 60 min\nok"]


@pytest.mark.parametrize("text", CASES)
def test_machine_stops_where_the_regex_first_matches(tok, text):
    ids = tok.encode(text, add_special_tokens=False)
    assert first_commit_machine(commit_machine(tok), ids) == first_commit_regex(tok, ids)


def test_ids_past_the_tokenizer_leave_the_state_alone(tok):
    """A model may pad its vocabulary past the tokenizer's; such an id decodes to nothing."""
    m = commit_machine(tok)
    ids = tok.encode("Answer: 5", add_special_tokens=False)
    state = m.run(ids)
    assert m.step(state, len(tok) + 7) == state and m.tail(ids + [len(tok) + 7]) is None
    assert m.accepts(m.run([len(tok) + 7], m.run(ids + tok.encode("\n", add_special_tokens=False))))


def test_machine_matches_the_regex_on_random_token_streams(tok):
    pieces = ["Answer", "answer", " answer", " Ans", "wer", ":", " =", " 5", "12", "\n", ".\n", " ", "**",
              "\\boxed", "{", "}", " x", "abc", "box", "ed", "{1", "2}", "\n\n", "é", "ſ", "ANSWER"]
    pool = sorted({i for p in pieces for i in tok.encode(p, add_special_tokens=False)} | set(tok.all_special_ids))
    m, rng = commit_machine(tok), random.Random(1)
    for _ in range(2000):
        ids = [rng.choice(pool) for _ in range(rng.randint(1, 20))]
        assert first_commit_machine(m, ids) == first_commit_regex(tok, ids), repr(tok.decode(ids))


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("static", [False, True], ids=["eager", "static"])
def test_decode_loop_ends_each_row_at_its_first_committed_answer(real_policies, static, dtype):
    """engine.run(stop=machine) on the real policy: a row that stopped holds its first committed
    answer in its last token and none before it; every other row holds none. Sampled and forced
    tokens both count (two rows are fed a committed answer, then more text). Both decode paths
    (static: finished rows keep their slot, the CUDA path), both precisions."""
    from aipo_lite.engine import decode as engine
    from aipo_lite.tasks.loading import load_tasks
    from aipo_lite.tasks.prompts import agent_free_prompt
    real_policy = real_policies(dtype)
    tok = real_policy.tokenizer
    tasks = load_tasks("synth", "test", tiers=["add3", "recall"], limit_per_tier=4)
    rows = [engine.Row(tok.encode(agent_free_prompt(tok, t.question, "one_shot", t.kind), add_special_tokens=False), 48)
            for t in tasks for _ in range(3)]
    forced = tok.encode("6 + 3 = 9.\nAnswer: 9\nAnd more.", add_special_tokens=False)
    for r in rows[:2]:
        r.forced = [(t, engine.Prov.TEMPLATE) for t in forced]
    engine.run(real_policy.model, tok, rows, generator=0, stop=commit_machine(tok), static_step=static)
    for r in rows:
        text, before = (tok.decode(x, skip_special_tokens=True) for x in (r.ids, r.ids[:-1]))
        assert (COMMITTED.search(text) is not None) == (r.finished == "stop"), (r.finished, text)
        assert COMMITTED.search(before) is None, text
    assert [tok.decode(r.ids) for r in rows[:2]] == ["6 + 3 = 9.\nAnswer: 9\n"] * 2
    assert sum(r.finished == "stop" for r in rows) >= 2


@pytest.mark.slow
@pytest.mark.parametrize("form, every_line, dtype", [("tagged", False, "bfloat16"), ("inline", False, "float32"),
                                                     ("inline", True, "bfloat16")])
def test_assisted_rows_decode_only_where_needed_with_the_same_rollouts(real_policies, monkeypatch, form, every_line,
                                                                       dtype):
    """assist.Assist decodes a row's text only where a consult or the stop could happen
    (decided from token ids and entropies); forcing a decode at every call gives the same
    rollouts, consults and stops, with every trigger on (entropy, verify-before-commit, tags),
    in both precisions."""
    from aipo_lite.rollout import consult as assist
    from aipo_lite.rollout import groups as rollout
    from aipo_lite.rollout.detector import Detector
    from aipo_lite.tasks.loading import load_tasks
    tasks = load_tasks("synth", "test", tiers=["add3", "units", "recall"], limit_per_tier=3)
    agents = rollout.agents_from_config(__import__("aipo_lite.config", fromlist=["Config"]).Config())
    det = Detector(tau_abs=1.0, tau_rel=0.3, every_line=every_line)

    def run():
        groups, _ = rollout.rollout_group(real_policies(dtype), tasks, agents, det, g_ind=1, g_asst=3, consult_budget=2,
                                          max_new_tokens=40, generator=7, guidance_form=form)
        return [(r.ids, r.prov, r.finished, [(c.at, c.trigger, c.agent, c.reply) for c in r.consults])
                for g in groups for r in g]

    decodes = []
    text = assist.Assist._text
    monkeypatch.setattr(assist.Assist, "_text", lambda self, row: decodes.append(1) or text(self, row))
    gated, n_gated = run(), len(decodes)
    monkeypatch.setattr(assist.Assist, "_needs_text", lambda self, row, seg: True)
    decodes.clear()
    assert run() == gated
    assert any(c for *_, c in gated)  # consults happened
    assert n_gated < len(decodes)
    print(f"decodes {n_gated} gated vs {len(decodes)} at every call")
