"""LLM agent backends: prompts, the openai backend against a real llama.cpp server and
against a local misbehaving HTTP server (deadline, size cap, no redirects, fault kinds), the
hf backend on the real SmolLM2 (bf16/fp32 and 4-bit NF4), timeouts and the rule fallback."""

import http.server
import json
import socket
import threading
import time

import pytest
from conftest import free_port

from aipo_lite.agents.base import Request, make_agent
from aipo_lite.agents.guard import Guarded
from aipo_lite.agents.llm import MAX_CHARS, MAX_RESPONSE_BYTES, AgentFault, build_messages, clean_reply
from aipo_lite.config import Config
from aipo_lite.rollout.groups import agents_from_config
from aipo_lite.tasks.loading import Task, load_tasks

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
    assert g.faults == {"unreachable": 2}


def test_openai_timeout_bounds_a_silent_server():
    with socket.socket() as srv:  # accepts connections (backlog) but never answers
        srv.bind(("127.0.0.1", 0))
        srv.listen(4)
        url = f"http://127.0.0.1:{srv.getsockname()[1]}/v1"
        g = Guarded(make_agent("reasoning", "openai", base_url=url, timeout=0.5), retries=0)
        t0 = time.monotonic()
        assert g.respond(Request(UNITS)) == (None, "failed")
        assert time.monotonic() - t0 < 3
    assert g.faults == {"timeout": 1, "failed": 1}


# ---- openai against a local misbehaving server (127.0.0.1 only; each case bounded to seconds) ----
OK_REPLY = {"choices": [{"message": {"role": "assistant", "content": "Next: 120 + 44 = 164.\nAnswer: 164"}}]}
PARTS_REPLY = {"choices": [{"message": {"content": [{"type": "text", "text": "Next: 1 + 1 = 2."}]}}]}


class _ChatHandler(http.server.BaseHTTPRequestHandler):
    """POST /<mode>/v1/chat/completions: the first path segment picks the behaviour; every
    request (path, headers, body) is recorded on the server before it is answered."""
    protocol_version = "HTTP/1.1"

    def log_message(self, *args):
        pass

    def _send(self, status, body=b"", **headers):
        self.send_response(status)
        for k, v in {"Content-Length": str(len(body)), **headers}.items():
            self.send_header(k.replace("_", "-"), v)
        self.end_headers()
        self.wfile.write(body)

    def do_POST(self):
        body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
        self.server.requests.append((self.path, dict(self.headers), body))
        mode = self.path.split("/")[1]
        try:
            if mode == "ok":
                self._send(200, json.dumps(OK_REPLY).encode(), Content_Type="application/json")
            elif mode == "parts":
                self._send(200, json.dumps(PARTS_REPLY).encode(), Content_Type="application/json")
            elif mode == "badparts":
                parts = [{"type": "text", "text": 5}]  # a text part without a text string
                self._send(200, json.dumps({"choices": [{"message": {"content": parts}}]}).encode())
            elif mode == "nochoices":
                self._send(200, b'{"choices": []}')
            elif mode == "notutf8":
                self._send(200, b"\xff\xfe{")
            elif mode == "missing":
                self._send(404, b'{"error": "no such route"}')
            elif mode == "redirect":
                self._send(307, Location=self.server.redirect_to)
            elif mode in ("drip", "huge", "unannounced"):  # headers, then a body too slow or too large
                self.close_connection = True
                self.send_response(200)
                if mode != "unannounced":
                    self.send_header("Content-Length", str(10_000 if mode == "drip" else 50_000_000))
                self.end_headers()
                piece, pause = (b"x", 0.3) if mode == "drip" else (b"x" * (1 << 16), 0.0)
                for _ in range(10_000 if mode == "drip" else 64):  # huge: 4 MiB of real bytes
                    if self.server.stop.is_set():
                        break
                    self.wfile.write(piece)
                    self.wfile.flush()
                    time.sleep(pause)
        except OSError:  # the agent hung up: that is the point
            self.close_connection = True


