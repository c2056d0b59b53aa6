"""One training step's loss and LoRA gradient through the kit's trainer and through the TRL bridge,
on the same rollouts (tests/test_trl_bridge.py asserts they agree; notebook 07 shows them).
Also the tiny randomly initialised Llama used for fast plumbing checks."""

from __future__ import annotations

import tempfile
from pathlib import Path

import torch

from aipo_lite.config import Config
from aipo_lite.methods.views import to_train_seqs
from aipo_lite.model.policy import resolve_model_path
from aipo_lite.rollout import groups as kit_rollout
from aipo_lite.training.logprobs import micro_batches
from aipo_lite.training.trainer import assign_advantages, micro_batch_loss


# fp32; the two paths batch and pad differently (the kit runs a shared prompt once), so their sums
# differ in order only: agreement within these relative tolerances (the test's and notebook 07's)
RTOL_LOSS, ATOL_LOSS, RTOL_GRAD = 1e-5, 1e-6, 1e-5


def agrees(r: dict) -> bool:
    """compare_step's two paths give the same loss, gradient and gradient norm (within fp32 order)."""
    return (abs(r["loss_trl"] - r["loss_kit"]) <= max(RTOL_LOSS * abs(r["loss_kit"]), ATOL_LOSS)
            and r["max_grad_diff"] <= RTOL_GRAD * r["max_grad"]
            and abs(r["grad_norm_trl"] - r["grad_norm_kit"]) <= RTOL_GRAD * r["grad_norm_kit"])


def make_tiny_model(path: str | Path, seed: int = 0, family: str = "llama") -> str:
    """A 2-layer, 32-wide random model with SmolLM2's tokenizer, saved at `path` (plumbing only:
    it solves nothing). family 'llama' (SmolLM2's architecture, with its chat template) or
    'gemma3' (Gemma 3's architecture: sliding-window (512 tokens, as the real one) and global layers, no chat
    template, as Gemma 3 270M base)."""
    from transformers import AutoTokenizer, Gemma3ForCausalLM, Gemma3TextConfig, LlamaConfig, LlamaForCausalLM

    tok = AutoTokenizer.from_pretrained(resolve_model_path(Config()))
    torch.manual_seed(seed)
    ids = dict(bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id)
    if family == "gemma3":
        cfg = Gemma3TextConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                               num_attention_heads=4, num_key_value_heads=2, head_dim=8, max_position_embeddings=512,
                               sliding_window=512, layer_types=["sliding_attention", "full_attention"], **ids)
        model = Gemma3ForCausalLM(cfg)
        tok.chat_template = None  # a base model: the prompts' plain format
    else:
        model = LlamaForCausalLM(LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                                             num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512, **ids))
    model.save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)


@torch.no_grad()
def random_adapter(model, scale: float = 0.1, seed: int = 1, a_fan_in: bool = False) -> None:
    """Every LoRA weight := scale * N(0, 1), seeded: a non-zero adapter (peft starts B at 0), so
    both LoRA matrices get gradients and every process or dtype starts from the same one.
    a_fan_in: LoRA A gets N(0, 1/fan_in) instead (B keeps `scale`)."""
    gen = torch.Generator().manual_seed(seed)
    for name, p in model.named_parameters():
        if "lora_" in name:
            a = a_fan_in and "lora_B" not in name
            p.copy_(torch.randn(p.shape, generator=gen) * (p.shape[1] ** -0.5 if a else scale))


def _grads(params) -> list[torch.Tensor]:
    out = [p.grad.detach().clone() if p.grad is not None else torch.zeros_like(p) for p in params]
    for p in params:
        p.grad = None
    return out


def compare_step(cfg: Config, policy, tasks: list, seed: int = 0, mixed_rewards: bool = False) -> dict:
    """Sample one step's groups for `tasks` (g_ind + g_asst rollouts each), then compute the step
    loss and LoRA gradient (no optimizer step) through trainer.update's path and through
    AIPOGRPOTrainer's (TRL's batch layout, log-probs and accumulation; the kit's advantages and
    token loss). mixed_rewards: independent rollouts get 1, 0, 1, ..., assisted ones 1 (a tiny
    random model solves nothing, so its groups would carry no signal). Returns losses, gradient norms, the
    largest gradient difference and the largest gradient entry."""
    from aipo_lite.integrations import trl_bridge  # lazy: trl_bridge needs the trl extra; make_tiny_model does not
    model, tok = policy.model, policy.tokenizer
    agents, detector = kit_rollout.agents_from_config(cfg), kit_rollout.detector_from_config(cfg)
    groups, _ = kit_rollout.rollout_group(policy, tasks, agents, detector, cfg.g_ind, cfg.g_asst,
                                          consult_budget=cfg.consult_budget, temperature=cfg.rollout_temperature,
                                          max_new_tokens=cfg.rollout_max_new_tokens, prompt_style=cfg.prompt_style,
                                          reward_mode=cfg.reward_mode, generator=seed, guidance_form=cfg.guidance_form)
    if mixed_rewards:  # independent 1, 0, 1, ...; assisted 1 (so their agent tokens' losses add up)
        for g in groups:
            for i, r in enumerate(g):
                r.reward = 1.0 if r.assisted else float(i % 2 == 0)
    params = [p for p in model.parameters() if p.requires_grad]
    was_training = model.training
    model.train()
    # the kit's trainer (trainer.update without the optimizer step)
    seqs, _ = assign_advantages(to_train_seqs(groups, tok, cfg.view, cfg.credit, cfg.prompt_style), cfg)
    live = [s for s in seqs if any(s.in_loss)]
    n_seqs, n_tokens = len(live), sum(sum(s.in_loss) for s in live)
    loss_kit = 0.0
    for batch in micro_batches(live, cfg.micro_batch_size):
        loss, _ = micro_batch_loss(policy, batch, cfg, n_seqs, n_tokens)
        loss.backward()
        loss_kit += float(loss.detach())
    g_kit = _grads(params)
    # the bridge: TRL's path with these rollouts in place of sampling
    with tempfile.TemporaryDirectory() as out:
        trainer = trl_bridge.AIPOGRPOTrainer(cfg, model, tok, tasks, trl_bridge.grpo_config(cfg, out, 1))
        flat = [r for g in groups for r in g]
        trainer.sample_rollouts = lambda rows: flat
        g_size = cfg.g_ind + cfg.g_asst
        batch = trainer._generate_and_score_completions(
            [{"prompt": t.question, "task_id": t.id} for t in tasks for _ in range(g_size)])
        loss_trl = trainer.compute_loss(trainer.model, batch)
        loss_trl.backward()
    g_trl = _grads(params)
    model.train(was_training)
    norm = lambda gs: float(torch.linalg.vector_norm(torch.stack([torch.linalg.vector_norm(g) for g in gs])))  # noqa: E731
    return {"loss_kit": loss_kit, "loss_trl": float(loss_trl.detach()),
            "grad_norm_kit": norm(g_kit), "grad_norm_trl": norm(g_trl),
            "max_grad_diff": max(float((a - b).abs().max()) for a, b in zip(g_kit, g_trl)),
            "max_grad": max(float(a.abs().max()) for a in g_kit),
            "advantages": [round(s.advantage, 4) for s in seqs],
            "agent_tokens": sum(k == 2 for s in seqs for k in s.kind)}
