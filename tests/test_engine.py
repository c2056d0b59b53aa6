"""The decode loop: identical to transformers' generate, forced tokens, provenance."""

import functools

import pytest
import torch

from aipo_lite.config import Config
from aipo_lite.engine import decode as engine
from aipo_lite.engine import prefill
from aipo_lite.records import RowState
from aipo_lite.engine.decode import Row
from aipo_lite.model.policy import load_policy
from aipo_lite.records import Prov
from aipo_lite.rollout.groups import assisted_prompt
from aipo_lite.tasks.loading import load_tasks
from aipo_lite.tasks.prompts import agent_free_prompt


def _generate_greedy(model, prompt: list[int], n: int) -> list[int]:
    return _generate_greedy_of(model, tuple(prompt), n)


@functools.cache  # the eager and static cases of a test compare with the same reference: generate it once
def _generate_greedy_of(model, prompt: tuple[int, ...], n: int) -> list[int]:
    device = next(model.parameters()).device
    ref = model.generate(torch.tensor([list(prompt)], device=device), max_new_tokens=n, do_sample=False, top_p=None,
                         top_k=None, temperature=None)[0, len(prompt):].tolist()
    return ref[:ref.index(model.generation_config.eos_token_id) + 1] if model.generation_config.eos_token_id in ref else ref


def _last_logits(model, ids: list[int]) -> torch.Tensor:
    with torch.no_grad():
        return model(torch.tensor([ids], device=next(model.parameters()).device)).logits[0, -1].float().cpu()


@pytest.mark.slow
@pytest.mark.parametrize("static", [False, True], ids=["eager", "static"])
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_greedy_decoding_matches_transformers_generate(real_policies, dtype, static, monkeypatch):
    """Both decode paths (eager, shrinking batch: the CPU default; static slots: the CUDA one,
    graph-captured there, eager here), the eager one with every distinct prompt length prefilled
    as its own bucket, the static one with the whole batch in one (prefill.py). fp32: token for token. bf16: token for token until a near tie, i.e. a position where the
    two choices' fp32 logits differ by less than twice the bf16 model's own rounding error there
    (its largest logit deviation from fp32): batched and one-at-a-time bf16 kernels round
    differently, so either may take either token. A wrong cache, mask or position would diverge
    where the margin is large, and fail."""
    policy, exact = real_policies(dtype), real_policies("float32")
    tok, model = policy.tokenizer, policy.sampler()
    tasks = load_tasks("synth", "test", tiers=["add3", "units"], limit_per_tier=3)
    # plain and assisted prompts in one batch: two prefix groups, each cached once
    prompts = [tok.encode(agent_free_prompt(tok, t.question), add_special_tokens=False) for t in tasks]
    prompts += [tok.encode(assisted_prompt(tok, t.question), add_special_tokens=False) for t in tasks[:2]]
    assert len(prefill.prefix_groups(prompts)) == 2
    monkeypatch.setattr(prefill, "BUCKET_COST", 10**9 if static else 0)
    rests = sorted(len(p) - n for rows_, n in prefill.prefix_groups(prompts) for p in (prompts[b] for b in rows_))
    buckets = prefill.length_buckets(rests, prefill.BUCKET_COST)
    assert len(buckets) == 1 if static else len(buckets) == len(set(rests)) > 1
    rows = [Row(p, 20) for p in prompts]
    engine.run(model, tok, rows, temperature=0, static_step=static)
    identical = 0
    for p, row in zip(prompts, rows):  # one at a time: no padding, no shared prefix
        ref = _generate_greedy(model, p, 20)
        if dtype == "float32" or row.ids == ref:
            assert row.ids == ref, (tok.decode(row.ids), tok.decode(ref))
            identical += 1
            continue
        i = next(i for i, (a, b) in enumerate(zip(row.ids, ref)) if a != b)
        ctx = p + ref[:i]
        truth = _last_logits(exact.model, ctx)
        margin = (truth[ref[i]] - truth[row.ids[i]]).abs()
        rounding = (_last_logits(model, ctx) - truth).abs().max()
        assert margin <= 2 * rounding, (i, float(margin), float(rounding), tok.decode(row.ids), tok.decode(ref))
    assert identical >= len(rows) // 2


