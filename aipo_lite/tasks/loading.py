"""Verifiable tasks: the built-in `synth` suite (data/synth, made by data/make_data.py) or user JSONL.

A task is a question with a checkable answer, plus privileged fields only agents may see:
`steps` (a reference solution) and `facts` (what the solution needs to know).

    tasks = load_tasks("synth", split="test", tiers=["add3", "expr3"])
    tasks = load_tasks("gsm8k/", "train")            # a folder with train.jsonl and test.jsonl
    tasks = load_tasks("gsm8k_{split}.jsonl", "test")   # one file per split
    tasks = load_tasks("mine.jsonl", "test", fields={"question": "problem", "answer": "solution"})
    tasks = load_tasks("gsm8k_hf/", "test")          # datasets' save_to_disk folder (a DatasetDict)
    tasks = load_tasks("gsm8k/main/", "train")       # parquet as on the hub: train-*.parquet, test-*.parquet

Training never sees held-out problems: every source has two disjoint splits. One JSONL file
is split by its rows' `split` field ("train"/"test") when it has one, else by a seeded hash
of each task id (`test_fraction` of the tasks are test; the same ones on every machine,
whatever the row order). GSM8K rows (`"answer": "...#### 42"`) are recognised. A Hugging Face
dataset (a `save_to_disk` folder or parquet files) is read through `datasets` with its own
train/test splits, and its rows get the same field mapping and validation as JSONL rows.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections import defaultdict
from dataclasses import dataclass, field
from pathlib import Path

from aipo_lite.config import TIER_FIELDS, TIERS, ConfigError
from aipo_lite.tasks import reasoning_gym
from aipo_lite.tasks.hf_datasets import hf_rows, hf_source
from aipo_lite.tasks.rewards import scorable

DATA_DIR = Path(os.environ.get("AIPO_LITE_DATA", Path(__file__).resolve().parents[2] / "data"))
SUITES = {"synth": DATA_DIR / "synth"}
SPLITS = ("train", "test")


class UnknownTiers(ValueError):
    """Tiers asked for that the task source does not have."""


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
               limit_per_tier: int = 0, fields: dict | None = None, test_fraction: float = 0.2,
               split_seed: int = 0, settings: dict | None = None) -> list[Task]:
    """Tasks of one split from a built-in suite name, a folder, a '{split}' path or a JSONL file.

    split: 'train' or 'test' (see the module doc for how a single file is split).
    tiers: keep only these `kind`s (None or [] = all); an unknown tier raises.
    limit_per_tier: keep the first N of each tier (0 = all), in file order.
    fields: map our field name -> the name in your file, e.g. {"question": "problem"}.
    settings: per-dataset settings of a `reasoning_gym:` source (tasks/reasoning_gym.py).
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r} is not valid; choose one of {list(SPLITS)}")
    hf = None if str(source) in SUITES or reasoning_gym.is_source(source) else hf_source(source, split)
    if reasoning_gym.is_source(source):  # generated items, split by seed (no file)
        path, whole_file = Path(str(source)), False
        tasks = reasoning_gym.load(str(source), split, settings or {}, split_seed)
    elif hf is not None:  # a Hugging Face dataset folder (save_to_disk) or parquet files
        path, whole_file = Path(str(source)), False
        tasks = [_parse_obj(f"{source} [{split}] row {i}", row, fields or {}, f"{split}-{i}")
                 for i, row in enumerate(hf_rows(hf, source, split), start=1)]
    else:
        path, whole_file = _split_path(source, split)
        tasks = [_parse_row(path, i, line, fields or {})
                 for i, line in enumerate(path.read_text().splitlines(), start=1) if line.strip()]
    if not tasks:
        raise TaskFormatError(f"{path}: no tasks (the file is empty)")
    _check_unique_ids(path, tasks)
    if whole_file:
        tasks = _one_split(path, tasks, split, fields or {}, test_fraction, split_seed)
    if tiers:
        known = sorted({t.kind for t in tasks})
        unknown = [t for t in tiers if t not in known]
        if unknown:
            raise UnknownTiers(f"tiers={unknown} not found in {path} ({split}); it has {known}")
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


