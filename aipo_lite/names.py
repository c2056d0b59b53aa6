"""Names and bounds the config validates against: the synth suite's tiers, the config's tier
fields, the agent backends, the least temperature and each numeric field's lower bound. Plain
data, so that building a Config imports nothing heavy."""

TIERS = ("add1d", "add2d", "mul1x2", "add3", "expr3", "units")
# the controlled-bottleneck tiers (data/make_data.py): valid names, not in the defaults
BOTTLENECK_TIERS = ("recall", "recall_t", "recall_use")
TIER_FIELDS = ("train_tiers", "eval_tiers", "probe_tiers", "heldout_tiers")
AGENT_BACKENDS = ("rule", "hf", "openai")  # agents.make_agent's backends
REPORT_BACKENDS = ("tensorboard", "trackio", "wandb")  # training.tracking's experiment trackers
MIN_TEMPERATURE = 0.01
LOWER_BOUNDS = {  # Config fields and the least value each may take
    "lora_r": 0, "num_threads": 0, "agent_concurrency": 1, "guidance_fade_steps": 0,
    "rollout_max_new_tokens": 1, "detector_tau_abs": 0, "max_skipped_in_row": 1,
    "agent_max_new_tokens": 1, "boundary_problems_per_tier": 1, "boundary_n": 1, "grid_eval_n": 1,
    "eval_problems_per_tier": 0, "eval_n": 1, "eval_max_new_tokens": 1, "eval_batch_size": 1,
    "bootstrap_samples": 0, "grid_eval_problems_per_tier": 0, "g_ind": 0, "g_asst": 0,
    "consult_budget": 0, "agent_retries": 0, "probe_problems_per_tier": 0, "arpo_branches": 0,
    "arpo_beta": 0, "rrl_groups": 0, "aapo_clip_low": 0, "aapo_clip_high": 0, "arpo_k": 1,
    "arpo_beam": 1, "rrl_capacity": 1, "rrl_max_age": 1, "rrl_max_replays": 1, "detector_window": 1,
    "detector_init_tokens": 1, "clip_eps_low": 0, "clip_eps_high": 0, "kl_beta": 0, "weight_decay": 0,
    "max_grad_norm": 0, "train_steps": 1, "prompts_per_step": 1, "train_problems_per_tier": 0, "micro_batch_size": 1,
    "train_eval_problems_per_tier": 1, "train_eval_n": 1, "train_eval_every": 0,
    "checkpoint_every": 0, "log_completions_every": 0}

# Metric groups (docs/metrics.md): every name in metrics.jsonl is `<group>/<name>` except `step`
# and `nonfinite`. The trainer computes short names and writes them through metric_name.
SPEED_METRICS = ("rollout_s", "update_s", "step_time", "tokens_per_s")
UNGROUPED = ("step", "nonfinite")


def metric_name(short: str) -> str:
    """`reward_mean` -> `train/reward_mean`, `step_time` -> `speed/step_time`; names already
    grouped (`eval/...` from the held-out evaluation, `agents/...`) stay."""
    if short in UNGROUPED or "/" in short:
        return short
    return f"speed/{short}" if short in SPEED_METRICS else f"train/{short}"


def grouped(metrics: dict) -> dict:
    """A record with every name through metric_name (order kept)."""
    return {metric_name(k): v for k, v in metrics.items()}
