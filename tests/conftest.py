"""Shared fixtures. The real SmolLM2 policy is loaded once per session (slow tests)."""

import os
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="session")
def real_policy():
    from aipo_lite.config import Config
    from aipo_lite.policy import load_policy
    return load_policy(Config(lora_r=0))


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny randomly initialised Llama with SmolLM2's tokenizer (plumbing tests only)."""
    import torch
    from transformers import AutoTokenizer, LlamaConfig, LlamaForCausalLM

    from aipo_lite.config import Config
    from aipo_lite.policy import resolve_model_path

    tok = AutoTokenizer.from_pretrained(resolve_model_path(Config()))
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=len(tok), hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=512,
                      bos_token_id=tok.bos_token_id, eos_token_id=tok.eos_token_id,
                      pad_token_id=tok.pad_token_id)
    path = tmp_path_factory.mktemp("tiny-llama")
    LlamaForCausalLM(cfg).save_pretrained(path)
    tok.save_pretrained(path)
    return str(path)