@pytest.mark.parametrize("static", [False, True], ids=["eager", "static"])
def test_forced_tokens_provenance_and_logprobs(tiny_model_dir, static):
    """Forced tokens mid-sequence, on both decode paths; the feedback is longer than the room a
    static batch is first given (max_new_tokens + 16), so the static step must grow."""
    policy = load_policy(Config(model=tiny_model_dir, lora_r=0, dtype="float32"))
    tok, model = policy.tokenizer, policy.model
    prompt = tok.encode("Question: 1 + 1?", add_special_tokens=False)
    forced = tok.encode("<feedback>Next: 1 + 1 = 2. Then 2 + 2 = 4, 4 + 4 = 8 and 8 + 8 = 16.</feedback>",
                        add_special_tokens=False)
    assert len(forced) > 12 + 16

    fed = set()

    def inject(row):  # after the 3rd policy token, feed the feedback (once)
        if len(row.ids) == 3 and id(row) not in fed:
            fed.add(id(row))
            row.forced += [(t, Prov.AGENT) for t in forced]

    rows = [Row(prompt, 12, state=RowState(every_token=True)), Row(prompt[:-1], 12)]
    engine.run(model, tok, rows, temperature=1.0, on_token=inject, generator=0,
               watch_ids=torch.tensor([], dtype=torch.long), static_step=static)
    r = rows[0]
    assert r.prov[:3] == [Prov.POLICY] * 3 and r.ids[3:3 + len(forced)] == forced
    assert r.prov[3:3 + len(forced)] == [Prov.AGENT] * len(forced)
    assert r.n_policy == 12 == len(r.ids) - len(forced) and r.finished == "length"
    assert rows[1].prov == [Prov.POLICY] * len(rows[1].ids)  # the other row never paused
    # every recorded log-prob is the model's log-prob of that token in context (teacher forcing)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + r.ids], device=policy.device)).logits[0, len(prompt) - 1:-1].cpu()
    expected = torch.log_softmax(logits.float(), -1).gather(1, torch.tensor(r.ids)[:, None])[:, 0]
    torch.testing.assert_close(torch.tensor(r.logprobs), expected, rtol=1e-4, atol=1e-4)
    assert all(e >= 0 for e in r.entropies)


def test_sampling_follows_the_distribution_and_top_p():
    probs = torch.tensor([0.5, 0.0, 0.3, 0.15, 0.05])
    logits = probs.log().repeat(40000, 1)
    tok, logp, ent = engine._sample(logits, 1.0, 1.0, torch.Generator().manual_seed(0))
    freq = torch.bincount(tok, minlength=5) / len(tok)
    torch.testing.assert_close(freq, probs, atol=0.01, rtol=0)
    assert freq[1] == 0  # a zero-probability token is never drawn
    expected_entropy = -(probs[probs > 0] * probs[probs > 0].log()).sum()
    torch.testing.assert_close(ent, expected_entropy.expand(len(ent)))  # -inf logit handled
    tok, _, _ = engine._sample(logits, 1.0, 0.7, torch.Generator().manual_seed(0))
    assert set(tok.tolist()) == {0, 2}  # nucleus 0.7: the two most likely tokens


def test_length_buckets_compute_the_fewest_positions():
    """The prefill's buckets (prefill.length_buckets): contiguous slices of the rows sorted by
    length, each padded to its longest, plus a fixed cost per slice; the split found is the
    cheapest of all 2^(n-1) ways to cut, and cost None is one bucket (CUDA)."""
    import itertools
    import random

    def cost(lengths, slices, c):
        return sum((e - s) * lengths[e - 1] + c for s, e in slices)

    rnd = random.Random(0)
    for _ in range(200):
        lengths = sorted(rnd.randint(1, 40) for _ in range(rnd.randint(1, 9)))
        c = rnd.choice([0, 8, 32, 100])
        got = prefill.length_buckets(lengths, c)
        assert got[0][0] == 0 and got[-1][1] == len(lengths) and all(a[1] == b[0] for a, b in zip(got, got[1:]))
        best = min(cost(lengths, [(s, e) for s, e in zip((0,) + cuts, cuts + (len(lengths),))], c)
                   for k in range(len(lengths)) for cuts in itertools.combinations(range(1, len(lengths)), k))
        assert cost(lengths, got, c) == best, (lengths, c, got)
    assert prefill.length_buckets([3, 9, 30], None) == [(0, 3)]


