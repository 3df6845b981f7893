"""The report's precision-ladder section (ablate.report.formats): facts from torch.finfo, the
measured columns from the trials, paired changes by seed, and absence without the data."""

from __future__ import annotations

import math

import torch

from ablate.report.formats import format_ladder


def _trial(arm: str, seed: int, loss: float, prec: dict, quant: dict | None = None) -> dict:
    summary = {"val_loss": loss, "precision": prec, "num_params": 1000}
    if quant:
        summary["weight_quant"] = quant
    return {"arm": arm, "seed": seed, "state": "done", "summary": summary, "metrics": {}}


META = {"arms": ["fp32", "fp16"], "baseline": "fp32"}


def _trials(with_quant: bool = True) -> list[dict]:
    out = []
    for seed, (base, half) in enumerate([(2.0, 2.01), (2.1, 2.12)]):
        quant = {
            "int8": {"val_loss": base + 0.001, "bytes_per_param": 1.5, "quantized_share": 0.75},
            "int4": {"val_loss": base + 0.05, "bytes_per_param": 1.0, "quantized_share": 0.75},
        }
        fp32 = {"compute_dtype": "float32", "weight_bytes_per_param": 4.0}
        out.append(_trial("fp32", seed, base, fp32, quant if with_quant else None))
        fp16 = {"compute_dtype": "float16", "format": "float16", "weight_bytes_per_param": 2.5}
        out.append(_trial("fp16", seed, half, fp16))
    return out


def test_rows_facts_and_paired_changes():
    table = format_ladder(META, _trials())
    rows = {r["arm"]: r for r in table["rows"]}
    assert list(rows) == ["fp32", "fp32 + int8 weights", "fp32 + int4 weights", "fp16"]
    fi = torch.finfo(torch.float16)
    fp16 = rows["fp16"]
    assert fp16["format"] == "FP16" and fp16["bits"] == "16" and fp16["max"] == "6.55e+04"
    assert fp16["range"] == f"10^{math.log10(fi.max / fi.smallest_normal):.1f}" == "10^9.0"
    assert fp16["bytes_per_param"] == "2.5"
    # per seed 100 (exp(dL) - 1): dL = 0.01 and 0.02 -> mean of 1.005 % and 2.020 %
    gaps = [100 * math.expm1(0.01), 100 * math.expm1(0.02)]
    assert fp16["change"].startswith(f"{sum(gaps) / 2:.3g} ± ") and fp16["change"].endswith("(n=2)")
    assert rows["fp32"]["change"] == "reference"
    int4 = rows["fp32 + int4 weights"]
    assert int4["bits"] == "4" and int4["bytes_per_param"] == "1" and int4["share"] == "75 %"
    assert int4["change"].startswith(f"{100 * math.expm1(0.05):.3g} ")  # same gap both seeds
    assert rows["fp32 + int8 weights"]["range"] == "127 per scale"
    assert table["num_params"] == "1,000"


def test_absent_without_weight_only_formats():
    assert format_ladder(META, _trials(with_quant=False)) == {}


def test_unfinished_seeds_are_left_out():
    trials = _trials()
    trials[3]["state"] = "failed"  # fp16 seed 1
    rows = {r["arm"]: r for r in format_ladder(META, trials)["rows"]}
    assert rows["fp16"]["change"] == f"{100 * math.expm1(0.01):.3g} % (n=1)"
