"""One trial over several processes: DDP or FSDP2 (`fully_shard`) under torchrun.

`train.distributed: none | ddp | fsdp`. The world size comes from the launcher (torchrun's
WORLD_SIZE; `ablate train --nproc N` starts torchrun). `data.batch_size` is the global batch:
rank r trains on rows [r B/W, (r + 1) B/W) of every micro-batch, so the gradient is the mean
over the same B windows a single process sees and results equal it up to fp32 reduction order.
Every rank runs every step, evaluation included (the model is replicated, or sharded and
gathered); rank 0 alone writes metrics, checkpoints, summary and tracking. Checkpoints hold
the full (unsharded) state in the single-process layout, gathered on every rank and written by
rank 0, so a checkpoint written at any world size (1 included) resumes at any other.
Backends: gloo on CPU, NCCL on CUDA (device `cuda:LOCAL_RANK`).
"""

from __future__ import annotations

import inspect
import os
import socket
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist
from torch import nn

MODES = ("none", "ddp", "fsdp")


@dataclass(frozen=True)
class Ranks:
    """This process's place in the trial's process group (rank 0 of 1 when not distributed)."""

    mode: str = "none"
    rank: int = 0
    world: int = 1
    local_rank: int = 0
    owned: bool = False  # the process group was started here (and is closed by `close`)

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.mode != "none"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def init(mode: str, batch_size: int, device: torch.device) -> Ranks:
    """Join the process group torchrun describes in the environment (or a group of one).

    Raises:
        ValueError: several processes without a distributed mode, or a global batch that does
            not split evenly over the ranks.
    """
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if mode == "none":
        if world > 1:
            raise ValueError(
                f"train.distributed=none but WORLD_SIZE={world}: set train.distributed=ddp or "
                "fsdp to run one trial over several processes"
            )
        return Ranks()
    if batch_size % world:
        raise ValueError(
            f"data.batch_size={batch_size} (the global batch) must be divisible by the "
            f"world size {world} (train.distributed={mode})"
        )
    owned = not dist.is_initialized()
    if owned:
        backend = "nccl" if device.type == "cuda" else "gloo"
        if "MASTER_ADDR" in os.environ:
            dist.init_process_group(backend)
        else:  # plain `python` with a group of one (no torchrun)
            url = f"tcp://127.0.0.1:{_free_port()}"
            dist.init_process_group(backend, init_method=url, rank=0, world_size=1)
    local = int(os.environ.get("LOCAL_RANK", 0))
    return Ranks(mode, dist.get_rank(), dist.get_world_size(), local, owned)


def rank_device(device: torch.device, ranks: Ranks) -> torch.device:
    """`cuda` becomes this rank's `cuda:LOCAL_RANK` (and the current device); CPU unchanged."""
    if device.type != "cuda" or not ranks.active:
        return device
    torch.cuda.set_device(ranks.local_rank)
    return torch.device("cuda", ranks.local_rank)


def shard(t_B: torch.Tensor, ranks: Ranks) -> torch.Tensor:
    """This rank's contiguous rows of a global (micro-)batch."""
    if ranks.world == 1:
        return t_B
    b = t_B.shape[0] // ranks.world
    return t_B[ranks.rank * b : (ranks.rank + 1) * b]


def wrap(model: nn.Module, ranks: Ranks, device: torch.device) -> nn.Module:
    """The module to call for training forwards: DDP around `model`, or `model` sharded in place.

    DDP does not broadcast buffers: the per-rank routing counters stay per rank, and the
    routing bias stays identical because every rank applies the same all-reduced update.
    """
    if ranks.mode == "ddp":
        ddp = nn.parallel.DistributedDataParallel
        no_sync = "forward_sync_buffers" in inspect.signature(ddp).parameters  # newer torch
        kw = {"forward_sync_buffers": False} if no_sync else {"broadcast_buffers": False}
        return ddp(model, device_ids=[device.index] if device.type == "cuda" else None, **kw)
    if ranks.mode == "fsdp":
        from torch.distributed.fsdp import fully_shard

        for block in model.blocks:
            fully_shard(block)
        fully_shard(model)  # embedding, (tied) head, final norm and MTP in the root group
    return model


