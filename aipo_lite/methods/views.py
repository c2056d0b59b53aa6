"""How a rollout becomes a training sequence: the two views and the credit rule (docs/methods.md §3).

A `TrainSeq` is prompt ids + completion ids with, per completion token, its kind (POLICY,
AGENT, TEMPLATE), the behaviour log-prob (what the sampler saw), whether it enters the loss,
and for AGENT tokens the id of the agent span (one feedback reply = one span).

- Independent rollouts: the agent-free prompt and the policy's tokens, all in the loss.
- Assisted, `view="interactive"`: trained as it happened (assisted prompt, consult tags and
  feedback in context). The policy's own consult requests are POLICY tokens, so consulting
  is reinforced when it pays; the inserted tags are TEMPLATE tokens and never in the loss.
- Assisted, `view="internalized"` (default): the agent-free prompt, and a continuation with
  the tags stripped and each feedback reply written as a line of the policy's own text. Our
  interpretation of the details the paper does not give:
  * before each consult, text back to the start of the current line is dropped: a committed
    (premature) answer line, the policy's consult tag, or a half line where the detector fired;
  * a reply becomes the line `reply + "\n"`, re-tokenized, as one AGENT span;
  * POLICY tokens keep their behaviour log-probs from the interactive context, so the
    importance weight of each is π(·|internalized) / π_sampler(·|interactive): truncated at
    tis_cap (the default behaviour_logp='trainer'), or the PPO ratio clipped like any ratio
    (behaviour_logp='sampler'); see trainer.micro_batch_loss.
- `credit="post_consult"` (default): in an assisted rollout, POLICY tokens before the first
  answered consult are the policy's own failed attempt and stay out of the loss (they remain
  in context). `credit="all"` trains them too. An assisted rollout without an answered
  consult is the policy's own attempt: all its POLICY tokens are trained under either rule.
- A rollout that started from a prefix (`prefix_len` > 0: an ARPO branch, an RRL replay) is
  trained as it was sampled: its sampling prompt, the prefix as context only (never in its
  loss, whatever the prefix's provenance: a branch's prefix is trained once, in the rollout it
  branched from), its own POLICY tokens in the loss.
Tokens without a behaviour log-prob are context only.
"""

from __future__ import annotations

import math
import re

from aipo_lite.records import Prov, Rollout, TrainSeq
from aipo_lite.tasks.prompts import agent_free_prompt
from aipo_lite.tasks.rewards import COMMITTED

_TAG_OPEN = re.compile(r"<(verify|knowledge|reason)>")


def independent_seq(r: Rollout) -> TrainSeq:
    in_loss = [p == Prov.POLICY and not math.isnan(lp) for p, lp in zip(r.prov, r.logprobs)]
    return TrainSeq(list(r.prompt_ids), list(r.ids), list(r.prov), list(r.logprobs), in_loss,
                    [-1] * len(r.ids))


def continuation_seq(r: Rollout) -> TrainSeq:
    """A rollout that started from a prefix: only its own POLICY tokens after the prefix train."""
    in_loss = [i >= r.prefix_len and p == Prov.POLICY and not math.isnan(lp)
               for i, (p, lp) in enumerate(zip(r.prov, r.logprobs))]
    return TrainSeq(list(r.prompt_ids), list(r.ids), list(r.prov), list(r.logprobs), in_loss,
                    [-1] * len(r.ids), assisted=r.assisted)


def _answered(r: Rollout) -> list:
    return [c for c in r.consults if c.reply]


def interactive_seq(r: Rollout, credit: str = "post_consult") -> TrainSeq:
    answered = _answered(r)
    first = answered[0].at if answered and credit == "post_consult" else 0
    span, in_loss, cur, prev = [], [], -1, None
    for i, (p, lp) in enumerate(zip(r.prov, r.logprobs)):
        if p == Prov.AGENT and prev != Prov.AGENT:
            cur += 1
        span.append(cur if p == Prov.AGENT else -1)
        in_loss.append(p == Prov.AGENT or (p == Prov.POLICY and i >= first and not math.isnan(lp)))
        prev = p
    return TrainSeq(list(r.prompt_ids), list(r.ids), list(r.prov), list(r.logprobs), in_loss, span,
                    assisted=True)


def _keep_before(tokenizer, ids: list[int]) -> int:
    """How many of `ids` to keep so the kept text ends at a line start: a half-written line is
    dropped, and so is a complete last line holding a committed answer or a consult tag."""
    text = tokenizer.decode(ids, skip_special_tokens=True)
    if text.endswith("\n"):
        start = text.rfind("\n", 0, len(text) - 1) + 1
        last = text[start:]
        cut = start if (COMMITTED.search(last) or _TAG_OPEN.search(last)) else len(text)
    else:
        cut = text.rfind("\n") + 1
    n = len(ids)
    while n > 0 and len(tokenizer.decode(ids[:n], skip_special_tokens=True)) > cut:
        n -= 1
    return n


def internalized_seq(r: Rollout, tokenizer, prompt_style: str = "one_shot",
                     credit: str = "post_consult") -> TrainSeq:
    answered = _answered(r)
    prompt = tokenizer.encode(agent_free_prompt(tokenizer, r.task.question, prompt_style, r.task.kind),
                              add_special_tokens=False)
    if not answered:  # no feedback in it: the policy's own attempt, re-scored under the plain prompt
        s = independent_seq(r)
        return TrainSeq(prompt, s.ids, s.kind, s.old_logp, s.in_loss, s.span, assisted=True, rescored=True)
    # split the generated tokens into policy segments around each feedback block
    ids, kind, old, in_loss, span = [], [], [], [], []
    start, n_span = 0, 0
    for c in answered:
        seg = [i for i in range(start, c.at) if r.prov[i] == Prov.POLICY]
        keep = _keep_before(tokenizer, [r.ids[i] for i in seg])
        for i in seg[:keep]:
            ids.append(r.ids[i]); kind.append(Prov.POLICY); old.append(r.logprobs[i])
            in_loss.append(not math.isnan(r.logprobs[i]) and (credit == "all" or n_span > 0)); span.append(-1)
        body = tokenizer.encode(c.reply.strip() + "\n", add_special_tokens=False)
        ids += body; kind += [Prov.AGENT] * len(body); old += [math.nan] * len(body)
        in_loss += [True] * len(body); span += [n_span] * len(body)
        n_span += 1
        start = c.at
        while start < len(r.ids) and r.prov[start] != Prov.POLICY:  # skip the feedback block
            start += 1
    for i in range(start, len(r.ids)):
        if r.prov[i] == Prov.POLICY:
            ids.append(r.ids[i]); kind.append(Prov.POLICY); old.append(r.logprobs[i])
            in_loss.append(not math.isnan(r.logprobs[i])); span.append(-1)
    return TrainSeq(prompt, ids, kind, old, in_loss, span, assisted=True, rescored=True)


def to_train_seqs(groups: list[list[Rollout]], tokenizer, view: str = "internalized",
                  credit: str = "post_consult", prompt_style: str = "one_shot") -> list[TrainSeq]:
    """Every rollout of every group as a TrainSeq (advantages are filled in by the trainer)."""
    out = []
    for g, group in enumerate(groups):
        for r in group:
            if r.prefix_len:
                s = continuation_seq(r)
            elif not r.assisted:
                s = independent_seq(r)
            elif view == "interactive":
                s = interactive_seq(r, credit)
            else:
                s = internalized_seq(r, tokenizer, prompt_style, credit)
            s.group, s.reward, s.consults, s.ref_reward = g, r.reward, len(r.consults), r.ref_reward
            out.append(s)
    return out
