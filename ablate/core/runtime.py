"""How a trial runs on its device: TF32 for fp32 matmuls, AdamW's kernels, `torch.compile`.

Three `train` fields, each chosen for speed; none changes the maths, only rounding:

- `tf32`: on CUDA, fp32 matmuls and convolutions on TF32 tensor cores (10-bit mantissa inputs,
  fp32 accumulation). Both torch flags are set at every CUDA trial's start, so a trial never
  inherits an earlier trial's setting in the same process; on the CPU they do nothing.
- `optimizer_impl`: torch.optim.AdamW's `fused` (one kernel over all parameters), `foreach`
  (multi-tensor ops) or `for` (a loop over parameters); `auto` picks fused on CUDA and foreach
  on the CPU. A precision whose optimizer is not torch's AdamW may ignore it: the summary
  records the kernels that ran, read from the optimizer's `defaults`.
- `compile`: the training forward (`Trial.forward`: the model, or its DDP/FSDP wrapper) goes
  through `torch.compile`; evaluation and checkpoints use the plain model. On the CPU, inductor
  needs a C++ compiler.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch

from ablate.nn.eager import prepare_compile

AUTO_IMPL = {"cuda": "fused", "cpu": "foreach"}  # what optimizer_impl: auto picks per device type
IMPL_KWARGS = {
    "fused": {"fused": True},
    "foreach": {"foreach": True},
    "for": {"foreach": False, "fused": False},
}


def resolved_impl(name: str, device_type: str) -> str:
    """The AdamW implementation `name` ("auto" included) stands for on `device_type`."""
    return AUTO_IMPL.get(device_type, "for") if name == "auto" else name


def adamw_kwargs(name: str, device: torch.device) -> dict[str, bool]:
    """torch.optim.AdamW keyword arguments for `train.optimizer_impl` on `device`."""
    return dict(IMPL_KWARGS[resolved_impl(name, device.type)])


def impl_of(opt: torch.optim.Optimizer) -> str:
    """The kernels an optimizer steps with, from its `defaults` ("for" when neither flag is
    set: also any optimizer that is not torch's AdamW)."""
    if opt.defaults.get("fused"):
        return "fused"
    return "foreach" if opt.defaults.get("foreach") else "for"


def check_impl(opt: torch.optim.Optimizer, name: str) -> str:
    """The implementation that runs; a warning where an explicit request was not honoured."""
    used = impl_of(opt)
    if name != "auto" and used != name:
        warnings.warn(
            f"train.optimizer_impl={name} skipped: the precision's optimizer "
            f"({type(opt).__name__}) steps with {used!r}",
            stacklevel=2,
        )
    return used


def set_tf32(enabled: bool, device: torch.device) -> bool | None:
    """Set TF32 for this trial where it runs on CUDA; what was set (None: not applicable)."""
    if device.type != "cuda":
        return None
    torch.backends.cuda.matmul.allow_tf32 = enabled
    torch.backends.cudnn.allow_tf32 = enabled
    return enabled


def compiled(forward: torch.nn.Module, enabled: bool) -> Any:
    """`forward` under `torch.compile` when `enabled`; unchanged otherwise."""
    if not enabled:
        return forward
    prepare_compile()
    return torch.compile(forward)


def record(cfg_train: Any, impl: str, tf32: bool | None) -> dict[str, Any]:
    """The summary's `runtime` entry: what this trial ran with (`impl`: `check_impl`'s)."""
    return {"compile": cfg_train.compile, "optimizer_impl": impl, "tf32": tf32}
