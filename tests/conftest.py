"""Shared fixtures and the fast/slow split.

The real SmolLM2 policy is loaded once per session; so is the OpenAI-compatible llama.cpp server
(llama-cpp-python, a test dependency) on SmolLM2's GGUF. A test is `slow` when it is marked so or
when it uses one of SLOW_FIXTURES (applied here at collection, so it cannot be forgotten);
`make test-fast` runs `-m "not slow"`. A fast test that loads the real model anyway (through
load_policy with model='smollm2') fails with a message saying so.

Precisions: every precision-sensitive test names float32 and bfloat16. On a CPU without native
bf16 (no AVX512-BF16/AMX, or oneDNN capped below them, as the AVX2 stand-in does) the slow bf16
cases on the real model are skipped with that reason: there bf16 is emulated, 2x slower than
fp32, and no run of the kit picks it (`dtype="auto"` is fp32); they run where bf16 is native (CPUs
with it, CUDA) and anywhere with AIPO_TEST_EMULATED_BF16=1. Fast bf16 cases (tiny models) always run."""

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
SLOW_FIXTURES = {"real_policy", "real_policies", "llama_server"}
# the longest tests (`--durations`, docs/speed.md), sent to the workers first: a stale name only
# costs balance, never a test
LONGEST = ("test_sigkill_after_checkpoint", "test_training_boundary_and_methods_notebooks",
           "test_bridge_resumes_from_a_trl_checkpoint", "test_trl_bridge_notebook")


