"""AIPO through TRL's GRPOTrainer (TRL 1.16): the kit's rollouts, advantages and token loss inside
TRL, and TRL's own machinery everywhere else (accelerate / DDP / DeepSpeed ZeRO-1/2, logging under
TRL's metric names, checkpoints, resume). The kit's trainer (trainer.py) stays the readable
single-device reference; tests/test_trl_bridge.py checks that both give the same loss and LoRA
gradient for the same rollouts, and that two processes train like one.

    trainer = AIPOGRPOTrainer(cfg, policy.model, policy.tokenizer, tasks, args=grpo_config(cfg, "runs/trl"))
    trainer.train()
    accelerate launch --num_processes 2 --cpu -m aipo_lite.integrations.trl_bridge --profile smoke --run-dir runs/trl2

Where it hooks in (TRL 1.16's grpo_trainer.py):
1. Rollouts: `rollout_func`. TRL's RepeatSampler lays out a generation batch as G = g_ind + g_asst
   consecutive copies of each prompt and hands each process a contiguous slice, so a group may be
   split across processes. Copy j of a prompt (global row index mod G) is independent for j < g_ind,
   assisted otherwise (guidance fading moves the cut), so every group has the kit's composition. Each
   process samples its rows with the kit's engine (rollout.rollout_group: agents, consults,
   provenance) from a merged copy of its (identical) weights; with `use_vllm` the independent rows go
   through TRL's own vLLM path instead (written against TRL 1.16, not run here: no GPU or vLLM).
2. Token kinds: the rollouts become the kit's training sequences (views.to_train_seqs: the
   internalized view by default, so the completion TRL sees for an assisted rollout is the agent-free
   prompt's continuation with the agent's lines written in). TRL's 0/1 `env_mask` carries the kit's
   in_loss; the token kinds and agent-span ids travel as two more tensors, `token_kind` and
   `agent_span`, so the loss can give AGENT tokens their agent-token weight (docs/methods.md §3).
3. Advantages: the rewards and roles of the whole generation batch are gathered from all processes
   and given the kit's advantages (trainer.assign_advantages: independent baseline, sft, dapo's
   dropped groups); TRL's own advantages are replaced.
4. Loss: loss.token_loss (the kit's trainer's function), divided by the whole step's sequence and
   token counts and multiplied by the process count, so TRL's sum over accumulation steps and DDP's
   mean over processes give exactly the kit's step loss.

What it cannot do (each raises naming the field): ARPO branches, RRL replay and AAPO (they need the
whole group, a buffer or reference rollouts in one place; TRL scatters a group's rollouts across
processes), guide_only_failed (needs the group's independent rewards before its assisted rows are
sampled), DeepSpeed ZeRO-3 (the engine samples from whole weights).
"""

from __future__ import annotations

import math
import os
from pathlib import Path

import torch

from aipo_lite.config import Config
from aipo_lite.methods.guidance import assisted_per_group
from aipo_lite.methods.loss import token_loss
from aipo_lite.methods.views import to_train_seqs
from aipo_lite.model.policy import Policy, load_policy, resolve_device, resolve_dtype
from aipo_lite.records import Prov, TrainSeq
from aipo_lite.rollout import groups as kit_rollout
from aipo_lite.tasks.loading import from_config
from aipo_lite.tasks.prompts import agent_free_prompt
from aipo_lite.tasks.rewards import task_reward
from aipo_lite.training.tracking import backends
from aipo_lite.training.trainer import assign_advantages

try:
    from trl import GRPOConfig, GRPOTrainer
except ImportError as e:  # pragma: no cover - the extra is missing
    raise ImportError("aipo_lite.integrations.trl_bridge needs TRL: pip install -e '.[trl]' (TRL 1.16)") from e

SUPPORTED_TRL = "1.16"
SPAN_STRIDE = 1000  # agent-span ids are made unique across rows as span + SPAN_STRIDE * row


def check_supported(cfg: Config) -> None:
    """One clear error per method part the bridge does not carry (see the module docstring)."""
    for field, on in (("arpo_branches", cfg.arpo_branches), ("rrl_groups", cfg.rrl_groups),
                      ("guide_only_failed", cfg.guide_only_failed)):
        if on:
            raise ValueError(f"{field}={on!r}: the TRL bridge does not support it (TRL scatters a group's "
                             "rollouts across processes); use the kit's trainer")
    if cfg.advantage == "aapo":
        raise ValueError("advantage='aapo': the TRL bridge does not sample reference rollouts; use the kit's trainer")


