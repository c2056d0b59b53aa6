"""aipo_lite: a notebook-first research kit for AIPO (RLVR with agent-guided exploration), with
ARPO, AAPO and RRL as switchable parts of the same trainer.

    from aipo_lite import Config, load_policy, load_tasks, evaluate, rollout_group, make_agent, train

The public names load lazily (PEP 562): `aipo_lite.Config(...)` imports neither torch nor
transformers; the training stack loads on first use of a name that needs it. Command line:
`python -m aipo_lite train|eval|grid|notebooks|trl ...` (also installed as `aipo-lite`).
"""

from __future__ import annotations

import importlib

from .config import Config, ConfigError

_EXPORTS = {  # public name -> the module that defines it, imported on first use
    "PROFILES": "config", "ARMS": "arms",
    "load_policy": "policy", "Policy": "policy",
    "load_tasks": "tasks", "tasks_from_config": "tasks", "Task": "tasks",
    "score": "rewards",
    "sample": "sampling",
    "make_agent": "agents", "agents_from_config": "rollout", "detector_from_config": "rollout",
    "rollout_group": "rollout", "Rollout": "rollout",
    "train": "trainer", "TrainingStopped": "trainer",
    "evaluate": "evaluation", "EvalResult": "evaluation", "pass_at_k": "evaluation",
    "load_trained": "experiments", "read_metrics": "runinfo",
    "CheckpointError": "checkpoint",
}
_RENAMED = {"tasks_from_config": "from_config"}
__all__ = ["Config", "ConfigError", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), _RENAMED.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
