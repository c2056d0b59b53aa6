"""Training views of an assisted rollout (views.py) on hand-built rollouts, real tokenizer."""

import math

import pytest
from transformers import AutoTokenizer

from aipo_lite.config import Config
from aipo_lite.methods.views import interactive_seq, internalized_seq, to_train_seqs
from aipo_lite.model.policy import resolve_model_path
from aipo_lite.records import Prov
from aipo_lite.records import Consult, Rollout
from aipo_lite.tasks.loading import Task
from aipo_lite.tasks.prompts import agent_free_prompt

TASK = Task("t1", "What is 5 + 2 + 6?", "13", ("5 + 2 = 7", "7 + 6 = 13"))


@pytest.fixture(scope="module")
def tok():
    return AutoTokenizer.from_pretrained(resolve_model_path(Config()))


def _rollout(tok, parts, consults_at_parts, trigger="commit"):
    """parts: [(text, Prov)]; a consult starts at each part index in consults_at_parts."""
    ids, prov, consults = [], [], []
    for i, (text, p) in enumerate(parts):
        if i in consults_at_parts:
            consults.append(Consult(len(ids), trigger, "verify", "", parts[i + 1][0], "ok"))
        t = tok.encode(text, add_special_tokens=False)
        ids += t
        prov += [p] * len(t)
    logp = [-0.5 if p == Prov.POLICY else -3.0 for p in prov]
    return Rollout(TASK, True, [1, 2, 3], ids, prov, logp, [1.0] * len(ids), tok.decode(ids), "stop", consults)


PARTS = [("5 + 2 = 7.\nAnswer: 9\n", Prov.POLICY), ("<feedback>", Prov.TEMPLATE),
         ("Next: 7 + 6 = 13.", Prov.AGENT), ("</feedback>\n", Prov.TEMPLATE),
         ("7 + 6 = 13.\nAnswer: 13", Prov.POLICY)]


def _text(tok, s, which):
    return tok.decode([t for t, k in zip(s.ids, s.kind) if k in which])


def test_internalized_strips_tags_and_premature_answer(tok):
    r = _rollout(tok, PARTS, {1})
    s = internalized_seq(r, tok)
    assert s.prompt_ids == tok.encode(agent_free_prompt(tok, TASK.question), add_special_tokens=False)
    assert tok.decode(s.ids) == "5 + 2 = 7.\nNext: 7 + 6 = 13.\n7 + 6 = 13.\nAnswer: 13"
    assert Prov.TEMPLATE not in s.kind
    # post_consult credit: the policy's own first attempt is context only
    trained = [tok.decode([t]) for t, k, m in zip(s.ids, s.kind, s.in_loss) if m and k == Prov.POLICY]
    assert "".join(trained) == "7 + 6 = 13.\nAnswer: 13"
    agent = [i for i, k in enumerate(s.kind) if k == Prov.AGENT]
    assert all(s.in_loss[i] and s.span[i] == 0 and math.isnan(s.old_logp[i]) for i in agent)
    # POLICY tokens keep their behaviour log-probs from the interactive context
    assert all(s.old_logp[i] == -0.5 for i, k in enumerate(s.kind) if k == Prov.POLICY)
    s_all = internalized_seq(r, tok, credit="all")
    assert all(m for m, k in zip(s_all.in_loss, s_all.kind) if k == Prov.POLICY)


def test_internalized_drops_consult_tag_and_half_lines(tok):
    parts = [("5 + 2 = 7.\nThen 7 + <reason>stuck</reason>", Prov.POLICY), ("<feedback>", Prov.TEMPLATE),
             ("Next: 7 + 6 = 13.", Prov.AGENT), ("</feedback>\n", Prov.TEMPLATE), ("Answer: 13", Prov.POLICY)]
    s = internalized_seq(_rollout(tok, parts, {1}, "tag"), tok)
    assert tok.decode(s.ids) == "5 + 2 = 7.\nNext: 7 + 6 = 13.\nAnswer: 13"


def test_interactive_keeps_everything_but_trains_no_template(tok):
    r = _rollout(tok, PARTS, {1})
    s = interactive_seq(r)
    assert s.ids == r.ids and s.prompt_ids == r.prompt_ids
    assert not any(m for m, k in zip(s.in_loss, s.kind) if k == Prov.TEMPLATE)
    first = r.consults[0].at
    assert not any(s.in_loss[:first]) and all(s.in_loss[i] for i, k in enumerate(s.kind) if k == Prov.AGENT)
    assert all(m for i, (m, k) in enumerate(zip(s.in_loss, s.kind)) if k == Prov.POLICY and i > first)
    assert all(m for m, k in zip(interactive_seq(r, "all").in_loss, s.kind) if k == Prov.POLICY)


def test_unassisted_and_prefix_tokens(tok):
    ids = tok.encode("5 + 2 = 7.\nAnswer: 13", add_special_tokens=False)
    r = Rollout(TASK, False, [1, 2], ids, [Prov.POLICY] * len(ids), [math.nan] * 3 + [-1.0] * (len(ids) - 3),
                [1.0] * len(ids), "", "stop", prefix_len=3)
    (s,) = to_train_seqs([[r]], tok)
    assert s.in_loss == [False] * 3 + [True] * (len(ids) - 3)  # a replayed prefix is context only
    assert not s.assisted and s.reward == 0.0
