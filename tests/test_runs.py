"""A run folder knows what it is: resume compares settings, checkpoints are verified data, nothing
is lost on damage, metrics are strict JSON, safety stops. Plumbing: a tiny random model."""

import json
import math
import pickle
import shutil

import pytest

from aipo_lite.agents.base import make_agent
from aipo_lite.agents.guard import Guarded
from aipo_lite.config import Config, ConfigError
from aipo_lite.training import checkpoint, runinfo, trainer


@pytest.fixture
def cfg_of(tiny_model_dir, tmp_path):
    def make(**kw):
        base = dict(model=tiny_model_dir, dtype="float32", run_dir=str(tmp_path / "run"), train_steps=2,
                    checkpoint_every=1, train_tiers=["add1d"], heldout_tiers=["add1d"], log_completions_every=0)
        return Config.from_profile("smoke", **{**base, **kw})
    return make


@pytest.fixture
def trained(cfg_of):
    """A finished 2-step run (checkpoint at each step) and its metrics."""
    cfg = cfg_of()
    return cfg, trainer.train(cfg, progress=False)


def test_a_rerun_with_changed_training_settings_is_refused_naming_each_field(trained, cfg_of):
    cfg, _ = trained
    with pytest.raises(ConfigError) as e:
        trainer.train(cfg_of(learning_rate=1e-3, agent_weight="sft"), progress=False)
    msg = str(e.value)
    assert "learning_rate: trained with 0.0002, asked 0.001" in msg
    assert "agent_weight: trained with 'aipo', asked 'sft'" in msg
    assert json.loads((runinfo.Path(cfg.run_dir) / "config.json").read_text())["learning_rate"] == 2e-4  # untouched


def test_resolved_settings_count_too(trained, cfg_of):
    """dtype is compared as 'auto' resolved, and the training tasks by fingerprint."""
    with pytest.raises(ConfigError, match=r"dtype: trained with 'float32', asked 'bfloat16'"):
        trainer.train(cfg_of(dtype="bfloat16"), progress=False)
    with pytest.raises(ConfigError, match=r"train_tasks: trained with .*count"):
        trainer.train(cfg_of(train_tiers=["add1d", "add3"]), progress=False)


def test_same_settings_return_the_finished_run_and_more_steps_continue_it(trained, cfg_of, capsys):
    cfg, hist = trained
    again = trainer.train(cfg_of(train_eval_n=8, log_completions_every=5), progress=False)  # not training fields
    assert again == hist and "nothing to do" in capsys.readouterr().out
    longer = trainer.train(cfg_of(train_steps=3), progress=False)
    assert "resumed from" in capsys.readouterr().out and [m["step"] for m in longer] == [0, 1, 2, 3]
    with pytest.raises(ConfigError, match=r"^train_steps=1: .* already trained to step 3"):
        trainer.train(cfg_of(train_steps=1), progress=False)


def test_the_run_folder_records_resolved_settings_and_the_kit(trained):
    cfg, _ = trained
    rec = json.loads((runinfo.Path(cfg.run_dir) / "run.json").read_text())
    assert rec["training"]["dtype"] == "float32" and rec["training"]["train_tasks"]["count"] > 0
    assert rec["training"]["model_file"]["weights"] and rec["key"] == runinfo.key(rec["training"])
    assert {"commit", "torch", "transformers", "peft"} <= set(rec["kit"]) and rec["kit"]["torch"]


def test_arm_folders_are_named_by_training_settings(cfg_of, tmp_path):
    from aipo_lite.experiments.runs import arm_config
    a = arm_config(cfg_of(), "aipo", tmp_path).run_dir
    assert a == arm_config(cfg_of(train_steps=9, eval_n=2), "aipo", tmp_path).run_dir  # same training
    assert a != arm_config(cfg_of(learning_rate=1e-3), "aipo", tmp_path).run_dir
    assert a != arm_config(cfg_of(), "grpo", tmp_path).run_dir and "/aipo-" in a


