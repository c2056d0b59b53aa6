"""One GRPO training step: the kit's trainer against TRL's GRPOTrainer, same configuration, one process.

    .venv/bin/pip install -e ".[bench]"                  # TRL (never in the default install)
    .venv/bin/python benchmarks/vs_trl.py --steps 8
    .venv/bin/python benchmarks/vs_trl.py --steps 8 --device cuda

The configuration of docs/environment.md's comparison: SmolLM2-135M-Instruct, `add3` train
problems with the kit's agent-free one-shot prompt (the same token ids for both), 4 prompts x 8
completions per optimizer step, T = 1, at most 48 new tokens, LoRA r 16 / alpha 32 on all linear
layers, AdamW lr 2e-4, GRPO loss (sequence mean, then batch mean), epsilon 0.2, beta 0 (no
reference model), the kit's strict reward, bf16 where the hardware has it (dtype 'auto'),
micro-batches of 16. TRL runs first, then the kit, one after the other. Each prints its median
step time over steps 3..N (the first two warm up); the last line is `ratio <TRL s / kit s>`.

Not the same work, by design of each: TRL samples through the unmerged LoRA and trains every
completion to EOS or the length limit; the kit samples from a merged copy, ends a completion at
the newline after its first committed answer (the reward reads only that), and skips the
forward/backward of zero-advantage sequences (their loss and gradient are exactly zero, beta 0).
"""

import argparse
import statistics
import tempfile
import time

import torch

from aipo_lite.config import Config
from aipo_lite.model.policy import load_policy, resolve_device, resolve_dtype
from aipo_lite.tasks.loading import load_tasks
from aipo_lite.tasks.prompts import agent_free_prompt
from aipo_lite.tasks.rewards import score
from aipo_lite.training.trainer import train

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--steps", type=int, default=8)
ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
ap.add_argument("--only", choices=["trl", "kit"], default=None, help="run one side only")
args = ap.parse_args()
assert args.steps >= 3, "--steps must be >= 3 (steps 1-2 are warm-up)"

STEP = dict(prompts=4, g=8, max_new_tokens=48, lr=2e-4, lora_r=16, lora_alpha=32, micro=16, seed=0)
device = resolve_device(args.device)
dtype = resolve_dtype("auto", device)
print(f"device {device}, dtype {dtype}, threads {torch.get_num_threads()}, steps {args.steps}")


def median_after_warmup(times):
    return statistics.median(times[2:])


def run_trl() -> float:
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import TrainerCallback
    from trl import GRPOConfig, GRPOTrainer

    policy = load_policy(Config(lora_r=0, device=str(device), dtype=str(dtype).split(".")[-1]))
    tok = policy.tokenizer
    tasks = load_tasks("synth", "train", tiers=["add3"])
    data = Dataset.from_list([{"prompt": agent_free_prompt(tok, t.question), "answer": t.answer} for t in tasks])

    def reward(completions, answer, **_):
        return [score(c, a) for c, a in zip(completions, answer)]

    class Clock(TrainerCallback):
        def __init__(self):
            self.times, self.t = [], None

        def on_step_begin(self, *a, **k):
            self.t = time.perf_counter()

        def on_step_end(self, *a, **k):
            if device.type == "cuda":
                torch.cuda.synchronize()
            self.times.append(time.perf_counter() - self.t)

    clock = Clock()
    with tempfile.TemporaryDirectory() as out:
        cfg = GRPOConfig(output_dir=out, learning_rate=STEP["lr"], per_device_train_batch_size=STEP["micro"],
                         gradient_accumulation_steps=STEP["prompts"] * STEP["g"] // STEP["micro"],
                         num_generations=STEP["g"], max_completion_length=STEP["max_new_tokens"], temperature=1.0,
                         top_k=0, beta=0.0, epsilon=0.2, loss_type="grpo", max_steps=args.steps, logging_steps=1,
                         save_strategy="no", report_to="none", seed=STEP["seed"], use_cpu=device.type == "cpu",
                         bf16=dtype == torch.bfloat16, disable_tqdm=True)
        lora = LoraConfig(r=STEP["lora_r"], lora_alpha=STEP["lora_alpha"], target_modules="all-linear",
                          task_type="CAUSAL_LM")
        trainer = GRPOTrainer(model=policy.model, reward_funcs=reward, args=cfg, train_dataset=data,
                              processing_class=tok, peft_config=lora, callbacks=[clock])
        trainer.train()
    print("TRL  step seconds:", " ".join(f"{t:.1f}" for t in clock.times))
    return median_after_warmup(clock.times)


def run_kit() -> float:
    with tempfile.TemporaryDirectory() as out:
        cfg = Config(run_dir=out, device=str(device), dtype="auto", lora_r=STEP["lora_r"], lora_alpha=STEP["lora_alpha"],
                     train_tiers=["add3"], g_ind=STEP["g"], g_asst=0, prompts_per_step=STEP["prompts"],
                     rollout_max_new_tokens=STEP["max_new_tokens"], learning_rate=STEP["lr"], algorithm="grpo",
                     kl_beta=0.0, micro_batch_size=STEP["micro"], train_steps=args.steps, seed=STEP["seed"],
                     train_eval_every=0, train_eval_problems_per_tier=1, train_eval_n=1, checkpoint_every=0,
                     log_completions_every=0, resume=False)
        hist = train(cfg, progress=False)
    steps = [m for m in hist if "speed/step_time" in m]
    times = [m["speed/step_time"] for m in steps]
    print("kit  step seconds:", " ".join(f"{t:.1f}" for t in times))
    print("kit  rollout / update seconds:", " ".join(f"{m['speed/rollout_s']:.1f}/{m['speed/update_s']:.1f}" for m in steps))
    return median_after_warmup(times)


trl_s = run_trl() if args.only != "kit" else None
kit_s = run_kit() if args.only != "trl" else None
if trl_s is not None:
    print(f"TRL GRPOTrainer median step {trl_s:.2f} s")
if kit_s is not None:
    print(f"kit trainer     median step {kit_s:.2f} s")
if trl_s is not None and kit_s is not None:
    print(f"ratio {trl_s / kit_s:.2f}")
