"""Human labels with units for metric keys (`kv_cache_bytes_per_token` -> "KV cache (bytes /
token)"), by rules on the words of a key, so metrics any component records get a label without
the report naming the component (the raw key stays in the column's tooltip); and the move of
columns equal in every row to one "common settings" line.
"""

from __future__ import annotations

from typing import Any

from ablate.core import memory

# whole keys the table shows in dedicated columns
FIXED = {
    "val_loss": "val loss (nats / token)",
    "val_ppl": "val perplexity",
    "train_loss": "train loss (nats / token)",
    "tokens_per_s": "train throughput (tokens / s)",
    "num_params": "parameters",
    "activated_params": "activated parameters / token",
    # compute figures (ablate.core.throughput)
    "train_flops_per_token": "training FLOPs / token",
    "train_flops": "training FLOPs",
    "achieved_flops_per_s": "achieved (FLOP / s)",
    "peak_flops_per_s": "device peak (FLOP / s)",
    "mfu": "MFU (achieved / peak FLOP/s)",
    "wall_s": "wall time (s)",
} | memory.LABELS  # what each peak-memory key measured (GPU allocated, RSS during the trial)
WORDS = {"kv": "KV", "bf16": "BF16", "fp8": "FP8", "fp32": "FP32", "maxvio": "MaxVio", "mtp": "MTP"}
WORDS |= {"ppl": "perplexity", "rel": "relative", "err": "error", "num": "number of"}
# trailing words that name a unit: (those words, the unit shown)
UNITS = (
    (("bytes", "per", "token", "per", "layer"), "bytes / token / layer"),
    (("bytes", "per", "token"), "bytes / token"),
    (("elems", "per", "token"), "elements / token"),
    (("per", "token"), "/ token"),
    (("tokens", "per", "s"), "tokens / s"),
    (("mb",), "MiB"),
    (("bytes",), "bytes"),
    (("s",), "s"),
    (("ms",), "ms"),
    (("pct",), "%"),
)


def label(key: str) -> str:
    """A readable label with its unit in parentheses where the key's last words name one."""
    if key in FIXED:
        return FIXED[key]
    head, _, tail = key.rpartition("/")
    prefix = f"{label(head)}: " if head else ""
    words = [w for w in tail.replace("-", "_").split("_") if w]
    unit = ""
    for suffix, shown in UNITS:
        if len(words) > len(suffix) and tuple(words[-len(suffix) :]) == suffix:
            words, unit = words[: -len(suffix)], shown
            break
    text = " ".join(WORDS.get(w, w) for w in words) or tail
    return f"{prefix}{text} ({unit})" if unit else f"{prefix}{text}"


def move_common(table: dict[str, Any]) -> dict[str, Any]:
    """Columns whose cell is the same in every row (of two or more) become `common` entries:
    (label, value) pairs the report prints on one "common settings" line above the table."""
    rows = table["rows"]
    common: list[tuple[str, str]] = []
    if len(rows) < 2:
        return {**table, "common": common}
    for cols, cells, names in (
        ("value_cols", "values", table["value_cols"]),
        ("metric_cols", "metrics", table["metric_labels"]),
    ):
        keep = [i for i in range(len(table[cols])) if len({r[cells][i] for r in rows}) > 1]
        common += [(names[i], rows[0][cells][i]) for i in range(len(table[cols])) if i not in keep]
        if cols == "metric_cols":
            table["metric_labels"] = [names[i] for i in keep]
        table[cols] = [table[cols][i] for i in keep]
        for r in rows:
            r[cells] = [r[cells][i] for i in keep]
    for r in rows:
        r["settings"] = [(k, v) for k, v in zip(table["value_cols"], r["values"]) if v != "—"]
    for key, flag, name in (
        ("num_params", "show_params", "parameters"),
        ("precision", "show_precision", "precision backend"),
    ):
        if len({r[key] for r in rows}) == 1 and table[flag]:
            common.append((name, rows[0][key]))
            table[flag] = False
    return {**table, "common": [(k, v) for k, v in common if v not in ("—", "–", "")]}
