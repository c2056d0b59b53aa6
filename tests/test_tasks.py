import json
import sys

import pytest

from aipo_lite.tasks import DATA_DIR, TaskFormatError, by_tier, load_knowledge, load_tasks
from conftest import ROOT

TIERS = {"add1d", "add2d", "mul1x2", "add3", "expr3", "units"}


def test_committed_data_is_what_the_script_generates(tmp_path):
    sys.path.insert(0, str(ROOT / "data"))
    import make_data
    make_data.main(tmp_path)
    for rel in ("synth/train.jsonl", "synth/test.jsonl", "knowledge.jsonl"):
        assert (tmp_path / rel).read_bytes() == (DATA_DIR / rel).read_bytes(), rel


def test_splits_are_disjoint_and_large_enough():
    train, test = load_tasks("synth", "train"), load_tasks("synth", "test")
    assert set(by_tier(test)) == TIERS == set(by_tier(train))
    assert all(len(ts) >= 50 for ts in by_tier(test).values())
    assert not {t.question for t in train} & {t.question for t in test}
    assert len({t.id for t in train + test}) == len(train) + len(test)


def test_reference_steps_reach_the_answer_and_facts_are_in_the_knowledge_base():
    knowledge = {row["text"] for row in load_knowledge()}
    for t in load_tasks("synth", "train") + load_tasks("synth", "test"):
        assert t.steps and t.steps[-1].endswith(f"= {t.answer}"), t
        for step in t.steps:  # every step is true arithmetic
            lhs, rhs = step.split("=")
            assert eval(lhs) == int(rhs), step
        assert set(t.facts) <= knowledge, t
    assert any(t.facts for t in load_tasks("synth", "test", tiers=["units"]))


def test_filters():
    tasks = load_tasks("synth", "test", tiers=["add3", "expr3"], limit_per_tier=5)
    assert [t.kind for t in tasks] == ["add3"] * 5 + ["expr3"] * 5
    with pytest.raises(ValueError, match=r"tiers=\['add4'\]"):
        load_tasks("synth", "test", tiers=["add4"])
    with pytest.raises(ValueError, match="split='dev'"):
        load_tasks("synth", "dev")
    with pytest.raises(FileNotFoundError, match="neither a built-in suite"):
        load_tasks("nope.jsonl")


def _write(tmp_path, rows):
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_gsm8k_format(tmp_path):
    path = _write(tmp_path, [{"question": "Tom has 3 boxes of 12 eggs and eats 2. How many are left?",
                              "answer": "3 boxes hold 3*12=<<3*12=36>>36 eggs.\nHe has 36-2=<<36-2=34>>34 left.\n#### 34"},
                             {"question": "Big?", "answer": "Sum.\n#### 1,200"}])
    t, big = load_tasks(path)
    assert t.answer == "34" and big.answer == "1200"
    assert t.steps == ("3 boxes hold 3*12=36 eggs.", "He has 36-2=34 left.")
    assert t.kind == "default" and t.id == "tasks-1"


def test_field_mapping_and_extra_fields(tmp_path):
    path = _write(tmp_path, [{"uid": "p1", "problem": "1+1?", "solution": 2, "level": "easy"}])
    (t,) = load_tasks(path, fields={"id": "uid", "question": "problem", "answer": "solution", "kind": "level"})
    assert (t.id, t.question, t.answer, t.kind) == ("p1", "1+1?", "2", "easy")
    with pytest.raises(TaskFormatError, match=r"tasks.jsonl:1: missing field 'question'"):
        load_tasks(path)


@pytest.mark.parametrize("row, message", [
    ('{"question": "1+1?", "answer": ', r"tasks.jsonl:2: not valid JSON"),
    ('["1+1?", 2]', r"tasks.jsonl:2: a row must be a JSON object"),
    ({"question": "1+1?"}, r"tasks.jsonl:2: missing field 'answer'"),
    ({"question": "", "answer": "2"}, r"tasks.jsonl:2: field 'question' must be a non-empty string"),
    ({"question": "1+1?", "answer": None}, r"tasks.jsonl:2: field 'answer' must be a string or number"),
    ({"question": "1+1?", "answer": "2", "steps": "1+1=2"}, r"tasks.jsonl:2: field 'steps' must be a list of strings"),
    ({"question": "1+1?", "answer": "2", "facts": [1]}, r"tasks.jsonl:2: field 'facts' must be a list of strings"),
    ({"id": "a", "question": "2+2?", "answer": "4"}, r"field 'id' value 'a' appears twice"),
])
def test_malformed_row_names_file_line_and_field(tmp_path, row, message):
    path = _write(tmp_path, [{"id": "a", "question": "1+1?", "answer": "2"}, row])
    with pytest.raises(TaskFormatError, match=message):
        load_tasks(path)