def pytest_configure(config):
    """Under pytest-xdist (`make test` runs 2 workers) each worker takes its share of the cores,
    and so do the processes it starts (trainers, notebook kernels: through OMP_NUM_THREADS), so
    two workers' matrix products do not fight over the same cores (oversubscribed OpenMP threads
    spin: a notebook test took 8x longer)."""
    workers = int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1"))
    if workers > 1:
        import torch
        cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
        share = max(1, cores // workers)
        os.environ["OMP_NUM_THREADS"] = os.environ["MKL_NUM_THREADS"] = str(share)
        torch.set_num_threads(share)


@pytest.hookimpl(tryfirst=True)  # before xdist names the groups
def pytest_collection_modifyitems(config, items):
    emulated = _bf16_is_emulated()
    for item in items:
        if SLOW_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
        if emulated and item.get_closest_marker("slow") and _runs_bf16(item):
            item.add_marker(pytest.mark.skip(reason="bf16 is emulated on this CPU (no AVX512-BF16/AMX, or oneDNN "
                                             "capped): run where bf16 is native, or set AIPO_TEST_EMULATED_BF16=1"))
    if getattr(config.option, "loadgroup", False):  # an xdist worker of `make test` (--dist loadgroup)
        _work_units(items)


def _work_units(items) -> None:
    """What each xdist worker takes as one unit, longest first. A test file is one unit (its
    module fixtures and the session's real policies load once per worker), except a slow test
    that shares no model (no module fixture, none of SLOW_FIXTURES: it loads or starts its own,
    as the notebooks, the trainer processes of the kill-and-resume test, accelerate): that one
    is a unit of its own, so they spread over the workers instead of queueing on one. Units are sent in
    this order (`--no-loadscope-reorder`): the lone slow tests first, LONGEST leading, then files
    by their number of slow tests, so no worker starts a long unit while the other finishes."""
    def lone(item) -> bool:
        defs = getattr(getattr(item, "_fixtureinfo", None), "name2fixturedefs", {})
        shared = SLOW_FIXTURES & set(defs) or any(d.scope in ("module", "class", "package") for ds in defs.values() for d in ds)
        return item.get_closest_marker("slow") is not None and not shared

    unit = {item.nodeid: item.nodeid if lone(item) else item.nodeid.split("::")[0] for item in items}
    slow_in = {}
    for item in items:
        item.add_marker(pytest.mark.xdist_group(unit[item.nodeid]))
        slow_in[unit[item.nodeid]] = slow_in.get(unit[item.nodeid], 0) + (item.get_closest_marker("slow") is not None)

    def rank(item) -> tuple:
        if unit[item.nodeid] == item.nodeid:  # a lone slow test
            name = item.nodeid.split("::")[-1]
            return (0, next((i for i, n in enumerate(LONGEST) if name.startswith(n)), len(LONGEST)))
        return (1, -slow_in[unit[item.nodeid]])
    items.sort(key=rank)  # stable: a file's tests keep their order


def _runs_bf16(item) -> bool:
    params = getattr(getattr(item, "callspec", None), "params", {})
    return item.get_closest_marker("bf16") is not None or "bfloat16" in params.values()


def _bf16_is_emulated() -> bool:
    if os.environ.get("AIPO_TEST_EMULATED_BF16") == "1":
        return False
    import torch

    from aipo_lite.model.policy import cpu_has_native_bf16
    return not torch.cuda.is_available() and not cpu_has_native_bf16()


@pytest.fixture(autouse=True)
def _fast_tests_never_load_the_real_model(request, monkeypatch):
    if request.node.get_closest_marker("slow"):
        yield
        return
    from aipo_lite.model import policy
    real = policy.resolve_model_path

    def guarded(cfg):
        if cfg.model == "smollm2":
            pytest.fail(f"{request.node.nodeid} is a fast test but loads the real SmolLM2 policy: mark it "
                        "@pytest.mark.slow, use the real_policy fixture, or use tiny_model_dir", pytrace=False)
        return real(cfg)
    monkeypatch.setattr(policy, "resolve_model_path", guarded)
    yield


@pytest.fixture(scope="session")
def real_policies():
    """real_policies(dtype) -> the frozen SmolLM2 policy in that dtype ('auto', 'float32',
    'bfloat16'), loaded once per session. Precision-sensitive tests name both dtypes
    explicitly (the bf16 ones skip where bf16 is emulated: the module docstring)."""
    from aipo_lite.config import Config
    from aipo_lite.model.policy import load_policy
    cache = {}

    def get(dtype: str = "auto"):
        if dtype not in cache:
            cache[dtype] = load_policy(Config(lora_r=0, dtype=dtype))
        return cache[dtype]
    return get


@pytest.fixture(scope="session")
def real_policy(real_policies):
    """The policy as a user gets it on this machine (dtype 'auto')."""
    return real_policies("auto")


def fill_lora(model, b_scale: float, seed: int = 0) -> None:
    """Seeded values for every LoRA A and B (peft draws A at random), so policies loaded in
    different dtypes carry the same adapter and the merged sampler differs from the base."""
    from aipo_lite.integrations.trl_compare import random_adapter
    random_adapter(model, b_scale, seed, a_fan_in=True)


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    """A tiny randomly initialised Llama with SmolLM2's tokenizer (plumbing tests only)."""
    from aipo_lite.integrations.trl_compare import make_tiny_model
    return make_tiny_model(tmp_path_factory.mktemp("tiny-llama"))


@pytest.fixture(scope="session")
def tiny_gemma_dir(tmp_path_factory):
    """A tiny randomly initialised Gemma 3 (sliding-window + global layers, no chat template)."""
    from aipo_lite.integrations.trl_compare import make_tiny_model
    return make_tiny_model(tmp_path_factory.mktemp("tiny-gemma3"), family="gemma3")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def llama_server(tmp_path_factory):
    """Base URL ('http://127.0.0.1:<port>/v1') of llama-cpp-python's OpenAI-compatible server
    running the SmolLM2 GGUF (model name 'smollm2'); terminated at the end of the session."""
    from aipo_lite.model.policy import smollm2_gguf_path

    try:
        import llama_cpp.server  # noqa: F401
    except ImportError as e:
        pytest.fail(f"the openai agent tests need llama-cpp-python[server] (a dev dependency; "
                    f"`make venv` installs it): {e}")
    port = free_port()
    log = tmp_path_factory.mktemp("llama-server") / "server.log"
    cmd = [sys.executable, "-m", "llama_cpp.server", "--model", str(smollm2_gguf_path()),
           "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", str(port),
           "--n_ctx", "2048", "--n_threads", "1", "--n_threads_batch", "1"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/v1"
    try:
        deadline = time.monotonic() + 120
        while True:
            if proc.poll() is not None:
                pytest.fail(f"llama.cpp server exited with code {proc.returncode}: {cmd}\n"
                            f"...{log.read_text(errors='replace')[-2000:]}")
            try:
                with urllib.request.urlopen(f"{url}/models", timeout=2):
                    break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"llama.cpp server did not answer {url}/models within 120 s: {cmd}\n"
                                f"...{log.read_text(errors='replace')[-2000:]}")
                time.sleep(0.5)
        yield url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
