"""What makes a result reproducible: git revision, library versions, hardware."""

from __future__ import annotations

import functools
import os
import platform
import subprocess
import sys
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGES = ("torch", "triton", "numpy", "omegaconf", "hydra-core", "wandb", "ablate-lm")
_REPO = Path(__file__).resolve().parents[2]


def _git(*args: str) -> str:
    try:
        return subprocess.run(
            ["git", *args], cwd=_REPO, capture_output=True, text=True, timeout=10, check=True
        ).stdout
    except (OSError, subprocess.SubprocessError):
        return ""


@functools.cache
def git_info() -> dict:
    """Revision, dirty flag and (when dirty) the diff of the code that ran."""
    rev = _git("rev-parse", "HEAD").strip()
    diff = _git("diff", "HEAD") if rev else ""
    return {"git_rev": rev or "unknown", "git_dirty": bool(diff.strip()), "git_diff": diff}


@functools.cache
def versions() -> dict:
    out = {"python": sys.version.split()[0]}
    for pkg in PACKAGES:
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = None
    return out


@functools.cache
def hardware() -> dict:
    import torch

    info = {
        "platform": platform.platform(),
        "machine": platform.machine(),
        "cpu": platform.processor() or platform.machine(),
        "num_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "cuda": torch.cuda.is_available(),
    }
    if torch.cuda.is_available():
        info["gpu"] = torch.cuda.get_device_name(0)
    return info
