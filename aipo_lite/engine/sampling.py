"""Plain batched sampling: n completions for each of many prompts (evaluation's sampler).

Runs on the same decode loop as the rollouts (engine.py), so evaluation and independent
rollouts sample identically. Sequences are sorted by prompt length and cut into batches of
`batch_size`; within a batch the KV cache of the prompts' shared prefix (system prompt and
one-shot example, most of the prompt) is computed once, finished rows leave the batch, and a
row ends at the newline after its first committed answer (`stop_after_answer`; decided from
token ids by commit_machine.py): the reward reads the first committed answer (rewards.py), so
nothing after it can change the reward.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm import tqdm

from aipo_lite.engine import decode as engine
from aipo_lite.engine.commit_machine import commit_machine


@dataclass
class Completion:
    text: str
    num_tokens: int  # generated tokens, a closing EOS included
    finished: bool   # ended by EOS or a committed answer rather than at max_new_tokens


@dataclass
class SamplingStats:
    sequences: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    batch_size: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0


def sample(model, tokenizer, prompts: list[str], n: int = 1, temperature: float = 1.0,
           top_p: float = 1.0, max_new_tokens: int = 64, batch_size: int = 64,
           seed: int | None = None, progress: bool = True, desc: str = "sampling",
           stop_after_answer: bool = True, generator: torch.Generator | None = None,
           ) -> tuple[list[list[Completion]], SamplingStats]:
    """n completions per prompt (decoded without special tokens), plus throughput stats.

    temperature 0 is greedy decoding. With `seed` (or a `generator` on any device, which then
    takes precedence), results are reproducible for the same prompts, n and batch_size on
    the same device.
    """
    device = next(model.parameters()).device
    generator = engine.device_generator(generator if generator is not None else
                                        (seed if seed is not None else torch.seed()), device)
    encoded = [tokenizer.encode(p, add_special_tokens=False) for p in prompts]
    order = sorted(((i, j) for i in range(len(prompts)) for j in range(n)),
                   key=lambda ij: (len(encoded[ij[0]]), ij[0]))
    out: list[list[Completion | None]] = [[None] * n for _ in prompts]
    stats = SamplingStats(batch_size=batch_size)

    was_training = model.training
    model.eval()
    start = time.perf_counter()
    bar = tqdm(total=len(order), desc=desc, unit="seq", disable=not progress)
    rows = [engine.Row(encoded[i], max_new_tokens) for i, _ in order]

    # one decode loop over all rows: `batch_size` at a time, finished rows' slots refilled; the
    # stop after the first committed answer is decided from token ids (commit_machine.py)
    engine.run(model, tokenizer, rows, temperature, top_p, generator=generator, max_batch=batch_size,
               on_finish=lambda row: bar.update(1), stop=commit_machine(tokenizer) if stop_after_answer else None)
    for (i, j), row in zip(order, rows):
        out[i][j] = Completion(tokenizer.decode(row.ids, skip_special_tokens=True), len(row.ids),
                               row.finished in ("eos", "stop"))
        stats.generated_tokens += len(row.ids)
    stats.sequences = len(rows)
    stats.seconds = time.perf_counter() - start
    bar.close()
    model.train(was_training)
    return out, stats  # type: ignore[return-value]
