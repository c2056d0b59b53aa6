"""Rollouts with active interaction (docs/methods.md §3): groups of independent + assisted samples.

For each task: `g_ind` independent rollouts (the agent-free prompt, exactly as evaluation
uses) and `g_asst` assisted ones. In an assisted rollout the detector (detector.py) may pause
the policy; the routed agent's reply is queued as forced tokens and sampling resumes
(engine.py), at most `consult_budget` times. Two guidance forms (GUIDANCE_FORMS):
- `tagged`: a system prompt that teaches the consult tags; the reply comes as
  `<feedback>reply</feedback>` (tags: TEMPLATE tokens);
- `inline`: the agent-free prompt; the reply is written as the policy's own next line
  (`reply\n`, AGENT tokens, no tags; a leading "Next:", "Fact:" or "Check:" label dropped),
  so the policy reads it as its own reasoning. Every token keeps its provenance, sampling log-prob and entropy;
each consult records where it happened, why, which agent answered, and what it said (the
hook of assisted rows: assist.py). Independent rows end at their first committed answer by the
decode loop's commit machine (commit_machine.py).
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from contextlib import nullcontext

from aipo_lite.agents.base import ROLES, make_agent
from aipo_lite.agents.guard import Guarded
from aipo_lite.engine import decode as engine
from aipo_lite.engine.commit_machine import commit_machine
from aipo_lite.engine.decode import Row
from aipo_lite.records import Prov, Rollout, RowState
from aipo_lite.rollout.consult import Assist
from aipo_lite.rollout.detector import Detector
from aipo_lite.tasks.loading import Task
from aipo_lite.tasks.prompts import SYSTEM, agent_free_prompt, render
from aipo_lite.tasks.rewards import task_reward

GUIDANCE_FORMS = ("tagged", "inline")

ASSISTED_SYSTEM = (
    SYSTEM + " If you are unsure, you may ask for help before you answer: "
    "<verify>a step to check</verify>, <knowledge>a fact you need</knowledge> or "
    "<reason>where you are stuck</reason>. Help comes back as <feedback>...</feedback>."
)


# The assisted one-shot example shows the consult that happens most (verify-before-commit) and
# how to use its feedback: write the corrected line, then the answer. Measured on add3/expr3
# (8 problems each, 4 assisted rollouts, rule agents): assisted pass@1 on add3 0.19 with this
# example vs 0.03-0.06 with one that showed a policy-written <reason> consult.
ASSISTED_SHOT_QUESTION = "What is 5 + 2 + 6?"
ASSISTED_SHOT_ANSWER = ("5 + 2 + 6 = 12.\nAnswer: 12\n<feedback>Check: 5 + 2 + 6 = 13.</feedback>\n"
                        "5 + 2 + 6 = 13.\nAnswer: 13")


def assisted_prompt(tokenizer, question: str, style: str = "one_shot") -> str:
    messages = [{"role": "system", "content": ASSISTED_SYSTEM}]
    if style == "one_shot":
        messages += [{"role": "user", "content": ASSISTED_SHOT_QUESTION},
                     {"role": "assistant", "content": ASSISTED_SHOT_ANSWER}]
    messages.append({"role": "user", "content": question})
    return render(tokenizer, messages)


# Forced tokens one consult may add (<feedback>, a rule agent's one-line reply, </feedback>):
# sizes the static decode batch on CUDA (engine.run's extra_room) so it rarely has to grow.
FEEDBACK_ROOM = 40


def agents_from_config(cfg) -> dict[str, Guarded]:
    """The three agents of cfg.agent_backend, each guarded (retries; rule fallback). LLM
    backends get the config's agent_* fields (hf: the model loads once, shared by the roles)."""
    kwargs = {}
    if cfg.agent_backend != "rule":
        kwargs = dict(model=cfg.agent_model, timeout=cfg.agent_timeout, max_new_tokens=cfg.agent_max_new_tokens)
    if cfg.agent_backend == "hf":
        kwargs.update(load_in_4bit=cfg.agent_load_in_4bit, device=cfg.device, cache_dir=cfg.cache_dir)
    elif cfg.agent_backend == "openai":
        kwargs.update(base_url=cfg.agent_base_url)
    return {role: Guarded(make_agent(role, cfg.agent_backend, **kwargs), retries=cfg.agent_retries,
                          fallback=make_agent(role, "rule") if cfg.agent_backend != "rule" else None)
            for role in ROLES}


def detector_from_config(cfg) -> Detector:
    return Detector(window=cfg.detector_window, init_tokens=cfg.detector_init_tokens,
                    tau_abs=cfg.detector_tau_abs, tau_rel=cfg.detector_tau_rel,
                    use_entropy=cfg.detector_entropy, verify_before_commit=cfg.verify_before_commit,
                    every_line=cfg.detector_every_line)


