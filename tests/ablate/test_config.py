"""Config: base-chain merge order, Hydra overrides, validation errors, canonical hash."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import pytest

from ablate.core.config import ConfigError, config_hash, from_dict, load_config, to_dict
from tests.conftest import REPO


def write(path, text):
    path.write_text(textwrap.dedent(text))
    return path


@pytest.fixture
def chain(tmp_path):
    write(
        tmp_path / "root.yaml",
        """
        model: {dim: 64, num_heads: 4, num_layers: 3}
        train: {steps: 10, lr: 0.01}
    """,
    )
    (tmp_path / "sub").mkdir()
    return write(
        tmp_path / "sub" / "child.yaml",
        """
        base: ../root.yaml
        model: {num_layers: 2}
        train: {steps: 20}
    """,
    )


def test_merge_order_base_then_file_then_overrides(chain):
    cfg = load_config(chain, ["train.steps=30", "+tracking.entity=me"])
    assert cfg.model.dim == 64  # from the base
    assert cfg.model.num_layers == 2  # the file beats its base
    assert cfg.train.lr == 0.01
    assert cfg.train.steps == 30  # the command line beats both
    assert cfg.tracking.entity == "me"


def test_delete_override_restores_default(chain):
    assert load_config(chain, ["~train.lr"]).train.lr == 1e-3


def test_add_override_refuses_existing_key(chain):
    with pytest.raises(ConfigError, match="use \\+\\+"):
        load_config(chain, ["+train.steps=5"])
    assert load_config(chain, ["++train.steps=5"]).train.steps == 5


def test_sweep_syntax_refused_in_single_config(chain):
    with pytest.raises(ConfigError, match="sweep"):
        load_config(chain, ["train.steps=1,2"])


@pytest.mark.parametrize(
    "override,key,needle",
    [
        ("model.atention.name=mha", "model.atention", "did you mean: attention"),
        ("train.stpes=3", "train.stpes", "did you mean: steps"),
        ("train.steps=abc", "train.steps", "expected int"),
        ("train.lr=true", "train.lr", "expected float"),
        ("model.attention.name=mhx", "model.attention.name", "did you mean: mha"),
        ("model.dim=66", "model.attention", "not divisible"),
        ("data.seq_len=999", "data.seq_len", "max_seq_len"),
        ("tracking.wandb=onlin", "tracking.wandb", "did you mean: online"),
    ],
)
def test_errors_name_source_key_and_close_matches(chain, override, key, needle):
    with pytest.raises(ConfigError) as e:
        load_config(chain, [override])
    assert e.value.key == key
    assert needle in str(e.value)
    assert e.value.source == "command line" or e.value.source.endswith(".yaml")


def test_error_in_file_names_the_file(tmp_path):
    bad = write(tmp_path / "bad.yaml", "model: {dimm: 3}\n")
    with pytest.raises(ConfigError) as e:
        load_config(bad)
    assert e.value.source == str(bad) and e.value.key == "model.dimm"


def test_missing_file_and_bad_yaml(tmp_path):
    with pytest.raises(ConfigError, match="file not found"):
        load_config(tmp_path / "nope.yaml")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(write(tmp_path / "b.yaml", "model: [unclosed\n"))


def test_cli_exit_status_2_without_traceback(chain):
    proc = subprocess.run(
        [sys.executable, "-m", "ablate", "train", str(chain), "model.ffn.hiden_dim=3"],
        cwd=REPO,
        capture_output=True,
        text=True,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert "model.ffn.hiden_dim" in proc.stderr and "hidden_dim" in proc.stderr


def test_canonical_dict_round_trip_and_stable_hash(chain):
    cfg = load_config(chain)
    again = from_dict(to_dict(cfg))
    assert again == cfg and config_hash(again) == config_hash(cfg)
    assert config_hash(load_config(chain, ["train.seed=1"])) != config_hash(cfg)
    # tracking does not change results, so it does not change the trial id
    assert config_hash(load_config(chain, ["tracking.wandb=disabled"])) == config_hash(cfg)
    assert to_dict(cfg)["model"]["attention"]["name"] == "mha"


def test_slot_shorthand_and_plugins_list(tmp_path, monkeypatch):
    mod = tmp_path / "my_plugin_norm.py"
    mod.write_text(
        textwrap.dedent("""
        from dataclasses import dataclass
        from ablate.registry import register
        from components.norm.rmsnorm import RMSNorm

        @register("norm", "plugin_rms")
        class PluginRMS(RMSNorm):
            @dataclass(frozen=True, kw_only=True)
            class Config(RMSNorm.Config):
                pass
    """)
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    cfg_path = write(
        tmp_path / "c.yaml",
        """
        plugins: [my_plugin_norm]
        model: {norm: plugin_rms}
    """,
    )
    from ablate import registry

    try:
        cfg = load_config(cfg_path)
        assert registry.name_of(cfg.model.norm) == ("norm", "plugin_rms")
    finally:
        registry.unregister("norm", "plugin_rms")
    bad = write(tmp_path / "d.yaml", "plugins: [no_such_module_xyz]\n")
    with pytest.raises(ConfigError, match="no_such_module_xyz"):
        load_config(bad)
