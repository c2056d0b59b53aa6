"""Records the layers share, in the lowest layer so that no layer imports a higher one for a type."""

from __future__ import annotations

from enum import IntEnum


class Prov(IntEnum):
    """Where a token of a rollout came from: the prompt, the policy's own sampling, an agent's
    reply, or the template around a reply (tags); the loss trains POLICY and AGENT tokens only."""
    PROMPT = 0
    POLICY = 1
    AGENT = 2
    TEMPLATE = 3
