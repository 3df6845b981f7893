"""Config on the command line: interpolation, Hydra's `~key`, `ablate show` and `--cfg job`."""

from __future__ import annotations

import pytest
import yaml

from ablate.cli import main
from ablate.core.config import ConfigError, TrainConfig, load_config
from tests.conftest import REPO

TINY = REPO / "sweeps" / "base" / "tiny.yaml"
SMOKE = REPO / "sweeps" / "smoke.yaml"


@pytest.fixture
def linked(tmp_path):
    """A config whose file refers to another key: `min_lr: ${train.lr}`."""
    path = tmp_path / "linked.yaml"
    path.write_text(f"base: {TINY}\ntrain: {{min_lr: '${{train.lr}}'}}\n")
    return path


def test_interpolation_in_an_override_and_in_a_file_resolves_after_merging(linked):
    cfg = load_config(TINY, ["train.min_lr=${train.lr}", "train.lr=0.02"])
    assert cfg.train.min_lr == cfg.train.lr == 0.02
    cfg = load_config(linked, ["train.lr=0.01"])  # the file's reference sees the command line
    assert cfg.train.min_lr == 0.01
    with pytest.raises(ConfigError, match="command line: train.lr: .*train.nope"):
        load_config(TINY, ["train.lr=${train.nope}"])


def test_tilde_key_resets_the_field_to_its_default(linked):
    lr, min_lr = TrainConfig().lr, TrainConfig().min_lr
    assert load_config(TINY).train.lr == 3e-3 != lr
    assert load_config(TINY, ["~train.lr"]).train.lr == lr
    assert load_config(linked, ["~train.min_lr"]).train.min_lr == min_lr
    assert load_config(TINY, ["~train.lr=0.003"]).train.lr == lr  # value matches: deleted
    # a component slot goes back to its default component
    assert load_config(TINY, ["model.attention.name=mla", "~model.attention"]) == load_config(TINY)


@pytest.mark.parametrize(
    "override, message",
    [
        ("~train.min_lr", "no config layer sets train.min_lr, so it already has its default"),
        ("~train.lrr", r"nothing to delete.*did you mean: lr"),
        ("~train.lr=0.1", "not deleted: train.lr is 0.003, not that value"),
    ],
)
def test_tilde_key_is_refused_with_a_clear_message(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TINY, [override])


def test_show_prints_the_resolved_config(capsys):
    assert main(["show", str(TINY), "model.attention.name=mla", "train.min_lr=${train.lr}"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["attention"]["name"] == "mla"
    assert shown["train"]["min_lr"] == shown["train"]["lr"] == 3e-3
    # trains nothing; an override after an option is still an override
    assert main(["train", str(TINY), "--cfg", "job", "train.steps=7"]) == 0
    assert yaml.safe_load(capsys.readouterr().out)["train"]["steps"] == 7


def test_show_lists_notes_of_dropped_fields(capsys, tmp_path):
    path = tmp_path / "mla.yaml"
    path.write_text(f"base: {TINY}\nmodel: {{attention: {{name: mla, kv_lora_rank: 16}}}}\n")
    assert main(["show", str(path), "model.attention.name=mha"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown["model"]["attention"] == {"name": "mha", "head_dim": 0}
    assert any("dropped kv_lora_rank from mla" in n for n in shown["notes"])


def test_show_a_sweep_prints_each_arm(capsys):
    assert main(["show", str(SMOKE), "train.lr=0.01"]) == 0
    docs = list(yaml.safe_load_all(capsys.readouterr().out))
    assert [d["model"]["ffn"]["hidden_dim"] for d in docs] == [0, 256]
    assert all(d["train"]["lr"] == 0.01 and d["train"]["steps"] == 60 for d in docs)
    assert main(["show", str(SMOKE), "--arm", "dense_wide"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("# arm dense_wide, seed 0") and "---" not in out
    assert main(["show", str(SMOKE), "--arm", "nope"]) == 2
    assert "no arm 'nope'" in capsys.readouterr().err
