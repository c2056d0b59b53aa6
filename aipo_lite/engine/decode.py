"""The decode loop behind every rollout: batched sampling with per-row interruptions.

One step feeds one token per live row through the model (KV cache: kv_cache.GrowingCache,
a DynamicCache that writes each step's column in place). A row either samples its next
token from the policy or, when it has
*forced* tokens queued (an agent's feedback, its tags, a replayed prefix), consumes the next
forced token instead. So a row that pauses to consult an agent never stalls the batch: its
feedback flows in one token per step while the other rows keep sampling, and the policy's
log-probability of every forced token comes for free. Finished rows leave the batch (their
KV rows are dropped), so late steps get cheaper.

Every generated token gets a provenance label (POLICY, AGENT, TEMPLATE), its sampling
log-probability (POLICY: of the sampled token; forced: the policy's probability of that
token in the interactive context) and the entropy of the sampling distribution.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable

import torch

from aipo_lite.engine.hook_tokens import watch_ids_of
from aipo_lite.engine.prefill import left_pad, prefill
from aipo_lite.engine.static_step import StaticStep, to_host
from aipo_lite.records import Prov, RowState


@dataclass
class Row:
    """One sequence in flight. `ids`/`prov`/`logprobs`/`entropies` cover generated tokens only.

    max_new_tokens bounds the tokens the policy samples; forced tokens come on top."""
    prompt_ids: list[int]
    max_new_tokens: int
    n_policy: int = 0
    forced: list[tuple[int, int]] = field(default_factory=list)  # queued (token, Prov)
    ids: list[int] = field(default_factory=list)
    prov: list[int] = field(default_factory=list)
    logprobs: list[float] = field(default_factory=list)
    entropies: list[float] = field(default_factory=list)
    finished: str = ""   # '', 'eos', 'stop' (a hook or the stop machine ended it) or 'length'
    state: RowState | None = None  # what the row's hook keeps (records.RowState)
    commit: int = 0      # state of run(stop=...)'s commit machine; -1: not watched (a hook decides)


# on_token(row, index, text_so_far_fn) -> None; may queue forced tokens or set row.finished
Hook = Callable[[Row], None]


def _sample(logits: torch.Tensor, temperature: float, top_p: float, generator):
    """Sampled token, its log-prob and the entropy under the tempered distribution.

    Sampling inverts the CDF with one uniform per row (cumsum + searchsorted): the same
    distribution as torch.multinomial, ~20x cheaper on CPU over a 49k vocabulary."""
    if temperature == 0:
        logp = torch.log_softmax(logits.float(), -1)
        tok = logp.argmax(-1)
        probs = logp.exp()
    else:
        logp = torch.log_softmax(logits.float() / temperature, -1)
        probs = logp.exp()
        weights = probs
        if top_p < 1.0:
            sorted_p, idx = probs.sort(-1, descending=True)
            keep = sorted_p.cumsum(-1) - sorted_p < top_p
            weights = torch.zeros_like(probs).scatter(-1, idx, sorted_p * keep)
        cdf = weights.cumsum(-1)
        u = torch.rand(cdf.shape[0], 1, generator=generator, device=cdf.device) * cdf[:, -1:]
        tok = torch.searchsorted(cdf, u, right=True).clamp(max=cdf.shape[1] - 1).squeeze(-1)
    entropy = -(probs * logp).sum(-1)
    if entropy.isnan().any():  # -inf logits (0 * -inf): drop those terms
        entropy = -(probs * logp).nan_to_num().sum(-1)
    return tok, logp, entropy


def device_generator(generator: "torch.Generator | int | None", device) -> torch.Generator | None:
    """The sampling generator on the model's `device` (a CUDA kernel cannot draw from a CPU
    generator). An int seeds a new one; a generator already on `device` is used as is; one on
    another device seeds a new one from its next draw (deterministic, and it advances the given
    generator, so repeated calls differ); None = torch's global RNG."""
    device = torch.device(device)
    if generator is None:
        return None
    if isinstance(generator, int) and not isinstance(generator, bool):
        return torch.Generator(device=device).manual_seed(generator)
    if not isinstance(generator, torch.Generator):
        raise TypeError(f"generator={generator!r} must be a torch.Generator, an int seed or None")
    if generator.device.type == device.type:
        return generator
    seed = int(torch.randint(0, 2**62, (1,), generator=generator, device=generator.device))
    return torch.Generator(device=device).manual_seed(seed)


# The most rows a static batch takes when max_batch is not given: its cache holds slots x
# capacity columns, and a slot stays until the whole batch is done.
STATIC_MAX_SLOTS = 512


