"""Bottleneck detection: when should an assisted rollout pause and consult an agent?

Three triggers (docs/methods.md §3), checked at every line end (and closing '>') of an assisted
rollout, so a detector-triggered consult always lands at a line boundary, never mid-word:
- `tag`: the policy closed a consult tag it was taught: </verify>, </knowledge>, </reason>.
  The tag names the agent.
- `entropy`: the mean token entropy over the last `window` tokens exceeds
  max(tau_abs, H_init + tau_rel), where H_init is the mean entropy of the rollout's first
  `init_tokens` tokens (ARPO's uncertainty measure). In a rollout H_init is fixed once those
  tokens exist and from then on any full window counts (entropy_fires, called without H_init,
  waits for init_tokens + window tokens instead); the window restarts after each consult.
  A spike anywhere in the line counts: the consult comes at the line's end. (Checked after
  every token, as first built, it fired mid-word: "the number of minutes is theFact: ...".)
- `commit`: the policy has just committed a final answer (`Answer: N` and its newline):
  verify-before-commit. The Verify agent lets a correct answer through without feedback.
- `line` (off by default, `every_line`): before the first token and at every line end,
  routed to the Reasoning agent: with the budget to match, the rollout is guided through
  every step of the reference solution (budget 1: its first step, before the policy writes);
  the rollout (assist.Assist) lets the policy write a line of its own after each hint.
A detector-triggered consult is routed by `route`: commit -> verify; no progress yet (no
equation written since the start) -> knowledge; else -> reasoning.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from aipo_lite.tasks.equations import wrong_equations
from aipo_lite.tasks.rewards import _ANSWER, COMMITTED, extract_answer, is_equivalent

AGENTS = ("verify", "knowledge", "reasoning")
TAGS = {"verify": "verify", "knowledge": "knowledge", "reason": "reasoning"}  # tag -> agent
TRIGGERS = ("tag", "entropy", "commit", "line")
_CLOSED_TAG = re.compile(r"<(verify|knowledge|reason)>(?P<query>.*?)</\1>\s*$", re.S)
_EQUATION = re.compile(r"\d\s*[-+*/x×]\s*\d[^=\n]*=\s*-?\d")


@dataclass(frozen=True)
class Trigger:
    kind: str      # one of TRIGGERS
    agent: str     # one of AGENTS
    query: str     # the policy's own question (tag) or '' (detector)


def entropy_fires(entropies: list[float], window: int, init_tokens: int, tau_abs: float,
                  tau_rel: float, h_init: float | None = None) -> bool:
    """True when the windowed mean entropy exceeds max(tau_abs, H_init + tau_rel).

    entropies: per-token entropies (nats) of the current segment; h_init: the rollout's
    initial entropy if already known (else the mean of this segment's first init_tokens).
    """
    if h_init is None:
        if len(entropies) < init_tokens + window:
            return False
        h_init = sum(entropies[:init_tokens]) / init_tokens
    elif len(entropies) < window:
        return False
    recent = sum(entropies[-window:]) / window
    return recent > max(tau_abs, h_init + tau_rel)


def route(partial: str, kind: str) -> str:
    """The agent for a detector-triggered consult (module doc)."""
    if kind == "commit":
        return "verify"
    return "reasoning" if _EQUATION.search(partial) else "knowledge"


@dataclass
class Detector:
    window: int = 8
    init_tokens: int = 8
    tau_abs: float = 1.5
    tau_rel: float = 0.5
    use_entropy: bool = True
    verify_before_commit: bool = True
    every_line: bool = False

    def check(self, text: str, segment_entropies: list[float], h_init: float | None,
              since: int = 0) -> Trigger | None:
        """The trigger that fires on the rollout text so far, or None.

        text: the policy's text since the start of its reply (feedback included);
        segment_entropies: entropies of the policy tokens since the last consult; the entropy
        trigger looks at every window ending after the first `since` of them (the tokens of
        the line just ended) and fires only where `text` ends a line.
        """
        m = _CLOSED_TAG.search(text)
        if m:
            return Trigger("tag", TAGS[m.group(1)], m["query"].strip())
        if self.verify_before_commit and text.endswith("\n") and _ends_with_commit(text):
            return Trigger("commit", "verify", "")
        if self.every_line and (not text or text.endswith("\n")):
            return Trigger("line", "reasoning", "")
        if text.endswith("\n") and self.entropy_due(segment_entropies, h_init, since):
            return Trigger("entropy", route(text, "entropy"), "")
        return None

    def entropy_due(self, segment_entropies: list[float], h_init: float | None, since: int = 0) -> bool:
        """Whether the entropy trigger fires in a window ending after the first `since` tokens."""
        return self.use_entropy and any(
            entropy_fires(segment_entropies[:t], self.window, self.init_tokens, self.tau_abs, self.tau_rel, h_init)
            for t in range(since + 1, len(segment_entropies) + 1))


def _ends_with_commit(text: str) -> bool:
    last = text.rstrip("\n").rsplit("\n", 1)[-1] + "\n"
    m = COMMITTED.search(last)
    return m is not None and m.end() == len(last)


# --- measuring the detector (notebook 01) ---------------------------------------------------

def first_error_char(text: str, answer: str) -> int | None:
    """Where the reasoning first goes wrong: the start of the first false equation, else of
    a committed wrong answer; None when neither occurs (a correct or unfinished solution)."""
    wrong = next(wrong_equations(text), None)  # numbers read as the rule Verify agent reads them
    if wrong is not None:
        return wrong[0].start()
    committed = extract_answer(text)
    if committed is not None and not is_equivalent(committed, answer):
        return _ANSWER.search(text).start() if _ANSWER.search(text) else 0
    return None


def char_to_token(tokenizer, ids: list[int], char: int) -> int:
    """Index of the token whose decoded text covers character `char` of decode(ids)."""
    for k in range(1, len(ids) + 1):
        if len(tokenizer.decode(ids[:k], skip_special_tokens=True)) > char:
            return k - 1
    return len(ids) - 1


def first_entropy_firing(entropies: list[float], window: int, init_tokens: int, tau_abs: float,
                         tau_rel: float) -> int | None:
    """Token index at which the entropy trigger first fires on this trace, or None — as in a
    rollout (consult.Assist): H_init is fixed by the first init_tokens tokens, then every full
    window counts, whether it overlaps those tokens or not (docs/methods.md §3.2)."""
    if len(entropies) < init_tokens:
        return None
    h_init = sum(entropies[:init_tokens]) / init_tokens
    return next((t - 1 for t in range(window, len(entropies) + 1)
                 if entropy_fires(entropies[:t], window, init_tokens, tau_abs, tau_rel, h_init)), None)


def precision_recall(fires: list[int | None], errors: list[int | None]) -> dict:
    """'Fires before the first error' as a detector of errors, per trace.

    TP: an error and a firing at or before it. FP: a firing with no error after it.
    FN: an error with no firing at or before it.
    """
    tp = sum(e is not None and f is not None and f <= e for f, e in zip(fires, errors))
    fp = sum(f is not None and (e is None or f > e) for f, e in zip(fires, errors))
    fn = sum(e is not None and (f is None or f > e) for f, e in zip(fires, errors))
    return {"tp": tp, "fp": fp, "fn": fn,
            "precision": tp / (tp + fp) if tp + fp else float("nan"),
            "recall": tp / (tp + fn) if tp + fn else float("nan")}


def describe_detection(default: dict, sweep: list[dict], errors: list[int | None], window: int,
                       init_tokens: int) -> str:
    """What notebook 01's measurement says, from its own numbers: the config's thresholds
    (`default`, a precision_recall dict), the sweep's ranges, and how many first errors come
    before the earliest token the detector can fire at (first_entropy_firing's rule)."""
    n_err = sum(e is not None for e in errors)
    fires = default["tp"] + default["fp"]
    fmt = lambda x: "undefined" if x != x else f"{x:.2f}"  # noqa: E731 (nan: no firing, or no error)
    text = (f"at the config's thresholds the entropy detector fired {fires} time(s) on {len(errors)} rollouts: at "
            f"or before {default['tp']} of the {n_err} first errors (recall {fmt(default['recall'])}), "
            f"{default['fp']} time(s) with no error at or after it (precision {fmt(default['precision'])})")
    rec = [s["recall"] for s in sweep if s["recall"] == s["recall"]]
    pre = [s["precision"] for s in sweep if s["precision"] == s["precision"]]
    if not any(s["tp"] for s in sweep):
        text += "; no threshold of the sweep fires before any error"
    else:
        text += (f"; over the sweep recall runs {min(rec):.2f}–{max(rec):.2f} and precision "
                 f"{min(pre):.2f}–{max(pre):.2f}")
    earliest = max(init_tokens, window) - 1
    early = sum(e is not None and e < earliest for e in errors)
    if early:
        text += (f". It cannot fire before token {earliest} (it needs detector_init_tokens and a full "
                 f"detector_window), and "
                 f"{early} of the {n_err} errors come earlier: a detector of these settings cannot anticipate them "
                 "(a smaller detector_init_tokens or detector_window lets it fire sooner)")
    return text