def grpo_config(cfg: Config, output_dir: str, num_processes: int | None = None, **overrides) -> GRPOConfig:
    """TRL's GRPOConfig for `cfg`: one optimizer step per kit step (prompts_per_step x G rows over
    all processes, micro-batches of at most micro_batch_size), the kit's optimizer settings
    (AdamW, constant learning rate, grad-norm clip), precision and sampling temperature.
    num_processes: default $WORLD_SIZE (set by accelerate launch / torchrun), else 1."""
    num_processes = num_processes or int(os.environ.get("WORLD_SIZE", "1"))
    g = cfg.g_ind + cfg.g_asst
    rows = cfg.prompts_per_step * g
    if rows % num_processes:
        raise ValueError(f"prompts_per_step={cfg.prompts_per_step}: its {rows} rows per step do not split over "
                         f"{num_processes} processes")
    local = rows // num_processes
    per_device = max(d for d in range(1, min(cfg.micro_batch_size, local) + 1) if local % d == 0)
    device = resolve_device(cfg.device)
    trackers = backends(cfg.report_to)  # the kit's report_to, passed on; wandb offline, as in the kit
    if "wandb" in trackers:
        os.environ.update({k: os.environ.get(k, v) for k, v in (("WANDB_MODE", "offline"), ("WANDB_PROJECT", cfg.report_project))})
    kw = dict(output_dir=output_dir, report_to=trackers or "none", run_name=Path(output_dir).name,
              num_generations=g, per_device_train_batch_size=per_device,
              gradient_accumulation_steps=local // per_device, max_steps=cfg.train_steps,
              max_completion_length=cfg.rollout_max_new_tokens, temperature=cfg.rollout_temperature,
              beta=cfg.kl_beta, epsilon=cfg.clip_eps_low, learning_rate=cfg.learning_rate,
              weight_decay=cfg.weight_decay, max_grad_norm=cfg.max_grad_norm, lr_scheduler_type="constant",
              optim="adamw_torch", seed=cfg.seed, data_seed=cfg.seed, logging_steps=1,
              save_steps=cfg.checkpoint_every or cfg.train_steps,
              bf16=resolve_dtype(cfg.dtype, device) == torch.bfloat16, use_cpu=device.type == "cpu",
              gradient_checkpointing=False, loss_type={"dapo": "dapo", "drgrpo": "dr_grpo"}.get(cfg.algorithm, "grpo"))
    return GRPOConfig(**{**kw, **overrides})


def task_dataset(tasks: list):
    """The tasks as a `datasets.Dataset` with TRL's `prompt` column (the question) and `task_id`."""
    from datasets import Dataset
    return Dataset.from_dict({"prompt": [t.question for t in tasks], "task_id": [t.id for t in tasks]})


def kit_reward(prompts, completions, kit_reward, **kwargs) -> list[float]:
    """TRL reward function: the kit's verifiable reward, computed while sampling (logged by TRL
    as rewards/kit_reward/mean)."""
    return list(kit_reward)


def _rollout_func(prompts: list, trainer: "AIPOGRPOTrainer") -> dict:
    return trainer.kit_rollouts(prompts)


def _pad(rows: list[list], fill, width: int, dtype, device) -> torch.Tensor:
    return torch.tensor([list(r) + [fill] * (width - len(r)) for r in rows], dtype=dtype, device=device)