def test_prefix_groups_cache_each_prompt_kind_once():
    plain, asst = [1, 2] + [5] * 20, [1, 3] + [6] * 30
    groups = prefill.prefix_groups([plain + [7], asst + [7], plain + [8], asst + [9]])
    assert sorted(groups) == [([0, 2], len(plain)), ([1, 3], len(asst))]
    # prompts that differ right after a common prefix (different questions): one shared group
    assert prefill.prefix_groups([[1, 2, 3, 4], [1, 2, 5, 6], [1, 2, 7, 8]]) == [([0, 1, 2], 2)]


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_prefill_runs_a_repeated_prompt_once_with_the_same_cache_and_logits(tiny_model_dir, dtype):
    """n samples of one question, a group's rollouts: rows with the same prompt are computed once
    per bucket and copied, so they hold identical keys, values and logits; each row's equal a lone
    forward of its prompt: in fp32 to float rounding, in bf16 within twice the bf16 model's own
    deviation from fp32 on those prompts (a batch and a lone row round differently)."""
    policy = load_policy(Config(model=tiny_model_dir, lora_r=0, dtype=dtype))
    tok, model = policy.tokenizer, policy.model
    ids = [tok.encode(agent_free_prompt(tok, q), add_special_tokens=False)
           for q in ("What is 2 + 3?", "What is 40 + 2?", "What is 2 + 3?", "What is 7 + 8?", "What is 2 + 3?")]
    rows = [Row(list(p), 4) for p in ids]
    with torch.no_grad():
        cache, logits, mask, _ = prefill.prefill(model, tok, rows, True, policy.device)
    bound = 1e-4
    if dtype == "bfloat16":
        exact = load_policy(Config(model=tiny_model_dir, lora_r=0, dtype="float32")).model
        bound = 2 * max(float((_last_logits(model, p) - _last_logits(exact, p)).abs().max()) for p in ids)
    same = [b for b, row in enumerate(rows) if row.prompt_ids == ids[0]]
    assert len(same) == 3
    for b in same[1:]:  # copies of one computation
        assert torch.equal(logits[b], logits[same[0]])
        assert all(torch.equal(layer.keys[b], layer.keys[same[0]]) for layer in cache.layers)
    for b, row in enumerate(rows):
        assert float((logits[b].float().cpu() - _last_logits(model, row.prompt_ids)).abs().max()) <= bound
        if dtype == "float32":
            real = mask[b].bool()
            with torch.no_grad():
                alone = model(torch.tensor([row.prompt_ids]), use_cache=True).past_key_values
            for mine, ref in zip(cache.layers, alone.layers):
                torch.testing.assert_close(mine.keys[b][:, real], ref.keys[0], rtol=1e-4, atol=1e-4)
                torch.testing.assert_close(mine.values[b][:, real], ref.values[0], rtol=1e-4, atol=1e-4)


def test_every_sampling_entry_point_takes_a_seed_or_a_generator_on_either_device(tiny_model_dir):
    """sampling.sample, rollout_group and engine.run accept an int seed, a CPU generator or one
    on the model's device (CUDA when present): the kit moves the draw to the model's device."""
    from aipo_lite.agents.base import make_agent
    from aipo_lite.agents.guard import Guarded
    from aipo_lite.engine.sampling import sample
    from aipo_lite.rollout.detector import Detector
    from aipo_lite.rollout.groups import rollout_group
    policy = load_policy(Config(model=tiny_model_dir, lora_r=0, dtype="float32"))
    tok, dev = policy.tokenizer, policy.device
    task = load_tasks("synth", "test", tiers=["add3"], limit_per_tier=1)
    agents = {role: Guarded(make_agent(role)) for role in ("verify", "knowledge", "reasoning")}
    seeds = [lambda: 3, lambda: torch.Generator().manual_seed(3), lambda: torch.Generator(device=dev).manual_seed(3)]
    texts = []
    for g in seeds:
        outs, _ = sample(policy.model, tok, ["What is 1 + 2?"], n=2, max_new_tokens=6, generator=g(), progress=False)
        groups, _ = rollout_group(policy, task, agents, Detector(), 1, 1, max_new_tokens=6, generator=g())
        texts.append(([c.text for c in outs[0]], [r.text for r in groups[0]]))
    assert texts[0] == texts[2]  # an int seed = a generator on the model's device seeded with it
    if dev.type == "cpu":
        assert texts[1] == texts[0]
    a, _ = sample(policy.model, tok, ["What is 1 + 2?"], n=2, max_new_tokens=6, seed=3, progress=False)
    assert [c.text for c in a[0]] == texts[0][0]
    g = engine.device_generator(torch.Generator().manual_seed(5), dev)
    assert g.device.type == dev.type
    with pytest.raises(TypeError, match="generator="):
        engine.device_generator("5", dev)


@pytest.mark.slow
@pytest.mark.parametrize("static", [False, True], ids=["eager", "static"])
def test_continuous_batching_refills_slots_and_still_matches_generate(real_policies, static):
    """max_batch < rows: eager: finished rows' slots are refilled with waiting rows (prompts of
    other lengths, so either side of the join is left-padded); static: batches of max_batch rows
    one after another. fp32 greedy output still equals generate() row by row, and every row
    finishes exactly once."""
    policy = real_policies("float32")
    tok, model = policy.tokenizer, policy.sampler()
    tasks = load_tasks("synth", "test", tiers=["add1d", "units", "expr3"], limit_per_tier=3)
    prompts = [tok.encode(agent_free_prompt(tok, t.question), add_special_tokens=False) for t in tasks]
    prompts += [tok.encode(assisted_prompt(tok, t.question), add_special_tokens=False) for t in tasks[:2]]
    rows = [Row(p, 4 + 3 * (i % 4)) for i, p in enumerate(prompts)]  # different lengths: slots free early
    done = []
    engine.run(model, tok, rows, temperature=0, max_batch=3, on_finish=done.append, static_step=static)
    assert sorted(map(id, done)) == sorted(map(id, rows))
    for p, row in zip(prompts, rows):
        assert row.ids == _generate_greedy(model, p, row.max_new_tokens), tok.decode(row.ids)


