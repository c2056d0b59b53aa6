"""LLM agent backends (docs/methods.md §3): `hf` (a local transformers model) and `openai` (any
OpenAI-compatible /v1/chat/completions server: vLLM, SGLang, llama.cpp's server).

Both play any of the three roles (verify, knowledge, reasoning) with the same interface as
the rule agents, `respond(Request) -> str | None`, and are normally built through
`agents.make_agent(role, "hf" | "openai", ...)` and wrapped in `agents.Guarded` (retries,
rule fallback, fault counts), which is why they raise on faults instead of hiding them.

- The prompt (`build_messages`) gives the LLM the privileged context the policy lacks (the
  reference answer, reference steps and facts of the Task) next to the policy's partial
  reasoning, its query or trigger and, for verify, the answer it proposes; one worked
  example per role shows the wanted reply: ONE short line worded as a step the policy could
  write itself ("Next: 10 + 8 = 18."), which internalizes more easily than meta-comments.
- The reply is post-processed (`clean_reply`): reasoning blocks dropped, first non-empty
  line, stripped, capped at `max_chars`.
- Verify-before-commit: a proposed answer equal to the reference passes silently (None)
  without asking the LLM, as the rule agent does, so a correct commit never gets feedback.
- `HFAgent` loads its model with aipo_lite.model.policy's loader ('smollm2' resolves to the
  GGUF-derived safetensors cache; optional 4-bit NF4 via bitsandbytes) once per
  (model, 4-bit, device): the three roles share it. Greedy decoding, `max_new_tokens`,
  stops at the end of the first line; `timeout` bounds generation (transformers `max_time`)
  and an overrun raises AgentFault("timeout").
- `OpenAIAgent` uses only the stdlib (http.client); `base_url` must be http(s)://host[:port]/...
  (else ValueError when built). `timeout` is ONE deadline for the whole call (connect, send,
  headers, body): a watchdog shuts the socket down when it passes, so a dripping server cannot
  hang the caller. Bodies over MAX_RESPONSE_BYTES are refused (by Content-Length or counted).
  Redirects are never followed, so the API key only goes to the configured host and port.
  `content` may be a string or OpenAI's list of content parts (the text parts are joined).
- Every fault is an `AgentFault` whose `kind` says what went wrong (Guarded counts it):
  unreachable (refused, DNS, reset), timeout, http_error (4xx/5xx: status and first 200
  bytes), redirect, too_large, not_utf8, malformed (not a chat completion).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import socket
import threading
import time
import urllib.parse

from aipo_lite.agents.request import Request
from aipo_lite.config import Config
from aipo_lite.tasks.rewards import is_equivalent

MAX_CHARS = 200
MAX_RESPONSE_BYTES = 1 << 20  # a chat completion of one short line is far below this
FAULT_KINDS = ("unreachable", "timeout", "http_error", "redirect", "too_large", "not_utf8", "malformed")


class AgentFault(Exception):
    """A fault of an LLM agent call; `kind` is one of FAULT_KINDS (what `agents.Guarded` counts)."""

    def __init__(self, kind: str, message: str):
        super().__init__(message)
        self.kind = kind

    def __reduce__(self):  # picklable although the constructor takes two arguments
        return type(self), (self.kind, self.args[0])

_INSTRUCTIONS = {
    "verify": ("You check a student's arithmetic against the hidden reference solution. If a step or "
               "the proposed answer is wrong, give the correct step. Reply with ONE short line the "
               "student could write itself, like 'Check: 46 + 68 = 114.'"),
    "knowledge": ("You give a student the one fact or rule needed to continue, taken from the hidden "
                  "reference. Reply with ONE short line, like 'Fact: 1 hour = 60 minutes.'"),
    "reasoning": ("You give a student the next step of the hidden reference solution that the "
                  "student has not written yet. Reply with ONE short line the student could write "
                  "itself, like 'Next: 10 + 8 = 18.'"),
}
# One worked example per role: (question, answer, steps, facts, partial, query, proposed, reply).
_EXAMPLES = {
    "verify": ("What is 46 + 68 - 41?", "73", ("46 + 68 = 114", "114 - 41 = 73"), (),
               "46 + 68 = 152.", "", "152", "Check: 46 + 68 = 114."),
    "knowledge": ("A film lasts 2 hours and 4 minutes. How many minutes long is the film?", "124",
                  ("2 * 60 = 120", "120 + 4 = 124"), ("1 hour = 60 minutes",), "", "how long is an hour?",
                  None, "Fact: 1 hour = 60 minutes."),
    "reasoning": ("What is 3 + 7 + 8?", "18", ("3 + 7 = 10", "10 + 8 = 18"), (),
                  "3 + 7 = 10.", "what next?", None, "Next: 10 + 8 = 18."),
}


def _context(question, answer, steps, facts, partial, query, proposed, trigger="tag") -> str:
    lines = [f"Problem: {question}",
             f"Reference answer (hidden from the student): {answer}",
             "Reference steps (hidden): " + ("; ".join(steps) if steps else "(none)")]
    if facts:
        lines.append("Facts: " + " ".join(facts))
    lines.append("Student's work so far: " + (partial.strip() or "(nothing yet)"))
    if query:
        lines.append(f"Student asks: {query.strip()}")
    elif trigger == "entropy":
        lines.append("The student seems stuck.")
    if proposed is not None:
        lines.append(f"Student's proposed final answer: {proposed}")
    return "\n".join(lines)


def build_messages(role: str, req: Request) -> list[dict]:
    """Chat messages for `role` on `req`: instruction, one worked example, then this request."""
    *ex, ex_reply = _EXAMPLES[role]
    t = req.task
    return [{"role": "system", "content": _INSTRUCTIONS[role]},
            {"role": "user", "content": _context(*ex)},
            {"role": "assistant", "content": ex_reply},
            {"role": "user", "content": _context(t.question, t.answer, t.steps, t.facts, req.partial,
                                                 req.query, req.proposed, req.trigger)}]


def clean_reply(text: str, max_chars: int = MAX_CHARS) -> str:
    """First non-empty line (reasoning blocks dropped), stripped, capped at a word boundary."""
    text = re.sub(r"<think>.*?(</think>|$)", "", text or "", flags=re.S)
    line = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    line = line.strip("`\"' ")
    if len(line) > max_chars:
        cut = line[:max_chars]
        line = cut[:cut.rfind(" ")] if " " in cut else cut
    return line.strip()


def _passes(req: Request) -> bool:
    """Verify-before-commit on a correct answer: nothing to say (checked exactly, not by the LLM)."""
    if req.proposed is None:
        return False
    return is_equivalent(req.proposed, req.task.answer)


class _LLMAgent:
    backend = "llm"

    def __init__(self, role: str, timeout: float = 30.0, max_new_tokens: int = 40, max_chars: int = MAX_CHARS):
        self.role, self.timeout, self.max_new_tokens, self.max_chars = role, timeout, max_new_tokens, max_chars

    def respond(self, req: Request) -> str | None:
        if self.role == "verify" and _passes(req):
            return None
        return clean_reply(self.complete(build_messages(self.role, req)), self.max_chars)

    def complete(self, messages: list[dict]) -> str:
        raise NotImplementedError


# ---- hf: a local transformers model ------------------------------------------------------
_MODELS: dict[tuple, tuple] = {}   # (model, 4bit, device) -> (model, tokenizer)
_MODELS_LOCK = threading.Lock()


def load_agent_model(model: str = "smollm2", load_in_4bit: bool = False, device: str = "auto",
                     cache_dir: str = "") -> tuple:
    """(model, tokenizer), loaded once per (model, 4-bit, device) and shared by all roles."""
    key = (model, bool(load_in_4bit), device)
    with _MODELS_LOCK:
        if key not in _MODELS:
            from aipo_lite.model.policy import load_policy  # lazy: only the hf backend needs torch/transformers
            pol = load_policy(Config(model=model, load_in_4bit=load_in_4bit, device=device,
                                     cache_dir=cache_dir, lora_r=0))
            _MODELS[key] = (pol.model, pol.tokenizer)
        return _MODELS[key]


class HFAgent(_LLMAgent):
    backend = "hf"

    def __init__(self, role: str, model: str = "smollm2", load_in_4bit: bool = False, device: str = "auto",
                 cache_dir: str = "", timeout: float = 30.0, max_new_tokens: int = 40, max_chars: int = MAX_CHARS):
        super().__init__(role, timeout, max_new_tokens, max_chars)
        self.model, self.tokenizer = load_agent_model(model, load_in_4bit, device, cache_dir)

    def complete(self, messages: list[dict]) -> str:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList

        tok = self.tokenizer
        text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        enc = tok(text, return_tensors="pt", add_special_tokens=False).to(self.model.device)
        start = enc["input_ids"].shape[1]

        class FirstLineDone(StoppingCriteria):  # one line is all we keep: stop once it ends
            def __call__(self, input_ids, scores, **kwargs):
                new = tok.decode(input_ids[0, start:], skip_special_tokens=True).lstrip()
                return torch.full((input_ids.shape[0],), "\n" in new, dtype=torch.bool, device=input_ids.device)

        t0 = time.monotonic()
        with torch.no_grad():
            out = self.model.generate(**enc, do_sample=False, max_new_tokens=self.max_new_tokens,
                                      max_time=self.timeout, pad_token_id=tok.pad_token_id,
                                      stopping_criteria=StoppingCriteriaList([FirstLineDone()]))
        if time.monotonic() - t0 >= self.timeout:
            raise AgentFault("timeout", f"hf agent ({self.role}) took longer than timeout={self.timeout}s")
        return tok.decode(out[0, start:], skip_special_tokens=True)


# ---- openai: any OpenAI-compatible chat server -------------------------------------------
def _content_text(content) -> str:
    """A message's `content`: a string, or OpenAI's list of parts (the text parts joined)."""
    if content is None or isinstance(content, str):
        return content or ""
    if not (isinstance(content, list) and all(isinstance(p, dict) for p in content)):
        raise TypeError(f"content is neither a string nor a list of parts: {content!r:.200}")
    texts = [p.get("text") for p in content if p.get("type") == "text" or isinstance(p.get("text"), str)]
    if not all(isinstance(t, str) for t in texts):
        raise TypeError(f"a text part has no text string: {content!r:.200}")
    return "".join(texts)


def _post(url: str, body: bytes, headers: dict, timeout: float) -> bytes:
    """POST `body` to `url`: the 2xx reply body within `timeout` seconds in all, or AgentFault."""
    u, deadline = urllib.parse.urlsplit(url), time.monotonic() + timeout
    cls = http.client.HTTPSConnection if u.scheme == "https" else http.client.HTTPConnection
    conn, done, lock, state = cls(u.hostname, u.port, timeout=timeout), threading.Event(), threading.Lock(), {}
    late = f"{url}: no complete reply within timeout={timeout}s"

    def watchdog():  # at the deadline, unless done, shut the socket down: a blocked send or read returns
        if not done.wait(timeout):
            with lock, contextlib.suppress(OSError):  # under the lock: the socket is not closed yet
                state["expired"] = not done.is_set()
                if state["expired"] and conn.sock is not None:  # (the plain socket's shutdown, also under TLS)
                    socket.socket.shutdown(conn.sock, socket.SHUT_RDWR)

    threading.Thread(target=watchdog, daemon=True).start()
    try:
        conn.connect()  # sets conn.sock: from now on the watchdog can shut it down, or it expired already
        if state.get("expired"):
            raise AgentFault("timeout", late)
        conn.request("POST", u.path + (f"?{u.query}" if u.query else ""), body, headers)
        resp = conn.getresponse()
        if 300 <= resp.status < 400:
            raise AgentFault("redirect", f"{url} answered HTTP {resp.status} redirecting to "
                             f"{resp.getheader('Location')!r}; the kit follows no redirects "
                             "(set agent_base_url to the final address)")
        if resp.status < 400 and (resp.length or 0) > MAX_RESPONSE_BYTES:
            raise AgentFault("too_large", f"{url} announces {resp.length} bytes > {MAX_RESPONSE_BYTES=}")
        data, want = bytearray(), 200 if resp.status >= 400 else MAX_RESPONSE_BYTES + 1  # error page: its start
        while len(data) < want and time.monotonic() < deadline and (chunk := resp.read1(1 << 16)):
            data += chunk
        if state.get("expired") or time.monotonic() >= deadline:
            raise AgentFault("timeout", late)
        if len(data) > MAX_RESPONSE_BYTES:
            raise AgentFault("too_large", f"{url} sent more bytes than {MAX_RESPONSE_BYTES=}")
        if resp.status >= 400:
            raise AgentFault("http_error", f"{url} answered HTTP {resp.status}: {bytes(data[:200])!r}")
        if resp.length:  # EOF before the announced Content-Length
            raise AgentFault("unreachable", f"{url} hung up {resp.length} bytes before the end of its reply")
        return bytes(data)
    except (OSError, http.client.HTTPException) as e:  # AgentFault is neither: it passes
        if state.get("expired") or isinstance(e, TimeoutError):
            raise AgentFault("timeout", f"{late} ({e!r})") from e
        if isinstance(e, (OSError, http.client.IncompleteRead)):  # refused, DNS, reset, TLS, cut off
            raise AgentFault("unreachable", f"{url} is unreachable: {e!r}") from e
        raise AgentFault("malformed", f"{url} sent a broken HTTP reply: {e!r}") from e
    finally:
        with lock:
            done.set()
        conn.close()


class OpenAIAgent(_LLMAgent):
    backend = "openai"

    def __init__(self, role: str, model: str = "smollm2", base_url: str = "http://127.0.0.1:8080/v1",
                 timeout: float = 30.0, max_new_tokens: int = 40, max_chars: int = MAX_CHARS,
                 api_key: str | None = None):
        super().__init__(role, timeout, max_new_tokens, max_chars)
        self.model, self.base_url = model, base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")
        try:  # u.port raises on a port that is not a number
            u = urllib.parse.urlsplit(self.base_url)
            ok = u.scheme in ("http", "https") and bool(u.hostname) and u.port != 0
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"agent_base_url {base_url!r} is not an http:// or https:// URL "
                             "(e.g. 'http://127.0.0.1:8080/v1')")

    def complete(self, messages: list[dict]) -> str:
        url = f"{self.base_url}/chat/completions"
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0.0,
                           "max_tokens": self.max_new_tokens}).encode()
        headers = {"Content-Type": "application/json", "Accept": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        raw = _post(url, body, headers, self.timeout)
        try:
            text = raw.decode("utf-8-sig")
        except UnicodeDecodeError as e:
            raise AgentFault("not_utf8", f"{url} sent a reply that is not UTF-8 ({e.reason} at byte "
                             f"{e.start}): {raw[:200]!r}") from None
        try:
            return _content_text(json.loads(text)["choices"][0]["message"]["content"])
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise AgentFault("malformed", f"{url} sent a malformed chat completion ({e!r:.200}): "
                             f"{raw[:200]!r}") from e


BACKENDS = {"hf": HFAgent, "openai": OpenAIAgent}
