"""How a task becomes the policy's prompt.

The agent-free prompt is what the policy sees at evaluation and in independent rollouts:
the chat template (a plain `Question:` / `Solution:` transcript for a base model without one)
with a short system prompt that asks to end with `Answer: <number>`, and,
with prompt_style='one_shot' (default), one worked single-step example as a previous chat
turn. The prompt is kept short: on CPU, prefilling it is a large share of sampling time. SmolLM2-135M almost never follows the answer format
zero-shot (docs/environment.md). The example is deliberately a single step, so it does
not teach multi-step problems; that is the bottleneck agents are for. A tier may bring its
own example (SHOTS, by task kind): the recall tiers show an invented name's definition being
used, with another name and value; evaluation and independent rollouts use the same prompt.
"""

from __future__ import annotations

SYSTEM = "You are a helpful assistant. Solve the problem. End with the final number as 'Answer: <number>'."
ONE_SHOT_QUESTION = "What is 4 + 3?"
ONE_SHOT_ANSWER = "4 + 3 = 7.\nAnswer: 7"
STYLES = ("one_shot", "zero_shot")
SHOTS = {**{kind: ("What is plim?", "plim = 862.\nAnswer: 862") for kind in ("recall", "recall_t")},
         "recall_use": ("What is plim + 3?", "plim = 862.\n862 + 3 = 865.\nAnswer: 865")}


def agent_free_messages(question: str, style: str = "one_shot", kind: str = "") -> list[dict]:
    if style not in STYLES:
        raise ValueError(f"prompt_style={style!r} is not valid; choose one of {list(STYLES)}")
    messages = [{"role": "system", "content": SYSTEM}]
    if style == "one_shot":
        shot_q, shot_a = SHOTS.get(kind, (ONE_SHOT_QUESTION, ONE_SHOT_ANSWER))
        messages += [{"role": "user", "content": shot_q}, {"role": "assistant", "content": shot_a}]
    messages.append({"role": "user", "content": question})
    return messages


def render(tokenizer, messages: list[dict]) -> str:
    """Text ending where the assistant's reply starts: the model's chat template when it has one;
    for a base model without one, a plain few-shot transcript (`plain`)."""
    if getattr(tokenizer, "chat_template", None):
        return tokenizer.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    return plain(tokenizer, messages)


def plain(tokenizer, messages: list[dict]) -> str:
    """The plain format of a model without a chat template: the system text, then each turn as
    `Question: ...` / `Solution:` lines, ending with an open `Solution:` line; the tokenizer's
    BOS first when it would add one itself (the kit encodes prompt text without special tokens)."""
    bos = tokenizer.bos_token or ""
    if not bos or tokenizer("x", add_special_tokens=True)["input_ids"][:1] != [tokenizer.bos_token_id]:
        bos = ""
    return bos + "".join(f"Question: {m['content']}\nSolution:\n" if m["role"] == "user" else m["content"] + "\n\n"
                         for m in messages)


def agent_free_prompt(tokenizer, question: str, style: str = "one_shot", kind: str = "") -> str:
    """The agent-free prompt; `kind`: the task's tier (its own example where SHOTS has one)."""
    return render(tokenizer, agent_free_messages(question, style, kind))
