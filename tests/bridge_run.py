"""Run by tests/test_trl_bridge.py (under `accelerate launch` or alone): trains a few steps through
the TRL bridge and writes, per process, the logged losses and the final LoRA weights.

    python tests/bridge_run.py OUT MODEL|default [--record DIR | --replay DIR] [--overrides JSON] [--mixed-rewards]

--record: every process also pickles its rollouts of each step (keyed by step and process);
--replay: instead of sampling, the rollouts recorded by a run with any number of processes are
replayed by global row (so one process can train on exactly the global batches of two).
"""

import argparse
import json
import pickle
from pathlib import Path

import torch

from aipo_lite.config import Config
from aipo_lite.integrations import trl_bridge
from aipo_lite.integrations.trl_compare import random_adapter
from aipo_lite.model.policy import load_policy
from aipo_lite.tasks.loading import load_tasks

ap = argparse.ArgumentParser()
ap.add_argument("out")
ap.add_argument("model")
ap.add_argument("--record")
ap.add_argument("--replay")
ap.add_argument("--overrides", default="{}")
ap.add_argument("--trl-overrides", default="{}", help="GRPOConfig fields")
ap.add_argument("--mixed-rewards", action="store_true", help="rewards 1/0 by completion length parity")
a = ap.parse_args()
if a.record:
    Path(a.record).mkdir(parents=True, exist_ok=True)
torch.set_num_threads(1)
model = {} if a.model == "default" else {"model": a.model}
cfg = Config(**{**Config().grid_overrides, **model, "dtype": "float32", "device": "cpu", "lora_r": 4,
                "lora_dropout": 0.0, "train_steps": 3, "prompts_per_step": 2, "g_ind": 2, "g_asst": 2,
                "rollout_max_new_tokens": 8, "micro_batch_size": 2, **json.loads(a.overrides)})


class Bridge(trl_bridge.AIPOGRPOTrainer):
    def sample_rollouts(self, rows):
        step, rank = self.state.global_step, self.accelerator.process_index
        if a.replay:
            files = sorted(Path(a.replay).glob(f"step{step}_rank*.pkl"), key=lambda f: int(f.stem.split("rank")[1]))
            every = [r for f in files for r in pickle.loads(f.read_bytes())]
            first = rank * len(rows)
            mine = every[first:first + len(rows)]
            assert [r.task.id for r in mine] == [t.id for t, _, _ in rows], "replayed rollouts are not this batch's"
            return mine
        out = super().sample_rollouts(rows)
        if a.mixed_rewards:  # a tiny random model solves nothing (nor does SmolLM2 in 8 tokens): signal
            for r in out:
                r.reward = float(len(r.ids) % 2)
        if a.record:
            Path(a.record, f"step{step}_rank{rank}.pkl").write_bytes(pickle.dumps(out))
        return out


torch.manual_seed(0)
policy = load_policy(cfg)
random_adapter(policy.model, seed=0)  # a non-zero adapter, the same in every process
torch.save({k: v.detach().clone() for k, v in policy.model.named_parameters() if "lora_" in k}, Path(a.out, "lora_init.pt"))
args = trl_bridge.grpo_config(cfg, str(Path(a.out, "trl")), save_strategy="no", **json.loads(a.trl_overrides))
trainer = Bridge(cfg, policy.model, policy.tokenizer, load_tasks("synth", "train", tiers=["recall"]), args)
trainer.train()
rank = trainer.accelerator.process_index
lora = {k: v.detach().cpu() for k, v in trainer.accelerator.unwrap_model(trainer.model).named_parameters() if "lora_" in k}
torch.save(lora, Path(a.out, f"lora_rank{rank}.pt"))
logs = [h for h in trainer.state.log_history if "loss" in h]
Path(a.out, f"log_rank{rank}.json").write_text(json.dumps(logs))
