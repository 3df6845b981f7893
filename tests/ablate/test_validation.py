"""Range checks at validation: every numeric field, nan/inf anywhere, the file and key named."""

from __future__ import annotations

import dataclasses
import math

import pytest

from ablate import cli
from ablate.core import validate
from ablate.core.config import ConfigError, load_config
from tests.ablate.sweep_helpers import TINY


@pytest.mark.parametrize(
    "override, key, needle",
    [
        ("train.lr=nan", "train.lr", "nan is not a finite number"),
        ("train.lr=inf", "train.lr", "inf is not a finite number"),
        ("train.lr=-0.001", "train.lr", "must be > 0"),
        ("train.lr=0", "train.lr", "must be > 0"),
        ("train.min_lr=-1e-4", "train.min_lr", "must be >= 0"),
        ("train.min_lr=0.5", "train.min_lr", "<= train.lr (0.003)"),
        ("train.grad_clip=-1.0", "train.grad_clip", "must be >= 0"),
        ("train.eval_every=0", "train.eval_every", "must be >= 1"),
        ("train.log_every=0", "train.log_every", "must be >= 1"),
        ("train.checkpoint_every=-1", "train.checkpoint_every", "must be >= 0"),
        ("train.warmup_steps=-1", "train.warmup_steps", "must be >= 0"),
        ("train.grad_accum=0", "train.grad_accum", "must be >= 1"),
        ("train.steps=0", "train.steps", "must be >= 1"),
        ("train.weight_decay=-0.1", "train.weight_decay", "must be >= 0"),
        ("train.beta1=1.0", "train.beta1", "in [0, 1)"),
        ("train.beta2=-0.1", "train.beta2", "in [0, 1)"),
        ("train.loss_cap=0", "train.loss_cap", "must be > 0"),
        ("train.threads=-2", "train.threads", "must be >= 0"),
        ("data.batch_size=0", "data.batch_size", "must be >= 1"),
        ("data.seq_len=0", "data.seq_len", "must be >= 1"),
        ("data.seq_len=65", "data.seq_len", "<= model.max_seq_len (64)"),
        ("data.val_fraction=1.0", "data.val_fraction", "in (0, 1)"),
        ("data.val_fraction=0", "data.val_fraction", "in (0, 1)"),
        ("data.eval_windows=-1", "data.eval_windows", "must be >= 0"),
        ("model.dim=0", "model.dim", "must be >= 1"),
        ("model.num_heads=0", "model.num_heads", "must be >= 1"),
        ("model.num_layers=0", "model.num_layers", "must be >= 1"),
        ("model.max_seq_len=0", "model.max_seq_len", "must be >= 1"),
        ("model.vocab_size=-1", "model.vocab_size", "must be >= 0"),
        ("model.rope_theta=0", "model.rope_theta", "must be > 0"),
        ("model.rope_theta=-inf", "model.rope_theta", "-inf is not a finite number"),
        ("model.init_std=0", "model.init_std", "must be > 0"),
    ],
)
def test_out_of_range_value_names_the_key(override, key, needle):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, [override])
    assert (e.value.source, e.value.key) == ("command line", key)
    assert needle in e.value.msg


@pytest.mark.parametrize(
    "overrides, key",
    [
        (["model.attention.name=mla", "model.attention.mscale=nan"], "model.attention.mscale"),
        (["model.norm.eps=inf"], "model.norm.eps"),
        (
            [
                "model.ffn.name=moe",
                "model.ffn.router.name=sigmoid_bias",
                "++model.ffn.router.update_rate=nan",
            ],
            "model.ffn.router.update_rate",
        ),
        (
            ["train.precision.name=fp8_block", "train.precision.grad_amax_min=inf"],
            "train.precision.grad_amax_min",
        ),
    ],
)
def test_non_finite_component_field_is_refused(overrides, key):
    with pytest.raises(ConfigError) as e:
        load_config(TINY, overrides)
    assert e.value.key == key and "not a finite number" in e.value.msg


def test_error_in_a_file_names_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text(f"base: {TINY}\ntrain: {{lr: .nan, eval_every: 0}}\n")
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert str(e.value).startswith(f"{path}: train.lr: nan")


def test_a_field_may_allow_non_finite_values():
    @dataclasses.dataclass(frozen=True)
    class Cfg:
        cap: float = dataclasses.field(default=math.inf, metadata={"nonfinite": True})
        scale: float = 1.0
        pair: tuple[float, ...] = (1.0, math.nan)

    assert [k for k, _ in validate._non_finite(Cfg())] == ["pair[1]"]


def test_every_range_rule_names_a_real_field():
    cfg = load_config(TINY)
    for key, ok, _ in validate.RANGES:
        assert ok(validate._get(cfg, key), cfg), f"{key}: the default config must pass"


def test_cli_eval_every_zero_is_one_line_exit_2_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    status = cli.main(["train", str(TINY), "train.eval_every=0", "--out", str(out)])
    err = capsys.readouterr().err
    assert status == cli.EXIT_USAGE
    assert "Traceback" not in err
    assert "error: command line: train.eval_every: 0: must be >= 1" in err
    assert not out.exists()
