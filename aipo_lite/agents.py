"""The three collaborating agents: Verify, Knowledge, Reasoning (METHODS.md §3).

One interface: `agent.respond(request) -> str | None` (None = nothing to add, e.g. Verify
found the proposed answer correct). A request carries the task with its privileged fields
(reference answer, steps, facts), the policy's partial reasoning and its query.

Backends (`make_agent(role, backend, **kwargs)`):
- `rule`: deterministic, reads the privileged fields, no LLM (tests, CPU demos). Replies are
  worded as a step the policy could write itself ("Next: 10 + 8 = 18."): METHODS.md notes
  those internalize more easily than meta-comments.
- `hf`: a local transformers model (optionally 4-bit NF4), shared by the three roles.
- `openai`: any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp's server).
  The LLM backends live in llm_agents.py (imported on first use); they get the same
  privileged context in their prompt and are asked for the same kind of one-line step.
`Guarded` wraps any agent with bounded retries, a fallback agent and fault counting, so an
empty, garbage or failed reply never crashes a rollout.
"""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from .tasks import Task, load_knowledge

ROLES = ("verify", "knowledge", "reasoning")
BACKENDS = ("rule", "hf", "openai")
EQUATION = re.compile(r"(?P<lhs>-?\d+(?:\s*[-+*x×]\s*-?\d+)+)\s*=\s*(?P<rhs>-?\d+)")


@dataclass
class Request:
    task: Task
    partial: str = ""            # the policy's reasoning so far (its reply, feedback included)
    query: str = ""              # the policy's own question ('' when the detector fired)
    trigger: str = "tag"         # tag | entropy | commit
    proposed: str | None = None  # the answer the policy is committing to (verify-before-commit)


_TERM = re.compile(r"\s*([-+*x×])\s*(-?\d+)")


def evaluate_expression(lhs: str) -> int:
    """Value of an integer expression of + - * (x and × as *), * before + and -: an EQUATION's
    left side. Read number by number (no eval): a line break inside it ("5 -\n-2") or a leading
    zero ("08") is model text like any other, not a syntax error."""
    first = re.match(r"\s*(-?\d+)", lhs)
    total, term = 0, int(first[1])
    for op, number in _TERM.findall(lhs, first.end()):
        if op == "+" or op == "-":
            total, term = total + term, int(number) if op == "+" else -int(number)
        else:
            term *= int(number)
    return total + term


def _last_wrong_equation(text: str) -> tuple[str, int, int] | None:
    wrong = None
    for m in EQUATION.finditer(text):
        true = evaluate_expression(m["lhs"])
        if true != int(m["rhs"]):
            wrong = (re.sub(r"\s+", " ", m["lhs"].strip()), int(m["rhs"]), true)
    return wrong


class RuleVerify:
    role, backend = "verify", "rule"

    def respond(self, req: Request) -> str | None:
        wrong = _last_wrong_equation(req.partial if not req.query else req.partial + "\n" + req.query)
        if wrong:
            lhs, _claimed, true = wrong
            return f"Check: {lhs} = {true}."
        if req.proposed is not None:
            from .rewards import is_equivalent
            if is_equivalent(req.proposed, req.task.answer):
                return None
            return f"{req.proposed} is not the final answer yet. " + (_next_step(req) or "")
        return None if req.trigger == "commit" else "The steps so far are correct."


def _step_reached(step: str, text: str) -> bool:
    m = re.search(r"=\s*(-?\d+)\s*$", step)
    return bool(m) and re.search(rf"=\s*{re.escape(m.group(1))}(?!\d)", text) is not None


def _next_step(req: Request) -> str | None:
    for step in req.task.steps:
        if not _step_reached(step, req.partial):
            return f"Next: {step}."
    return None


class RuleReasoning:
    role, backend = "reasoning", "rule"

    def respond(self, req: Request) -> str | None:
        nxt = _next_step(req)
        return nxt if nxt else f"All steps are done: Answer: {req.task.answer}"


def _stem(words: list[str]) -> list[str]:
    """A minimal plural stripper ('hours' -> 'hour'), enough for the unit facts."""
    return [w[:-1] if len(w) > 3 and w.endswith("s") else w for w in words]


