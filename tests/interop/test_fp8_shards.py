"""FP8 checkpoints (float8_e4m3fn weights with 128x128 `weight_scale_inv`) in several shards
with an index import to the reference block dequantization."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("safetensors", reason="safetensors not installed (pip install -e '.[hf]')")

from ablate.interop import io  # noqa: E402
from ablate.interop.convert import load_hf  # noqa: E402
from ablate.interop.hf_weights import dequant_fp8_block  # noqa: E402
from tests.interop.hf_helpers import build_hf, save_hf, tiny_v3  # noqa: E402

BLOCK = 128
FP8_MAX = 448.0  # float8_e4m3fn's largest finite value


def quantize(w_OI: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Per 128x128 tile: scale = amax / 448, fp8 = w / scale (edge tiles partial)."""
    rows, cols = -(-w_OI.shape[0] // BLOCK), -(-w_OI.shape[1] // BLOCK)
    scale = torch.empty(rows, cols)
    q = torch.empty_like(w_OI, dtype=torch.float8_e4m3fn)
    for i in range(rows):
        for j in range(cols):
            tile = w_OI[i * BLOCK : (i + 1) * BLOCK, j * BLOCK : (j + 1) * BLOCK]
            scale[i, j] = tile.abs().max().clamp(min=1e-12) / FP8_MAX
            q[i * BLOCK : (i + 1) * BLOCK, j * BLOCK : (j + 1) * BLOCK] = tile / scale[i, j]
    return q, scale


def reference_dequant(q: torch.Tensor, scale: torch.Tensor) -> torch.Tensor:
    out = torch.empty(q.shape)
    for i in range(scale.shape[0]):
        for j in range(scale.shape[1]):
            rows, cols = slice(i * BLOCK, (i + 1) * BLOCK), slice(j * BLOCK, (j + 1) * BLOCK)
            out[rows, cols] = q[rows, cols].float() * scale[i, j]
    return out


def test_block_dequant_matches_the_tile_loop():
    w = torch.randn(300, 200) * torch.logspace(-2, 1, 200)  # outliers in some columns
    q, scale = quantize(w)
    assert torch.equal(dequant_fp8_block(q, scale), reference_dequant(q, scale))
    assert (dequant_fp8_block(q, scale) - w).abs().max() < 0.1 * w.abs().max()


def test_fp8_sharded_checkpoint_imports_dequantized(tmp_path):
    cfg = tiny_v3(hidden_size=160, intermediate_size=288, moe_intermediate_size=136)
    src = save_hf(build_hf("v3", cfg), tmp_path / "bf")
    tensors = io.read_tensors(src)
    want = {}
    for key in [k for k in tensors if k.endswith("proj.weight") or "proj_with_mqa" in k]:
        q, scale = quantize(tensors[key])
        tensors[key], tensors[key + "_scale_inv"] = q, scale
        want[key] = reference_dequant(q, scale)
    fp8 = tmp_path / "fp8"
    hf_cfg = json.loads((src / "config.json").read_text())
    hf_cfg["quantization_config"] = {
        "quant_method": "fp8",
        "fmt": "e4m3",
        "activation_scheme": "dynamic",
        "weight_block_size": [BLOCK, BLOCK],
    }
    shards = io.write_tensors(fp8, tensors, max_shard_bytes=200_000)
    (fp8 / "config.json").write_text(json.dumps(hf_cfg))
    assert len(shards) > 2 and (fp8 / io.INDEX).is_file()
    _, model = load_hf(fp8)
    sd = model.state_dict()
    attn = "model.layers.0.self_attn."
    assert torch.equal(sd["blocks.0.attn.wq_a.weight"], want[attn + "q_a_proj.weight"])
    assert torch.equal(sd["blocks.0.attn.wkv_a.weight"], want[attn + "kv_a_proj_with_mqa.weight"])
    expert = "model.layers.1.mlp.experts.3."
    w13 = torch.cat((want[expert + "gate_proj.weight"], want[expert + "up_proj.weight"]))
    assert torch.equal(sd["blocks.1.ffn.w13"][3], w13)
    assert torch.equal(sd["blocks.1.ffn.w2"][3], want[expert + "down_proj.weight"])


def test_index_naming_a_missing_shard_is_refused(tmp_path):
    io.write_tensors(tmp_path, {"a": torch.ones(3), "b": torch.ones(3)}, max_shard_bytes=12)
    next(tmp_path.glob("model-00002-*")).unlink()
    with pytest.raises(ValueError, match="not found"):
        io.read_tensors(tmp_path)
