import json
import sys

import pytest
from conftest import ROOT

from aipo_lite.config import Config, ConfigError
from aipo_lite.tasks.loading import DATA_DIR, TaskFormatError, by_tier, load_knowledge, load_tasks

TIERS = {"add1d", "add2d", "mul1x2", "add3", "expr3", "units"}


def test_committed_data_is_what_the_script_generates(tmp_path):
    sys.path.insert(0, str(ROOT / "data"))
    import make_data
    make_data.main(tmp_path)
    for rel in ("synth/train.jsonl", "synth/test.jsonl", "knowledge.jsonl"):
        assert (tmp_path / rel).read_bytes() == (DATA_DIR / rel).read_bytes(), rel


def test_splits_are_disjoint_and_large_enough():
    train, test = load_tasks("synth", "train"), load_tasks("synth", "test")
    train = [t for t in train if t.kind in TIERS]
    test = [t for t in test if t.kind in TIERS]
    assert set(by_tier(test)) == TIERS == set(by_tier(train))
    assert all(len(ts) >= 50 for ts in by_tier(test).values())
    assert not {t.question for t in train} & {t.question for t in test}
    assert len({t.id for t in train + test}) == len(train) + len(test)


def test_recall_tiers_hold_only_facts_from_the_knowledge_base_and_a_transfer_set():
    """recall: the same invented facts in train and test (a memory test); recall_t: the same
    facts in question templates never seen in training; every answer is a fact's value;
    recall_use: the facts inside sums training never shows."""
    train = load_tasks("synth", "train", tiers=["recall"])
    test, transfer = load_tasks("synth", "test", tiers=["recall"]), load_tasks("synth", "test", tiers=["recall_t"])
    assert {t.question for t in train} == {t.question for t in test}
    assert not {t.question for t in transfer} & {t.question for t in train}
    assert {t.facts[0] for t in transfer} == {t.facts[0] for t in train}
    knowledge = {row["text"] for row in load_knowledge()}
    for t in train + test + transfer:
        name, value = t.facts[0].split(" = ")
        assert t.answer == value and len(value) == 3 and name in t.question and t.facts[0] in knowledge
    # recall_use: each trained fact used in a one-step sum; question forms and answers never trained
    use = load_tasks("synth", "test", tiers=["recall_use"])
    assert {t.facts[0] for t in use} == {t.facts[0] for t in train} and len(use) == 2 * len({t.facts[0] for t in train})
    assert not {t.question for t in use} & {t.question for t in train + test + transfer}
    assert not {t.answer for t in use} & {t.answer for t in train}
    for t in use:
        name, value = t.facts[0].split(" = ")
        k = int(t.question.split(" + ")[1].rstrip("?")) if " + " in t.question else int(t.question.split()[1])
        assert name in t.question and t.answer == str(int(value) + k) and 2 <= k <= 9


def test_reference_steps_reach_the_answer_and_facts_are_in_the_knowledge_base():
    knowledge = {row["text"] for row in load_knowledge()}
    for t in load_tasks("synth", "train") + load_tasks("synth", "test"):
        assert t.steps and t.steps[-1].endswith(f"= {t.answer}"), t
        for step in t.steps if t.kind in TIERS else ():  # every step is true arithmetic
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
    with pytest.raises(ValueError, match="split='dev'"):
        load_tasks(DATA_DIR / "synth" / "test.jsonl", "dev")


def _write(tmp_path, rows):
    path = tmp_path / "tasks.jsonl"
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def test_gsm8k_format(tmp_path):
    path = _write(tmp_path, [{"question": "Tom has 3 boxes of 12 eggs and eats 2. How many are left?",
                              "answer": "3 boxes hold 3*12=<<3*12=36>>36 eggs.\nHe has 36-2=<<36-2=34>>34 left.\n#### 34",
                              "split": "test"},
                             {"question": "Big?", "answer": "Sum.\n#### 1,200", "split": "test"}])
    t, big = load_tasks(path, "test")
    assert t.answer == "34" and big.answer == "1200"
    assert t.steps == ("3 boxes hold 3*12=36 eggs.", "He has 36-2=34 left.")
    assert t.kind == "default" and t.id == "tasks-1"


