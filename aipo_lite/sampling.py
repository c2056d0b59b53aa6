"""Batched sampling with transformers' `generate`: n completions for each of many prompts.

Sequences are sorted by prompt length and cut into batches of `batch_size`, so padding
stays small; each completion records how many tokens it generated and whether it ended
on EOS (False = cut at max_new_tokens).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch
from tqdm.auto import tqdm
from transformers import StoppingCriteria, StoppingCriteriaList

from .rewards import COMMITTED


@dataclass
class Completion:
    text: str
    num_tokens: int  # generated tokens, the closing EOS included
    finished: bool   # ended with EOS rather than at max_new_tokens


@dataclass
class SamplingStats:
    sequences: int = 0
    generated_tokens: int = 0
    seconds: float = 0.0
    batch_size: int = 0

    @property
    def tokens_per_s(self) -> float:
        return self.generated_tokens / self.seconds if self.seconds else 0.0


class StopAfterAnswer(StoppingCriteria):
    """Per-row stop once the completion has committed an answer and ended that line.

    The reward reads the first committed answer (rewards.py), so what the model writes after
    it cannot change the reward; stopping there saves most of the decoding time.
    """

    def __init__(self, tokenizer, prompt_length: int):
        self.tokenizer, self.prompt_length = tokenizer, prompt_length

    def __call__(self, input_ids, scores, **kwargs):
        texts = self.tokenizer.batch_decode(input_ids[:, self.prompt_length:], skip_special_tokens=True)
        return torch.tensor([COMMITTED.search(t) is not None for t in texts], device=input_ids.device)


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], n: int = 1, temperature: float = 1.0,
           top_p: float = 1.0, max_new_tokens: int = 64, batch_size: int = 64,
           seed: int | None = None, progress: bool = True, desc: str = "sampling",
           stop_after_answer: bool = True) -> tuple[list[list[Completion]], SamplingStats]:
    """n completions per prompt (texts decoded without special tokens), plus throughput stats.

    temperature 0 means greedy decoding. stop_after_answer ends a row at the newline after
    its first committed answer (`StopAfterAnswer`); such a row counts as finished. With `seed`, results are reproducible for the same
    prompts, n and batch_size on the same device.
    """
    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    order = sorted(((i, j) for i in range(len(prompts)) for j in range(n)),
                   key=lambda ij: (len(encoded[ij[0]]), ij[0]))
    out: list[list[Completion | None]] = [[None] * n for _ in prompts]
    stats = SamplingStats(batch_size=batch_size)
    gen_kwargs = dict(max_new_tokens=max_new_tokens, pad_token_id=tokenizer.pad_token_id,
                      eos_token_id=eos)
    gen_kwargs |= (dict(do_sample=True, temperature=temperature, top_p=top_p, top_k=0)
                   if temperature > 0 else dict(do_sample=False, temperature=None, top_p=None, top_k=None))
    was_training = model.training
    model.eval()
    start = time.perf_counter()
    bar = tqdm(total=len(order), desc=desc, unit="seq", disable=not progress)
    for b in range(0, len(order), batch_size):
        chunk = order[b:b + batch_size]
        batch = tokenizer.pad({"input_ids": [encoded[i] for i, _ in chunk]}, return_tensors="pt")
        batch = {k: v.to(device) for k, v in batch.items()}
        width = batch["input_ids"].shape[1]
        stop = StoppingCriteriaList([StopAfterAnswer(tokenizer, width)] if stop_after_answer else [])
        new = model.generate(**batch, **gen_kwargs, stopping_criteria=stop)[:, width:].cpu()
        for (i, j), row in zip(chunk, new.tolist()):
            length = row.index(eos) + 1 if eos in row else len(row)
            text = tokenizer.decode(row[:length], skip_special_tokens=True)
            if stop_after_answer and (m := COMMITTED.search(text)):
                # rows stopped early are padded after the stop: cut at the answer line
                length = _tokens_up_to(tokenizer, row[:length], m.end())
                text = tokenizer.decode(row[:length], skip_special_tokens=True)
            finished = eos in row[:length] or (stop_after_answer and COMMITTED.search(text) is not None)
            out[i][j] = Completion(text=text, num_tokens=length, finished=finished)
            stats.generated_tokens += length
        stats.sequences += len(chunk)
        stats.seconds = time.perf_counter() - start
        bar.update(len(chunk))
        bar.set_postfix(tok_s=f"{stats.tokens_per_s:.0f}")
    bar.close()
    model.train(was_training)
    return out, stats  # type: ignore[return-value]


def _tokens_up_to(tokenizer, ids: list[int], n_chars: int) -> int:
    """Fewest leading tokens of `ids` whose decoded text has at least n_chars characters."""
    for k in range(1, len(ids) + 1):
        if len(tokenizer.decode(ids[:k], skip_special_tokens=True)) >= n_chars:
            return k
    return len(ids)
