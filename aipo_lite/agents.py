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
from fractions import Fraction

from .config import AGENT_BACKENDS
from .tasks import Task, load_knowledge

ROLES = ("verify", "knowledge", "reasoning")
BACKENDS = AGENT_BACKENDS
# --- the arithmetic a model writes: numbers, operators, equations ------------------------------
# A number: optional sign (- or U+2212 minus), optional $, digits plain ("1000", "08") or in
# thousands groups of exactly 3 ("1,000,000"), optional decimals ("0.5", "3.50"). It ends where
# no digit, no ".", ",", ":" or "'" + digit (10.5, 1,0025, 10:30, 5'10), no exponent (1e9) and
# no "%" follows: a match never reads a piece of a longer number. "1, 2" and "1,2" are two
# numbers (a list), "1,0025" none; "= 2." ends a sentence. Percentages are not read (is
# "100 + 20% = 120" an increase or 100.2?): an equation with one is skipped, never "corrected".
_NUM_END = r"(?![\d_%]|[.,:']\d|[eE][-+]?\d|\s*%)"
_NUMBER = rf"[-\u2212]?\$?(?:\d{{1,3}}(?:,\d{{3}})+|\d+)(?:\.\d+)?{_NUM_END}"
# Operators: + - (or U+2212) * × ÷ /, and x when spaced on both sides ("6 x 2") or glued on both
# ("6x2"): "3x + 2" and "2x -4" are algebra, not products.
_OP = r"(?:\s*[-+*/\u00d7\u00f7\u2212]\s*|\s+x\s+|x(?=\d))"
# Where an expression may start: not glued to a word, number, "$", "%", ")" or an operator, not
# after an operator that follows an operand ("x - 3 + 2", "(1 + 2) * 3 + 1", "2^3 + 1": their
# tails are no equation of their own) and not after "digit space" ("1 000" is no thousands style
# read here).
_START = (r"(?<![\w.,:'$%^)\]\-+*/\u00d7\u00f7\u2212])(?<![\w)\]%][-+*/^\u00d7\u00f7\u2212]\s)"
          r"(?<![\w)\]%]\s[-+*/^\u00d7\u00f7\u2212]\s)(?<![\d)\]%]\sx\s)(?<!\d[ \t])")
# A right side is one number: not followed by an operator and a number ("= 4 + 1 = 5" is a
# chain: its first link is skipped, "4 + 1 = 5" checked) nor by a number ("= 2 1/2").
_RHS_END = r"(?![ \t]*(?:[-+*/^\u00d7\u00f7\u2212]|x)[ \t]*[-\u2212(]?\$?\d|[ \t]+\d)"
# Every equation Verify checks (numbers as above, / and ÷ included).
_EQUATION_ANY = re.compile(
    rf"{_START}(?P<lhs>{_NUMBER}(?:{_OP}{_NUMBER})+)\s*=\s*(?P<rhs>{_NUMBER}){_RHS_END}")
# The integer equations of that grammar (no $, separators, decimals or division), for readers of
# `int(m["rhs"])` (notebook 01's error labels, detector.first_error_char). Bounded like the
# above: it reads no piece of "1,000 + 2 = 1,002" or "0.5 * 4 = 2" (it read "000 + 2 = 1").
_INTEGER = rf"-?\d+{_NUM_END}"
EQUATION = re.compile(
    rf"{_START}(?P<lhs>{_INTEGER}(?:(?:\s*[-+*\u00d7\u2212]\s*|\s+x\s+|x(?=\d)){_INTEGER})+)"
    rf"\s*=\s*(?P<rhs>{_INTEGER}){_RHS_END}")


@dataclass
class Request:
    task: Task
    partial: str = ""            # the policy's reasoning so far (its reply, feedback included)
    query: str = ""              # the policy's own question ('' when the detector fired)
    trigger: str = "tag"         # tag | entropy | commit
    proposed: str | None = None  # the answer the policy is committing to (verify-before-commit)


_TERM = re.compile(r"\s*([-+*/x\u00d7\u00f7\u2212])\s*([-\u2212]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)")


def _read_number(number: str) -> Fraction:
    """The exact value of a number as _NUMBER reads it ("-$1,200.50" -> -2401/2)."""
    number = number.replace("\u2212", "-").replace("$", "").replace(",", "")
    sign = -1 if number.startswith("-") else 1
    whole, _, decimals = number.lstrip("-").partition(".")
    value = Fraction(int(whole))
    if decimals:
        value += Fraction(int(decimals), 10 ** len(decimals))
    return sign * value


