"""The public API (lazy) and the one command line."""

import json
import subprocess
import sys

import aipo_lite
from aipo_lite.__main__ import main


def test_every_public_name_resolves_and_config_alone_imports_no_torch():
    code = ("import sys, aipo_lite; aipo_lite.Config(); heavy = 'torch' in sys.modules; "
            "[getattr(aipo_lite, n) for n in aipo_lite.__all__]; print(heavy, 'torch' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out == ["False", "True"]
    assert callable(aipo_lite.train) and aipo_lite.tasks_from_config.__name__ == "from_config"


def test_the_command_line_validates_before_any_work(capsys, tmp_path):
    assert main(["train", "--profile", "smoke", "--run-dir", str(tmp_path / "r"), "--overrides", '{"kl_beta": true}']) == 2
    assert "kl_beta=True must be of type float" in capsys.readouterr().err
    assert main(["eval", "--profile", "nope"]) == 2 and "profile='nope' is not valid" in capsys.readouterr().err
    assert main(["fly"]) == 2 and "must be one of" in capsys.readouterr().err
    assert not (tmp_path / "r").exists()


def test_eval_command_on_a_tiny_model(tiny_model_dir, tmp_path, capsys):
    over = dict(model=tiny_model_dir, dtype="float32", eval_tiers=["add1d"], eval_problems_per_tier=2, eval_n=2,
                eval_ks=[1, 2], eval_max_new_tokens=4, bootstrap_samples=10)
    assert main(["eval", "--profile", "smoke", "--overrides", json.dumps(over), "--out", str(tmp_path / "e.json")]) == 0
    assert "add1d" in capsys.readouterr().out
    saved = json.loads((tmp_path / "e.json").read_text())
    assert len(saved["problems"]) == 2 and all(p["n"] == 2 for p in saved["problems"])
