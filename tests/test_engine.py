"""The decode loop: identical to transformers' generate, forced tokens, provenance."""

import pytest
import torch

from aipo_lite import engine
from aipo_lite.config import Config
from aipo_lite.engine import Prov, Row
from aipo_lite.policy import load_policy
from aipo_lite.prompts import agent_free_prompt
from aipo_lite.rollout import assisted_prompt
from aipo_lite.tasks import load_tasks


@pytest.mark.slow
def test_greedy_decoding_matches_transformers_generate(real_policy):
    tok, model = real_policy.tokenizer, real_policy.sampler()
    tasks = load_tasks("synth", "test", tiers=["add3", "units"], limit_per_tier=3)
    # plain and assisted prompts in one batch: two prefix groups, each cached once
    prompts = [tok.encode(agent_free_prompt(tok, t.question), add_special_tokens=False) for t in tasks]
    prompts += [tok.encode(assisted_prompt(tok, t.question), add_special_tokens=False) for t in tasks[:2]]
    assert len(engine.prefix_groups(prompts)) == 2
    rows = [Row(p, 20) for p in prompts]
    engine.run(model, tok, rows, temperature=0)
    for p, row in zip(prompts, rows):  # one at a time: no padding, no shared prefix
        ref = model.generate(torch.tensor([p]), max_new_tokens=20, do_sample=False, top_p=None,
                             top_k=None, temperature=None)[0, len(p):].tolist()
        ref = ref[:ref.index(tok.eos_token_id) + 1] if tok.eos_token_id in ref else ref
        assert row.ids == ref, (tok.decode(row.ids), tok.decode(ref))


def test_forced_tokens_provenance_and_logprobs(tiny_model_dir):
    policy = load_policy(Config(model=tiny_model_dir, lora_r=0, dtype="float32"))
    tok, model = policy.tokenizer, policy.model
    prompt = tok.encode("Question: 1 + 1?", add_special_tokens=False)
    forced = tok.encode("<feedback>Next: 1 + 1 = 2.</feedback>", add_special_tokens=False)

    def inject(row):  # after the 3rd policy token, feed the feedback (once)
        if len(row.ids) == 3 and not row.state.get("done"):
            row.state["done"] = True
            row.forced += [(t, Prov.AGENT) for t in forced]

    rows = [Row(prompt, 12, state={"every_token": True}), Row(prompt[:-1], 12)]
    engine.run(model, tok, rows, temperature=1.0, on_token=inject, generator=torch.Generator().manual_seed(0),
               watch_ids=torch.tensor([], dtype=torch.long))
    r = rows[0]
    assert r.prov[:3] == [Prov.POLICY] * 3 and r.ids[3:3 + len(forced)] == forced
    assert r.prov[3:3 + len(forced)] == [Prov.AGENT] * len(forced)
    assert r.n_policy == 12 == len(r.ids) - len(forced) and r.finished == "length"
    assert rows[1].prov == [Prov.POLICY] * len(rows[1].ids)  # the other row never paused
    # every recorded log-prob is the model's log-prob of that token in context (teacher forcing)
    with torch.no_grad():
        logits = model(torch.tensor([prompt + r.ids])).logits[0, len(prompt) - 1:-1]
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


def test_prefix_groups_cache_each_prompt_kind_once():
    plain, asst = [1, 2] + [5] * 20, [1, 3] + [6] * 30
    groups = engine.prefix_groups([plain + [7], asst + [7], plain + [8], asst + [9]])
    assert sorted(groups) == [([0, 2], len(plain)), ([1, 3], len(asst))]
    # prompts that differ right after a common prefix (different questions): one shared group
    assert engine.prefix_groups([[1, 2, 3, 4], [1, 2, 5, 6], [1, 2, 7, 8]]) == [([0, 1, 2], 2)]