def check_window(model, rows: list[Row], extra: int) -> None:
    """A model with sliding-window layers (Gemma 3) decodes exactly only while a batch's cache
    stays within the window: the engine keeps every position and the model's masks apply the
    window in cache columns, which left padding shifts. Refused beyond it (ValueError)."""
    conf = getattr(model, "config", None)
    window = getattr(conf, "sliding_window", None) if "sliding_attention" in (getattr(conf, "layer_types", None) or []) else None
    need = max(len(r.prompt_ids) for r in rows) + _room(rows, extra)
    if window and need > window:
        raise ValueError(f"prompts of up to {max(len(r.prompt_ids) for r in rows)} tokens plus {_room(rows, extra)} "
                         f"to generate exceed the model's sliding window ({window} tokens): the kit's engine decodes "
                         "sliding-window models only within it; shorten the prompts or the token budgets")


def _room(rows: list[Row], extra: int) -> int:
    """Positions a batch is first given beyond its prompts: sampled tokens, the caller's
    estimate of forced ones (`extra_room`), 16 spare; the static step grows past it if needed
    (each growth is a new graph capture)."""
    return max(r.max_new_tokens for r in rows) + extra + 16


def _advance(r: Row, b: int, host: list, logp: torch.Tensor, on_token, watch: set, eos: int,
             stats: dict, defer: list | None = None, stop=None) -> int:
    """Give row r (batch index b) its next token: the sampled one, or the next forced one.
    Advances the row's commit machine (`stop`), runs the hook where due (or, with `defer`,
    appends the row there for the caller to run it and then `_check_length`) and marks the row
    finished; returns the token to feed."""
    t, lp_forced, h = int(host[0][b]), host[2][b], host[3][b]
    if t == eos and not r.forced and on_token and r.state is not None and r.state.intercept_eos:
        # the hook may continue the row instead of ending it (verify-before-commit
        # when the answer is followed by EOS): then the EOS is dropped, forced tokens fed
        r.state.at_eos = True
        on_token(r)
        r.state.at_eos = False
        if r.forced:  # queued just now, so not gathered above (rare: one more read)
            lp_forced = logp[b, r.forced[0][0]].item()
    hook = False
    if r.forced:
        t, p = r.forced.pop(0)
        _record(r, t, p, lp_forced, h)
        stats["forced_tokens"] += 1
        hook = not r.forced and on_token is not None
    else:
        _record(r, t, Prov.POLICY, host[1][b], h)
        stats["policy_tokens"] += 1
        r.n_policy += 1
        if t == eos:
            r.finished = "eos"
        else:
            hook = on_token is not None and (t in watch or (r.state is not None and r.state.every_token))
    if stop is not None and r.commit >= 0 and not r.finished:
        r.commit = stop.step(r.commit, t)
        if r.commit == stop.accept:  # its first committed answer is complete
            r.finished, hook = "stop", False
    if hook and defer is not None:
        defer.append(r)
        return t
    if hook:
        on_token(r)
    _check_length(r)
    return t


def _check_length(r: Row) -> None:
    if not r.finished and not r.forced and r.n_policy >= r.max_new_tokens:
        r.finished = "length"


def _record(r: Row, t: int, prov: int, logp: float, entropy: float) -> None:
    r.ids.append(t)
    r.prov.append(prov)
    r.logprobs.append(logp)
    r.entropies.append(entropy)


