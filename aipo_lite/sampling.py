"""Batched sampling with transformers' `generate`: n completions for each of many prompts.

Sequences are sorted by prompt length and cut into batches of `batch_size`. Two CPU
savings, both exact:
- shared prefix: all agent-free prompts start with the same system prompt and one-shot
  example (~80% of their tokens). Its KV cache is computed once and reused by every batch;
  padding goes between that prefix and each question (masked out, positions from the mask).
- stop after the answer: a row ends at the newline after its first committed answer
  (`StopAfterAnswer`); the reward cannot change after that point.
Each completion records how many tokens it generated and whether it finished (EOS or a
committed answer) or was cut at max_new_tokens.
"""

from __future__ import annotations

import copy
import time
from dataclasses import dataclass

import torch
from tqdm import tqdm
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
        self.line_enders = _line_ender_ids(tokenizer).to(torch.long)
        self.done = None

    def __call__(self, input_ids, scores, **kwargs):
        if self.done is None:
            self.done = torch.zeros(input_ids.shape[0], dtype=torch.bool, device=input_ids.device)
        # decode only rows whose newest token can end a commitment (a newline or a '}')
        check = torch.isin(input_ids[:, -1], self.line_enders.to(input_ids.device)) & ~self.done
        for row in check.nonzero().flatten().tolist():
            text = self.tokenizer.decode(input_ids[row, self.prompt_length:], skip_special_tokens=True)
            self.done[row] = COMMITTED.search(text) is not None
        return self.done.clone()


_LINE_ENDERS: dict[int, torch.Tensor] = {}


def _line_ender_ids(tokenizer) -> torch.Tensor:
    key = id(tokenizer)
    if key not in _LINE_ENDERS:
        vocab = tokenizer.convert_ids_to_tokens(list(range(len(tokenizer))))
        ids = [i for i, t in enumerate(vocab) if t and ("}" in t or "\n" in tokenizer.convert_tokens_to_string([t]))]
        _LINE_ENDERS[key] = torch.tensor(ids)
    return _LINE_ENDERS[key]


def shared_prefix_length(encoded: list[list[int]]) -> int:
    """Length of the token prefix common to every prompt, minus one token (so each prompt
    keeps at least one uncached token for generate to process)."""
    first = encoded[0]
    n = min(len(e) for e in encoded) - 1
    for e in encoded[1:]:
        n = next((i for i in range(n) if e[i] != first[i]), n)
    return max(n, 0)


@torch.no_grad()
def sample(model, tokenizer, prompts: list[str], n: int = 1, temperature: float = 1.0,
           top_p: float = 1.0, max_new_tokens: int = 64, batch_size: int = 64,
           seed: int | None = None, progress: bool = True, desc: str = "sampling",
           stop_after_answer: bool = True, share_prefix: bool = True) -> tuple[list[list[Completion]], SamplingStats]:
    """n completions per prompt (texts decoded without special tokens), plus throughput stats.

    temperature 0 means greedy decoding. stop_after_answer ends a row at the newline after
    its first committed answer (`StopAfterAnswer`); such a row counts as finished.
    share_prefix reuses the KV cache of the prompts' common prefix (module doc). With `seed`, results are reproducible for the same
    prompts, n and batch_size on the same device.
    """
    if seed is not None:
        torch.manual_seed(seed)
    device = next(model.parameters()).device
    eos = tokenizer.eos_token_id
    encoded = [tokenizer(p, add_special_tokens=False)["input_ids"] for p in prompts]
    n_prefix = shared_prefix_length(encoded) if share_prefix and len(prompts) * n > 1 else 0
    prefix_cache = None
    if n_prefix >= 16:  # worth caching
        prefix_cache = model(torch.tensor([encoded[0][:n_prefix]], device=device), use_cache=True).past_key_values
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
        batch = _pad_after_prefix([encoded[i] for i, _ in chunk], n_prefix if prefix_cache else 0,
                                  tokenizer.pad_token_id, device)
        if prefix_cache is not None:
            cache = copy.deepcopy(prefix_cache)
            cache.batch_repeat_interleave(len(chunk))
            batch["past_key_values"] = cache
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


def _pad_after_prefix(rows: list[list[int]], n_prefix: int, pad_id: int, device) -> dict:
    """Left-pad the part after the shared prefix: [prefix][pad..][rest]; mask 0 on the pads.

    With n_prefix = 0 this is ordinary left padding. transformers derives position ids from
    the attention mask, so the pads shift nothing.
    """
    width = max(len(r) for r in rows)
    ids = torch.full((len(rows), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(rows), width), dtype=torch.long)
    for b, r in enumerate(rows):
        pad = width - len(r)
        ids[b, :n_prefix] = torch.tensor(r[:n_prefix], dtype=torch.long)
        ids[b, n_prefix + pad:] = torch.tensor(r[n_prefix:], dtype=torch.long)
        mask[b, :n_prefix] = 1
        mask[b, n_prefix + pad:] = 1
    return {"input_ids": ids.to(device), "attention_mask": mask.to(device)}


def _tokens_up_to(tokenizer, ids: list[int], n_chars: int) -> int:
    """Fewest leading tokens of `ids` whose decoded text has at least n_chars characters."""
    for k in range(1, len(ids) + 1):
        if len(tokenizer.decode(ids[:k], skip_special_tokens=True)) >= n_chars:
            return k
    return len(ids)
