"""The guard every agent runs behind: bounded retries with a capped back-off, a fallback agent,
and counts of every outcome (calls, ok, fallbacks, failed, faults by kind), which the trainer
writes per step as agents/<role>/... metrics; and the rule that stops a run whose LLM agent
mostly falls back."""

from __future__ import annotations

import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field

from aipo_lite.agents.request import Request

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
