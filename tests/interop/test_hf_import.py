"""Import: a tiny transformers DeepSeek-V3 / V2-Lite model gives the same per-position logits
in the harness (fp32, max abs diff <= 1e-5); cached decoding equals the full forward."""

from __future__ import annotations

import json

import pytest
import torch

from ablate import registry
from ablate.interop.convert import load_hf
from tests.interop.hf_helpers import VOCAB, build_hf, hf_logits, save_hf, tiny_v2_lite, tiny_v3

ATOL = 1e-5
YARN = {  # DeepSeek's form: mscale == mscale_all_dim, so cos/sin stay unscaled
    "rope_type": "yarn",
    "rope_theta": 10000.0,
    "factor": 4.0,
    "original_max_position_embeddings": 16,
    "beta_fast": 32.0,
    "beta_slow": 1.0,
    "mscale": 0.707,
    "mscale_all_dim": 0.707,
}
CASES = {
    "v3": ("v3", tiny_v3()),
    "v3_no_q_lora": ("v3", tiny_v3(q_lora_rank=None)),
    "v3_half_rope": ("v3", tiny_v3(rope_interleave=False)),  # rows permuted at import
    "v3_yarn": ("v3", tiny_v3(rope_parameters=YARN)),
    "v3_tied": ("v3", tiny_v3(tie_word_embeddings=True)),
    "v2_lite": ("v2", tiny_v2_lite()),
    "v2_group_limited": (
        "v2",
        tiny_v2_lite(topk_method="group_limited_greedy", n_group=4, topk_group=2),
    ),
}


def ids(T: int = 23) -> torch.Tensor:
    return torch.randint(0, VOCAB, (2, T), generator=torch.Generator().manual_seed(1))


@pytest.mark.parametrize("case", list(CASES))
def test_imported_logits_equal_transformers(case, tmp_path):
    kind, cfg = CASES[case]
    hf_model = build_hf(kind, cfg)
    _, model = load_hf(save_hf(hf_model, tmp_path / "hf"))
    with torch.no_grad():
        got, _ = model(ids())
    want = hf_logits(hf_model, ids())
    assert want.std() > 0.1  # logits that depend on the weights, not a flat distribution
    assert (got - want).abs().max().item() <= ATOL


def test_mapping_reaches_the_components(tmp_path):
    _, model = load_hf(save_hf(build_hf("v3", tiny_v3()), tmp_path / "hf"))
    m = model.cfg
    assert (m.attention.q_lora_rank, m.ffn.first_k_dense, m.ffn.num_shared_experts) == (32, 1, 1)
    assert (m.ffn.router.num_groups, m.ffn.router.topk_groups, m.ffn.router.route_scale) == (
        4,
        2,
        2.5,
    )
    assert model.blocks[1].ffn.router.bias.abs().sum() > 0  # e_score_correction_bias


@pytest.mark.parametrize("cache_impl", ["absorbed", "naive"])
def test_cached_decoding_of_imported_model_equals_full_forward(cache_impl, tmp_path):
    path = save_hf(build_hf("v3", tiny_v3()), tmp_path / "hf")
    _, model = load_hf(path, [f"model.attention.cache_impl={cache_impl}"])
    x = ids(20)
    with torch.no_grad():
        full, _ = model(x)
        caches = model.new_caches(2, 20)
        steps = [model(x[:, :8], caches=caches)[0]]
        steps += [model(x[:, t : t + 1], start_pos=t, caches=caches)[0] for t in range(8, 20)]
    assert (torch.cat(steps, 1) - full).abs().max().item() <= ATOL


def edit_config(path, **changes):
    cfg = json.loads((path / "config.json").read_text())
    cfg.update(changes)
    (path / "config.json").write_text(json.dumps(cfg))


@pytest.mark.parametrize(
    "changes, named",
    [
        ({"my_new_field": 1}, "my_new_field"),
        ({"hidden_act": "gelu"}, "hidden_act"),
        ({"norm_topk_prob": False}, "norm_topk_prob"),
        ({"moe_layer_freq": 2}, "moe_layer_freq"),
        ({"topk_method": "group_limited_greedy"}, "topk_method"),  # with the sigmoid gate
        ({"rms_norm_eps": 1e-5}, "rms_norm_eps"),
        ({"model_type": "llama"}, "model_type"),
        ({"rope_parameters": {"rope_type": "linear", "factor": 2.0}}, "rope_scaling"),
    ],
)
def test_unsupported_fields_refused_by_name(changes, named, tmp_path):
    path = save_hf(build_hf("v3", tiny_v3()), tmp_path / "hf")
    edit_config(path, **changes)
    with pytest.raises(ValueError, match=named):
        load_hf(path)


def test_mtp_layer_without_weights_imports_without_mtp(tmp_path):
    path = save_hf(build_hf("v3", tiny_v3(num_nextn_predict_layers=1)), tmp_path / "hf")
    with pytest.warns(UserWarning, match="no MTP weights"):
        cfg, _ = load_hf(path)
    assert registry.name_of(cfg.model.mtp)[1] == "none"