def test_resume_false_never_overwrites_a_run(trained, cfg_of):
    with pytest.raises(ConfigError, match=r"^resume=False, but run_dir=.* already holds a run"):
        trainer.train(cfg_of(resume=False), progress=False)


def _plant_code_pickle(path, marker):
    class Boom:
        def __reduce__(self):
            return (open, (str(marker), "w"))
    path.write_bytes(pickle.dumps({"state": Boom()}))


def _reseal(step_dir):
    """Rewrite the manifest to match the files, as someone who sent the folder could."""
    state = json.loads((step_dir / "state.json").read_text())
    state["files"] = {n: {"bytes": (step_dir / n).stat().st_size, "sha256": checkpoint._digest(step_dir / n)}
                      for n in state["files"]}
    (step_dir / "state.json").write_text(json.dumps(state))


def test_a_pickle_that_would_run_code_is_refused(trained, cfg_of, tmp_path):
    cfg, _ = trained
    step = checkpoint.latest(cfg.run_dir)
    marker = tmp_path / "pwned"
    _plant_code_pickle(step / "optimizer.pt", marker)
    _reseal(step)
    with pytest.raises(checkpoint.CheckpointError, match=r"optimizer\.pt is not a readable data-only"):
        trainer.train(cfg_of(train_steps=3), progress=False)
    assert not marker.exists()


@pytest.mark.parametrize("pointer", ["", "step-0000", "\x00\xff garbage", "step-000009"])
def test_a_damaged_latest_pointer_falls_back_to_the_newest_intact_step(trained, cfg_of, pointer, capsys):
    cfg, hist = trained
    root = runinfo.Path(cfg.run_dir) / "checkpoints"
    shutil.copytree(root / "step-000002", root / "step-000001")  # an older intact step
    state = json.loads((root / "step-000001" / "state.json").read_text())
    (root / "step-000001" / "state.json").write_text(json.dumps({**state, "step": 1}))
    _reseal(root / "step-000001")
    (root / "latest").write_bytes(pointer.encode("latin-1"))
    assert checkpoint.latest(cfg.run_dir) == root / "step-000002"  # the newest intact one
    assert "resuming from the newest intact checkpoint" in capsys.readouterr().out
    (root / "step-000002" / "adapter.safetensors").write_bytes(b"\x00" * 10)  # now the newest is damaged
    assert checkpoint.latest(cfg.run_dir) == root / "step-000001"
    longer = trainer.train(cfg_of(train_steps=3), progress=False)  # resumes from step 1, keeps the log
    assert [m["step"] for m in longer] == [0, 1, 2, 3] and longer[:2] == hist[:2]


def test_a_truncated_file_stops_with_its_name_and_deletes_nothing(trained, cfg_of):
    cfg, _ = trained
    run = runinfo.Path(cfg.run_dir)
    step = run / "checkpoints" / "step-000002"
    opt = step / "optimizer.pt"
    opt.write_bytes(opt.read_bytes()[:100])
    metrics = (run / "metrics.jsonl").read_text()
    with pytest.raises(checkpoint.CheckpointError, match=rf"{opt} is damaged"):
        trainer.train(cfg_of(train_steps=3), progress=False)
    assert step.exists() and (run / "metrics.jsonl").read_text() == metrics
    (run / "checkpoints" / "latest").write_text("")
    with pytest.raises(checkpoint.CheckpointError, match=r"no intact checkpoint"):
        checkpoint.latest(run)
    assert step.exists() and (run / "metrics.jsonl").read_text() == metrics


def test_metrics_are_strict_json_with_non_finite_values_flagged(tmp_path):
    path = tmp_path / "metrics.jsonl"
    runinfo.append_metrics(path, {"step": 1, "loss": math.nan, "grad_norm": math.inf, "kl": 0.0})
    line = path.read_text()
    assert json.loads(line, parse_constant=lambda c: pytest.fail(f"bare {c}")) == \
        {"step": 1, "loss": None, "grad_norm": None, "kl": 0.0, "nonfinite": ["loss", "grad_norm"]}