def from_config(cfg, split: str, tiers=None, limit_per_tier: int = 0, field: str | None = None) -> list[Task]:
    """load_tasks with the config's source, field mapping and split settings. `tiers` is the
    value of the config field `field` (default: the tier field of cfg that `tiers` is): with a
    task source other than the synth suite, the default list (every synth tier) means all
    kinds; tiers the source lacks raise a ConfigError naming the field, before any work."""
    field = field or next((n for n in TIER_FIELDS if getattr(cfg, n) is tiers), "tiers")
    if split == "train" and not limit_per_tier:
        limit_per_tier = cfg.train_problems_per_tier
    if cfg.tasks != "synth" and list(tiers or []) == list(TIERS):
        tiers = []
    try:
        tasks = load_tasks(cfg.tasks, split, tiers, limit_per_tier, fields=cfg.task_fields,
                           test_fraction=cfg.task_test_fraction, split_seed=cfg.task_split_seed,
                           settings=cfg.task_settings)
    except UnknownTiers as e:
        raise ConfigError(f"{field}={list(tiers)!r}: {e}; set {field}=[] for all kinds") from e
    stepless = sorted({t.kind for t in tasks if not t.steps})
    if reasoning_gym.is_source(cfg.tasks) and split == "train" and cfg.agent_backend == "rule" and cfg.g_asst and stepless:
        raise ConfigError(f"agent_backend='rule': the rule agents need reference steps, and reasoning-gym's {stepless} "
                          "give none; use agent_backend='hf' or 'openai' (the answer is their privileged context), or g_asst=0")
    return tasks


def _split_path(source, split: str) -> tuple[Path, bool]:
    """(file to read, whether it holds both splits)."""
    if str(source) in SUITES:
        path = SUITES[str(source)] / f"{split}.jsonl"
        if not path.exists():  # an installed (non-editable) package: the data folder is the checkout's
            raise FileNotFoundError(f"tasks={str(source)!r}: the suite is expected at {path.parent} (the data/ folder of a "
                                    "checkout of aipo_lite); set AIPO_LITE_DATA to such a data/ folder")
        return path, False
    if "{split}" in str(source):
        path = Path(str(source).replace("{split}", split))
        if not path.exists():
            raise FileNotFoundError(f"tasks={str(source)!r}: the {split} file {str(path)!r} does not exist")
        return path, False
    path = Path(source)
    if path.is_dir():
        f = path / f"{split}.jsonl"
        if not f.exists():
            raise FileNotFoundError(f"tasks={str(source)!r} is a folder without {split}.jsonl "
                                    "(a task folder holds train.jsonl and test.jsonl)")
        return f, False
    if not path.exists():
        raise FileNotFoundError(f"tasks={str(source)!r} is neither a built-in suite "
                                f"({list(SUITES)}) nor an existing file or folder")
    return path, True


def _one_split(path: Path, tasks: list[Task], split: str, fields: dict, test_fraction: float,
               split_seed: int) -> list[Task]:
    """This split's share of a file that holds both: by the `split` field, else a seeded hash."""
    key = fields.get("split", "split")
    marked = [key in t.meta for t in tasks]
    if any(marked):
        bad = next((t for t in tasks if t.meta.get(key, "train") not in SPLITS), None)
        if bad is not None:
            raise TaskFormatError(f"{path}: task {bad.id!r}: field {key!r} must be one of {list(SPLITS)}, "
                                  f"got {bad.meta[key]!r}")
        if not all(marked):
            i = marked.index(False)
            raise TaskFormatError(f"{path}: task {tasks[i].id!r} has no field {key!r} but others do "
                                  "(give every row a split, or none)")
        kept = [t for t in tasks if t.meta[key] == split]
        how = f"by its {key!r} field"
    else:
        if not 0 < test_fraction < 1:
            raise ValueError(f"task_test_fraction={test_fraction!r} must be in (0, 1)")
        kept = [t for t in tasks if (_unit_hash(f"{split_seed}:{t.id}") < test_fraction) == (split == "test")]
        how = f"by hashing task ids (test fraction {test_fraction}, seed {split_seed})"
    if not kept:
        raise TaskFormatError(f"{path}: split {split!r} is empty when the file is split {how}; "
                              f"it has {len(tasks)} task(s)")
    return kept


def _unit_hash(text: str) -> float:
    return int(hashlib.sha256(text.encode()).hexdigest()[:15], 16) / 16**15


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
    return _parse_obj(where, row, fields, f"{path.stem}-{lineno}")


def _parse_obj(where: str, row, fields: dict, default_id: str) -> Task:
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
    if not scorable(answer):
        raise TaskFormatError(f"{where}: field {fields.get('answer', 'answer')!r} value {answer!r} cannot be "
                              "scored: the reward reads a number (e.g. 42, -3.5, 3/4, \\frac{3}{4})")
    facts = get("facts", False, [])
    for name, value in (("steps", steps), ("facts", facts)):
        if not isinstance(value, list) or not all(isinstance(s, str) for s in value):
            raise TaskFormatError(f"{where}: field {fields.get(name, name)!r} must be a list of strings")
    kind = get("kind", False, "default")
    if not isinstance(kind, str) or not kind:
        raise TaskFormatError(f"{where}: field {fields.get('kind', 'kind')!r} must be a non-empty string")
    task_id = get("id", False, default_id)
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