@torch.no_grad()
def run(model, tokenizer, rows: list[Row], temperature: float = 1.0, top_p: float = 1.0,
        on_token: Hook | None = None, watch_ids: torch.Tensor | None = None,
        generator: torch.Generator | int | None = None, share_prefix: bool = True,
        max_batch: int | None = None, on_finish: Callable[[Row], None] | None = None,
        static_step: bool | None = None, extra_room: int = 0, hook_pool=None, stop=None) -> dict:
    """Decode all rows to completion (in place). Returns step/token counts.

    on_token(row) is called after a row receives a token whose id is in `watch_ids` (default:
    tokens that can end a line, a tag or a brace), or after the last forced token; it may
    queue forced tokens or set row.finished. EOS ends a row (unless row.state.intercept_eos
    and the hook, called with row.state.at_eos set, queues forced tokens: then the EOS is
    dropped and they are fed instead); so does reaching max_new_tokens sampled tokens (once
    any queued forced tokens are in). `generator`: a torch.Generator on any device or an int
    seed (see device_generator). `max_batch`: decode at most this many rows at once; once a
    quarter of the slots are free, waiting rows are prefilled and join the running batch
    (continuous batching), so late steps do not run a nearly empty batch. on_finish(row) is
    called once a row is done. `static_step` (default: on CUDA): decode on fixed slots with the
    step replayed as a CUDA graph (static_step.py); finished rows keep their slot until the
    whole batch of `max_batch` rows (default STATIC_MAX_SLOTS) is done, then the next batch is
    prefilled. `extra_room`: forced tokens a row may get (static batches are sized for them).
    `hook_pool` (a concurrent.futures executor): the hooks due in one step run concurrently on
    it (agent requests to a slow server then overlap); each hook touches only its own row.
    `stop` (commit_machine.CommitMachine): every row whose `commit` is >= 0 ends ('stop') at its
    first committed answer, decided from token ids by one table lookup per token (no decode).
    """
    device = next(model.parameters()).device
    generator = device_generator(generator, device)
    eos = tokenizer.eos_token_id
    watch = set((watch_ids if watch_ids is not None else watch_ids_of(tokenizer)).tolist())
    waiting = [r for r in rows if not r.finished]
    stats = {"steps": 0, "policy_tokens": 0, "forced_tokens": 0}
    if not waiting:
        return stats
    check_window(model, waiting, extra_room)
    static = device.type == "cuda" if static_step is None else static_step
    size = max_batch or (min(len(waiting), STATIC_MAX_SLOTS) if static else len(waiting))
    live, waiting = waiting[:size], waiting[size:]
    cache, logits, mask, next_pos = prefill(model, tokenizer, live, share_prefix, device)
    step = StaticStep(model, cache, mask, next_pos, _room(live, extra_room), graph=True) if static else None

    while live:
        tok, logp, ent = _sample(logits, temperature, top_p, generator)
        ahead = None  # the next step's logits when it was launched before this one was read
        look_ahead = step is not None and on_token is None and not any(r.forced for r in live)
        sampled = logp.gather(1, tok[:, None])[:, 0].double()
        if look_ahead:  # no hook can queue a token: nothing forced to score
            forced = sampled
        else:
            head = torch.tensor([r.forced[0][0] if r.forced else 0 for r in live], device=device)
            forced = logp.gather(1, head[:, None])[:, 0].double()
        # one device -> host copy per step (not one per row): the sampled ids, their log-probs,
        # the log-probs of the rows' queued forced tokens, and the entropies
        pending, ready = to_host(torch.stack([tok.double(), sampled, forced, ent.double()]))
        if look_ahead:
            # every slot's next feed is its sampled id: launch the next step first, then read this
            # one while the device runs it (dead slots decode their own unread samples instead of
            # pads); the same numbers as reading first
            logits = None  # the last graph output: if the step grows, its old pool can go
            ahead = step(tok)
        if ready is not None:
            ready.synchronize()  # the copy only, not a step launched after it
        host = pending.tolist()
        feed, ended, due = [], [], ([] if hook_pool is not None else None)
        for b, r in enumerate(live):
            if r.finished:  # a dead slot of the static step: it decodes a token nobody reads
                feed.append(tokenizer.pad_token_id)
                continue
            feed.append(_advance(r, b, host, logp, on_token, watch, eos, stats, due, stop))
            if r.finished:
                ended.append(r)
        if due:  # this step's hooks, concurrently; then the checks _advance left for after them
            list(hook_pool.map(on_token, due))
            for r in due:
                _check_length(r)
                if r.finished:
                    ended.append(r)
        stats["steps"] += 1
        for r in ended if on_finish else ():
            on_finish(r)
        if step is not None:  # fixed slots: a batch runs until all its rows are done
            if any(not r.finished for r in live):
                if ahead is None:
                    logits = None  # the last graph output: if the step grows, its old pool can go
                    ahead = step(feed)
                logits = ahead
                continue
            live, waiting = waiting[:size], waiting[size:]
            # the finished batch's graph goes before the next one is captured (as in StaticStep's
            # growth); an H100 failed in cuBLAS capturing a new graph beside the old (suspected cause)
            step = logits = ahead = None
            if live:
                cache, logits, mask, next_pos = prefill(model, tokenizer, live, share_prefix, device)
                step = StaticStep(model, cache, mask, next_pos, _room(live, extra_room), graph=True)
            continue
        keep = [b for b, r in enumerate(live) if not r.finished]
        if len(keep) < len(live):  # finished rows leave; rows from the end fill their slots
            order = cache.drop_rows(keep)
            idx = torch.tensor(order, device=device, dtype=torch.long)
            mask, next_pos = mask[idx], next_pos[idx]
            live, feed = [live[b] for b in order], [feed[b] for b in order]
        if live:
            mask = torch.cat([mask, mask.new_ones(len(live), 1)], dim=1)
            out = model(input_ids=torch.tensor(feed, device=device)[:, None], attention_mask=mask,
                        position_ids=next_pos[:, None], past_key_values=cache, use_cache=True)
            cache, logits = out.past_key_values, out.logits[:, -1]
            next_pos = next_pos + 1
        if waiting and len(live) <= size - max(1, size // 4):
            new, waiting = waiting[:size - len(live)], waiting[size - len(live):]
            c, l, m, p = prefill(model, tokenizer, new, share_prefix, device)
            if live:
                lead = int((mask.cumsum(1) == 0).sum(1).min())  # columns masked for every row
                if lead:  # (rows that came in long ago have left): the cache stays as short as it can
                    cache.drop_left(lead)
                    mask = mask[:, lead:]
                cache.join(c)
                width = max(mask.shape[1], m.shape[1])
                mask = torch.cat([left_pad(mask, width), left_pad(m, width)])
                logits, next_pos = torch.cat([logits, l]), torch.cat([next_pos, p])
            else:
                cache, logits, mask, next_pos = c, l, m, p
            live += new
    return stats
