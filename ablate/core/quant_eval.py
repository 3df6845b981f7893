"""Weight-only quantized evaluation of a trained model (`eval.weight_quant`), paired: the same
trained weights are evaluated at every listed format in the same trial.

For each format the selected weights are replaced in place by deq(q(w)) (`ablate.nn.weight_quant`),
the held-out loss is measured as in training's evaluation (under the trial's precision), and the
original tensors are copied back bit for bit, so checkpoints and later measurements see the
trained weights. Selected: every parameter with two or more dims none of whose dotted names
matches `eval.weight_quant_skip`; its last dim is the input dim and every other index a row
(an output channel; a stacked expert tensor (E, O, I) is E·O rows). Weight memory counts the
codes and fp32 scales of the quantized parameters plus every other parameter at its storage
size; the quantized share is quantized elements / all parameter elements (tied weights once).
"""

from __future__ import annotations

import contextlib
import fnmatch
import math
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from ablate.core.eval_config import SKIP_DEFAULT, EvalConfig  # noqa: F401 (re-export)
from ablate.nn import weight_quant as wq


def selected(model: nn.Module, skip: tuple[str, ...]) -> list[tuple[str, nn.Parameter]]:
    """(name, parameter) of the weights to quantize, each tensor once."""
    names: dict[int, list[str]] = {}
    for name, p in model.named_parameters(remove_duplicate=False):
        names.setdefault(id(p), []).append(name)
    return [
        (name, p)
        for name, p in model.named_parameters()
        if p.dim() >= 2
        and not any(fnmatch.fnmatchcase(n, pat) for n in names[id(p)] for pat in skip)
    ]


def _rows(p: torch.Tensor) -> torch.Tensor:
    """The parameter as (rows, input features): every leading index is an output channel."""
    return p.detach().reshape(-1, p.shape[-1])


@contextlib.contextmanager
def quantized_weights(model: nn.Module, fmt: str, cfg: EvalConfig) -> Iterator[dict[str, float]]:
    """Inside: the selected weights hold deq(q(w)); yields the memory accounting. On exit the
    trained tensors are restored exactly."""
    chosen = selected(model, cfg.weight_quant_skip)
    saved = [p.detach().clone() for _, p in chosen]
    all_params = list(model.parameters())
    total_elems = sum(p.numel() for p in all_params)
    chosen_ids = {id(p) for _, p in chosen}
    kept_bytes = sum(p.numel() * p.element_size() for p in all_params if id(p) not in chosen_ids)
    quant_bytes = 0
    try:
        with torch.no_grad():
            for _, p in chosen:
                q = wq.quantize(_rows(p), fmt, cfg.int4_group_size)
                quant_bytes += q.nbytes()
                p.copy_(wq.dequantize(q).view_as(p).to(p.dtype))
        num_quant = sum(p.numel() for _, p in chosen)
        yield {
            "bits": wq.BITS[fmt],
            "weight_bytes": quant_bytes + kept_bytes,
            "bytes_per_param": (quant_bytes + kept_bytes) / total_elems,
            "quantized_share": num_quant / total_elems,
            "num_quantized": len(chosen),
        }
    finally:
        with torch.no_grad():
            for (_, p), orig in zip(chosen, saved, strict=True):
                p.copy_(orig)


def weight_quant_summary(run: Any, last_eval: dict[str, float]) -> dict[str, Any]:
    """`{"weight_quant": {fmt: results}}` for the trial's `eval.weight_quant` formats, each
    against the unquantized evaluation `last_eval`; {} when none is listed or training failed."""
    from ablate.core.evaluate import evaluate

    cfg = run.cfg.eval
    if not cfg.weight_quant or "val_loss" not in last_eval or not run.ranks.main:
        return {}
    params = list(run.model.parameters())
    out: dict[str, Any] = {
        "unquantized": {
            "weight_bytes": sum(p.numel() * p.element_size() for p in params),
            "num_params": sum(p.numel() for p in params),
            "skip": list(cfg.weight_quant_skip),
            "int4": f"symmetric amax/{wq.INT4_QMAX}, group {cfg.int4_group_size}",
            "int8": f"symmetric amax/{wq.INT8_QMAX} per output channel",
        }
    }
    for fmt in cfg.weight_quant:
        with quantized_weights(run.model, fmt, cfg) as info:
            ev = evaluate(run.model, run.corpus, run.cfg, run.precision)
        out[fmt] = {
            **info,
            "val_loss": ev["val_loss"],
            "val_ppl": ev["val_ppl"],
            # exp of the loss difference: the relative perplexity change, in percent
            "ppl_change_pct": 100 * math.expm1(ev["val_loss"] - last_eval["val_loss"]),
        }
    return {"weight_quant": out}
