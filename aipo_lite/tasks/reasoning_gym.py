"""reasoning-gym (PyPI `reasoning-gym`, Apache-2.0; the `gym` extra) as a task source.

    Config(tasks="reasoning_gym:chain_sum,leg_counting",
           task_settings={"chain_sum": {"size": 300, "test_size": 60, "min_terms": 2, "max_terms": 3}})

Each dataset is a tier named by the dataset (`train_tiers=["chain_sum"]`). Its items come from
reasoning-gym's own seeded generator, which draws item i from seed b + i: train takes seeds
[b, b + size) and test [b + size, b + size + test_size) (b = 1000003 s, s = the dataset's `seed`
setting, default `task_split_seed`), and a test item whose question also appears in train is
dropped, so the splits never share an item. `size` (default
300) and `test_size` (default 60) are the items per split; every other setting is passed to the
dataset's config (its difficulty fields, e.g. `min_terms`, `max_digits`); a bad one raises a
ConfigError naming `task_settings`.

**Reward**: the kit's policy ends with `Answer: <number>`; the kit extracts that number as for
its own tasks (`rewards.extract_answer`, thousands separators removed) and hands it to the
dataset's own `score_answer`, which decides: reward 1 when it returns 1.0, else 0 (some
datasets give partial credit for a parseable wrong answer: it counts as wrong). Only datasets
whose answers are numbers fit that format; others raise a ConfigError naming `tasks`.

**Agents**: the LLM agents (`hf`, `openai`) see the item's answer as privileged context, like
any task. Rule agents need reference steps: arithmetic items whose metadata gives the expression
(`chain_sum`, `basic_arithmetic`, `products`) get left-to-right steps ("4 - 1 = 3"); other
datasets have none, and training them with rule agents raises a ConfigError naming `agent_backend`.
"""

from __future__ import annotations

import re

from aipo_lite.config import ConfigError

PREFIX = "reasoning_gym:"
_DEFAULT_SIZE, _DEFAULT_TEST = 300, 60
_STEP = re.compile(r"\s*([-+*])\s*(-?\d+)")
_datasets: dict = {}  # (name, settings) -> a dataset object, for its score_answer


def is_source(source) -> bool:
    return str(source).startswith(PREFIX)


def names(source: str) -> list[str]:
    out = [n.strip() for n in str(source)[len(PREFIX):].split(",") if n.strip()]
    if not out:
        raise ConfigError(f"tasks={source!r} names no dataset: e.g. 'reasoning_gym:chain_sum,leg_counting'")
    return out


def _make(name: str, size: int, seed: int, settings: dict):
    try:
        import reasoning_gym
    except ImportError as e:
        raise ImportError("tasks='reasoning_gym:...' needs reasoning-gym: pip install -e '.[gym]'") from e
    from reasoning_gym.factory import DATASETS

    if name not in DATASETS:
        raise ConfigError(f"tasks: {name!r} is not a reasoning-gym dataset; some are: {sorted(DATASETS)[:12]} …")
    try:
        return reasoning_gym.create_dataset(name, size=size, seed=seed, **settings)
    except (TypeError, ValueError, AssertionError) as e:
        raise ConfigError(f"task_settings[{name!r}]={settings!r}: {e}") from e


def steps_of(entry: dict) -> tuple[str, ...]:
    """Left-to-right steps of an arithmetic item from its metadata's expression (else ())."""
    expr = str(entry.get("metadata", {}).get("expression", ""))
    m = re.fullmatch(r"\s*(-?\d+)((?:\s*[-+*]\s*-?\d+)+)\s*", expr)
    if not m or ("*" in expr and re.search(r"[-+]", m[2])):  # mixed precedence: not left to right
        return ()
    value, steps = int(m[1]), []
    for op, num in _STEP.findall(m[2]):
        new = {"+": value + int(num), "-": value - int(num), "*": value * int(num)}[op]
        steps.append(f"{value} {op} {num} = {new}")
        value = new
    return tuple(steps)


def load(source: str, split: str, settings: dict, split_seed: int) -> list:
    """The tasks of one split (module doc)."""
    from aipo_lite.tasks.loading import Task
    from aipo_lite.tasks.rewards import scorable

    tasks = []
    for name in names(source):
        s = dict(settings.get(name, {}))
        size, test_size, seed = s.pop("size", _DEFAULT_SIZE), s.pop("test_size", _DEFAULT_TEST), s.pop("seed", split_seed)
        # reasoning-gym draws item i from seed + i: train takes seeds [b, b + size), test [b + size, b + size + test_size)
        base = seed * 1_000_003
        train = _make(name, size, base, s)
        items = [train[i] for i in range(size)]
        if split == "test":
            seen, test = {x["question"] for x in items}, _make(name, test_size, base + size, s)
            items = [x for x in (test[i] for i in range(test_size)) if x["question"] not in seen]
        for i, x in enumerate(items):
            answer = str(x["answer"]).strip()
            if not scorable(answer):
                raise ConfigError(f"tasks: reasoning-gym dataset {name!r} answers {answer!r}, not a number; the kit's "
                                  "reward reads 'Answer: <number>' (choose datasets with numeric answers)")
            tasks.append(Task(f"{name}-{split}-{i:04d}", x["question"], answer, steps_of(x), (), name,
                              {"reasoning_gym": name, "settings": s, "entry": x}))
    return tasks


def reward(task, extracted: str | None) -> float:
    """The dataset's own score_answer on the kit's extracted answer: 1.0 only for full credit."""
    if extracted is None:
        return 0.0
    name, settings = task.meta["reasoning_gym"], task.meta["settings"]
    key = (name, repr(sorted(settings.items())))
    if key not in _datasets:
        _datasets[key] = _make(name, 1, 0, dict(settings))
    return float(_datasets[key].score_answer(extracted.replace(",", ""), task.meta["entry"]) >= 1.0)