def test_updates_skipped_in_a_row_stop_the_run_naming_step_and_cause(cfg_of, monkeypatch):
    real = trainer.update

    def nan_update(policy, opt, seqs, cfg):
        out = real(policy, opt, [], cfg)  # no update at all
        return {**out, "loss": math.nan, "skipped": 1, "skip_cause": "non-finite loss (loss nan, gradient norm 0.0)"}
    monkeypatch.setattr(trainer, "update", nan_update)
    with pytest.raises(trainer.TrainingStopped, match=r"stopped at step 2: 2 updates in a row were skipped .*non-finite loss"):
        trainer.train(cfg_of(train_steps=5, max_skipped_in_row=2), progress=False)
    lines = [json.loads(x) for x in (runinfo.Path(cfg_of().run_dir) / "metrics.jsonl").read_text().splitlines()]
    assert [m.get("train/skipped_update") for m in lines] == [None, 1, 1] and lines[-1]["nonfinite"] == ["train/loss"]


class _Broken:
    role, backend = "reasoning", "openai"

    def respond(self, req):
        raise ConnectionError("http://127.0.0.1:9/v1/chat/completions is unreachable: refused")


def test_an_llm_agent_that_mostly_falls_back_stops_the_run_and_its_faults_are_metrics(cfg_of, monkeypatch):
    from aipo_lite.rollout import groups as rollout

    def agents(cfg):
        real = rollout.agents_from_config(cfg)
        real["reasoning"] = Guarded(_Broken(), fallback=make_agent("reasoning", "rule"), retries=0)
        return real
    monkeypatch.setattr(trainer, "agents_from_config", agents)
    cfg = cfg_of(train_steps=6, detector_every_line=True, consult_budget=2, g_asst=4, prompts_per_step=2)
    with pytest.raises(trainer.TrainingStopped, match=r"openai reasoning agent fell back .*first: ConnectionError: http"):
        trainer.train(cfg, progress=False)
    last = [json.loads(x) for x in (runinfo.Path(cfg.run_dir) / "metrics.jsonl").read_text().splitlines()][-1]
    assert last["agents/reasoning/fallbacks"] == last["agents/reasoning/calls"] > 0
    assert last["agents/reasoning/faults/ConnectionError"] == last["agents/reasoning/calls"]
    assert last["agents/reasoning/ok"] == 0 and "agents/verify/calls" in last


def test_retry_backoff_is_capped_at_any_count():
    from aipo_lite.agents.guard import RETRY_SLEEP_MAX, retry_sleep
    assert retry_sleep(0) == 0.05 and max(retry_sleep(k) for k in range(2000)) == RETRY_SLEEP_MAX


def test_cached_evaluations_are_keyed_by_what_they_evaluated(trained, cfg_of, monkeypatch):
    """grid.final_eval reuses a result only for the same adapter, n, problems and sampling."""
    from aipo_lite.experiments import grid
    from aipo_lite.tasks.loading import load_tasks
    cfg, _ = trained
    run = runinfo.Path(cfg.run_dir)
    tests = load_tasks("synth", "test", ["add1d"], 2)
    calls = []
    real = grid.evaluate
    monkeypatch.setattr(grid, "evaluate", lambda *a, **k: calls.append(a[2].eval_n) or real(*a, **k))
    first = grid.final_eval(cfg, run, tests, 2)
    assert grid.final_eval(cfg, run, tests, 2) == first and calls == [2]  # same question: cached
    grid.final_eval(cfg, run, tests, 4)                                   # another n
    grid.final_eval(cfg, run, tests[:1], 2)                               # other problems
    grid.final_eval(cfg_of(eval_temperature=0.5), run, tests, 2)          # other sampling
    trainer.train(cfg_of(train_steps=3), progress=False)                  # the run continued: another adapter
    with pytest.raises(ConfigError, match=r"^train_steps=2: .* holds the adapter of step 3"):
        grid.final_eval(cfg, run, tests, 2)                               # never shown as the 2-step run
    grid.final_eval(cfg_of(train_steps=3), run, tests, 2)
    assert calls == [2, 4, 2, 2, 2] and len(list((run / "evals").glob("final_eval-*.json"))) == 5
    steps = {json.loads(f.read_text())["settings"]["evaluated"]["adapter"]["step"] for f in (run / "evals").glob("final_eval-*.json")}
    assert steps == {2, 3}


