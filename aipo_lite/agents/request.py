"""What an agent is asked: the task with its privileged fields (reference answer, steps, facts),
the policy's reasoning so far, its own question, what triggered the consult and, for
verify-before-commit, the answer it proposes."""

from __future__ import annotations

from dataclasses import dataclass

from aipo_lite.tasks.loading import Task


@dataclass
class Request:
    task: Task
    partial: str = ""            # the policy's reasoning so far (its reply, feedback included)
    query: str = ""              # the policy's own question ('' when the detector fired)
    trigger: str = "tag"         # tag | entropy | commit
    proposed: str | None = None  # the answer the policy is committing to (verify-before-commit)
