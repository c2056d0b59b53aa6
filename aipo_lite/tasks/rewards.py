"""Verifiable reward: 1.0 if the completion's final answer equals the reference, else 0.0.

Extraction (`extract_answer`):
- strict (default): the first committed answer, i.e. the first `Answer: X` (case-insensitive,
  markdown bold allowed) or `\\boxed{X}`, whichever comes first. The policy is taught to end
  with it, so whatever it writes after committing (a small model often rambles on into a new
  made-up question) does not count, and listing several answers gains nothing.
- lenient: as strict; if nothing is committed, the last number in the completion.
X is reduced to its first number (`1,234`, `-5`, `0.5`, `3/4`, `\\frac{3}{4}`); a trailing
period or `$...$` around it is ignored. Equivalence (`0.75` == `3/4`, `1,234` == `1234`) is
decided by math-verify.
"""

from __future__ import annotations

import re
import threading

from math_verify import parse, verify

_NUM = r"-?(?:\d{1,3}(?:,\d{3})+|\d+)(?:\.\d+)?(?:\s*/\s*\d+)?"
_FRAC = r"-?\\[dt]?frac\{\s*-?\d+\s*\}\{\s*-?\d+\s*\}"
_NUMBER = re.compile(rf"{_FRAC}|{_NUM}")
_ANSWER = re.compile(r"\**answer\**\s*[:=]\**\s*(?P<rest>[^\n]*)", re.I)
_BOXED = re.compile(r"\\boxed\s*\{")
# A finished commitment: an answer line holding a digit and its newline, or a closed \boxed{..}.
COMMITTED = re.compile(r"\**answer\**\s*[:=][^\n]*\d[^\n]*\n|\\boxed\s*\{[^{}]*\d[^{}]*\}", re.I)


def _boxed_content(text: str, start: int) -> str:
    depth, i = 1, start
    while i < len(text) and depth:
        depth += {"{": 1, "}": -1}.get(text[i], 0)
        i += 1
    return text[start:i - 1] if depth == 0 else text[start:]


def _first_number(text: str) -> str | None:
    m = _NUMBER.search(text.replace("\u2212", "-"))
    return m.group(0) if m else None


def extract_answer(completion: str, mode: str = "strict") -> str | None:
    """The answer string the completion commits to, or None. See the module doc."""
    if mode not in ("strict", "lenient"):
        raise ValueError(f"reward_mode={mode!r} is not valid; choose one of ['strict', 'lenient']")
    candidates = []
    m = _ANSWER.search(completion)
    if m:
        candidates.append((m.start(), _first_number(m["rest"])))
    b = _BOXED.search(completion)
    if b:
        candidates.append((b.start(), _first_number(_boxed_content(completion, b.end()))))
    candidates = [c for c in candidates if c[1] is not None]
    if candidates:
        return min(candidates)[1]
    if mode == "lenient":
        numbers = _NUMBER.findall(completion.replace("\u2212", "-"))
        return numbers[-1] if numbers else None
    return None


def is_equivalent(predicted: str, reference: str) -> bool:
    """math-verify equivalence of two answer strings (numbers, fractions, LaTeX)."""
    pred = predicted.replace(",", "").replace(" ", "")
    ref = str(reference).replace(",", "").replace(" ", "")
    if pred == ref:
        return True
    # math-verify's timeouts use SIGALRM, which only works in the main thread.
    timeout = 5 if threading.current_thread() is threading.main_thread() else None
    gold = parse(f"${ref}$", parsing_timeout=timeout)
    target = parse(f"${pred}$", parsing_timeout=timeout)
    return bool(gold and target and verify(gold, target, timeout_seconds=timeout))


def score(completion: str, answer, mode: str = "strict") -> float:
    """1.0 if the completion's committed answer equals `answer`, else 0.0."""
    predicted = extract_answer(completion, mode)
    return float(predicted is not None and is_equivalent(predicted, str(answer)))


def scorable(answer) -> bool:
    """Whether a perfect completion (`Answer: <answer>`) earns the reward: a task source's check."""
    return bool(score(f"Answer: {answer}", answer))


def task_reward(task, completion: str, mode: str = "strict") -> float:
    """The task's reward for a completion: `score` against its answer, or, for a reasoning-gym
    item, that dataset's own score_answer on the extracted answer (tasks/reasoning_gym.py)."""
    if "reasoning_gym" in task.meta:
        from aipo_lite.tasks.reasoning_gym import reward
        return reward(task, extract_answer(completion, mode))
    return score(completion, task.answer, mode)
