"""Agent-free evaluation: pass@k with bootstrap intervals (agent_free)."""
