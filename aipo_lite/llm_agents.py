"""LLM agent backends (METHODS.md §3): `hf` (a local transformers model) and `openai` (any
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
- `HFAgent` loads its model with aipo_lite.policy's loader ('smollm2' resolves to the
  GGUF-derived safetensors cache; optional 4-bit NF4 via bitsandbytes) once per
  (model, 4-bit, device): the three roles share it. Greedy decoding, `max_new_tokens`,
  stops at the end of the first line; `timeout` bounds generation (transformers `max_time`)
  and an overrun raises TimeoutError.
- `OpenAIAgent` uses only the stdlib (urllib + json); `timeout` applies to the HTTP call.
  Faults surface as ConnectionError (server unreachable), TimeoutError, RuntimeError (HTTP
  error status) or ValueError (malformed response).
"""

from __future__ import annotations

import json
import os
import re
import socket
import threading
import time
import urllib.error
import urllib.request

from .agents import Request

MAX_CHARS = 200

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
    from .rewards import is_equivalent
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
            from .config import Config
            from .policy import load_policy
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
            raise TimeoutError(f"hf agent ({self.role}) took longer than timeout={self.timeout}s")
        return tok.decode(out[0, start:], skip_special_tokens=True)


# ---- openai: any OpenAI-compatible chat server -------------------------------------------
class OpenAIAgent(_LLMAgent):
    backend = "openai"

    def __init__(self, role: str, model: str = "smollm2", base_url: str = "http://127.0.0.1:8080/v1",
                 timeout: float = 30.0, max_new_tokens: int = 40, max_chars: int = MAX_CHARS,
                 api_key: str | None = None):
        super().__init__(role, timeout, max_new_tokens, max_chars)
        self.model, self.base_url = model, base_url.rstrip("/")
        self.api_key = api_key if api_key is not None else os.environ.get("OPENAI_API_KEY", "")

    def complete(self, messages: list[dict]) -> str:
        url = f"{self.base_url}/chat/completions"
        body = json.dumps({"model": self.model, "messages": messages, "temperature": 0.0,
                           "max_tokens": self.max_new_tokens}).encode()
        headers = {"Content-Type": "application/json"}
        if self.api_key:
            headers["Authorization"] = f"Bearer {self.api_key}"
        try:
            with urllib.request.urlopen(urllib.request.Request(url, body, headers), timeout=self.timeout) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise RuntimeError(f"{url} answered HTTP {e.code}: {e.read()[:200]!r}") from e
        except urllib.error.URLError as e:
            if isinstance(e.reason, (socket.timeout, TimeoutError)):
                raise TimeoutError(f"{url}: no reply within timeout={self.timeout}s") from e
            raise ConnectionError(f"{url} is unreachable: {e.reason}") from e
        except (socket.timeout, TimeoutError) as e:
            raise TimeoutError(f"{url}: no reply within timeout={self.timeout}s") from e
        try:
            return json.loads(raw)["choices"][0]["message"]["content"] or ""
        except (ValueError, KeyError, IndexError, TypeError) as e:
            raise ValueError(f"{url} sent a malformed chat completion: {raw[:200]!r}") from e


BACKENDS = {"hf": HFAgent, "openai": OpenAIAgent}
