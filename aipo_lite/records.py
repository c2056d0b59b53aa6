"""Records the layers share, in the lowest layer so that no layer imports a higher one for a type:
where a token came from (Prov), what one consult did (Consult), the state a hook keeps on an
engine row (RowState), one rollout (Rollout), one sequence as the trainer sees it (TrainSeq)."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import IntEnum
from typing import Any


class Prov(IntEnum):
    """Where a token of a rollout came from: the prompt, the policy's own sampling, an agent's
    reply, or the template around a reply (tags); the loss trains POLICY and AGENT tokens only."""
    PROMPT = 0
    POLICY = 1
    AGENT = 2
    TEMPLATE = 3


@dataclass
class Consult:
    """One consult of an agent during an assisted rollout."""
    at: int            # index in the generated tokens where the feedback starts
    trigger: str       # tag | entropy | commit | line
    agent: str
    query: str
    reply: str | None
    status: str        # ok | fallback | failed | passed (verify let a correct answer through)


@dataclass
class RowState:
    """What an engine row carries for its on_token hook. The engine (engine/decode.py) reads the
    first three; the rest is the consult hook's bookkeeping (rollout/consult.py)."""
    intercept_eos: bool = False   # call the hook at EOS instead of ending the row (verify before commit)
    every_token: bool = False     # call the hook after every token, not only at watched ones
    at_eos: bool = False          # set by the engine: the hook is called for an EOS
    assisted: bool = False
    task: Any = None              # tasks.loading.Task: the problem, for the agents' requests
    consults: list[Consult] = field(default_factory=list)
    seg_start: int = 0            # first token of the current segment (after the last feedback)
    h_init: float | None = None   # mean entropy of the segment's first tokens (the detector's reference)
    text_after: int | None = 0    # text offset after the last feedback; None: feedback just fed in
    text: str = ""                # decoded text so far (incremental)
    n_dec: int = 0                # tokens decoded into `text`
    checked: int = 0              # entropy windows of the segment already looked at
    commit: int = 0               # commit machine state and the tokens it has read
    n_commit: int = 0


@dataclass
class Rollout:
    task: Any                     # tasks.loading.Task
    assisted: bool
    prompt_ids: list[int]
    ids: list[int]
    prov: list[int]
    logprobs: list[float]
    entropies: list[float]
    text: str
    finished: str
    consults: list[Consult] = field(default_factory=list)
    reward: float = 0.0
    prefix_len: int = 0  # generated tokens that came from a given starting prefix
    parent: int = -1     # ARPO: index in its group of the rollout it branched from
    ref_reward: float | None = None  # AAPO: reward of the paired reference rollout


@dataclass
class TrainSeq:
    """One sequence of a training step: prompt + completion with per-token provenance, behaviour
    log-prob and loss mask (methods/views.py builds them; the trainer fills `advantage`)."""
    prompt_ids: list[int]
    ids: list[int]             # completion tokens
    kind: list[int]            # Prov per completion token
    old_logp: list[float]      # behaviour log-prob (nan where none)
    in_loss: list[bool]
    span: list[int]            # agent span index within this sequence (-1 = not an agent token)
    advantage: float = 0.0
    token_adv: list | None = None  # per-token advantages where they differ (ARPO hard attribution)
    assisted: bool = False
    rescored: bool = False     # trained under another prompt than it was sampled with (internalized)
    group: int = 0
    reward: float = 0.0        # the rollout's reward (its group's advantage is computed from these)
    ref_reward: float | None = None  # AAPO: the paired reference rollout's reward
    consults: int = 0          # consults of the rollout it came from
