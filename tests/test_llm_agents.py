"""LLM agent backends: prompts, the openai backend against a real llama.cpp server, the hf
backend on the real SmolLM2 (bf16/fp32 and 4-bit NF4), timeouts and the rule fallback."""

import socket
import time

import pytest

from aipo_lite.agents import Guarded, Request, make_agent
from aipo_lite.config import Config
from aipo_lite.llm_agents import MAX_CHARS, build_messages, clean_reply
from aipo_lite.rollout import agents_from_config
from aipo_lite.tasks import Task, load_tasks
from conftest import free_port

UNITS = Task("u1", "A film lasts 2 hours and 44 minutes. How many minutes long is the film?", "164",
             ("2 * 60 = 120", "120 + 44 = 164"), ("1 hour = 60 minutes",), "units")


def _requests(task):
    """One realistic request per role: a premature commit, a question, a stall after step 1."""
    first = task.steps[0]
    partial = first + "."
    wrong = first.split("=")[-1].strip()
    return {"verify": Request(task, partial + f"\nAnswer: {wrong}\n", trigger="commit", proposed=wrong),
            "knowledge": Request(task, "", query="how do I add three numbers?"),
            "reasoning": Request(task, partial, query="what next?")}


def _assert_one_line(reply):
    assert isinstance(reply, str) and reply.strip() and "\n" not in reply and len(reply) <= MAX_CHARS, reply


def test_prompt_carries_the_privileged_context():
    for role in ("verify", "knowledge", "reasoning"):
        req = Request(UNITS, "2 * 60 = 120.\nAnswer: 120\n", query="is this right?", trigger="commit", proposed="120")
        messages = build_messages(role, req)
        assert messages[0]["role"] == "system" and "ONE short line" in messages[0]["content"]
        assert messages[-1]["role"] == "user"
        last = messages[-1]["content"]
        for needed in ("164", "2 * 60 = 120; 120 + 44 = 164", "1 hour = 60 minutes", UNITS.question,
                       "2 * 60 = 120.\nAnswer: 120", "is this right?", "proposed final answer: 120"):
            assert needed in last, (role, needed)
        # the worked example shows the wanted reply: a step the policy could write itself
        assert messages[-2]["role"] == "assistant" and messages[-2]["content"].split(":")[0] in ("Check", "Fact", "Next")
    assert "seems stuck" in build_messages("reasoning", Request(UNITS, "2 * 60", trigger="entropy"))[-1]["content"]


def test_clean_reply_keeps_one_capped_line():
    assert clean_reply("\n\n  Next: 10 + 8 = 18.  \nAnswer: 18") == "Next: 10 + 8 = 18."
    assert clean_reply("<think>hmm\nlet me see</think>\n\"Check: 3 x 4 = 12.\"") == "Check: 3 x 4 = 12."
    long = clean_reply("word " * 100, max_chars=30)
    assert len(long) <= 30 and long.endswith("word")
    assert clean_reply("") == clean_reply("\n \n") == ""


def test_llm_verify_lets_a_correct_answer_through_without_asking():
    agent = make_agent("verify", "openai", base_url=f"http://127.0.0.1:{free_port()}/v1", timeout=1)
    assert agent.respond(Request(UNITS, "Answer: 164\n", trigger="commit", proposed="164")) is None


def test_bad_backend_lists_the_valid_ones():
    with pytest.raises(ValueError, match=r"backend 'gpt' is not valid; choose one of \['rule', 'hf', 'openai'\]"):
        make_agent("verify", "gpt")


def test_agents_from_config_passes_the_agent_fields():
    cfg = Config(agent_backend="openai", agent_base_url="http://10.0.0.1:9/v1", agent_model="m",
                 agent_timeout=3.5, agent_max_new_tokens=7, agent_retries=2)
    agents = agents_from_config(cfg)
    for role, g in agents.items():
        a = g.agent
        assert (a.role, a.backend, a.base_url, a.model, a.timeout, a.max_new_tokens) == \
            (role, "openai", "http://10.0.0.1:9/v1", "m", 3.5, 7)
        assert g.retries == 2 and g.fallback.backend == "rule" and g.fallback.role == role


@pytest.mark.slow
def test_openai_agent_replies_for_each_role(llama_server):
    task = load_tasks("synth", "test", ["add3"], 1)[0]
    for role, req in _requests(task).items():
        g = Guarded(make_agent(role, "openai", base_url=llama_server, timeout=60, max_new_tokens=24), retries=0)
        reply, status = g.respond(req)
        assert status == "ok", (role, g.faults)
        _assert_one_line(reply)


def test_openai_agent_on_a_closed_port_fails_fast_and_falls_back():
    req = Request(UNITS, "2 * 60 = 120.", query="what next?")
    g = Guarded(make_agent("reasoning", "openai", base_url=f"http://127.0.0.1:{free_port()}/v1", timeout=5),
                fallback=make_agent("reasoning"), retries=1)
    t0 = time.monotonic()
    assert g.respond(req) == ("Next: 120 + 44 = 164.", "fallback")
    assert time.monotonic() - t0 < 5
    assert g.faults == {"ConnectionError": 2}


def test_openai_timeout_bounds_a_silent_server():
    with socket.socket() as srv:  # accepts connections (backlog) but never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/v1"
        g = Guarded(make_agent("reasoning", "openai", base_url=url, timeout=0.5), retries=0)
        t0 = time.monotonic()
        assert g.respond(Request(UNITS)) == (None, "failed")
        assert time.monotonic() - t0 < 3
    assert g.faults == {"TimeoutError": 1, "failed": 1}


@pytest.mark.slow
def test_hf_agents_share_one_model_and_reply_for_each_role():
    agents = agents_from_config(Config(agent_backend="hf", device="cpu", agent_max_new_tokens=16,
                                       agent_timeout=120.0))  # generous: the CI box may be busy
    assert len({id(g.agent.model) for g in agents.values()}) == 1
    task = load_tasks("synth", "test", ["add3"], 1)[0]
    for role, req in _requests(task).items():
        reply, status = agents[role].respond(req)
        assert status == "ok", (role, agents[role].faults)
        _assert_one_line(reply)


@pytest.mark.slow
def test_hf_agent_4bit_loads_and_replies():
    import bitsandbytes as bnb
    agent = make_agent("reasoning", "hf", device="cpu", load_in_4bit=True, max_new_tokens=8, timeout=120)
    assert any(isinstance(m, bnb.nn.Linear4bit) for m in agent.model.modules())
    _assert_one_line(agent.respond(_requests(load_tasks("synth", "test", ["add3"], 1)[0])["reasoning"]))


@pytest.mark.slow
def test_hf_agent_overrunning_its_timeout_is_a_fault():
    g = Guarded(make_agent("reasoning", "hf", device="cpu", timeout=1e-3, max_new_tokens=16),
                fallback=make_agent("reasoning"), retries=0)
    assert g.respond(Request(UNITS, "2 * 60 = 120.")) == ("Next: 120 + 44 = 164.", "fallback")
    assert g.faults == {"TimeoutError": 1}