class RuleKnowledge:
    """BM25 (bm25s) over the task's facts plus the knowledge base; returns the best entry."""
    role, backend = "knowledge", "rule"

    def __init__(self, knowledge: list[str] | None = None):
        self.knowledge = knowledge if knowledge is not None else [r["text"] for r in load_knowledge()]
        self._indexes: dict[tuple[str, ...], tuple[list[str], object]] = {}

    def respond(self, req: Request) -> str | None:
        import bm25s
        corpus, retriever = self._index(tuple(req.task.facts))
        if not corpus:
            return None
        query = req.query or f"{req.task.question} {req.partial}"
        docs, scores = retriever.retrieve(bm25s.tokenize([query], stemmer=_stem, show_progress=False),
                                          k=1, show_progress=False)
        best, score = int(docs[0][0]), float(scores[0][0])
        if score <= 0 and req.task.facts:  # nothing matched: the task's own first fact
            best = 0
        return f"Fact: {corpus[best]}"

    def _index(self, facts: tuple[str, ...]):
        """The BM25 index of the task's facts + the knowledge base, built once per fact set
        (it was built per request: a consult's largest cost in a batch of assisted rows)."""
        if facts not in self._indexes:
            import bm25s
            corpus = list(dict.fromkeys(list(facts) + self.knowledge))
            retriever = None
            if corpus:
                retriever = bm25s.BM25()
                retriever.index(bm25s.tokenize(corpus, stemmer=_stem, show_progress=False), show_progress=False)
            self._indexes[facts] = (corpus, retriever)
        return self._indexes[facts]


_RULE = {"verify": RuleVerify, "knowledge": RuleKnowledge, "reasoning": RuleReasoning}


def make_agent(role: str, backend: str = "rule", **kwargs):
    """The `role` agent of `backend`; kwargs go to its constructor (for hf/openai: model,
    timeout, max_new_tokens, and load_in_4bit/device/cache_dir or base_url/api_key)."""
    if role not in ROLES:
        raise ValueError(f"agent role {role!r} is not valid; choose one of {list(ROLES)}")
    if backend not in BACKENDS:
        raise ValueError(f"agent backend {backend!r} is not valid; choose one of {list(BACKENDS)}")
    if backend == "rule":
        return _RULE[role](**kwargs)
    from . import llm_agents  # lazy: the rule path needs neither transformers nor a server
    return llm_agents.BACKENDS[backend](role, **kwargs)


_TAG = re.compile(r"</?(feedback|verify|knowledge|reason)\b")  # a reply may not forge tags


@dataclass
class Guarded:
    """Retries, a fallback agent, and fault counts; never raises into the rollout."""
    agent: object
    fallback: object | None = None
    retries: int = 1
    max_chars: int = 300
    faults: Counter = field(default_factory=Counter)
    calls: int = 0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def role(self) -> str:
        return self.agent.role

    def _valid(self, reply) -> bool:
        return reply is None or (isinstance(reply, str) and reply.strip() != ""
                                 and len(reply) <= self.max_chars and not _TAG.search(reply))

    def _count(self, key: str) -> None:
        with self._lock:  # replies of one decode step may come from several threads
            self.faults[key] += 1

    def respond(self, req: Request) -> tuple[str | None, str]:
        """(reply, status): status 'ok', 'fallback' or 'failed' (reply None then). Thread-safe."""
        with self._lock:
            self.calls += 1
        for attempt in range(self.retries + 1):
            try:
                reply = self.agent.respond(req)
                if self._valid(reply):
                    return reply, "ok"
                self._count("bad_reply")
            except Exception as e:  # noqa: BLE001 - any backend fault is counted, not raised
                self._count(type(e).__name__)
            if attempt < self.retries:
                time.sleep(0.05 * 2 ** attempt)
        if self.fallback is not None:
            try:
                reply = self.fallback.respond(req)
                if self._valid(reply):
                    return reply, "fallback"
            except Exception as e:  # noqa: BLE001
                self._count(f"fallback_{type(e).__name__}")
        self._count("failed")
        return None, "failed"