@pytest.fixture
def chat_server():
    """start() -> (base 'http://127.0.0.1:<port>', the requests it receives); every server started
    is shut down afterwards."""
    servers = []

    def start():
        srv = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _ChatHandler)
        srv.requests, srv.stop, srv.redirect_to = [], threading.Event(), ""
        threading.Thread(target=srv.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()
        servers.append(srv)
        return f"http://127.0.0.1:{srv.server_address[1]}", srv
    yield start
    for srv in servers:
        srv.stop.set()
        srv.shutdown()
        srv.server_close()


def _ask(base_url, timeout=5.0):
    """(the reply or the AgentFault, seconds taken) of one openai reasoning agent call."""
    agent = make_agent("reasoning", "openai", base_url=base_url, model="m-test", timeout=timeout,
                       api_key="secret")
    t0 = time.monotonic()
    try:
        out = agent.respond(Request(UNITS, "2 * 60 = 120.", query="what next?"))
    except AgentFault as e:
        out = e
    return out, time.monotonic() - t0


def test_openai_agent_sends_the_request_and_reads_the_reply(chat_server):
    base, srv = chat_server()
    reply, took = _ask(f"{base}/ok/v1/")
    assert reply == "Next: 120 + 44 = 164." and took < 2
    [(path, headers, body)] = srv.requests
    assert path == "/ok/v1/chat/completions" and headers["Authorization"] == "Bearer secret"
    sent = json.loads(body)
    assert sent["model"] == "m-test" and sent["messages"][-1]["role"] == "user"
    assert "2 * 60 = 120." in sent["messages"][-1]["content"]


def test_openai_agent_joins_the_text_of_content_parts(chat_server):
    base, _ = chat_server()
    assert _ask(f"{base}/parts/v1")[0] == "Next: 1 + 1 = 2."


@pytest.mark.parametrize("mode, timeout, kind, within", [
    ("drip", 1.0, "timeout", 1.5),          # one byte every 0.3 s: the deadline cuts it off
    ("huge", 5.0, "too_large", 1.0),        # Content-Length 50 MB: refused before reading it
    ("unannounced", 5.0, "too_large", 2.0),  # no Content-Length: counted while read
    ("notutf8", 5.0, "not_utf8", 1.0),
    ("missing", 5.0, "http_error", 1.0),
    ("badparts", 5.0, "malformed", 1.0),
    ("nochoices", 5.0, "malformed", 1.0),
])
def test_openai_agent_faults_have_a_kind_and_come_in_time(chat_server, mode, timeout, kind, within):
    base, srv = chat_server()
    fault, took = _ask(f"{base}/{mode}/v1", timeout)
    assert isinstance(fault, AgentFault) and fault.kind == kind, fault
    assert took < within, took
    if mode == "missing":
        assert f"{base}/missing/v1/chat/completions answered HTTP 404: b'" in str(fault)
        assert "no such route" in str(fault)
    if mode == "huge":
        assert "50000000" in str(fault) and MAX_RESPONSE_BYTES == 1 << 20


def test_openai_agent_follows_no_redirect_so_the_key_stays_home(chat_server):
    base, srv = chat_server()
    elsewhere, other = chat_server()
    srv.redirect_to = f"{elsewhere}/ok/v1/chat/completions"
    fault, took = _ask(f"{base}/redirect/v1")
    assert fault.kind == "redirect" and took < 2
    assert "307" in str(fault) and srv.redirect_to in str(fault) and "agent_base_url" in str(fault)
    assert len(srv.requests) == 1 and other.requests == []  # the second server never saw the key


def test_openai_agent_on_a_dead_port_is_unreachable_fast():
    fault, took = _ask(f"http://127.0.0.1:{free_port()}/v1")
    assert fault.kind == "unreachable" and took < 1


def test_openai_agent_needs_an_http_base_url():
    for bad in ("127.0.0.1:8080/v1", "ftp://127.0.0.1/v1", "http:///v1", "http://127.0.0.1:port/v1"):
        with pytest.raises(ValueError, match="is not an http:// or https:// URL"):
            make_agent("reasoning", "openai", base_url=bad)


def test_guarded_counts_the_fault_kind_and_falls_back(chat_server):
    base, _ = chat_server()
    g = Guarded(make_agent("reasoning", "openai", base_url=f"{base}/missing/v1", timeout=5),
                fallback=make_agent("reasoning", "rule"), retries=0)
    assert g.respond(Request(UNITS, "2 * 60 = 120.", query="what next?")) == ("Next: 120 + 44 = 164.", "fallback")
    assert g.faults == {"http_error": 1}


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
    assert g.faults == {"timeout": 1}
