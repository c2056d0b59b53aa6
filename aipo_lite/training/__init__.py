"""The trainer (trainer), its training forward (logprobs), checkpoints (checkpoint) and what a run folder records and checks (runinfo)."""
