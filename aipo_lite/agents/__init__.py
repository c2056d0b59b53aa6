"""The Verify, Knowledge and Reasoning agents: rule agents, the guard (retries, fallback, fault counts) and make_agent (base); LLM backends hf and openai (llm)."""
