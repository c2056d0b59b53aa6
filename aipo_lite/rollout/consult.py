"""The hook of assisted rows (docs/methods.md §3): detect a bottleneck, consult an agent, queue its reply.

engine.run calls it after a row's watched tokens (line ends, closing '>') and after the last
forced token. It decides from token ids and entropies whether anything can happen (the commit
machine since the last feedback, the last tokens' own texts, the detector's entropy window) and
decodes the row's new text only then: the detector and the agent read text. A consult queues
the reply as forced tokens in the row's guidance form (`tagged`: `<feedback>reply</feedback>`,
TEMPLATE tags; `inline`: the reply as the policy's own next line, AGENT tokens) and records
where, why, which agent and what it said (Consult); a committed answer after the last feedback
ends the row (or, with verify-before-commit, is checked first).
"""

from __future__ import annotations

import re

from aipo_lite.agents.base import Request
from aipo_lite.agents.guard import Guarded
from aipo_lite.engine.commit_machine import commit_machine
from aipo_lite.engine.decode import Row
from aipo_lite.records import Consult, Prov
from aipo_lite.rollout.detector import Detector
from aipo_lite.tasks.rewards import COMMITTED, extract_answer


class Assist:
    """The on_token hook of assisted rows: detect, consult, queue feedback."""

    def __init__(self, tokenizer, detector: Detector, agents: dict[str, Guarded], budget: int,
                 form: str = "tagged"):
        self.tok, self.detector, self.agents, self.budget = tokenizer, detector, agents, budget
        self.inline = form == "inline"
        self.open = [] if self.inline else tokenizer.encode("<feedback>", add_special_tokens=False)
        self.close = [] if self.inline else tokenizer.encode("</feedback>\n", add_special_tokens=False)
        self.newline = tokenizer.encode("\n", add_special_tokens=False)
        self.machine = commit_machine(tokenizer)

    def _text(self, row: Row) -> str:
        """The row's text, decoded incrementally: only the tokens since the last call (the
        engine calls the hook at line ends and closing tags, where a character is complete; a
        piece that still splits one falls back to decoding the whole row)."""
        st = row.state
        piece = self.tok.decode(row.ids[st.n_dec:], skip_special_tokens=True)
        st.text = st.text + piece if "\ufffd" not in piece else self.tok.decode(row.ids, skip_special_tokens=True)
        st.n_dec = len(row.ids)
        return st.text

    def _needs_text(self, row: Row, seg: list[float]) -> bool:
        """Whether a consult or the stop could happen at this call, decided from token ids and
        entropies alone (the commit machine since the last feedback, the last tokens' own texts,
        the entropy window); only then is the row's text decoded. Exact: in every other case
        the text-based logic of __call__ would do nothing but the bookkeeping done here."""
        st, m = row.state, self.machine
        st.commit = m.run(row.ids[st.n_commit:], st.commit)
        st.n_commit = len(row.ids)
        tail = m.tail(row.ids)
        if tail is None or st.at_eos or st.text_after is None:
            return True
        last, newlines = tail
        if last.endswith(">"):
            return True  # perhaps a closed consult tag
        if newlines == 0:
            return False  # no trigger and no stop fires before the line ends
        if newlines > 1 or m.accepts(st.commit):
            return True  # a committed answer since the last feedback (or perhaps one line up)
        if len(st.consults) >= self.budget:
            return False
        if self.detector.every_line or self.detector.entropy_due(seg, st.h_init, st.checked):
            return True
        st.checked = len(seg)  # windows ending in this line were looked at
        return False

    def __call__(self, row: Row) -> None:
        st = row.state
        if not st.assisted:  # plain rows end at a commit by the engine's commit machine
            return
        seg = [e for e, p in zip(row.entropies[st.seg_start:], row.prov[st.seg_start:])
               if p == Prov.POLICY]
        if (len(st.consults) < self.budget and st.h_init is None
                and len(seg) >= self.detector.init_tokens):
            st.h_init = sum(seg[:self.detector.init_tokens]) / self.detector.init_tokens
        if not self._needs_text(row, seg):
            return
        text = self._text(row)
        if st.at_eos:  # the policy ended its reply: that is a commit too
            text += "\n"
        if st.text_after is None:  # first call after a feedback block was fed in
            st.text_after = len(text)
            st.commit, st.n_commit = 0, len(row.ids)  # the machine restarts after it
        if len(st.consults) < self.budget:
            trig = self.detector.check(text, seg, st.h_init, since=st.checked)
            if text.endswith("\n"):
                st.checked = len(seg)  # windows ending in this line were looked at
            if trig and trig.kind == "line" and text and not text[st.text_after:].strip():
                trig = None  # line guidance alternates: the policy writes a line after each hint
            if trig and trig.agent in self.agents:  # an absent agent = that role switched off
                req = Request(st.task, partial=text, query=trig.query, trigger=trig.kind,
                              proposed=extract_answer(text) if trig.kind == "commit" else None)
                reply, status = self.agents[trig.agent].respond(req)
                if reply and self.inline:
                    reply = inline_line(reply)  # the consult records the line as written
                if reply is None and trig.kind == "commit" and status == "ok":
                    row.finished = "stop"  # verified: the answer stands, no feedback
                    st.consults.append(Consult(len(row.ids), trig.kind, trig.agent, "", None, "passed"))
                    return
                st.consults.append(Consult(len(row.ids), trig.kind, trig.agent, trig.query, reply, status))
                if reply:
                    body = self.tok.encode(reply + "\n" if self.inline else reply, add_special_tokens=False)
                    newline = self.newline if st.at_eos else []
                    row.forced += ([(t, Prov.TEMPLATE) for t in newline + self.open] + [(t, Prov.AGENT) for t in body]
                                   + [(t, Prov.TEMPLATE) for t in self.close])
                    st.seg_start = len(row.ids) + len(row.forced)
                    st.checked = 0
                    st.text_after = None
                    return
        if COMMITTED.search(text[st.text_after:]) and text.endswith("\n"):
            row.finished = "stop"


_LABEL = re.compile(r"^\s*(Next|Fact|Check):\s*")


def inline_line(reply: str) -> str:
    """An agent's reply as a line of the policy's own text: its label dropped, one line."""
    return " ".join(_LABEL.sub("", reply).split())
