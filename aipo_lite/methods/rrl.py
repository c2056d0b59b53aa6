"""RRL: retrospective replay of promising prefixes (arXiv 2504.14363; docs/methods.md §4).

The paper keeps partial solutions from earlier rollouts that looked promising and later starts
rollouts from them, so the policy revisits ideas it could not finish. It gives neither the
promise criterion, the buffer size nor the replay ratio; no code is public. The kit's choices
(config fields `rrl_*`, defaults in config.py):

- **Promising** (`harvest`): in a group whose mean reward is at most `rrl_max_group_reward`
  (a problem the policy mostly fails), every rollout that succeeded gives one prefix; its
  promise is its reward minus the group mean (how much better than the group it did). The
  prefix is the rollout's text under the agent-free prompt (an assisted rollout's internalized
  view: the agent's lines become plain text) cut at a line end: right after the last agent line
  when it has one (AIPO+RRL: the guidance that made it promising), else at the line end
  nearest `rrl_prefix_frac` of its tokens; a prefix that would hold the committed answer, or
  is empty, is not stored.
- **Buffer** (`ReplayBuffer`): at most `rrl_capacity` entries, one per (task, prefix); when
  full the least promising (then oldest) goes; an entry older than `rrl_max_age` steps is
  dropped (stale: the policy has moved on); an entry is replayed at most `rrl_max_replays` times.
- **Replay**: each step, up to `rrl_groups` of its `prompts_per_step` groups start from stored
  prefixes (most promising first, one per task) instead of fresh prompts (equal budget). A
  replay group's g_ind + g_asst rollouts take the agent-free prompt plus the prefix as context
  and sample on without agents; the prefix tokens never enter their loss (views.continuation_seq),
  and their advantages are the plain group advantage among them.
The buffer is part of the checkpoint (state["rrl"]), so a resumed run replays the same prefixes.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

from aipo_lite.methods.views import to_train_seqs
from aipo_lite.records import Prov, Rollout
from aipo_lite.rollout.detector import Detector
from aipo_lite.rollout.groups import rollout_group
from aipo_lite.tasks.rewards import COMMITTED


@dataclass
class Entry:
    task_id: str
    prefix: list[int]
    promise: float
    added: int
    replays: int = 0


class ReplayBuffer:
    def __init__(self, capacity: int, max_age: int, max_replays: int, entries: list[dict] | None = None):
        self.capacity, self.max_age, self.max_replays = capacity, max_age, max_replays
        self.entries = [Entry(**e) for e in entries or []]

    def __len__(self) -> int:
        return len(self.entries)

    def state(self) -> list[dict]:
        return [asdict(e) for e in self.entries]

    def insert(self, e: Entry) -> None:
        """Add (or refresh) an entry; over capacity, evict the least promising, then the oldest."""
        self.entries = [x for x in self.entries if (x.task_id, x.prefix) != (e.task_id, e.prefix)] + [e]
        while len(self.entries) > self.capacity:
            self.entries.remove(min(self.entries, key=lambda x: (x.promise, x.added)))

    def expire(self, step: int) -> None:
        """Drop entries added more than max_age steps before `step`."""
        self.entries = [x for x in self.entries if step - x.added <= self.max_age]

    def take(self, n: int) -> list[Entry]:
        """Up to n entries to replay, most promising (then newest) first, at most one per task;
        each counts a replay, and an entry replayed max_replays times leaves the buffer."""
        out, seen = [], set()
        for e in sorted(self.entries, key=lambda x: (-x.promise, -x.added)):
            if len(out) < n and e.task_id not in seen:
                out.append(e)
                seen.add(e.task_id)
        for e in out:
            e.replays += 1
        self.entries = [x for x in self.entries if x.replays < self.max_replays]
        return out


def cut(ids: list[int], kind: list[int], tokenizer, frac: float) -> int:
    """Where a promising rollout's prefix ends (tokens kept), 0 = none: after the last agent
    line, else at the line end nearest frac of the tokens; never at or past the answer line."""
    ends = [i + 1 for i, t in enumerate(ids) if "\n" in tokenizer.decode([t])]
    answer = len(tokenizer.decode(ids, skip_special_tokens=True))
    m = COMMITTED.search(tokenizer.decode(ids, skip_special_tokens=True))
    if m:
        answer = m.start()
    ends = [e for e in ends if len(tokenizer.decode(ids[:e], skip_special_tokens=True)) <= answer and e < len(ids)]
    if not ends:
        return 0
    agent = [i for i, k in enumerate(kind) if k == Prov.AGENT]
    if agent:
        after = [e for e in ends if e > agent[-1]]
        return after[0] if after else 0
    return min(ends, key=lambda e: abs(e - frac * len(ids)))


def harvest(buffer: ReplayBuffer, groups: list[list[Rollout]], tokenizer, cfg, step: int) -> int:
    """Store the promising prefixes of this step's fresh groups. Returns how many were stored."""
    stored = 0
    for g in groups:
        mean = sum(r.reward for r in g) / len(g)
        if mean > cfg.rrl_max_group_reward:
            continue
        for r in g:
            if r.reward <= mean or r.prefix_len:
                continue
            s = to_train_seqs([[r]], tokenizer, "internalized", "all", cfg.prompt_style)[0]
            n = cut(s.ids, s.kind, tokenizer, cfg.rrl_prefix_frac)
            if n:
                buffer.insert(Entry(r.task.id, s.ids[:n], r.reward - mean, step))
                stored += 1
    return stored


def replay_groups(policy, entries: list[Entry], tasks_by_id: dict, cfg, generator):
    """One group of g_ind + g_asst agent-free rollouts per entry, each starting from its prefix."""
    if not entries:
        return [], {"policy_tokens": 0, "forced_tokens": 0}
    tasks = [tasks_by_id[e.task_id] for e in entries]
    return rollout_group(policy, tasks, {}, Detector(use_entropy=False, verify_before_commit=False),
                         cfg.g_ind + cfg.g_asst, 0, temperature=cfg.rollout_temperature,
                         max_new_tokens=cfg.rollout_max_new_tokens, prompt_style=cfg.prompt_style,
                         reward_mode=cfg.reward_mode, generator=generator,
                         prefixes={e.task_id: e.prefix for e in entries})
