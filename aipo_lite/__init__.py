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
    "load_policy": "model.policy", "Policy": "model.policy",
    "load_tasks": "tasks.loading", "tasks_from_config": "tasks.loading", "Task": "tasks.loading",
    "score": "tasks.rewards",
    "sample": "engine.sampling",
    "make_agent": "agents.base", "agents_from_config": "rollout.groups", "detector_from_config": "rollout.groups",
    "rollout_group": "rollout.groups", "Rollout": "rollout.groups",
    "train": "training.trainer", "TrainingStopped": "training.trainer",
    "evaluate": "evaluation.agent_free", "EvalResult": "evaluation.agent_free", "pass_at_k": "evaluation.agent_free",
    "load_trained": "experiments.runs", "read_metrics": "training.runinfo",
    "CheckpointError": "training.checkpoint",
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
