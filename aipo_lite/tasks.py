"""Verifiable tasks: the built-in `synth` suite (data/synth, made by data/make_data.py) or user JSONL.

A task is a question with a checkable answer, plus privileged fields only agents may see:
`steps` (a reference solution) and `facts` (what the solution needs to know).

    tasks = load_tasks("synth", split="test", tiers=["add3", "expr3"])
    tasks = load_tasks("gsm8k_test.jsonl")                      # GSM8K rows: "... #### 42"
    tasks = load_tasks("mine.jsonl", fields={"question": "problem", "answer": "solution"})
"""

from __future__ import annotations

import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

DATA_DIR = Path(os.environ.get("AIPO_LITE_DATA", Path(__file__).resolve().parent.parent / "data"))
SUITES = {"synth": DATA_DIR / "synth"}
SPLITS = ("train", "test")


class TaskFormatError(ValueError):
    """A task row is malformed; the message names the file, line and field."""


@dataclass(frozen=True)
class Task:
    id: str
    question: str
    answer: str
    steps: tuple[str, ...] = ()
    facts: tuple[str, ...] = ()
    kind: str = "default"
    meta: dict = field(default_factory=dict, compare=False, hash=False)


def load_tasks(source: str | os.PathLike = "synth", split: str = "test", tiers=None,
               limit_per_tier: int = 0, fields: dict | None = None) -> list[Task]:
    """Tasks from a built-in suite name or a JSONL path.

    split: 'train' or 'test' (built-in suites only; a path is read as is).
    tiers: keep only these `kind`s (None or [] = all); an unknown tier raises.
    limit_per_tier: keep the first N of each tier (0 = all), in file order.
    fields: map our field name -> the name in your file, e.g. {"question": "problem"}.
    """
    if str(source) in SUITES:
        if split not in SPLITS:
            raise ValueError(f"split={split!r} is not valid; choose one of {list(SPLITS)}")
        path = SUITES[str(source)] / f"{split}.jsonl"
    else:
        path = Path(source)
        if not path.exists():
            raise FileNotFoundError(f"tasks={str(source)!r} is neither a built-in suite "
                                    f"({list(SUITES)}) nor an existing file")
    tasks = [_parse_row(path, i, line, fields or {})
             for i, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    _check_unique_ids(path, tasks)
    if tiers:
        known = sorted({t.kind for t in tasks})
        unknown = [t for t in tiers if t not in known]
        if unknown:
            raise ValueError(f"tiers={unknown} not found in {path}; it has {known}")
        tasks = [t for t in tasks if t.kind in set(tiers)]
    if limit_per_tier:
        counts: dict[str, int] = defaultdict(int)
        kept = []
        for t in tasks:
            if counts[t.kind] < limit_per_tier:
                counts[t.kind] += 1
                kept.append(t)
        tasks = kept
    return tasks


def by_tier(tasks: list[Task]) -> dict[str, list[Task]]:
    groups: dict[str, list[Task]] = defaultdict(list)
    for t in tasks:
        groups[t.kind].append(t)
    return dict(groups)


_GSM8K = re.compile(r"^(?P<work>.*?)\n?####\s*(?P<answer>.+?)\s*$", re.S)
_CALC = re.compile(r"<<[^>]*>>")  # GSM8K calculator annotations


def _parse_row(path: Path, lineno: int, line: str, fields: dict) -> Task:
    where = f"{path}:{lineno}"
    try:
        row = json.loads(line)
    except json.JSONDecodeError as e:
        raise TaskFormatError(f"{where}: not valid JSON ({e.msg})") from None
    if not isinstance(row, dict):
        raise TaskFormatError(f"{where}: a row must be a JSON object, got {type(row).__name__}")

    def get(name: str, required: bool, default=None):
        key = fields.get(name, name)
        if key not in row:
            if required:
                raise TaskFormatError(f"{where}: missing field {key!r}"
                                      + (f" (mapped from {name!r})" if key != name else ""))
            return default
        return row[key]

    question = get("question", True)
    if not isinstance(question, str) or not question.strip():
        raise TaskFormatError(f"{where}: field {fields.get('question', 'question')!r} must be a non-empty string")
    answer = get("answer", True)
    if isinstance(answer, bool) or not isinstance(answer, (str, int, float)):
        raise TaskFormatError(f"{where}: field {fields.get('answer', 'answer')!r} must be a string or number")
    answer = str(answer).strip()
    steps = get("steps", False, [])
    m = _GSM8K.match(answer)
    if m:  # GSM8K: worked solution, then '#### final answer'
        if not steps:
            steps = [_CALC.sub("", s).strip() for s in m["work"].splitlines() if s.strip()]
        answer = m["answer"].replace(",", "")
    if not answer:
        raise TaskFormatError(f"{where}: field {fields.get('answer', 'answer')!r} is empty")
    facts = get("facts", False, [])
    for name, value in (("steps", steps), ("facts", facts)):
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise TaskFormatError(f"{where}: field {fields.get(name, name)!r} must be a list of strings")
    kind = get("kind", False, "default")
    if not isinstance(kind, str) or not kind:
        raise TaskFormatError(f"{where}: field {fields.get('kind', 'kind')!r} must be a non-empty string")
    task_id = get("id", False, f"{path.stem}-{lineno}")
    if not isinstance(task_id, (str, int)) or isinstance(task_id, bool):
        raise TaskFormatError(f"{where}: field {fields.get('id', 'id')!r} must be a string or int")
    used = {fields.get(n, n) for n in ("id", "question", "answer", "steps", "facts", "kind")}
    meta = {k: v for k, v in row.items() if k not in used}
    return Task(str(task_id), question.strip(), answer, tuple(steps), tuple(facts), kind, meta)


def _check_unique_ids(path: Path, tasks: list[Task]) -> None:
    seen: set[str] = set()
    for t in tasks:
        if t.id in seen:
            raise TaskFormatError(f"{path}: field 'id' value {t.id!r} appears twice")
        seen.add(t.id)


def load_knowledge(path: str | os.PathLike | None = None) -> list[dict]:
    """Rows of data/knowledge.jsonl: {id, text, type} facts and rules for the Knowledge agent."""
    path = Path(path) if path else DATA_DIR / "knowledge.jsonl"
    rows = []
    for i, line in enumerate(path.read_text().splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise TaskFormatError(f"{path}:{i}: not valid JSON ({e.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("text"), str):
            raise TaskFormatError(f"{path}:{i}: missing field 'text'")
        rows.append(row)
    return rows
