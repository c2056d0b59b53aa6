"""A CPU sampling copy of an fp32 LoRA policy with half-precision weights (fbgemm's fp16 GEMM).

Decoding a 135M model on a CPU reads every weight once per token step: at 16-64 rows it is
memory-bound, so fp32 weights cost twice what fp16 ones do. CPUs without native bf16 (AVX2
laptops) have no fast 16-bit matmul in torch, except fbgemm's packed fp16-weight GEMM
(`torch.ops.quantized.linear_dynamic_fp16`: fp16 weights, fp32 activations and accumulation).
Measured under the AVX2 stand-in on 2 cores (docs/speed.md): a 576 -> 1536 linear at 16 rows
446 -> 192 us, the 49152-token head 17.3 -> 5.3 ms; relative output error 2e-4.

The base weights are packed once. The adapter is not merged into them (a re-pack after every
update costs about a second): each LoRA-wrapped linear adds `(x A^T)(scale B^T)` from the live
adapter's tensors, so the copy samples the current policy and needs no rebuild. A^T and scale B^T
are kept contiguous between calls (transposing and scaling them at every call cost ~14 % of a
16-row decode step) and made again when A or B changed: in place (an optimizer step, copy_, a
loaded checkpoint: their version counters move), replaced, rescaled, or after forget() (what
Policy.mark_updated() leads to; needed only for changes through `.data`, which autograd and
the version counters do not see).

Its log-probs differ from the trainer's by the fp16 rounding of the weights: the trainer measures
that gap on every trained token (`train/sampler_logp_gap`, `train/sampler_kl`) and corrects it
with truncated importance sampling (training/trainer.py).
"""

from __future__ import annotations

import copy

import torch


def available() -> bool:
    """Whether this torch build has fbgemm's fp16-weight linear (x86 CPU builds do)."""
    return "fbgemm" in torch.backends.quantized.supported_engines and hasattr(torch.ops.quantized, "linear_prepack_fp16")


class PackedLinear(torch.nn.Module):
    """y = x W^T + b with W packed in fp16, plus the live LoRA delta of `lora` (a peft LoraLayer)
    when given. The LoraLayer is held outside the module tree: its parameters stay the trainer's."""

    def __init__(self, linear: torch.nn.Linear, lora=None):
        super().__init__()
        bias = None if linear.bias is None else linear.bias.detach().float().contiguous()
        self.packed = torch.ops.quantized.linear_prepack_fp16(linear.weight.detach().float().contiguous(), bias)
        self.in_features, self.out_features = linear.in_features, linear.out_features
        self._lora = (lora,)  # a tuple: not registered as a submodule
        self._adapters: dict[str, tuple] = {}  # adapter name -> (key, A^T, scale * B^T)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        flat = x.reshape(-1, x.shape[-1]).contiguous()
        y = torch.ops.quantized.linear_dynamic_fp16(flat, self.packed)
        lora = self._lora[0]
        if lora is not None and not lora.disable_adapters:
            for name in lora.active_adapters:
                if name in lora.lora_A:
                    a_t, b_t = self._adapter(lora, name)
                    y = torch.addmm(y, flat @ a_t, b_t)
        return y.reshape(*x.shape[:-1], self.out_features)

    def _adapter(self, lora, name: str) -> tuple[torch.Tensor, torch.Tensor]:
        a, b, scale = lora.lora_A[name].weight, lora.lora_B[name].weight, lora.scaling[name]
        key = (a._version, b._version, a.data_ptr(), b.data_ptr(), scale)
        kept = self._adapters.get(name)
        if kept is None or kept[0] != key:
            with torch.no_grad():
                kept = self._adapters[name] = (key, a.t().contiguous(), (b.t() * scale).contiguous())
        return kept[1], kept[2]

    def forget(self) -> None:
        """Drop the kept A^T and scale B^T: the next call makes them from the live adapter."""
        self._adapters.clear()


def forget_adapters(copy: torch.nn.Module) -> None:
    """forget() on every PackedLinear of a packed copy (after a change the counters miss)."""
    for module in copy.modules():
        if isinstance(module, PackedLinear):
            module.forget()


def packed_copy(peft_model) -> torch.nn.Module:
    """The base model (adapter unloaded) with every LoRA-wrapped linear and the head replaced by
    PackedLinear; norms and embeddings are the policy's own frozen tensors, shared. For sampling only."""
    from peft.tuners.lora import LoraLayer
    for module in peft_model.modules():
        if isinstance(module, LoraLayer) and any(module.use_dora.get(a, False) for a in module.active_adapters):
            raise ValueError("sampler_weights='fp16' does not support DoRA adapters; use sampler_weights='merged'")
    # the copy shares the frozen base tensors (read-only here) instead of duplicating 0.5 GB of
    # fp32 weights that the packing replaces anyway; only the module tree and the adapter are copied
    frozen = {id(p): p for p in peft_model.parameters() if not p.requires_grad}
    plain = copy.deepcopy(peft_model, memo=frozen).unload()
    plain.eval()
    prefix = "base_model.model."
    loras = {name.removeprefix(prefix): m for name, m in peft_model.named_modules() if isinstance(m, LoraLayer)}
    for name, module in list(plain.named_modules()):
        if isinstance(module, torch.nn.Linear) and (name in loras or module is plain.get_output_embeddings()):
            parent, _, child = name.rpartition(".")
            setattr(plain.get_submodule(parent) if parent else plain, child, PackedLinear(module, loras.get(name)))
    return plain