def test_duplicate_grid_seeds_are_refused():
    with pytest.raises(ConfigError, match=r"^grid_seeds=\[0, 0\] has duplicates"):
        Config(grid_seeds=[0, 0])


def test_token_budgets_beyond_the_model_context_are_refused_before_the_weights_load(tiny_model_dir):
    """rollout_max_new_tokens=10**6 would preallocate a KV cache of terabytes: refused at load."""
    from aipo_lite.model.policy import load_policy
    with pytest.raises(ConfigError, match=r"^rollout_max_new_tokens=1000000 does not fit the context"):
        load_policy(Config(model=tiny_model_dir, rollout_max_new_tokens=10**6))


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_resumed_run_equals_the_uninterrupted_one_warm_up_included(cfg_of, tmp_path, dtype):
    """Resuming (with its warm-up pass through the sampler) consumes no randomness of the run:
    1 step, then 1 more, logs what 2 steps in one go log (timings aside)."""
    timing = {"speed/rollout_s", "speed/update_s", "speed/step_time", "speed/tokens_per_s"}
    whole = trainer.train(cfg_of(run_dir=str(tmp_path / "whole"), train_eval_every=1, dtype=dtype), progress=False)
    trainer.train(cfg_of(run_dir=str(tmp_path / "cut"), train_steps=1, train_eval_every=1, dtype=dtype), progress=False)
    cut = trainer.train(cfg_of(run_dir=str(tmp_path / "cut"), train_eval_every=1, dtype=dtype), progress=False)
    assert [{k: v for k, v in m.items() if k not in timing} for m in cut] == \
        [{k: v for k, v in m.items() if k not in timing} for m in whole]
    assert whole[-1]["train/entropy"] is not None
    groups = {k.split("/")[0] for m in whole for k in m if k not in ("step", "nonfinite")}
    assert groups <= {"train", "eval", "agents", "speed"} and {"train", "eval", "speed"} <= groups, groups


def test_export_writes_a_peft_adapter_and_a_merged_model_with_the_runs_logits(trained, tmp_path):
    """`python -m aipo_lite export` gives folders standard tools load: PeftModel.from_pretrained on
    the run's base model, and AutoModelForCausalLM alone for --merged; both compute the trained
    policy's logits (float tolerance)."""
    import torch
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from aipo_lite.__main__ import main
    from aipo_lite.experiments.runs import load_trained
    from aipo_lite.integrations.export import run_config
    from aipo_lite.model.policy import resolve_model_path
    cfg, _ = trained
    from conftest import fill_lora
    policy = load_trained(run_config(cfg.run_dir), cfg.run_dir)  # a random model earns no reward: give it an adapter
    fill_lora(policy.model, 0.05)
    checkpoint.save(cfg.run_dir, policy.model, torch.optim.AdamW(policy.model.parameters()), torch.Generator(), {"step": 3})
    assert main(["export", cfg.run_dir, str(tmp_path / "adapter")]) == 0
    assert main(["export", cfg.run_dir, str(tmp_path / "merged"), "--merged"]) == 0
    assert {"adapter_config.json", "adapter_model.safetensors"} <= {p.name for p in (tmp_path / "adapter").iterdir()}
    ids = torch.tensor([[1, 5, 9, 42, 7, 300, 11]])
    with torch.no_grad():
        want = load_trained(run_config(cfg.run_dir), cfg.run_dir).model(input_ids=ids).logits
        base = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg), dtype=torch.float32)
        peft = PeftModel.from_pretrained(base, tmp_path / "adapter").eval()(input_ids=ids).logits
        merged = AutoModelForCausalLM.from_pretrained(tmp_path / "merged", dtype=torch.float32).eval()(input_ids=ids).logits
    base_logits = AutoModelForCausalLM.from_pretrained(resolve_model_path(cfg), dtype=torch.float32)(input_ids=ids).logits
    assert (want - base_logits).abs().max() > 1e-4  # the adapter changes something
    torch.testing.assert_close(peft, want, atol=1e-5, rtol=1e-5)
    torch.testing.assert_close(merged, want, atol=1e-4, rtol=1e-4)
    assert main(["export", str(tmp_path / "nowhere"), str(tmp_path / "x")]) == 2