def test_field_mapping_and_extra_fields(tmp_path):
    path = _write(tmp_path, [{"uid": "p1", "problem": "1+1?", "solution": 2, "level": "easy"}])
    fields = {"id": "uid", "question": "problem", "answer": "solution", "kind": "level"}
    (t,) = load_tasks(path, "train", fields=fields, test_fraction=0.01)
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
    ({"question": "Name the colour.", "answer": "blue"}, r"tasks.jsonl:2: field 'answer' value 'blue' cannot be scored"),
    ({"question": "1+1?", "answer": "2", "split": "dev"}, r"field 'split' must be one of \['train', 'test'\]"),
])
def test_malformed_row_names_file_line_and_field(tmp_path, row, message):
    path = _write(tmp_path, [{"id": "a", "question": "1+1?", "answer": "2"}, row])
    with pytest.raises(TaskFormatError, match=message):
        load_tasks(path)


GSM8K_ROWS = [{"question": f"Ann has {n} apples and buys {n + 1} more. How many now?",
               "answer": f"She has {n}+{n + 1}=<<{n}+{n + 1}={2 * n + 1}>>{2 * n + 1}.\n#### {2 * n + 1}"}
              for n in range(40)]


def test_gsm8k_split_files_folder_and_template(tmp_path):
    """GSM8K as users have it: train.jsonl and test.jsonl, in a folder or named by '{split}'."""
    folder = tmp_path / "gsm8k"
    folder.mkdir()
    for split, rows in (("train", GSM8K_ROWS[:30]), ("test", GSM8K_ROWS[30:])):
        text = "".join(json.dumps(r) + "\n" for r in rows)
        (folder / f"{split}.jsonl").write_text(text)
        (tmp_path / f"gsm8k_{split}.jsonl").write_text(text)
    for source in (folder, str(tmp_path / "gsm8k_{split}.jsonl")):
        train, test = load_tasks(source, "train"), load_tasks(source, "test")
        assert (len(train), len(test)) == (30, 10)
        assert not {t.question for t in train} & {t.question for t in test}
        assert test[0].answer == "61" and test[0].steps == ("She has 30+31=61.",)
    with pytest.raises(FileNotFoundError, match="without test.jsonl"):
        (folder / "test.jsonl").unlink()
        load_tasks(folder, "test")


def test_gsm8k_as_a_hugging_face_dataset_folder_and_as_parquet_files(tmp_path):
    """GSM8K as `datasets` users have it: a save_to_disk DatasetDict, and the hub's parquet
    layout (main/train-00000-of-00001.parquet, main/test-...): its own splits, the same
    parsing, field mapping and validation as JSONL."""
    datasets = pytest.importorskip("datasets")  # in the dev extra: present wherever `make test` runs
    rows = [{"problem": r["question"], "solution": r["answer"]} for r in GSM8K_ROWS]
    dd = datasets.DatasetDict({"train": datasets.Dataset.from_list(rows[:30]),
                               "test": datasets.Dataset.from_list(rows[30:])})
    dd.save_to_disk(str(tmp_path / "hf"))
    (tmp_path / "gsm8k" / "main").mkdir(parents=True)
    for split in ("train", "test"):
        dd[split].to_parquet(str(tmp_path / "gsm8k" / "main" / f"{split}-00000-of-00001.parquet"))
    fields = {"question": "problem", "answer": "solution"}
    for source in (tmp_path / "hf", tmp_path / "gsm8k", str(tmp_path / "gsm8k/main/{split}-00000-of-00001.parquet")):
        train, test = load_tasks(source, "train", fields=fields), load_tasks(source, "test", fields=fields)
        assert (len(train), len(test)) == (30, 10)
        assert test[0].answer == "61" and test[0].steps == ("She has 30+31=61.",)
    bad = datasets.Dataset.from_list([{"problem": "1+1?"}])  # a row without its answer
    datasets.DatasetDict({"train": bad, "test": bad}).save_to_disk(str(tmp_path / "bad"))
    with pytest.raises(TaskFormatError, match=r"bad \[test\] row 1: missing field 'solution' \(mapped from 'answer'\)"):
        load_tasks(tmp_path / "bad", "test", fields=fields)
    datasets.DatasetDict({"train": dd["train"], "validation": dd["test"]}).save_to_disk(str(tmp_path / "noval"))
    with pytest.raises(ValueError, match=r"has splits \['train', 'validation'\], not 'test'"):
        load_tasks(tmp_path / "noval", "test", fields=fields)


