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
    # the core: config, model, tasks, agents, rollouts, training, evaluation
    "PROFILES": "presets", "ARMS": "arms",
    "load_policy": "model.policy", "Policy": "model.policy",
    "load_tasks": "tasks.loading", "tasks_from_config": "tasks.loading", "Task": "tasks.loading",
    "by_tier": "tasks.loading", "agent_free_prompt": "tasks.prompts",
    "score": "tasks.rewards", "extract_answer": "tasks.rewards",
    "sample": "engine.sampling",
    "make_agent": "agents.base", "agents_from_config": "rollout.groups", "detector_from_config": "rollout.groups",
    "rollout_group": "rollout.groups", "Rollout": "records", "TrainSeq": "records", "pass_at_1_table": "rollout.groups",
    "Detector": "rollout.detector", "char_to_token": "rollout.detector",
    "first_entropy_firing": "rollout.detector", "first_error_char": "rollout.detector",
    "precision_recall": "rollout.detector", "describe_detection": "rollout.detector",
    "to_train_seqs": "methods.views",
    "train": "training.trainer", "TrainingStopped": "training.trainer",
    "evaluate": "evaluation.agent_free", "EvalResult": "evaluation.agent_free", "pass_at_k": "evaluation.agent_free",
    "read_metrics": "training.runinfo", "CheckpointError": "training.checkpoint",
    # experiments: arms, trained runs, the grid, plots (what the notebooks show)
    "arm_config": "experiments.runs", "load_trained": "experiments.runs", "solved_table": "experiments.runs",
    "wall_time": "experiments.runs", "extend_to_wall_time": "experiments.runs", "weight_probe": "experiments.runs",
    "grid": "experiments.grid", "headline": "experiments.headline", "claims": "experiments.claims",
    **{name: "experiments.plots" for name in (
        "plot_pass_at_k", "plot_entropy_traces", "plot_precision_recall", "plot_weight_curves",
        "plot_training_curves", "plot_grid_curves", "plot_grid_table", "provenance_html", "plot_headline", "plot_claims")},
    # integrations: TRL (needs the `trl` extra)
    "trl_bridge": "integrations.trl_bridge", "compare_step": "integrations.trl_compare",
    "make_tiny_model": "integrations.trl_compare", "random_adapter": "integrations.trl_compare",
    "agrees": "integrations.trl_compare",
}
_MODULES = {"grid", "headline", "claims", "trl_bridge"}  # public names that are modules, not attributes of one
_RENAMED = {"tasks_from_config": "from_config"}
__all__ = ["Config", "ConfigError", *_EXPORTS]


def __getattr__(name: str):
    if name in _EXPORTS:
        module = importlib.import_module(f"{__name__}.{_EXPORTS[name]}")
        value = module if name in _MODULES else getattr(module, _RENAMED.get(name, name))
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
