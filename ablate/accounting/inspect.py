"""`ablate inspect`: one config's accounting as a plain dict, and its text rendering."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from ablate.accounting import cost, flops, memory, params
from ablate.core.config import Config

KV_DTYPES = {"bf16": torch.bfloat16, "fp8": torch.float8_e4m3fn}
LONG_CONTEXT = 128 * 1024  # tokens: the "per 128K context" KV-cache figure


def inspect(
    cfg: Config,
    context: int = 0,
    *,
    tokens: float = 0.0,
    gpu: str = "",
    peak_dtype: str = "bf16",
    mfu: float = 0.0,
    hours: float = 0.0,
    price: float = cost.DEFAULT_PRICE,
) -> dict[str, Any]:
    """Parameters, KV cache, FLOPs and memory of `cfg`; with `tokens` and `gpu`, the cost.

    `context` (default `data.seq_len`) is the attention context the FLOPs are counted at.
    """
    context = context or cfg.data.seq_len
    model = params.build_meta(cfg)
    parts = params.count_params(model)
    total, active = params.totals(parts)
    mtp_total, mtp_active = params.totals(parts, "mtp")
    fl = flops.count_flops(model, parts, context)
    train_fpt = sum(f.train for f in fl.values())
    out: dict[str, Any] = {
        "params": {"total": total, "active": active, "mtp_total": mtp_total},
        "params_active_mtp": mtp_active,
        "groups": params.as_dicts(parts),
        "kv_cache_bytes_per_token": {
            k: params.kv_cache_bytes_per_token(model, dt) for k, dt in KV_DTYPES.items()
        },
        "flops_per_token": {
            s: {**dataclasses.asdict(f), "forward": f.forward, "train": f.train}
            for s, f in fl.items()
        },
        "train_flops_per_token": train_fpt,
        "memory": {
            r: {**dataclasses.asdict(m), "total": m.total}
            for r, m in memory.train_memory(total + mtp_total).items()
        },
        "activation_bytes_per_micro_batch": memory.activation_bytes(
            cfg.data.batch_size,
            cfg.data.seq_len,
            cfg.model.dim,
            cfg.model.num_layers,
            cfg.model.vocab_size,
        ),
    }
    kv = out["kv_cache_bytes_per_token"]
    out["kv_cache_bytes_per_128k"] = {k: v * LONG_CONTEXT for k, v in kv.items()}
    if tokens and gpu:
        out["cost"] = _cost(train_fpt, tokens, gpu, peak_dtype, mfu, hours, price)
    return out


def _cost(fpt, tokens, gpu, peak_dtype, mfu, hours, price) -> dict[str, Any]:
    peak = cost.peak(gpu, peak_dtype)
    out = {
        "tokens": tokens,
        "gpu": gpu,
        "peak_dtype": peak_dtype,
        "peak_flops": peak,
        "train_flops": tokens * fpt,
        "price_per_gpu_hour": price,
    }
    if hours:
        out["implied_mfu"] = cost.implied_mfu(tokens, fpt, peak, hours)
        out["gpu_hours"] = hours
    if mfu:
        out["mfu"] = mfu
        out["gpu_hours"] = cost.gpu_hours(tokens, fpt, peak, mfu)
    if "gpu_hours" in out:
        out["cost"] = out["gpu_hours"] * price
    return out


def _si(x: float, unit: str = "") -> str:
    for div, s in (
        (1e24, "Y"),
        (1e21, "Z"),
        (1e18, "E"),
        (1e15, "P"),
        (1e12, "T"),
        (1e9, "G"),
        (1e6, "M"),
        (1e3, "K"),
    ):
        if abs(x) >= div:
            return f"{x / div:.3f} {s}{unit}"
    return f"{x:.0f} {unit}".rstrip()


def format_text(r: dict[str, Any]) -> str:
    """The human-readable report of `inspect`."""
    lines = [f"{'section':<6} {'group':<22} {'params':>14} {'active/token':>14}"]
    for g in r["groups"]:
        lines.append(
            f"{g['section']:<6} {g['group']:<22} {_si(g['params']):>14} {_si(g['active']):>14}"
        )
    p = r["params"]
    lines += [
        f"total (without MTP): {_si(p['total'])} params, {_si(p['active'])} active per token",
        f"MTP modules: {_si(p['mtp_total'])} params (embedding and head shared), "
        f"{_si(r['params_active_mtp'])} active",
    ]
    kv, kv128 = r["kv_cache_bytes_per_token"], r["kv_cache_bytes_per_128k"]
    lines += [
        f"KV cache {k}: {v:,} bytes/token, {_si(kv128[k], 'B')} per 128K context"
        for k, v in kv.items()
    ]
    for s, f in r["flops_per_token"].items():
        lines.append(
            f"FLOPs/token {s} at context {f['context']}: forward {_si(f['forward'])} "
            f"(matmul {_si(f['matmul'])}, attention {_si(f['attention'])}), "
            f"train {_si(f['train'])}"
        )
    for name, m in r["memory"].items():
        lines.append(
            f"memory {name} (MTP included): weights {_si(m['weights'], 'B')}, grads "
            f"{_si(m['gradients'], 'B')}, master {_si(m['master'], 'B')}, optimizer "
            f"{_si(m['optimizer'], 'B')}, total {_si(m['total'], 'B')}"
        )
    lines.append(
        f"activations per micro-batch: {_si(r['activation_bytes_per_micro_batch'], 'B')}"
        " (B*T*(34*D*layers + 6*V) bytes, Korthikanti et al. 2022)"
    )
    if c := r.get("cost"):
        lines.append(
            f"{_si(c['tokens'])} tokens: {_si(c['train_flops'])}FLOP on {c['gpu']} "
            f"(peak {c['peak_dtype']} {_si(c['peak_flops'])}FLOP/s)"
        )
        if "implied_mfu" in c:
            lines.append(f"implied MFU of {c['gpu_hours']:,.0f} GPU-hours: {c['implied_mfu']:.4f}")
        if "gpu_hours" in c:
            lines.append(
                f"GPU-hours: {c['gpu_hours']:,.0f}, cost at ${c['price_per_gpu_hour']}"
                f"/GPU-hour: ${c['cost']:,.0f}"
            )
    return "\n".join(lines)