def mean(value: torch.Tensor | float, ranks: Ranks) -> float:
    """Mean of a scalar over the ranks (the value itself when not distributed)."""
    if not ranks.active:
        return float(value)
    t = torch.as_tensor(value, dtype=torch.float64).reshape(1).clone()
    if dist.get_backend() == "nccl":
        t = t.cuda()
    dist.all_reduce(t)
    return float(t.item()) / ranks.world


def any_rank(flag: bool, ranks: Ranks) -> bool:
    """Whether `flag` is set on any rank (so every rank acts on it after the same step)."""
    return mean(float(flag), ranks) > 0 if ranks.active else flag


def settle(ranks: Ranks) -> dict[str, Any]:
    """Wait for every rank (the last collective: the group may then be torn down) and return
    the summary's `distributed` entry ({} for a single process)."""
    if not ranks.active:
        return {}
    dist.barrier()
    return {"distributed": {"mode": ranks.mode, "world_size": ranks.world}}


def torchrun_command(nproc: int, argv: list[str]) -> list[str]:
    """`python -m torch.distributed.run --standalone --nproc-per-node N -m ablate ARGV...`."""
    import sys

    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone"]
    return [*cmd, f"--nproc-per-node={nproc}", "-m", "ablate", *argv]


def _full(x: Any) -> Any:
    """DTensors gathered to full tensors, through dicts and lists (a collective on FSDP)."""
    from torch.distributed.tensor import DTensor

    if isinstance(x, DTensor):
        return x.full_tensor()
    if isinstance(x, dict):
        return {k: _full(v) for k, v in x.items()}
    if isinstance(x, list):
        return [_full(v) for v in x]
    return x


def full_state(model: nn.Module, opt: torch.optim.Optimizer, ranks: Ranks) -> tuple[dict, dict]:
    """Model and optimizer state dicts in the single-process layout (called on every rank)."""
    if ranks.mode != "fsdp":
        return model.state_dict(), opt.state_dict()
    return _full(model.state_dict()), _full(opt.state_dict())


def load_full_state(
    model: nn.Module, opt: torch.optim.Optimizer, model_sd: dict, opt_sd: dict, ranks: Ranks
) -> None:
    """Load single-process-layout state dicts, sharding them where the model is sharded."""
    if ranks.mode == "fsdp":
        model_sd = {k: _like(model_sd[k], v) for k, v in model.state_dict().items()}
        params = [p for g in opt.param_groups for p in g["params"]]
        opt_sd = {
            **opt_sd,
            "state": {
                i: {k: _like(t, params[i]) for k, t in st.items()}
                for i, st in opt_sd["state"].items()
            },
        }
    model.load_state_dict(model_sd)
    opt.load_state_dict(opt_sd)


def _like(full: Any, ref: Any) -> Any:
    """`full` sharded as `ref` is, when `ref` is a DTensor of the same shape."""
    from torch.distributed.tensor import DTensor, distribute_tensor

    if isinstance(ref, DTensor) and torch.is_tensor(full) and full.shape == ref.shape:
        return distribute_tensor(full.to(ref.device), ref.device_mesh, ref.placements)
    return full


def clip_grad_norm(model: nn.Module, max_norm: float) -> float:
    """Clip the global gradient norm to `max_norm` (> 0) and return it; nan when 0 (off)."""
    from torch.distributed.tensor import DTensor

    if max_norm <= 0:
        return float("nan")
    norm = torch.nn.utils.clip_grad_norm_(model.parameters(), max_norm)
    return (norm.full_tensor() if isinstance(norm, DTensor) else norm).item()  # FSDP: DTensor


def close(ranks: Ranks) -> None:
    """Leave the process group this module joined."""
    if ranks.owned and dist.is_initialized():
        dist.destroy_process_group()
