"""`scale:` derives variants that keep a preset's ratios and records the rule and numbers."""

from __future__ import annotations

from fractions import Fraction

import pytest

from ablate.core.config import ConfigError, from_dict, load_config, to_dict
from tests.conftest import REPO

PRESETS = REPO / "sweeps" / "presets"


def scaled(tmp_path, preset: str, scale: str, overrides=()):
    path = tmp_path / "variant.yaml"
    path.write_text(f"base: {PRESETS / preset}\nscale: {scale}\n")
    return load_config(path, list(overrides))


def ratios(cfg) -> dict[str, Fraction]:
    m, a, f = cfg.model, cfg.model.attention, cfg.model.ffn
    return {
        "d_c/D": Fraction(a.kv_lora_rank, m.dim),
        "q_lora/D": Fraction(a.q_lora_rank, m.dim),
        "H*d_h/D": Fraction(m.num_heads * a.qk_nope_head_dim, m.dim),
        "d_R/d_h": Fraction(a.qk_rope_head_dim, a.qk_nope_head_dim),
        "d_v/d_h": Fraction(a.v_head_dim, a.qk_nope_head_dim),
        "F/D": Fraction(f.expert_dim, m.dim),
        "F_dense/D": Fraction(f.dense_hidden_dim, m.dim),
        "X/E": Fraction(f.topk, f.num_routed_experts),
        "N_s/E": Fraction(f.num_shared_experts, f.num_routed_experts),
    }


@pytest.mark.parametrize(
    ("preset", "scale"),
    [
        ("deepseek_v3.yaml", "{width: 0.125, depth: 0.1}"),
        ("deepseek_v2.yaml", "{width: 0.25, depth: 0.2, experts: 0.5}"),
    ],
)
def test_ratios_preserved(tmp_path, preset, scale):
    full, small = load_config(PRESETS / preset), scaled(tmp_path, preset, scale)
    assert ratios(small) == ratios(full)
    assert small.model.dim < full.model.dim and small.model.num_layers < full.model.num_layers
    assert 0 < small.model.ffn.first_k_dense < small.model.num_layers


def test_rule_and_numbers_recorded(tmp_path):
    cfg = scaled(tmp_path, "deepseek_v2.yaml", "{width: 0.25, depth: 0.2, experts: 0.5}")
    (note,) = cfg.notes
    assert note.startswith("scale width=0.25, depth=0.2, experts=0.5")
    for change in (
        "model.dim 5120 -> 1280",
        "model.num_layers 60 -> 12",
        "model.ffn.num_routed_experts 160 -> 80",
        "model.ffn.topk 6 -> 3",
        "model.attention.kv_lora_rank 512 -> 128",
    ):
        assert change in note
    d = to_dict(cfg)
    assert "scale" not in d and d["notes"] == [note]  # the resolved config keeps the record
    assert to_dict(from_dict(d)) == d


def test_rounding_is_flagged(tmp_path):
    cfg = scaled(tmp_path, "deepseek_v3.yaml", "{depth: 0.1}")
    assert cfg.model.num_layers == 6 and cfg.model.ffn.first_k_dense == 1
    assert "model.num_layers 61 -> 6 (rounded: x0.09836)" in cfg.notes[0]


def test_overrides_are_scaled_too_and_zero_stays_off(tmp_path):
    cfg = scaled(tmp_path, "deepseek_v2_lite.yaml", "{width: 0.5}", ["model.dim=1024"])
    assert cfg.model.dim == 512 and cfg.model.attention.q_lora_rank == 0  # 0: no compression


@pytest.mark.parametrize(
    ("scale", "match"),
    [("{height: 2}", "unknown factor"), ("{width: -1}", "positive"), ("0.5", "mapping")],
)
def test_bad_scale_names_the_key(tmp_path, scale, match):
    with pytest.raises(ConfigError, match=match) as e:
        scaled(tmp_path, "gpt2_small.yaml", scale)
    assert "variant.yaml" in str(e.value) and "scale" in e.value.key