def test_one_file_is_split_by_a_stable_hash_of_task_ids(tmp_path):
    path = _write(tmp_path, GSM8K_ROWS)
    train, test = load_tasks(path, "train"), load_tasks(path, "test")
    assert len(train) + len(test) == 40 and 2 <= len(test) <= 16  # ~20% held out
    assert not {t.id for t in train} & {t.id for t in test}
    shuffled = tmp_path / "shuffled.jsonl"  # row order does not move a task across the split
    lines = path.read_text().splitlines()
    rows = [json.loads(line) | {"id": f"tasks-{i}"} for i, line in enumerate(lines, start=1)]
    shuffled.write_text("".join(json.dumps(r) + "\n" for r in reversed(rows)))
    assert {t.question for t in load_tasks(shuffled, "test")} == {t.question for t in test}
    other = load_tasks(path, "test", split_seed=1)
    assert {t.id for t in other} != {t.id for t in test}
    half = load_tasks(path, "test", test_fraction=0.5)
    assert 12 <= len(half) <= 28


def test_one_file_with_a_split_field(tmp_path):
    rows = [r | {"split": "test" if i % 4 == 0 else "train"} for i, r in enumerate(GSM8K_ROWS)]
    path = _write(tmp_path, rows)
    assert len(load_tasks(path, "test")) == 10 and len(load_tasks(path, "train")) == 30
    path = _write(tmp_path, rows[:3] + GSM8K_ROWS[3:4])
    with pytest.raises(TaskFormatError, match="has no field 'split' but others do"):
        load_tasks(path, "test")
    path = _write(tmp_path, [r | {"split": "train"} for r in GSM8K_ROWS[:3]])
    with pytest.raises(TaskFormatError, match="split 'test' is empty"):
        load_tasks(path, "test")


def test_empty_file_is_one_clear_error(tmp_path):
    path = tmp_path / "empty.jsonl"
    path.write_text("\n")
    with pytest.raises(TaskFormatError, match="empty.jsonl: no tasks"):
        load_tasks(path, "train")


def test_config_for_user_data_defaults_to_all_kinds_and_trainer_holds_out_test(tmp_path):
    from aipo_lite.config import Config
    from aipo_lite.tasks.loading import from_config
    path = _write(tmp_path, GSM8K_ROWS)
    cfg = Config.from_profile("demo", tasks=str(path))
    assert cfg.train_tiers == cfg.probe_tiers == cfg.heldout_tiers == []  # the preset's synth tiers: all kinds
    assert cfg.train_problems_per_tier == 0  # and the preset's cut of the synth problems does not apply
    assert len(from_config(cfg, "test", cfg.eval_tiers)) == len(from_config(cfg, "test"))  # the default: all kinds
    assert Config.from_profile("demo").heldout_tiers == ["recall_t"]  # synth keeps its tiers
    train, test = from_config(cfg, "train", cfg.train_tiers), from_config(cfg, "test", cfg.heldout_tiers, 2)
    assert len(test) == 2 and not {t.id for t in train} & {t.id for t in from_config(cfg, "test")}
    mine = Config(tasks=str(path), train_tiers=["default"], task_test_fraction=0.5)
    assert mine.train_tiers == ["default"] and len(from_config(mine, "test")) > len(test)
    assert len(from_config(Config(tasks=str(path)), "train", Config().train_tiers)) == len(train)  # default: all


def test_explicit_tiers_are_never_widened_and_missing_ones_name_the_field(tmp_path):
    """tasks='data/synth' (the suite as a folder) with train_tiers=['add3'] trains on add3 only;
    tiers a source lacks are a ConfigError naming the field, raised when the tasks load."""
    from aipo_lite.config import Config, ConfigError
    from aipo_lite.tasks.loading import from_config
    cfg = Config(tasks=str(ROOT / "data" / "synth"), train_tiers=["add3"], heldout_tiers=["add3"])
    assert {t.kind for t in from_config(cfg, "train", cfg.train_tiers)} == {"add3"}
    user = Config(tasks=str(_write(tmp_path, GSM8K_ROWS)), heldout_tiers=["add3"])
    with pytest.raises(ConfigError, match=r"^heldout_tiers=\['add3'\]: tiers=\['add3'\] not found .*heldout_tiers=\[\]"):
        from_config(user, "test", user.heldout_tiers)


