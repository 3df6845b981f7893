"""Preflight: the checks that need the data or the machine, run before anything is written.

`ablate run` (`--dry-run` too) and `ablate train` call `preflight` on every resolved config.
Each distinct data config is loaded once per process and checked: its file exists, is
readable and is UTF-8; the text is not degenerate (empty, one repeated character, mostly
control characters such as NUL bytes); `load_corpus` splits it into training segments that
each hold a window and at least one evaluation window. Then the model is built on the meta
device and its memory (weights, gradients, AdamW moments, rough activations) is compared with
what the trial's device has available. Every failure is a `ConfigError` naming the source
file and the dotted key.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import unicodedata
import warnings
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ablate import registry
from ablate.core.config import Config, ConfigError, DataConfig, Layers, ModelConfig

SKIP_MEMORY_ENV = "ABLATE_SKIP_MEMORY_CHECK"  # set to 1 to run a model the estimate refuses
BYTES_PER_PARAM = 16  # fp32 weight, gradient and two AdamW moments
# Activation elements kept for backward, per layer: about 18 per token and width unit
# (norms, q/k/v, attention output, FFN hidden states) plus 3 per attention score (fp32).
ACT_PER_BTD = 18
ACT_PER_BHTT = 3
LOGIT_COPIES = 3  # logits, their fp32 copy in the loss, their gradient
GIB = 2**30
_ALLOWED_CONTROL = "\t\n\r\f\v"


class PreflightError(ValueError):
    """A failed check: the dotted key it concerns and the message."""

    def __init__(self, key: str, msg: str) -> None:
        self.key, self.msg = key, msg
        super().__init__(f"{key}: {msg}")


@dataclass(frozen=True)
class DataFacts:
    vocab_size: int
    num_train_tokens: int
    num_val_tokens: int


def preflight(cfg: Config, layers: Layers) -> DataFacts:
    """Check the data and the memory estimate of one resolved config (`ConfigError` if bad)."""
    try:
        facts = check_data(cfg.data, os.environ.get("ABLATE_DATA_DIR", ""))
        check_memory(cfg, facts.vocab_size)
    except PreflightError as e:
        raise ConfigError(layers.source_of(e.key), e.key, e.msg) from None
    return facts


def _check_file(path_str: str, key: str) -> None:
    path = Path(path_str).expanduser()
    if not path.exists():
        raise PreflightError(key, f"{path}: no such file")
    if not path.is_file():
        raise PreflightError(key, f"{path} is not a regular file")
    try:
        blob = path.read_bytes()
    except OSError as e:
        raise PreflightError(key, f"{path} is not readable ({e.strerror or e})") from None
    try:
        blob.decode("utf-8")
    except UnicodeDecodeError as e:
        raise PreflightError(
            key,
            f"{path} is not UTF-8 text: byte 0x{blob[e.start]:02x} at byte offset {e.start} "
            f"({e.reason}); a binary file or another encoding (convert it to UTF-8)",
        ) from None


def degenerate(text: str) -> str | None:
    """Why `text` cannot be a training corpus (None when it can)."""
    if not text:
        return "is empty"
    counts = Counter(text)
    if len(counts) < 2:
        return f"is one character ({next(iter(counts))!r}) repeated {len(text)} times"
    control = sum(
        n
        for c, n in counts.items()
        if unicodedata.category(c) == "Cc" and c not in _ALLOWED_CONTROL
    )
    if 2 * control > len(text):
        return (
            f"is mostly control characters ({control} of {len(text)}, e.g. NUL bytes): "
            "a binary file, not text"
        )
    return None


@functools.cache
def check_data(cfg: DataConfig, data_dir: str = "") -> DataFacts:
    """Load and check one data config; `data_dir` ($ABLATE_DATA_DIR) is part of the cache key."""
    from ablate.core.data import load_corpus, val_batches

    path = getattr(cfg.dataset, "path", "")
    key = "data.dataset.path" if path else "data.dataset"
    if isinstance(path, str) and path:
        _check_file(path, key)
    try:
        text = registry.build(cfg.dataset).load_text()
    except (ValueError, OSError) as e:
        raise PreflightError(key, str(e)) from None
    where = f"the corpus {path}" if path else f"the {registry.name_of(cfg.dataset)[1]} corpus"
    if why := degenerate(text):
        raise PreflightError(key, f"{where} {why}")
    try:
        corpus = load_corpus(cfg)
    except ValueError as e:  # too short for a training window in every segment
        raise PreflightError(
            "data.seq_len",
            f"{where}: {e}; use a longer corpus, a smaller data.seq_len or fewer data.val_chunks",
        ) from None
    if next(val_batches(corpus, cfg), None) is None:
        raise PreflightError(
            "data.val_fraction", f"{where} leaves no validation window: raise data.val_fraction"
        )
    num_train, num_val = len(corpus.train_N), len(corpus.val_N)
    return DataFacts(corpus.tokenizer.vocab_size, num_train, num_val)


@functools.cache
def count_params(mcfg: ModelConfig) -> int:
    """Parameters of the model `mcfg` builds, counted on the meta device (nothing allocated)."""
    import torch

    from ablate.core.model import Transformer

    with torch.device("meta"):
        return Transformer(mcfg).num_params()


def estimate_bytes(cfg: Config, vocab_size: int) -> dict[str, int]:
    """Rough training memory of one trial: parameter state and activations, in bytes."""
    m, d = cfg.model, cfg.data
    mcfg = m if m.vocab_size else dataclasses.replace(m, vocab_size=vocab_size)
    num_params = count_params(mcfg)
    B, T = d.batch_size, d.seq_len
    act = B * T * m.num_layers * (ACT_PER_BTD * m.dim + ACT_PER_BHTT * m.num_heads * T)
    act += LOGIT_COPIES * B * T * mcfg.vocab_size
    return {"num_params": num_params, "state": BYTES_PER_PARAM * num_params, "activations": 4 * act}


def available_bytes(device: str) -> tuple[int, str] | None:
    """Memory available to `device` and where the number comes from (None if unknown)."""
    import torch

    if device.startswith("cuda") or (device == "auto" and torch.cuda.is_available()):
        if not torch.cuda.is_available():
            return None  # resolve_device reports the missing device
        index = torch.device("cuda" if device == "auto" else device).index or 0
        return torch.cuda.mem_get_info(index)[0], f"free on cuda:{index}"
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    except OSError:
        pass
    try:
        pages = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    return pages, "free physical pages"


def check_memory(cfg: Config, vocab_size: int) -> dict[str, Any] | None:
    """Refuse a model whose estimate exceeds the device's available memory."""
    if os.environ.get(SKIP_MEMORY_ENV, "") not in ("", "0"):
        return None
    try:
        est = estimate_bytes(cfg, vocab_size)
    except ValueError as e:  # a component refusing its shapes: a user error
        raise PreflightError("model", f"the model cannot be built: {e}") from None
    except (RuntimeError, NotImplementedError) as e:  # a component that cannot build on meta
        warnings.warn(f"memory check skipped: the model does not build on meta ({e})", stacklevel=2)
        return None
    avail = available_bytes(cfg.train.device)
    total = est["state"] + est["activations"]
    if avail is not None and total > avail[0]:
        raise PreflightError(
            "model",
            f"needs about {total / GIB:.1f} GiB to train ({est['num_params']:,} parameters: "
            f"{est['state'] / GIB:.1f} GiB of weights, gradients and AdamW moments, "
            f"about {est['activations'] / GIB:.1f} GiB of activations at batch "
            f"{cfg.data.batch_size} x {cfg.data.seq_len}), but {cfg.train.device} has "
            f"{avail[0] / GIB:.1f} GiB available ({avail[1]}): shrink model.dim, "
            f"model.num_layers or data.batch_size, or set {SKIP_MEMORY_ENV}=1 to run anyway",
        )
    return {**est, "available": avail[0] if avail else None}