class AIPOGRPOTrainer(GRPOTrainer):
    """GRPOTrainer with the kit's rollouts, advantages and token loss (see the module docstring).
    `model`: the kit's LoRA policy model (policy.load_policy(cfg).model); `tasks`: the training
    tasks (tasks.load_tasks or tasks.from_config)."""

    def __init__(self, cfg: Config, model, tokenizer, tasks: list, args: GRPOConfig, **kwargs):
        check_supported(cfg)
        self.cfg, self.tasks = cfg, {t.id: t for t in tasks}
        self.agents = kit_rollout.agents_from_config(cfg)
        self.detector = kit_rollout.detector_from_config(cfg)
        self._kit: dict = {}
        super().__init__(model=model, reward_funcs=[kit_reward], args=args, train_dataset=task_dataset(tasks),
                         processing_class=tokenizer, rollout_func=_rollout_func, **kwargs)
        unwrapped = self.accelerator.unwrap_model(self.model)
        if "ref" in getattr(unwrapped, "peft_config", {}):  # TRL copies a trained adapter as the KL reference;
            unwrapped.delete_adapter("ref")                  # the kit's reference is the base (LoRA disabled)
        ds = getattr(self.accelerator.state, "deepspeed_plugin", None)
        if ds is not None and ds.zero_stage == 3:
            raise ValueError("DeepSpeed ZeRO-3: the kit's engine samples from whole weights; use ZeRO-1/2")
        self._policy = Policy(model=self.accelerator.unwrap_model(self.model), tokenizer=tokenizer,
                              device=self.accelerator.device, config=cfg)

    # -- 1. rollouts ------------------------------------------------------------------------------
    def sample_rollouts(self, rows: list[tuple]) -> list:
        """Rollouts for this process's rows [(task, assisted, group)], in order. A group's rows are
        consecutive, independent first; groups with the same (independent, assisted) counts are
        sampled in one kit rollout batch, seeded by (seed, step, process)."""
        cfg = self.cfg
        self._policy.model = self.accelerator.unwrap_model(self.model)
        self._policy.version = self.state.global_step  # the merged sampler is rewritten after each update
        seed = (cfg.seed * 1_000_003 + self.state.global_step) * 1009 + self.accelerator.process_index
        gen = torch.Generator(device=self._policy.device).manual_seed(seed)
        out = [None] * len(rows)
        if self.use_vllm:
            self._vllm_independent([i for i, r in enumerate(rows) if not r[1]], rows, out)
        groups: dict[int, list[int]] = {}
        for i, (_, assisted, group) in enumerate(rows):
            if out[i] is None:
                groups.setdefault(group, []).append(i)
        patterns: dict[tuple, list[list[int]]] = {}
        for idx in groups.values():
            n_asst = sum(rows[i][1] for i in idx)
            patterns.setdefault((len(idx) - n_asst, n_asst), []).append(idx)
        common = dict(consult_budget=cfg.consult_budget, temperature=cfg.rollout_temperature,
                      max_new_tokens=cfg.rollout_max_new_tokens, prompt_style=cfg.prompt_style,
                      reward_mode=cfg.reward_mode, generator=gen, guidance_form=cfg.guidance_form,
                      concurrency=cfg.agent_concurrency if cfg.agent_backend == "openai" else 1)
        was_training = self._policy.model.training
        self._policy.model.eval()  # no dropout while sampling (a 4-bit policy samples from itself)
        for (n_ind, n_asst), idxs in patterns.items():
            sampled, _ = kit_rollout.rollout_group(self._policy, [rows[idx[0]][0] for idx in idxs], self.agents,
                                                   self.detector, n_ind, n_asst, **common)
            for idx, group in zip(idxs, sampled):
                for i, r in zip(idx, group):
                    out[i] = r
        self._policy.model.train(was_training)
        return out

    def _vllm_independent(self, idx: list[int], rows: list[tuple], out: list) -> None:
        """Independent rows through TRL's vLLM generation (server or colocate). Not run here."""
        cfg, tok = self.cfg, self.processing_class
        prompts = [tok.encode(agent_free_prompt(tok, rows[i][0].question, cfg.prompt_style, rows[i][0].kind),
                              add_special_tokens=False) for i in idx]
        ids, logps = self._generate_single_turn(prompts, None, {}, 1)
        for i, p, c, lp in zip(idx, prompts, ids, logps):
            task = rows[i][0]
            r = kit_rollout.Rollout(task, False, p, list(c), [Prov.POLICY] * len(c), list(lp), [math.nan] * len(c),
                                    tok.decode(c, skip_special_tokens=True), "eos", [])
            r.reward = task_reward(task, r.text, cfg.reward_mode)
            out[i] = r

    def kit_rollouts(self, prompts: list) -> dict:
        """TRL's rollout_func: this process's slice of the generation batch (G copies per prompt)."""
        g, n = self.num_generations, len(prompts)
        first = self.accelerator.process_index * n
        k = assisted_per_group(self.cfg, self.state.global_step)
        ids = [x["task_id"] for x in self._kit_inputs]
        rows = [(self.tasks[t], (first + i) % g >= g - k, (first + i) // g) for i, t in enumerate(ids)]
        rollouts = self.sample_rollouts(rows)
        seqs = to_train_seqs([[r] for r in rollouts], self.processing_class, self.cfg.view, self.cfg.credit,
                             self.cfg.prompt_style)
        self._kit = {"seqs": seqs, "rollouts": rollouts}
        return {"prompt_ids": [s.prompt_ids for s in seqs], "completion_ids": [s.ids for s in seqs],
                "logprobs": [s.old_logp for s in seqs], "env_mask": [[int(x) for x in s.in_loss] for s in seqs],
                "kit_reward": [float(r.reward) for r in rollouts]}

    # -- 2, 3. token kinds and advantages ---------------------------------------------------------
    def _generate_and_score_completions(self, inputs):
        self._kit_inputs = inputs
        out = super()._generate_and_score_completions(inputs)
        seqs, rollouts = self._kit["seqs"], self._kit["rollouts"]
        dev, width = out["completion_ids"].device, out["completion_ids"].shape[1]
        n, first = len(seqs), self.accelerator.process_index * len(seqs)
        out["token_kind"] = _pad([s.kind for s in seqs], Prov.TEMPLATE, width, torch.long, dev)
        span = _pad([s.span for s in seqs], -1, width, torch.long, dev)
        out["agent_span"] = span + SPAN_STRIDE * (first + torch.arange(n, device=dev))[:, None]
        out["same_prompt"] = torch.tensor([not s.rescored for s in seqs], device=dev)
        # the whole generation batch's rewards and roles -> the kit's advantages -> this slice
        local = torch.tensor([[float(r.reward), float(r.assisted), float(any(s.in_loss)), float(sum(s.in_loss))]
                              for r, s in zip(rollouts, seqs)], device=dev)
        every = self.accelerator.gather(local).cpu()
        pseudo = [TrainSeq([], [], [], [], [], [], assisted=bool(a), group=i // self.num_generations,
                           reward=r) for i, (r, a, _, _) in enumerate(every.tolist())]
        kept = {id(s) for s in assign_advantages(pseudo, self.cfg)[0]}
        keep = torch.tensor([id(s) in kept for s in pseudo])
        adv = torch.tensor([s.advantage if id(s) in kept else 0.0 for s in pseudo])
        out["advantages"] = adv[first:first + n].to(dev)
        out["tool_mask"] = out["tool_mask"] * keep[first:first + n].to(dev)[:, None].int()
        # the step's normalizers (objectives.aggregate): sequences with a loss token, loss tokens
        out["kit_n_seqs"] = torch.tensor(int((every[:, 2] * keep).sum()), device=dev)
        out["kit_n_tokens"] = torch.tensor(int((every[:, 3] * keep).sum()), device=dev)
        self._log_kit(rollouts)
        return out

    def _log_kit(self, rollouts) -> None:
        m = self._metrics["train"]
        for name, rs in (("train/reward_ind", [r for r in rollouts if not r.assisted]),
                         ("train/reward_asst", [r for r in rollouts if r.assisted])):
            if rs:
                m[name].append(sum(r.reward for r in rs) / len(rs))
        asst = [r for r in rollouts if r.assisted]
        if asst:
            m["train/consult_rate"].append(sum(bool(r.consults) for r in asst) / len(asst))

    # -- 4. loss ----------------------------------------------------------------------------------
    def _compute_loss(self, model, inputs):
        ids = torch.cat([inputs["prompt_ids"], inputs["completion_ids"]], dim=1)
        attn = torch.cat([inputs["prompt_mask"], inputs["completion_mask"]], dim=1)
        width = inputs["completion_ids"].shape[1]
        logp, _, _ = self._get_per_token_logps_and_entropies(model, ids, attn, width)
        in_loss = (inputs["completion_mask"] * inputs["tool_mask"]).bool()
        sampler = inputs.get("sampling_per_token_logps")
        sampler = torch.full_like(logp, math.nan) if sampler is None else sampler.float()
        adv = inputs["advantages"].float()[:, None].expand_as(logp)
        loss, st = token_loss(logp, inputs["token_kind"], in_loss, sampler, adv, inputs["agent_span"],
                              inputs["same_prompt"][:, None], self.cfg, int(inputs["kit_n_seqs"]),
                              int(inputs["kit_n_tokens"]), ref_logp=inputs.get("ref_per_token_logps"),
                              old_logp=inputs.get("old_per_token_logps"))
        if len(st["w"]):
            self._metrics["train"]["train/agent_w_mean"].append(float(st["w"].mean()))
        # one generation batch = steps_per_generation micro-steps; each optimizer step sums
        # gradient_accumulation_steps of them and DDP averages over processes
        scale = self.accelerator.num_processes * self.args.steps_per_generation / self.args.gradient_accumulation_steps
        return loss * scale


def main(argv: list[str] | None = None) -> None:
    """Train through TRL: python -m aipo_lite.integrations.trl_bridge --profile smoke --run-dir runs/trl [--overrides JSON]
    (under `accelerate launch` for several processes)."""
    import argparse
    import json

    ap = argparse.ArgumentParser(description=main.__doc__)
    ap.add_argument("--profile", default="smoke")
    ap.add_argument("--run-dir", required=True)
    ap.add_argument("--overrides", default="{}", help="JSON dict of Config fields")
    ap.add_argument("--trl-overrides", default="{}", help="JSON dict of GRPOConfig fields")
    ap.add_argument("--resume", action="store_true", help="continue from the run dir's last TRL checkpoint")
    a = ap.parse_args(argv)
    cfg = Config.from_profile(a.profile, run_dir=a.run_dir, **json.loads(a.overrides))
    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    torch.manual_seed(cfg.seed)
    policy = load_policy(cfg)
    args = grpo_config(cfg, a.run_dir, **json.loads(a.trl_overrides))
    trainer = AIPOGRPOTrainer(cfg, policy.model, policy.tokenizer, from_config(cfg, "train", cfg.train_tiers), args)
    trainer.train(resume_from_checkpoint=a.resume and any(Path(a.run_dir).glob("checkpoint-*")))
    trainer.save_model(a.run_dir)


if __name__ == "__main__":
    main()
