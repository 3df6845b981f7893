"""The report's precision-ladder table: one row per numeric format a sweep measured.

Training formats are the arms (the format their precision transform recorded); weight-only
formats come from trials with `eval.weight_quant` (`summary.weight_quant`). Measured columns:
bytes per parameter of the trained model's weights as the format reads them (the precision's
`weight_bytes_per_param`; for INT8/INT4 codes plus scales plus unquantized parameters, over
all parameters), the share of parameters quantized, and the perplexity change against the
baseline arm, paired by seed: 100 (exp(L - L_baseline) - 1) %, mean and t-interval over seeds.
Bits and range are facts of the formats: torch.finfo for floating point (max finite / min
normal), the code grid for integers (max code / 1, per scale). The section appears only when
some trial ran a weight-only format.
"""

from __future__ import annotations

import math
from typing import Any

import torch

from ablate.report import stats
from ablate.report.table import _fmt, metric, result, shown_arms

# format names recorded in precision summaries -> the torch dtype holding one element
FLOAT_FORMATS = {
    "float32": ("FP32", torch.float32),
    "float16": ("FP16", torch.float16),
    "bfloat16": ("BF16", torch.bfloat16),
    "e4m3": ("FP8 (E4M3)", torch.float8_e4m3fn),
}
INT_FORMATS = {"int8": ("INT8", 8, 127), "int4": ("INT4", 4, 7)}  # name, bits, max code


def _format_of(summary: dict) -> str:
    prec = summary.get("precision") or {}
    return str(prec.get("format") or prec.get("compute_dtype") or "")


def _float_facts(name: str) -> dict[str, str]:
    label, dtype = FLOAT_FORMATS[name]
    fi = torch.finfo(dtype)
    return {
        "format": label,
        "bits": str(fi.bits),
        "max": f"{fi.max:.4g}",
        "min_normal": f"{fi.smallest_normal:.3g}",
        "range": f"10^{math.log10(fi.max / fi.smallest_normal):.1f}",
    }


def _int_facts(name: str) -> dict[str, str]:
    label, bits, qmax = INT_FORMATS[name]
    return {
        "format": label,
        "bits": str(bits),
        "max": f"{qmax} × scale",
        "min_normal": "1 × scale",
        "range": f"{qmax} per scale",
    }


def _change(losses: dict[int, float], base: dict[int, float]) -> str:
    """Paired perplexity change in percent over the seeds both have, mean ± CI."""
    seeds = sorted(set(losses) & set(base))
    gaps = [100 * math.expm1(losses[s] - base[s]) for s in seeds]
    return f"{_fmt(*stats.mean_ci(gaps), 3)} % (n={len(seeds)})" if seeds else "–"


def _mean(values: list[float | None], digits: int = 4) -> str:
    # to 12 significant digits: seeds of one model share its byte counts exactly, and a float
    # sum's last bits should not show as an interval
    return _fmt(*stats.mean_ci([v if v is None else float(f"{v:.12g}") for v in values]), digits)


def format_ladder(meta: dict, trials: list[dict]) -> dict[str, Any]:
    """Rows (plain strings) of the precision ladder, or {} without a weight-only format."""
    done = [t for t in trials if t["state"] == "done" and t["summary"]]
    if not any(t["summary"].get("weight_quant") for t in done):
        return {}
    baseline = meta.get("baseline", "")
    loss = lambda ts: {t["seed"]: result(t) for t in ts if result(t) is not None}  # noqa: E731
    base = loss([t for t in done if t["arm"] == baseline])
    rows = []
    for arm in shown_arms(meta, trials):
        mine = [t for t in done if t["arm"] == arm]
        name = next((_format_of(t["summary"]) for t in mine), "")
        if name in FLOAT_FORMATS:
            prec = [t["summary"].get("precision") or {} for t in mine]
            bpp = [p.get("weight_bytes_per_param") for p in prec]
            rows.append(
                {
                    **_float_facts(name),
                    "arm": arm,
                    "bytes_per_param": _mean(bpp),
                    "share": "–",
                    "change": "reference" if arm == baseline else _change(loss(mine), base),
                }
            )
        for fmt in INT_FORMATS:
            quant = [(t, t["summary"].get("weight_quant", {}).get(fmt)) for t in mine]
            quant = [(t, q) for t, q in quant if q]
            if not quant:
                continue
            rows.append(
                {
                    **_int_facts(fmt),
                    "arm": f"{arm} + {fmt} weights",
                    "bytes_per_param": _mean([q["bytes_per_param"] for _, q in quant]),
                    "share": _mean([100 * q["quantized_share"] for _, q in quant], 3) + " %",
                    "change": _change({t["seed"]: q["val_loss"] for t, q in quant}, base),
                }
            )
    params = [metric(t, "num_params") for t in done]
    return {
        "rows": rows,
        "baseline": baseline,
        "num_params": f"{int(params[0]):,}" if params and params[0] else "–",
    }
