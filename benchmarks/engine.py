"""Plain sampling throughput: the kit's decode engine against transformers' generate(), same batch.

    .venv/bin/python benchmarks/engine.py --batch-size 64
    .venv/bin/python benchmarks/engine.py --batch-size 64 --samples 256
    .venv/bin/python benchmarks/engine.py --batch-size 512 --device cuda --dtype bfloat16
    .venv/bin/python benchmarks/engine.py --batch-size 512 --device cuda --compare-read-first

Both sample `--batch-size` completions (one per prompt: agent-free prompts of synth test problems,
all tiers in turn) at T = 1, up to `--max-new-tokens` each, in ONE batch, after one warm-up call
each of the same size (a process's first full-size batch also pays for touching its memory for the
first time, which on the CPU is ~0.5 s of page faults; warmed up on 4 prompts only, as this
script did before 2026-11-24, that cost fell on whichever ran first, the kit).
With `--samples M` (more than a batch, as in an evaluation: problems x n), both make M completions
at the same batch size: generate() in consecutive batches, the kit in one decode loop whose
finished slots are refilled (continuous batching).
Counted: real tokens, i.e. each completion's tokens up to and including its EOS (generate() also
emits padding after a row's EOS until the longest row ends; those are not counted). The kit runs
without its stop-after-answer rule here (`sampling.sample(..., stop_after_answer=False)`), so
both decode the same kind of stream to EOS or the length limit. The last line is
`ratio <kit tok/s / generate() tok/s>`.
`--compare-nan-fill` adds four timed kit runs, with and without torch's NaN fill of new tensors.
`--compare-read-first` adds four timed runs of the static (CUDA) decode path, interleaved: the
default look-ahead (step t+1 launched before step t is read) and the read-first order.
"""

import argparse
import time

import torch

from aipo_lite.config import Config
from aipo_lite.engine.sampling import sample
from aipo_lite.model.policy import load_policy
from aipo_lite.tasks.loading import load_tasks
from aipo_lite.tasks.prompts import agent_free_prompt

ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
ap.add_argument("--batch-size", type=int, required=True)
ap.add_argument("--device", default="auto", choices=["auto", "cpu", "cuda"])
ap.add_argument("--dtype", default="auto", choices=["auto", "float32", "bfloat16"])
ap.add_argument("--max-new-tokens", type=int, default=64)
ap.add_argument("--cache", default="dynamic", choices=["dynamic", "static"], help="generate()'s KV cache")
ap.add_argument("--seed", type=int, default=0)
ap.add_argument("--compare-read-first", action="store_true",
                help="also time the static path both ways (engine.run, same rows and seed): launching the next "
                     "step before reading the last (the default without hooks) and reading first (forced by a "
                     "hook that is never due); on CUDA this measures what the look-ahead saves")
ap.add_argument("--samples", type=int, default=0,
                help="completions in all (default: --batch-size, one batch); more: generate() runs them in "
                     "batches of --batch-size, the kit keeps --batch-size slots and refills finished ones")
ap.add_argument("--compare-nan-fill", action="store_true",
                help="also time the kit's batch four more times, interleaved, with torch's deterministic-mode "
                     "fill of new tensors (NaN; the kit's default: torch.use_deterministic_algorithms turns it "
                     "on) and without it; results are the same either way. On the CPU it made no difference; "
                     "on a GPU each fill is one more kernel in the decode step's graph")
args = ap.parse_args()
samples = args.samples or args.batch_size

policy = load_policy(Config(lora_r=0, device=args.device, dtype=args.dtype))
tok, model, dev = policy.tokenizer, policy.model, policy.device
tasks = load_tasks("synth", "test")
prompts = [agent_free_prompt(tok, tasks[i * 7 % len(tasks)].question) for i in range(samples)]
eos = tok.eos_token_id


def sync():
    if dev.type == "cuda":
        torch.cuda.synchronize()


def run_kit(ps):
    sync()
    t0 = time.perf_counter()
    outs, stats = sample(model, tok, ps, n=1, temperature=1.0, max_new_tokens=args.max_new_tokens,
                         batch_size=min(len(ps), args.batch_size), seed=args.seed, progress=False,
                         stop_after_answer=False)
    sync()
    return stats.generated_tokens, time.perf_counter() - t0


def run_generate(ps):
    real = sec = 0
    for i in range(0, len(ps), args.batch_size):
        r, t = generate_batch(ps[i:i + args.batch_size])
        real, sec = real + r, sec + t
    return real, sec


def generate_batch(ps):
    enc = tok(ps, return_tensors="pt", padding=True, add_special_tokens=False).to(dev)
    torch.manual_seed(args.seed)
    sync()
    t0 = time.perf_counter()
    with torch.no_grad():
        out = model.generate(**enc, do_sample=True, temperature=1.0, top_p=None, top_k=None,
                             max_new_tokens=args.max_new_tokens, pad_token_id=tok.pad_token_id,
                             cache_implementation=None if args.cache == "dynamic" else "static")
    sync()
    sec = time.perf_counter() - t0
    new = out[:, enc["input_ids"].shape[1]:].tolist()
    real = sum(row.index(eos) + 1 if eos in row else len(row) for row in new)
    return real, sec


print(f"device {dev}, dtype {next(model.parameters()).dtype}, batch {args.batch_size}, samples {samples}, "
      f"max_new_tokens {args.max_new_tokens}, threads {torch.get_num_threads()}")
run_kit(prompts[:args.batch_size]), run_generate(prompts[:args.batch_size])  # warm-up, full size
kit_tokens, kit_s = run_kit(prompts)
gen_tokens, gen_s = run_generate(prompts)
if args.compare_read_first:
    from aipo_lite.engine import decode as engine
    encoded = [tok.encode(p, add_special_tokens=False) for p in prompts]
    never = torch.tensor([], dtype=torch.long)
    for name, hook in (("look-ahead", None), ("read-first", lambda row: None)) * 2:  # interleaved, twice
        rows = [engine.Row(e, args.max_new_tokens) for e in encoded]
        sync()
        t0 = time.perf_counter()
        engine.run(model, tok, rows, 1.0, generator=args.seed, max_batch=args.batch_size, static_step=True,
                   on_token=hook, watch_ids=never)
        sync()
        sec = time.perf_counter() - t0
        n = sum(len(r.ids) for r in rows)
        print(f"static {name:10s} {n:6d} real tokens in {sec:7.2f} s = {n / sec:9.1f} tok/s")
if args.compare_nan_fill:
    fill = torch.utils.deterministic.fill_uninitialized_memory
    for on in (True, False) * 2:  # interleaved, twice
        torch.utils.deterministic.fill_uninitialized_memory = on
        n, sec = run_kit(prompts)
        print(f"kit, NaN fill {'on ' if on else 'off'} {n:6d} real tokens in {sec:7.2f} s = {n / sec:9.1f} tok/s")
    torch.utils.deterministic.fill_uninitialized_memory = fill
print(f"kit        {kit_tokens:6d} real tokens in {kit_s:7.2f} s = {kit_tokens / kit_s:9.1f} tok/s")
print(f"generate() {gen_tokens:6d} real tokens in {gen_s:7.2f} s = {gen_tokens / gen_s:9.1f} tok/s ({args.cache} cache)")
print(f"ratio {(kit_tokens / kit_s) / (gen_tokens / gen_s):.2f}")