def rollout_group(policy, tasks: list[Task], agents: dict[str, Guarded], detector: Detector,
                  g_ind: int, g_asst: int, consult_budget: int = 2, temperature: float = 1.0,
                  top_p: float = 1.0, max_new_tokens: int = 64, prompt_style: str = "one_shot",
                  reward_mode: str = "strict", generator=None,
                  prefixes: dict[str, list[int]] | None = None,
                  guidance_form: str = "tagged", concurrency: int = 1) -> tuple[list[list[Rollout]], dict]:
    """g_ind + g_asst rollouts per task, all decoded in one batch. Returns (groups, stats).

    prefixes: task id -> token ids the rollouts of that task start from (a partial solution,
    for ARPO branching and RRL replay); they count as the policy's own tokens.
    generator: a torch.Generator on any device, or an int seed (engine.device_generator).
    max_new_tokens bounds the policy's tokens; agent feedback comes on top.
    concurrency > 1: the consults due at one decode step go to the agents concurrently, at most
    this many at once (a slow agent server then does not serialize the step).
    """
    if guidance_form not in GUIDANCE_FORMS:
        raise ValueError(f"guidance_form={guidance_form!r} is not valid; choose one of {list(GUIDANCE_FORMS)}")
    tok = policy.tokenizer
    hook = Assist(tok, detector, agents, consult_budget, guidance_form)
    rows, meta = [], []
    for i, task in enumerate(tasks):
        plain = tok.encode(agent_free_prompt(tok, task.question, prompt_style, task.kind), add_special_tokens=False)
        asst = plain if guidance_form == "inline" else tok.encode(
            assisted_prompt(tok, task.question, prompt_style), add_special_tokens=False)
        prefix = (prefixes or {}).get(task.id, [])
        for assisted, prompt in [(False, plain)] * g_ind + [(True, asst)] * g_asst:
            row = Row(prompt_ids=prompt + prefix, max_new_tokens=max_new_tokens,
                      state=_row_state(task, assisted, detector), commit=-1 if assisted else 0)
            rows.append(row)
            meta.append((i, task, assisted, prompt, prefix))
    with ThreadPoolExecutor(concurrency) if concurrency > 1 and agents else nullcontext() as pool:
        if detector.every_line:  # guidance before the first token: the first step, then the policy
            first = [row for row in rows if row.state.assisted]
            list(pool.map(hook, first)) if pool else [hook(row) for row in first]
        stats = engine.run(policy.sampler(), tok, rows, temperature=temperature, top_p=top_p,
                           on_token=hook, generator=generator, stop=commit_machine(tok),
                           extra_room=FEEDBACK_ROOM * consult_budget if g_asst else 0, hook_pool=pool)
    groups: list[list[Rollout]] = [[] for _ in tasks]  # by position: a task drawn twice gets two groups
    for row, (i, task, assisted, prompt, prefix) in zip(rows, meta):
        ids = [*prefix, *row.ids]
        n = len(prefix)
        r = Rollout(task, assisted, prompt, ids, [Prov.POLICY] * n + row.prov, [float("nan")] * n + row.logprobs,
                    [float("nan")] * n + row.entropies, tok.decode(ids, skip_special_tokens=True),
                    row.finished, row.state.consults, prefix_len=n)
        r.reward = task_reward(task, _final_text(r, tok), reward_mode)
        groups[i].append(r)
    return groups, stats


def _row_state(task: Task, assisted: bool, detector: Detector) -> RowState:
    return RowState(assisted=assisted, task=task, intercept_eos=assisted and detector.verify_before_commit)


def continue_rollouts(policy, starts: list[tuple[Rollout, int]], temperature: float = 1.0,
                      max_new_tokens: int = 64, reward_mode: str = "strict", generator=None) -> list[Rollout]:
    """For each (rollout, position): a new rollout that shares the first `position` generated
    tokens of `rollout` (its prompt, provenance, log-probs) and samples on from there, in one
    batch (prefill shares the common prefix's KV). The continuation consults no agent; it stops
    at a committed answer, EOS or the policy's remaining token budget. prefix_len = position:
    views.continuation_seq trains only the new tokens (ARPO branches). A continuation counts as
    assisted (for the advantage baseline) when its shared prefix holds agent tokens."""
    tok = policy.tokenizer
    rows = []
    for r, at in starts:
        used = sum(1 for p in r.prov[:at] if p == Prov.POLICY)
        rows.append(Row(prompt_ids=list(r.prompt_ids) + r.ids[:at], max_new_tokens=max(max_new_tokens - used, 1),
                        state=_row_state(r.task, False, Detector())))
    engine.run(policy.sampler(), tok, rows, temperature=temperature, generator=generator, stop=commit_machine(tok))
    out = []
    for (r, at), row in zip(starts, rows):
        ids = r.ids[:at] + row.ids
        helped = r.assisted and any(p == Prov.AGENT for p in r.prov[:at])  # assisted: agent tokens in its context
        c = Rollout(r.task, helped, r.prompt_ids, ids, r.prov[:at] + row.prov, r.logprobs[:at] + row.logprobs,
                    r.entropies[:at] + row.entropies, tok.decode(ids, skip_special_tokens=True), row.finished,
                    [], prefix_len=at)
        c.reward = task_reward(r.task, _final_text(c, tok), reward_mode)
        out.append(c)
    return out


def _final_text(r: Rollout, tokenizer) -> str:
    """The text after the last agent or template token: the answer that counts is the one
    given after help (either guidance form)."""
    last = max((i for i, p in enumerate(r.prov) if p in (Prov.AGENT, Prov.TEMPLATE)), default=None)
    return r.text if last is None else tokenizer.decode(r.ids[last + 1:], skip_special_tokens=True)


def pass_at_1_table(groups: list[list[Rollout]], roles=ROLES) -> dict[str, dict[str, float | None]]:
    """Per tier (and 'all'): independent and assisted pass@1 (mean reward), and the assisted
    pass@1 of rollouts that consulted each role (None where there are none)."""
    def rate(rs):
        return sum(r.reward for r in rs) / len(rs) if rs else None
    flat = [r for g in groups for r in g]
    table = {}
    for tier in [*dict.fromkeys(r.task.kind for r in flat), "all"]:
        rs = [r for r in flat if tier in ("all", r.task.kind)]
        table[tier] = {"independent": rate([r for r in rs if not r.assisted]),
                       "assisted": rate([r for r in rs if r.assisted])}
        for role in roles:
            table[tier][f"consulted {role}"] = rate(
                [r for r in rs if r.assisted and any(c.agent == role and c.reply for c in r.consults)])
    return table