def evaluate_expression(lhs: str) -> int | Fraction:
    """Exact value of an expression of + - * / (x and × as *, ÷ as /, U+2212 as -), * and / before
    + and -: an EQUATION's (or _EQUATION_ANY's) left side. Read number by number (no eval): a
    line break inside it ("5 -\n-2") or a leading zero ("08") is model text like any other, not a
    syntax error; "1,000", "$5" and "0.5" are numbers (see _NUMBER). An int when whole, else a
    Fraction; ZeroDivisionError on a division by zero."""
    first = re.match(r"\s*([-\u2212]?\$?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?)", lhs)
    total, term = Fraction(0), _read_number(first[1])
    for op, number in _TERM.findall(lhs, first.end()):
        value = _read_number(number)
        if op in "+-\u2212":
            total, term = total + term, value if op == "+" else -value
        elif op in "/\u00f7":
            term /= value
        else:
            term *= value
    value = total + term
    return int(value) if value.denominator == 1 else value


def _format_number(value: Fraction, dollar: bool, commas: bool, places: int) -> str | None:
    """`value` written in a model's style: "$" if `dollar`, thousands commas if `commas`, at
    least `places` decimals (more if it needs them: 2.5, never 2.50 unless the model wrote 2
    places); None when it has no finite decimal expansion (10/3)."""
    den = value.denominator
    needed = 0
    for p in (2, 5):
        k = 0
        while den % p == 0:
            den, k = den // p, k + 1
        needed = max(needed, k)
    if den != 1:
        return None
    places = max(places, needed)
    whole, decimals = divmod(abs(value.numerator) * 10 ** places // value.denominator, 10 ** places)
    text = f"{whole:,}" if commas else str(whole)
    if places:
        text += "." + str(decimals).zfill(places)
    return ("-" if value < 0 else "") + ("$" if dollar else "") + text


def _decimal_places(number: str) -> int:
    return len(number.partition(".")[2])


def wrong_equations(text: str):
    """(match, correct right side) of each wrong equation of `text` (_EQUATION_ANY), in order.

    Exact arithmetic (Fraction). A right side with decimals may be rounded: "10 / 3 = 3.33" and
    "0.125 * 3 = 0.38" are right (within half a unit of its last written place). Skipped, neither
    right nor wrong: a division by zero, a number too long for int(), and a wrong equation whose
    true value has no finite decimal expansion ("100 / 3 = 30"): no correction could be written.
    A line starting "- 3 + 2 = ..." is a bullet or a spaced sign: right if either reading is.
    The correction is in the equation's style: "$" if its right side has one, thousands commas if
    any of its numbers has them, the right side's decimal places (or as many as the value needs)."""
    for m in _EQUATION_ANY.finditer(text):
        try:
            true = Fraction(evaluate_expression(m["lhs"]))
            claimed = _read_number(m["rhs"])
        except (ZeroDivisionError, ValueError):
            continue
        places = _decimal_places(m["rhs"])

        def right(value: Fraction) -> bool:
            return value == claimed or (places > 0 and abs(value - claimed) * 2 * 10 ** places <= 1)
        if right(true):
            continue
        line = text[text.rfind("\n", 0, m.start()) + 1:m.start()]
        if (re.fullmatch(r"[ \t]*[-\u2212][ \t]+", line) and m["lhs"][0] not in "-\u2212"
                and right(Fraction(evaluate_expression("-" + m["lhs"])))):
            continue  # "- 3 + 2 = -1": a spaced sign, not a list bullet
        try:
            fixed = _format_number(true, "$" in m["rhs"], "," in m[0], places)
        except ValueError:  # more digits than str() writes
            continue
        if fixed is not None:
            yield m, fixed


def _last_wrong_equation(text: str) -> tuple[str, str, str] | None:
    """(left side with its whitespace collapsed, claimed right side, correct right side) of the
    last wrong equation in `text` (_wrong_equations), or None."""
    wrong = None
    for m, fixed in wrong_equations(text):
        wrong = (re.sub(r"\s+", " ", m["lhs"].strip()), m["rhs"], fixed)
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


_RESULT = re.compile(rf"=\s*({_NUMBER})")


def _step_reached(step: str, text: str) -> bool:
    """Whether `text` states the result of reference `step` (the number after its last '=',
    "Natalia sold 48/2 = 24 clips." included) after an '=' of its own, compared by value:
    "= 1,002", "= $1002" and "= 1002.0" reach "= 1002"; "= 10.5" does not reach "= 10", nor
    "= 1,0025" "= 1,002". A step without such a number is never reached."""
    results = _RESULT.findall(step)
    if not results:
        return False
    try:
        want = _read_number(results[-1])
        return any(_read_number(n) == want for n in _RESULT.findall(text))
    except ValueError:  # a number too long for int()
        return False


def _next_step(req: Request) -> str | None:
    for step in req.task.steps:
        if not _step_reached(step, req.partial):
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
    from . import llm_agents  # lazy: the rule path needs neither transformers nor a server
    return llm_agents.BACKENDS[backend](role, **kwargs)


_TAG = re.compile(r"</?(feedback|verify|knowledge|reason)\b")  # a reply may not forge tags


@dataclass
class Guarded:
    """Retries, a fallback agent, and counts of every outcome; never raises into the rollout.

    Counts (thread-safe): `calls`, `outcomes` ('ok', 'fallback', 'failed') and `faults` by kind
    (an exception's `kind` attribute, else its class name; 'bad_reply' for an empty, too long or
    tag-forging reply); `first_fault` keeps the text of the first fault. The trainer writes them
    per step as agents/<role>/... metrics. Retries back off 0.05 * 2^k s, at most RETRY_SLEEP_MAX."""
    agent: object
    fallback: object | None = None
    retries: int = 1
    max_chars: int = 300
    faults: Counter = field(default_factory=Counter)
    outcomes: Counter = field(default_factory=Counter)
    calls: int = 0
    first_fault: str | None = None
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    @property
    def role(self) -> str:
        return self.agent.role

    @property
    def backend(self) -> str:
        return getattr(self.agent, "backend", "rule")

    def _valid(self, reply) -> bool:
        return reply is None or (isinstance(reply, str) and reply.strip() != ""
                                 and len(reply) <= self.max_chars and not _TAG.search(reply))

    def _count(self, key: str, text: str = "") -> None:
        with self._lock:  # replies of one decode step may come from several threads
            self.faults[key] += 1
            if self.first_fault is None:
                self.first_fault = f"{key}: {text}"[:500] if text else key

    def _done(self, reply, status: str) -> tuple[str | None, str]:
        with self._lock:
            self.outcomes[status] += 1
        return reply, status

    def snapshot(self) -> dict:
        """The counts so far, as flat metric names under agents/<role>/."""
        with self._lock:
            out = {"calls": self.calls, "ok": self.outcomes["ok"], "fallbacks": self.outcomes["fallback"],
                   "failed": self.outcomes["failed"],
                   **{f"faults/{k}": v for k, v in self.faults.items()}}
        return {f"agents/{self.role}/{k}": v for k, v in out.items()}

    def respond(self, req: Request) -> tuple[str | None, str]:
        """(reply, status): status 'ok', 'fallback' or 'failed' (reply None then). Thread-safe."""
        with self._lock:
            self.calls += 1
        for attempt in range(self.retries + 1):
            try:
                reply = self.agent.respond(req)
                if self._valid(reply):
                    return self._done(reply, "ok")
                self._count("bad_reply", repr(reply)[:200])
            except Exception as e:  # noqa: BLE001 - any backend fault is counted, not raised
                self._count(str(getattr(e, "kind", type(e).__name__)), str(e))
            if attempt < self.retries:
                time.sleep(retry_sleep(attempt))
        if self.fallback is not None:
            try:
                reply = self.fallback.respond(req)
                if self._valid(reply):
                    return self._done(reply, "fallback")
            except Exception as e:  # noqa: BLE001
                self._count(f"fallback_{type(e).__name__}", str(e))
        self._count("failed")
        return self._done(None, "failed")


RETRY_SLEEP_MAX = 2.0


def retry_sleep(attempt: int) -> float:
    """Back-off before retry `attempt` + 1: 0.05 * 2^attempt s, capped (no overflow at any count)."""
    return RETRY_SLEEP_MAX if attempt >= 6 else min(RETRY_SLEEP_MAX, 0.05 * 2 ** attempt)


def agent_metrics(agents: dict, before: dict | None = None) -> dict:
    """Every agent's counts (Guarded.snapshot), minus `before` (an earlier call's result) if given."""
    now = {k: v for a in agents.values() for k, v in a.snapshot().items()}
    return {k: v - (before or {}).get(k, 0) for k, v in now.items()}


MIN_CALLS = 8  # calls an LLM agent makes before its fallback rate can stop a run


def fallback_problem(agents: dict, max_rate: float) -> str | None:
    """Why a run must stop, if an LLM agent fell back or failed on more than `max_rate` of its
    calls (once it made MIN_CALLS): its run would be a rule-agent run under another name."""
    for role, a in agents.items():
        if a.backend == "rule" or a.calls < MIN_CALLS:
            continue
        rate = (a.outcomes["fallback"] + a.outcomes["failed"]) / a.calls
        if rate > max_rate:
            return (f"the {a.backend} {role} agent fell back or failed on {rate:.0%} of its {a.calls} calls "
                    f"(agent_max_fallback_rate={max_rate}); faults {dict(a.faults)}; first: {a.first_fault}")
    return None
