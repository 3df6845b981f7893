"""Evaluation of a trial's model: exact held-out loss, component metrics, final measurements.

Components are reached only through their hooks (`metrics`, `final_metrics`); none is named.
"""

from __future__ import annotations

import math

import torch

from ablate.core import data as data_mod
from ablate.core.config import Config
from ablate.interfaces import Component, components


def collect_metrics(model: torch.nn.Module) -> dict[str, float]:
    """Combine every component's `metrics()` by key: mean, or sum where it declares so."""
    values: dict[str, list[float]] = {}
    reduce: dict[str, str] = {}
    for c in components(model):
        for k, v in _metrics(c).items():
            values.setdefault(k, []).append(float(v))
            reduce[k] = c.metric_reduce.get(k, "mean")
    return {k: sum(v) if reduce[k] == "sum" else sum(v) / len(v) for k, v in values.items()}


def _metrics(c: Component) -> dict[str, float]:
    """`c.metrics()`; on the meta device (shapes, no data) counters that need data are skipped."""
    if not any(t.is_meta for t in (*c.parameters(), *c.buffers())):
        return c.metrics()
    try:
        return {k: float(v) for k, v in c.metrics().items()}
    except (RuntimeError, NotImplementedError):  # e.g. Tensor.item() on a meta tensor
        return {}


@torch.no_grad()
def evaluate(model: torch.nn.Module, corpus, cfg: Config, precision) -> dict[str, float]:
    """Exact mean next-token loss over the scored held-out tokens, plus eval-mode metrics."""
    was_training = model.training
    model.eval()
    total, count = 0.0, 0
    device = next(model.parameters()).device
    for x_BT, y_BT in data_mod.val_batches(corpus, cfg.data):
        with precision.autocast():
            logits_BTV, _ = model(x_BT.to(device))
        total += torch.nn.functional.cross_entropy(
            logits_BTV.flatten(0, 1).float(),
            y_BT.to(device).flatten(),
            reduction="sum",
            ignore_index=data_mod.IGNORE,  # padding and context-only positions
        ).item()
        count += int((y_BT != data_mod.IGNORE).sum())
    out = {"val_loss": total / count}
    out["val_ppl"] = math.exp(min(out["val_loss"], 50.0))
    out.update({f"val_{k}": v for k, v in collect_metrics(model).items()})
    model.train(was_training)
    return out


@torch.no_grad()
def final_metrics(model: torch.nn.Module, comps: list[Component], corpus) -> dict[str, float]:
    """Every component's `final_metrics` after training, in eval mode."""
    model.eval()
    out: dict[str, float] = {}
    for c in comps:
        out.update(c.final_metrics(model, corpus))
    model.train()
    return out