@pytest.mark.slow
@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_static_step_launched_before_reading_the_last_one_changes_nothing(real_policies, dtype):
    """Without hooks the static path launches step t+1 before it reads step t's tokens (the
    device works while the host does its bookkeeping). Sampled at T = 1 with a seed, in several
    static batches, with the stop rule: the same ids, log-probs, entropies and endings as the
    read-first path (taken when a hook is given: here one that is never due)."""
    from aipo_lite.engine.commit_machine import commit_machine
    policy = real_policies(dtype)
    tok, model = policy.tokenizer, policy.sampler()
    tasks = load_tasks("synth", "test", tiers=["add1d", "add3"], limit_per_tier=3)
    prompts = [tok.encode(agent_free_prompt(tok, t.question), add_special_tokens=False) for t in tasks]
    out = []
    for hook in (None, lambda row: None):
        rows = [Row(p, 24) for p in prompts]
        engine.run(model, tok, rows, temperature=1.0, generator=7, max_batch=4, static_step=True, on_token=hook,
                   watch_ids=torch.tensor([], dtype=torch.long), stop=commit_machine(tok))
        out.append([(r.ids, r.prov, r.logprobs, r.entropies, r.finished) for r in rows])
    assert out[0] == out[1]
    assert {r[4] for r in out[0]} - {"length"}  # some rows ended before their length limit


@pytest.mark.parametrize("static", [False, True])
def test_hooks_due_in_one_step_run_concurrently_on_a_pool_with_the_same_result(tiny_model_dir, static):
    """engine.run(hook_pool=...): the hooks of one decode step overlap (a slow agent server does
    not serialize the step); rows, forced tokens and finishing are as with sequential hooks."""
    import time
    from concurrent.futures import ThreadPoolExecutor

    policy = load_policy(Config(model=tiny_model_dir, lora_r=0, dtype="float32"))
    tok = policy.tokenizer
    extra = tok.encode(" ok", add_special_tokens=False)
    fed = set()

    def hook(row):
        time.sleep(0.05)
        if len(row.ids) == 3 and id(row) not in fed:  # once per row: queue forced tokens
            fed.add(id(row))
            row.forced += [(t, Prov.AGENT) for t in extra]
        if len(row.ids) >= 8:
            row.finished = "stop"

    def rows():
        return [Row(tok.encode(f"What is {i} + 1?", add_special_tokens=False), 12, state=RowState(every_token=True))
                for i in range(8)]

    out = {}
    for pool in (None, ThreadPoolExecutor(8)):
        rs = rows()
        t0 = time.perf_counter()
        engine.run(policy.model, tok, rs, generator=0, on_token=hook, hook_pool=pool, static_step=static)
        out[pool is not None] = (time.perf_counter() - t0, [(r.ids, r.prov, r.finished) for r in rs])
    assert out[True][1] == out[False][1]
    assert all(r[2] == "stop" and r[1][3:3 + len(extra)] == [Prov.AGENT] * len(extra) for r in out[True][1])
    assert out[True][0] < out[False][0] / 2  # 8 rows' hooks per step overlap


@pytest.mark.parametrize("static", [False, True], ids=["eager", "static"])
def test_a_sliding_window_model_decodes_as_transformers_generate_and_is_refused_beyond_its_window(tiny_gemma_dir, static):
    """Gemma 3's architecture (sliding-window and global layers): the engine's caches keep every
    position, so within the window greedy decoding of a batch with a shared prefix equals
    generate() one prompt at a time; a batch that would outgrow the window is refused (left
    padding shifts cache columns, where the model's masks count the window)."""
    policy = load_policy(Config(model=tiny_gemma_dir, lora_r=0, dtype="float32"))
    tok, model = policy.tokenizer, policy.model
    tasks = load_tasks("synth", "test", tiers=["add3", "units"], limit_per_tier=2)
    prompts = [tok.encode(agent_free_prompt(tok, t.question), add_special_tokens=False) for t in tasks]
    rows = [Row(p, 12) for p in prompts]
    engine.run(model, tok, rows, temperature=0, static_step=static)
    for p, row in zip(prompts, rows):
        assert row.ids == _generate_greedy(model, p, 12)
    with pytest.raises(ValueError, match="sliding window \\(512 tokens\\)"):
        engine.run(model, tok, [Row(p, 512) for p in prompts], temperature=0, static_step=static)
