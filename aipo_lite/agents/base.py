"""The three collaborating agents: Verify, Knowledge, Reasoning (docs/methods.md §3).

One interface: `agent.respond(request) -> str | None` (None = nothing to add, e.g. Verify
found the proposed answer correct). A request carries the task with its privileged fields
(reference answer, steps, facts), the policy's partial reasoning and its query.

Backends (`make_agent(role, backend, **kwargs)`):
- `rule`: deterministic, reads the privileged fields, no LLM (tests, CPU demos). Replies are
  worded as a step the policy could write itself ("Next: 10 + 8 = 18."): docs/methods.md notes
  those internalize more easily than meta-comments.
- `hf`: a local transformers model (optionally 4-bit NF4), shared by the three roles.
- `openai`: any OpenAI-compatible chat server (vLLM, SGLang, llama.cpp's server).
  The LLM backends live in agents/llm.py (imported on first use); they get the same
  privileged context in their prompt and are asked for the same kind of one-line step.
`Guarded` (agents/guard.py) wraps any agent with bounded retries, a fallback agent and fault counting, so an
empty, garbage or failed reply never crashes a rollout.
"""

from __future__ import annotations

from aipo_lite.agents import llm as llm_agents
from aipo_lite.agents.request import Request
from aipo_lite.config import AGENT_BACKENDS
from aipo_lite.tasks.equations import last_wrong_equation, step_reached
from aipo_lite.tasks.loading import load_knowledge
from aipo_lite.tasks.rewards import is_equivalent

ROLES = ("verify", "knowledge", "reasoning")
BACKENDS = AGENT_BACKENDS


class RuleVerify:
    role, backend = "verify", "rule"

    def respond(self, req: Request) -> str | None:
        wrong = last_wrong_equation(req.partial if not req.query else req.partial + "\n" + req.query)
        if wrong:
            lhs, _claimed, true = wrong
            return f"Check: {lhs} = {true}."
        if req.proposed is not None:
            if is_equivalent(req.proposed, req.task.answer):
                return None
            return f"{req.proposed} is not the final answer yet. " + (_next_step(req) or "")
        return None if req.trigger == "commit" else "The steps so far are correct."


def _next_step(req: Request) -> str | None:
    for step in req.task.steps:
        if not step_reached(step, req.partial):
            return f"Next: {step.rstrip().rstrip('.').rstrip()}."  # GSM8K steps end with their own '.'
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
    return llm_agents.BACKENDS[backend](role, **kwargs)
