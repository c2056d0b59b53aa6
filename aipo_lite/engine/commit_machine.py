"""Stop decisions from token ids: a small automaton equivalent to rewards.COMMITTED.

A plain row (evaluation, independent rollouts, continuations) ends at the first committed
answer: `Answer: <...digit...>` and its newline, or `\\boxed{<...digit...>}` (rewards.COMMITTED;
the reward reads the first committed answer, so nothing after it can change the reward).
Deciding that by decoding the row's text and running the regex costs a decode per line end per
row. Here the regex's search is compiled once into a deterministic automaton over characters
(subset construction over the few character classes the pattern distinguishes), and then into
a table over the vocabulary: `table[state][token]` = the state after reading that token's text.
A row's progress is one small integer; the decode loop (engine.run(stop=...)) advances it with
one table lookup per token and ends the row when it reaches the accepting state: no text, no
regex, no per-row decode on the hot path.

Per-token text is the token decoded alone (special tokens: empty, as `skip_special_tokens`).
Byte-level tokens that hold part of a multi-byte character decode to U+FFFD, an "other"
character; the regex on the full text sees the whole character instead, which differs only if
that character is a non-ASCII digit or space (tests/test_commit_machine.py checks the machine
against the regex on random token streams and on real completions).
"""

from __future__ import annotations

import functools
import re

import numpy as np

# The pattern as sequences of (character class, repeat): rewards.COMMITTED is
#   \**answer\**\s*[:=][^\n]*\d[^\n]*\n  |  \\boxed\s*\{[^{}]*\d[^{}]*\}   (case-insensitive)
# searched anywhere (a leading `\**` cannot change whether a match exists, so it is left out).
_LITERALS = "answerboxd*:=\n\\{}"   # characters the pattern names (letters matched ignoring case)
_CLASSES = [*dict.fromkeys(_LITERALS), "digit", "space", "other"]
_C = {c: i for i, c in enumerate(_CLASSES)}
_ANY_BUT_NL = frozenset(i for c, i in _C.items() if c != "\n")
_ANY_BUT_BRACE = frozenset(i for c, i in _C.items() if c not in "{}")
_SPACE = frozenset({_C["space"], _C["\n"]})
_PATTERNS = [
    [*[({_C[c]}, False) for c in "answer"], ({_C["*"]}, True), (_SPACE, True), ({_C[":"], _C["="]}, False),
     (_ANY_BUT_NL, True), ({_C["digit"]}, False), (_ANY_BUT_NL, True), ({_C["\n"]}, False)],
    [*[({_C[c]}, False) for c in "\\boxed"], (_SPACE, True), ({_C["{"]}, False),
     (_ANY_BUT_BRACE, True), ({_C["digit"]}, False), (_ANY_BUT_BRACE, True), ({_C["}"]}, False)],
]


@functools.lru_cache(maxsize=None)
def char_class(ch: str) -> int:
    """The class of one character, by the regex's own rules (re.I letters, Unicode \\d and \\s)."""
    for lit in _LITERALS:
        if re.fullmatch(re.escape(lit), ch, re.I):
            return _C[lit]
    if re.fullmatch(r"\d", ch):
        return _C["digit"]
    return _C["space"] if re.fullmatch(r"\s", ch) else _C["other"]


def _closure(states: set) -> frozenset:
    """NFA positions (pattern, items consumed), with starred items skippable."""
    out, todo = set(), list(states)
    while todo:
        p, i = todo.pop()
        if (p, i) in out:
            continue
        out.add((p, i))
        if i < len(_PATTERNS[p]) and _PATTERNS[p][i][1]:
            todo.append((p, i + 1))
    return frozenset(out)


def _char_dfa() -> tuple[np.ndarray, int]:
    """(delta[state, class] -> state, accepting state) of the search automaton; state 0 = start.
    Every state includes the start positions (search: a match may begin at any character);
    the accepting state is absorbing."""
    start = _closure({(p, 0) for p in range(len(_PATTERNS))})
    states, index, rows = [start], {start: 0}, []
    k = 0
    while k < len(states):
        s = states[k]
        if "accept" in s:
            rows.append([k] * len(_CLASSES))
            k += 1
            continue
        row = []
        for c in range(len(_CLASSES)):
            nxt = set()
            for p, i in s:
                items = _PATTERNS[p]
                if i < len(items) and c in items[i][0]:
                    nxt.add((p, i) if items[i][1] else (p, i + 1))
            t = _closure(nxt) | start
            if any(i == len(_PATTERNS[p]) for p, i in t):
                t = frozenset({"accept"})
            if t not in index:
                index[t] = len(states)
                states.append(t)
            row.append(index[t])
        rows.append(row)
        k += 1
    return np.array(rows, dtype=np.int64), index[frozenset({"accept"})]


class CommitMachine:
    """The token-level automaton for one tokenizer: `step(state, token)`, `accepts(state)`."""

    def __init__(self, tokenizer):
        delta, self.accept = _char_dfa()
        n = len(tokenizer)
        special = set(tokenizer.all_special_ids)
        vocab = tokenizer.convert_ids_to_tokens(list(range(n)))
        texts = ["" if i in special or t is None else tokenizer.convert_tokens_to_string([t])
                 for i, t in enumerate(vocab)]
        seqs = [bytes(map(char_class, s)) for s in texts]
        uniq = sorted(set(seqs), key=len, reverse=True)  # longest first: live tokens are a prefix
        width = len(uniq[0])
        cls = np.zeros((len(uniq), width), dtype=np.int64)
        for i, s in enumerate(uniq):
            cls[i, :len(s)] = list(s)
        lengths = np.array([len(s) for s in uniq])
        # every start state at once: state[q, u] after reading class sequence u from state q
        table = np.repeat(np.arange(len(delta))[:, None], len(uniq), axis=1)
        for j in range(width):
            live = int((lengths > j).sum())
            table[:, :live] = delta[table[:, :live], cls[:live, j]]
        pos = {s: i for i, s in enumerate(uniq)}
        table = table[:, [pos[s] for s in seqs]]
        self.texts = texts  # each token's own text: what a hook may read without decoding a row
        assert len(delta) < 256
        self.size = n
        self.table = [bytes(r.astype(np.uint8)) for r in table]  # table[state][token]: a fast int lookup

    def step(self, state: int, token: int) -> int:
        """The state after `token`; an id past the tokenizer (a model may pad its vocabulary)
        decodes to nothing and leaves the state as it is."""
        return self.table[state][token] if token < self.size else state

    def accepts(self, state: int) -> bool:
        return state == self.accept

    def run(self, ids: list[int], state: int = 0) -> int:
        for t in ids:
            state = self.step(state, t)
        return state

    def tail(self, ids: list[int]) -> tuple[str, int] | None:
        """How decode(ids) ends, from the last tokens' own texts: (the last token with visible
        text, stripped of trailing whitespace; how many newlines the text ends with). None when
        a special token or nothing visible comes first (then decode the row to know)."""
        newlines, counting = 0, True
        for t in reversed(ids):
            s = self.texts[t] if t < self.size else ""
            if not s:
                return None
            if counting:
                r = s.rstrip("\n")
                newlines, counting = newlines + len(s) - len(r), not r
            if s.strip():
                return s.rstrip(), newlines
        return None


_MACHINES: dict[int, CommitMachine] = {}


def commit_machine(tokenizer) -> CommitMachine:
    """The machine of this tokenizer, built once per process (~1 s for a 49k vocabulary)."""
    key = id(tokenizer)
    if key not in _MACHINES:
        _MACHINES[key] = CommitMachine(tokenizer)
    return _MACHINES[key]