# --- reasoning-gym as a task source (tasks/reasoning_gym.py) ---------------------------------

def _rg(**kw):
    return Config(tasks="reasoning_gym:chain_sum,leg_counting,products", train_tiers=[], heldout_tiers=[],
                  eval_tiers=[], probe_tiers=[], g_asst=0, **kw)  # leg_counting has no steps for rule agents


def test_reasoning_gym_items_are_tiers_by_dataset_with_disjoint_splits_and_settings():
    from aipo_lite.tasks.loading import from_config
    cfg = _rg(task_settings={"chain_sum": {"size": 40, "test_size": 30, "min_terms": 2, "max_terms": 2},
                             "leg_counting": {"size": 20, "test_size": 10}, "products": {"size": 10, "test_size": 5}})
    train, test = from_config(cfg, "train", cfg.train_tiers), from_config(cfg, "test", cfg.heldout_tiers)
    assert [sum(t.kind == k for t in train) for k in ("chain_sum", "leg_counting", "products")] == [40, 20, 10]
    assert 0 < sum(t.kind == "chain_sum" for t in test) <= 30
    assert not {t.question for t in train} & {t.question for t in test}
    assert len({t.id for t in train + test}) == len(train) + len(test)
    for t in (t for t in train if t.kind == "chain_sum"):  # the dataset's own settings reach it: 2 terms
        assert t.meta["entry"]["metadata"]["num_terms"] == 2 and t.steps[-1].endswith(f"= {t.answer}")
    again = load_tasks("reasoning_gym:chain_sum", "train", settings={"chain_sum": {"size": 40, "min_terms": 2, "max_terms": 2}})
    assert [t.question for t in again] == [t.question for t in train if t.kind == "chain_sum"]  # seeded: the same items


def test_reasoning_gym_reward_is_the_datasets_score_answer_on_the_kits_extracted_answer():
    from aipo_lite.tasks.loading import from_config
    from aipo_lite.tasks.rewards import task_reward
    cfg = _rg(task_settings={k: {"size": 5, "test_size": 5} for k in ("chain_sum", "leg_counting", "products")})
    for t in from_config(cfg, "test", cfg.heldout_tiers):
        assert task_reward(t, f"Some work.\nAnswer: {t.answer}\nmore") == 1.0, t
        assert task_reward(t, f"Answer: {int(t.answer) + 1}") == 0.0 and task_reward(t, "no answer") == 0.0
        if abs(int(t.answer)) >= 1000:  # thousands separators, as the model may write them
            assert task_reward(t, f"Answer: {int(t.answer):,}") == 1.0


def test_reasoning_gym_bad_input_names_the_field():
    from aipo_lite.tasks.loading import from_config
    with pytest.raises(ConfigError, match="tasks: 'no_such_set' is not a reasoning-gym dataset"):
        from_config(Config(tasks="reasoning_gym:no_such_set", train_tiers=[]), "train", [])
    with pytest.raises(ConfigError, match=r"task_settings\['chain_sum'\]"):
        from_config(Config(tasks="reasoning_gym:chain_sum", train_tiers=[], task_settings={"chain_sum": {"max_terms": "x"}}), "train", [])
    with pytest.raises(ConfigError, match="not a number"):
        from_config(Config(tasks="reasoning_gym:word_sorting", train_tiers=[], task_settings={"word_sorting": {"size": 3}}), "train", [])
    with pytest.raises(ConfigError, match="task_settings"):
        Config(task_settings={"chain_sum": {"size": 0}})
    with pytest.raises(ConfigError, match="agent_backend='rule'.*leg_counting"):  # no steps for the rule agents
        from_config(Config(tasks="reasoning_gym:leg_counting", train_tiers=[], task_settings={"leg_counting": {"size": 3}}), "train", [])
    assert from_config(Config(tasks="reasoning_gym:leg_counting", train_tiers=[], g_asst=0,
                              task_settings={"leg_counting": {"size": 3}}), "train", [])
