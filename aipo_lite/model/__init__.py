"""The policy: loading SmolLM2 or a local model with LoRA / 4-bit (policy) and the CPU allocator setting it uses (host_memory)."""