def _wandb_history(run_dir) -> tuple[list[dict], object]:
    """The history rows and run record of an offline wandb run file (LevelDB-log framing of
    wandb's protobuf Records: 32 KiB blocks, 7-byte record headers, after a 7-byte file header)."""
    import glob
    import struct

    from wandb.proto import wandb_internal_pb2
    data = open(glob.glob(f"{run_dir}/wandb/offline-run-*/run-*.wandb")[0], "rb").read()
    pos, buf, rows, run = 7, b"", [], None
    while pos + 7 <= len(data):
        left = 32768 - pos % 32768
        _, length, kind = struct.unpack("<IHB", data[pos:pos + 7]) if left >= 7 else (0, 0, 0)
        if left < 7 or (length, kind) == (0, 0):
            pos += left
            continue
        chunk, pos = data[pos + 7:pos + 7 + length], pos + 7 + length
        buf = chunk if kind in (1, 2) else buf + chunk
        if kind in (1, 4):
            rec = wandb_internal_pb2.Record()
            rec.ParseFromString(buf)
            if rec.WhichOneof("record_type") == "history":
                rows.append({i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in rec.history.item})
            elif rec.WhichOneof("record_type") == "run":
                run = rec.run
    return rows, run


def numeric(m: dict) -> dict:
    """A metrics.jsonl line's values a tracker receives (tracking.MetricsLog)."""
    return {k: v for k, v in m.items() if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)}


