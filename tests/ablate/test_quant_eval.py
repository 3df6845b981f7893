"""Quantized evaluation (eval.weight_quant, ablate.core.quant_eval): trained weights restored
exactly, exact memory accounting on a known model, skips, identity, and a trial that reports
every listed format against its own unquantized evaluation."""

from __future__ import annotations

import math

import pytest
import torch
from torch import nn

from ablate.core.config import EvalConfig, config_hash, load_config
from ablate.core.model import Transformer
from ablate.core.quant_eval import quantized_weights, selected
from ablate.core.trainer import train
from ablate.nn import weight_quant as wq
from tests.conftest import REPO, TINY_RUN, tiny_model_config

TINY = REPO / "sweeps" / "base" / "tiny.yaml"
OVERRIDES = [
    *TINY_RUN,
    "train.steps=8",
    "train.eval_every=8",
    "train.warmup_steps=2",
    "train.threads=1",
]


class Known(nn.Module):
    """One embedding (37 x 64), one Linear 300 -> 256 with bias, one norm gain (64)."""

    def __init__(self) -> None:
        super().__init__()
        self.tok_emb = nn.Embedding(37, 64)
        self.proj = nn.Linear(300, 256)
        self.final_norm = nn.Module()
        self.final_norm.weight = nn.Parameter(torch.ones(64))


@pytest.mark.parametrize(
    "fmt, quant_bytes",
    [
        ("int8", 256 * 300 + 256 * 4),  # codes + one fp32 scale per output channel
        ("int4", 256 * 150 + 256 * 3 * 4),  # two codes per byte + 3 groups of 128 per row
    ],
)
def test_memory_accounting_exact_for_a_known_shape(fmt, quant_bytes):
    model = Known()
    kept = (37 * 64 + 256 + 64) * 4  # embedding, bias and gain stay fp32
    total = 37 * 64 + 256 * 300 + 256 + 64
    with quantized_weights(model, fmt, EvalConfig()) as info:
        assert info["weight_bytes"] == quant_bytes + kept
        assert info["bytes_per_param"] == (quant_bytes + kept) / total
        assert info["quantized_share"] == 256 * 300 / total
        assert info["num_quantized"] == 1 and info["bits"] == wq.BITS[fmt]


@pytest.mark.parametrize("fmt", ["int8", "int4"])
def test_trained_weights_restored_bit_for_bit(fmt):
    model = Transformer(tiny_model_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    names = [n for n, _ in selected(model, EvalConfig().weight_quant_skip)]
    with quantized_weights(model, fmt, EvalConfig(int4_group_size=32)):
        inside = model.state_dict()
        for k, v in before.items():
            changed = not torch.equal(inside[k], v)
            assert changed == (k in names), k  # exactly the selected weights hold deq(q(w))
        w = before[names[0]]
        q = wq.quantize(w, fmt, 32)
        torch.testing.assert_close(inside[names[0]], wq.dequantize(q), rtol=0, atol=0)
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in before.items())


def test_failure_inside_still_restores():
    model = Transformer(tiny_model_config())
    before = {k: v.clone() for k, v in model.state_dict().items()}
    with pytest.raises(RuntimeError, match="boom"), quantized_weights(model, "int4", EvalConfig()):
        raise RuntimeError("boom")
    assert all(torch.equal(model.state_dict()[k], v) for k, v in before.items())


def test_default_skips_embedding_tied_head_and_norms():
    model = Transformer(tiny_model_config(tie_embeddings=True))
    names = [n for n, _ in selected(model, EvalConfig().weight_quant_skip)]
    assert names and all("emb" not in n and "norm" not in n and "head" not in n for n in names)
    untied = Transformer(tiny_model_config(tie_embeddings=False))
    assert "head.weight" in [n for n, _ in selected(untied, ("*emb*",))]


def test_config_errors_and_identity():
    with pytest.raises(ValueError, match="eval.weight_quant"):
        load_config(TINY, [*OVERRIDES, "eval.weight_quant=[int2]"])
    with pytest.raises(ValueError, match="eval.weight_quant"):
        load_config(TINY, [*OVERRIDES, "eval.weight_quant=[int8,int8]"])
    plain = load_config(TINY, OVERRIDES)
    quant = load_config(TINY, [*OVERRIDES, "eval.weight_quant=[int8]"])
    skip = load_config(TINY, [*OVERRIDES, "eval.weight_quant_skip=[x]"])
    assert config_hash(skip) == config_hash(plain)  # no format listed: the id as before
    assert config_hash(quant) != config_hash(plain)


def test_trial_reports_each_format_paired(tmp_path):
    cfg = load_config(TINY, [*OVERRIDES, "eval.weight_quant=[int8,int4]"])
    summary = train(cfg, tmp_path)
    assert summary["status"] == "done"
    wq_sum = summary["weight_quant"]
    assert set(wq_sum) == {"unquantized", "int8", "int4"}
    base = wq_sum["unquantized"]
    assert base["weight_bytes"] == 4 * summary["num_params"] == 4 * base["num_params"]
    for fmt in ("int8", "int4"):
        r = wq_sum[fmt]
        want = 100 * math.expm1(r["val_loss"] - summary["val_loss"])
        assert r["ppl_change_pct"] == pytest.approx(want)
        assert 0 < r["quantized_share"] < 1 and r["weight_bytes"] < base["weight_bytes"]
    assert wq_sum["int4"]["weight_bytes"] < wq_sum["int8"]["weight_bytes"]
    assert abs(wq_sum["int8"]["ppl_change_pct"]) < 1.0  # 8 bits per channel: a small change
    # the trained weights are what the checkpoint and the final summary describe
    again = train(cfg, tmp_path)  # resumes at the end: evaluates the restored weights again
    assert again["val_loss"] == summary["val_loss"]
    assert again["weight_quant"]["int4"]["val_loss"] == wq_sum["int4"]["val_loss"]


def test_eval_config_default_group_is_the_quantizers():
    from ablate.nn import weight_quant as wq

    assert EvalConfig().int4_group_size == wq.INT4_GROUP
