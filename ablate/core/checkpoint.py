"""Trial checkpoints: atomic writes, RNG state, and the metrics log cut back on resume.

A checkpoint holds the model (as safetensors beside it), the optimizer, every RNG the loop
draws from, the step and the config hash, so a resumed trial continues bit-identically to one
that never stopped.
"""

from __future__ import annotations

import json
import os
import random
from pathlib import Path

import torch
from torch import nn

from ablate.core.fsio import atomic_write, atomic_write_text  # noqa: F401 (re-exported)

CHECKPOINT = "checkpoint.pt"  # optimizer, RNG states, step, config hash
WEIGHTS = "model.safetensors"  # the model's state dict, beside the checkpoint
PENDING = ".next"  # suffix of weights written but not yet committed by the checkpoint


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
    save_state(path, model.state_dict(), opt.state_dict(), step, cfg_hash)


def save_state(
    path: Path,
    model_sd: dict,
    opt_sd: dict,
    step: int,
    cfg_hash: str,
    precision: dict | None = None,
) -> None:
    """`save_checkpoint` from state dicts (a distributed trial gathers them first).

    The weights go to `model.safetensors` beside `path`, in two phases: written as
    `model.safetensors.next`, then `path` is replaced, then the weights are renamed into place;
    whichever of the two files carries `path`'s step (metadata) holds its weights.
    """
    from safetensors.torch import save

    weights, pending = _weights_paths(path)
    tensors = {k: v.detach().to("cpu").contiguous().clone() for k, v in model_sd.items()}
    blob = save(tensors, metadata={"step": str(step), "config_hash": cfg_hash})
    atomic_write(pending, lambda f: f.write(blob))
    state = {
        "weights": WEIGHTS,
        "optimizer": opt_sd,
        "rng": rng_state(),
        "step": step,
        "config_hash": cfg_hash,
    }
    if precision:  # the precision transform's own state (`Precision.state_dict`)
        state["precision"] = precision
    atomic_write(path, lambda f: torch.save(state, f))  # a file object: ENOSPC is an OSError
    os.replace(pending, weights)


def _weights_paths(path: Path) -> tuple[Path, Path]:
    weights = path.with_name(WEIGHTS)
    return weights, weights.with_name(WEIGHTS + PENDING)


def read_weights(path: Path, step: int, cfg_hash: str, device: torch.device) -> dict:
    """The model state dict saved with the checkpoint at `path` (of that step and config)."""
    from safetensors import safe_open
    from safetensors.torch import load_file

    for candidate in _weights_paths(path):
        if candidate.is_file():
            with safe_open(candidate, "pt") as f:
                meta = f.metadata() or {}
            if meta.get("step") == str(step) and meta.get("config_hash") == cfg_hash:
                return load_file(candidate, device=str(device))
    raise ValueError(
        f"{path}: no {WEIGHTS} of step {step} beside it (a torn checkpoint); use --restart"
    )


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
    ckpt = read_checkpoint(path, cfg_hash, device)
    model.load_state_dict(ckpt["model"])
    opt.load_state_dict(ckpt["optimizer"])
    set_rng_state(ckpt["rng"])
    return ckpt["step"]


def read_checkpoint(path: Path, cfg_hash: str, device: torch.device) -> dict:
    """The checkpoint at `path`, refused (ValueError) when it belongs to another config."""
    ckpt = torch.load(path, map_location=device, weights_only=False)
    if ckpt["config_hash"] != cfg_hash:
        raise ValueError(
            f"{path} belongs to config {ckpt['config_hash']}, not "
            f"{cfg_hash}; use another output directory or --restart"
        )
    if "model" not in ckpt:  # weights beside it (checkpoints before that held them inside)
        ckpt["model"] = read_weights(path, ckpt["step"], cfg_hash, device)
    return ckpt


def truncate_metrics(path: Path, step: int) -> list[dict]:
    """Drop records past the checkpoint so a resumed run logs each step once; return the rest."""
    if not path.exists():
        return []
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    if lines and not lines[-1].endswith("}"):  # torn by a full disk or a kill mid-write
        lines.pop()
    # post-training rows (`post_step`) follow the last training step; their runner cuts them
    keep = [r for r in map(json.loads, lines) if r.get("step", 0) <= step or "post_step" in r]
    atomic_write_text(path, "".join(json.dumps(r) + "\n" for r in keep))
    return keep
