"""The decode loop's own host cost: engine.run with the model and the sampler replaced by stubs
that cost ~nothing, so what is left per step is the loop itself (Python per row, the one host
copy per step, the small tensor ops), the part a GPU cannot take over.

    .venv/bin/python benchmarks/host_overhead.py --batch-size 512

The stub "samples" common word pieces with EOS at 1 in 40 per step, so rows end over the run as
real ones do (about half the rows alive on average over 64 steps); with the commit machine as in
evaluation and without it. Runs on the CPU; no model weights are read. Each setting runs twice and
the second run is reported. The last line is `host_ms_per_step <ms>` (with the commit machine).
Compare it with a real step's time (benchmarks/engine.py; README "On one H100") to see what share
of a step the loop's bookkeeping is.
"""

import argparse
import time
import types

import torch
from transformers import AutoTokenizer

from aipo_lite.config import Config
from aipo_lite.engine import decode as engine
from aipo_lite.engine import kv_cache
from aipo_lite.engine.commit_machine import commit_machine
from aipo_lite.model.policy import resolve_model_path

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--batch-size", type=int, required=True)
ap.add_argument("--max-new-tokens", type=int, default=64)
args = ap.parse_args()

tok = AutoTokenizer.from_pretrained(resolve_model_path(Config()))
vocab = len(tok)


class StubCache:
    def drop_rows(self, keep):
        return kv_cache.refill_order(keep)[0]


class StubModel(torch.nn.Module):
    """What engine.run reads from a model: parameters (device), config, and a forward whose
    output has past_key_values and logits (only their row count is used by the stub sampler)."""

    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.config = types.SimpleNamespace(num_hidden_layers=1)

    def forward(self, input_ids, **kwargs):
        return types.SimpleNamespace(past_key_values=StubCache(), logits=torch.zeros(input_ids.shape[0], 1, 1))


draws = torch.Generator().manual_seed(0)
pieces = torch.tensor(tok.encode(" the answer is 12 so we add 3 and get 15 .\nStep 2 : 7 + 8", add_special_tokens=False))
logp_row = torch.full((1, vocab), -10.8)


def stub_sample(logits, temperature, top_p, generator):
    rows = logits.shape[0]
    t = pieces[torch.randint(len(pieces), (rows,), generator=draws)]
    t = torch.where(torch.rand(rows, generator=draws) < 1 / 40, torch.full_like(t, tok.eos_token_id), t)
    return t, logp_row.expand(rows, vocab), torch.full((rows,), 1.5)


engine._sample = stub_sample
prompt = tok.encode("Question: what is 2 + 3?", add_special_tokens=False)
print(f"batch {args.batch_size}, max_new_tokens {args.max_new_tokens}, threads {torch.get_num_threads()}")
for name, stop in (("no stop rule", None), ("commit machine", commit_machine(tok))):
    for _ in range(2):
        rows = [engine.Row(list(prompt), args.max_new_tokens) for _ in range(args.batch_size)]
        t0 = time.perf_counter()
        stats = engine.run(StubModel(), tok, rows, 1.0, generator=0, share_prefix=False, stop=stop)
        sec = time.perf_counter() - t0
    ms = sec / stats["steps"] * 1e3
    print(f"{name:15s} {stats['steps']} steps, {stats['policy_tokens']} tokens "
          f"(avg {stats['policy_tokens'] / stats['steps']:.0f} rows alive): {ms:.2f} ms per step, "
          f"{sec / stats['policy_tokens'] * 1e6:.1f} us per token")
print(f"host_ms_per_step {ms:.2f}")