def test_report_to_sends_metrics_jsonl_lines_to_tensorboard_and_offline_wandb(cfg_of):
    """Every numeric metrics.jsonl value reaches each tracker under the same name and step; the
    run is named by its folder in the report_project; its config is logged; nothing is uploaded."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    cfg = cfg_of(report_to="tensorboard,wandb", report_project="kit-test")
    trainer.train(cfg, progress=False)
    lines = [json.loads(line) for line in open(f"{cfg.run_dir}/metrics.jsonl")]
    tb = EventAccumulator(f"{cfg.run_dir}/tensorboard")
    tb.Reload()
    rows, run = _wandb_history(cfg.run_dir)
    by_step = {r["_step"]: r for r in rows}
    assert {m["step"] for m in lines} == set(by_step) == {0, 1, 2}
    for m in lines:
        for k, v in numeric(m).items():
            assert any(e.step == m["step"] and e.value == pytest.approx(v, rel=1e-6, abs=1e-6) for e in tb.Scalars(k)), k
            assert by_step[m["step"]][k] == pytest.approx(v), k
    assert run.display_name == runinfo.Path(cfg.run_dir).name and run.project == "kit-test"
    assert "learning_rate" in {item.key for item in run.config.update}


def test_report_to_trackio_keeps_the_metrics_jsonl_lines_in_its_local_database(cfg_of, tmp_path, monkeypatch):
    """The third backend, read back from trackio's own SQLite store. trackio is not in the dev
    extra (it pins pillow < 13): this runs where it is installed (docs/speed.md says where it ran)."""
    import importlib.util
    if importlib.util.find_spec("trackio") is None:
        pytest.skip("trackio is not installed (pip install trackio 'pillow<13')")
    monkeypatch.setenv("TRACKIO_DIR", str(tmp_path / "trackio"))  # read when trackio is first imported
    from trackio.sqlite_storage import SQLiteStorage
    cfg = cfg_of(report_to="trackio", report_project=f"kit-test-{tmp_path.name}")
    trainer.train(cfg, progress=False)
    lines = [json.loads(line) for line in open(f"{cfg.run_dir}/metrics.jsonl")]
    name = runinfo.Path(cfg.run_dir).name
    logs = {r["step"]: r for r in SQLiteStorage.get_logs(cfg.report_project, name)}
    assert set(logs) == {m["step"] for m in lines} == {0, 1, 2}
    for m in lines:
        for k, v in numeric(m).items():
            assert logs[m["step"]][k] == pytest.approx(v), k
    assert SQLiteStorage.get_run_config(cfg.report_project, name)["learning_rate"] == cfg.learning_rate


def test_report_to_names_are_validated():
    with pytest.raises(ConfigError, match="report_to='tensorboard,mlflow'"):
        Config(report_to="tensorboard,mlflow")
    assert Config(report_to="none").report_to == "none"


def test_a_run_trains_and_evaluates_on_reasoning_gym_items_with_rule_agents(cfg_of):
    """Plumbing: a reasoning-gym dataset as the tasks of training, assisted rollouts (the rule
    agents read the steps its metadata gives) and the held-out evaluation."""
    cfg = cfg_of(tasks="reasoning_gym:chain_sum", task_settings={"chain_sum": {"size": 8, "test_size": 4, "max_terms": 3}},
                 train_tiers=["chain_sum"], heldout_tiers=["chain_sum"])
    hist = trainer.train(cfg, progress=False)
    assert [m["step"] for m in hist] == [0, 1, 2] and "eval/pass1/chain_sum" in hist[-1]
    assert hist[-1]["train/consult_rate"] is not None


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
def test_a_second_model_family_without_a_chat_template_trains_resumes_and_evaluates(tiny_gemma_dir, tmp_path, dtype):
    """Plumbing for any policy family: a tiny Gemma 3 (sliding-window layers, no chat template:
    the plain prompt format) through assisted rollouts, training, resume and evaluation."""
    from aipo_lite.evaluation.agent_free import evaluate
    from aipo_lite.experiments.runs import load_trained
    from aipo_lite.tasks.loading import load_tasks
    from aipo_lite.tasks.prompts import agent_free_prompt
    base = dict(model=tiny_gemma_dir, dtype=dtype, run_dir=str(tmp_path / "run"), checkpoint_every=1,
                train_tiers=["add3"], heldout_tiers=["add3"], log_completions_every=0)
    first = trainer.train(Config.from_profile("smoke", train_steps=1, **base), progress=False)
    more = trainer.train(Config.from_profile("smoke", train_steps=2, **base), progress=False)
    assert more[:2] == first and [m["step"] for m in more] == [0, 1, 2]
    assert more[-1]["train/consult_rate"] is not None and "eval/pass1/add3" in more[-1]
    cfg = Config.from_profile("smoke", **base)
    policy = load_trained(cfg, cfg.run_dir)
    assert agent_free_prompt(policy.tokenizer, "What is 1 + 2?").endswith("Question: What is 1 + 2?\nSolution:\n")
    assert evaluate(policy, load_tasks("synth", "test", tiers=["add3"], limit_per_tier=2), cfg, progress=False).problems


def test_a_field_added_later_keeps_old_folder_names_until_it_is_set(cfg_of):
    """task_settings came after run folders were named by their settings: at its default it is
    not part of the record (so not of the key), and older folders resume under their names."""
    plain, gym = cfg_of(), cfg_of(task_settings={"chain_sum": {"size": 5}})
    assert "task_settings" not in runinfo.training(plain, [])
    assert runinfo.training(gym, [])["task_settings"] == {"chain_sum": {"size": 5}}
    assert runinfo.key(runinfo.training(plain, [])) != runinfo.key(runinfo.training(gym, []))
