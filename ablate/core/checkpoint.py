"""Trial checkpoints: atomic writes, RNG state, and the metrics log cut back on resume.

A checkpoint holds the model, the optimizer, every RNG the loop draws from, the step and the
config hash, so a resumed trial continues bit-identically to one that never stopped.
"""

from __future__ import annotations

import json
import os
import random
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

CHECKPOINT = "checkpoint.pt"


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary sibling then rename, so a kill never leaves half a file."""
    tmp = path.with_name(path.name + ".tmp")
    write(tmp)
    os.replace(tmp, path)


def rng_state() -> dict:
    """Torch, Python and (where present) CUDA generator states."""
    state = {"torch": torch.get_rng_state(), "python": random.getstate()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(state: dict) -> None:
    """Restore the states `rng_state` returned."""
    torch.set_rng_state(state["torch"])
    random.setstate(state["python"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def save_checkpoint(
    path: Path, model: nn.Module, opt: torch.optim.Optimizer, step: int, cfg_hash: str
) -> None:
    """Atomically write model, optimizer, RNG states, step and config hash to `path`."""
    state = {
        "model": model.state_dict(),
        "optimizer": opt.state_dict(),
        "rng": rng_state(),
        "step": step,
        "config_hash": cfg_hash,
    }
    atomic_write(path, lambda p: torch.save(state, p))


def load_checkpoint(
    path: Path,
    model: nn.Module,
    opt: torch.optim.Optimizer,
    cfg_hash: str,
    device: torch.device,
) -> int:
    """Restore a checkpoint of the same config into `model`, `opt` and the RNGs; its step.

    Raises:
        ValueError: the checkpoint belongs to another config.
    """
    ckpt = torch.load(path, map_location=device, weights_only=False)
    if ckpt["config_hash"] != cfg_hash:
        raise ValueError(
            f"{path} belongs to config {ckpt['config_hash']}, not "
            f"{cfg_hash}; use another output directory or --restart"
        )
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    return ckpt["step"]


def truncate_metrics(path: Path, step: int) -> list[dict]:
    """Drop records past the checkpoint so a resumed run logs each step once; return the rest."""
    if not path.exists():
        return []
    keep = [
        r
        for r in map(json.loads, filter(str.strip, path.read_text().splitlines()))
        if r.get("step", 0) <= step
    ]
    atomic_write(path, lambda p: p.write_text("".join(json.dumps(r) + "\n" for r in keep)))
    return keep
