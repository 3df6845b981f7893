"""AdamW (Loshchilov & Hutter 2019) whose moments are stored in a chosen dtype, e.g. bf16 as in
DeepSeek-V3's FP8 recipe (arXiv 2412.19437 §3.3.3). The update is computed in fp32 from
upcast moments; only their storage is narrow. Parameters keep their own (fp32 master) dtype.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import torch

MOMENT_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16}


class AdamW(torch.optim.Optimizer):
    """torch.optim.AdamW's update rule with `moment_dtype` storage for exp_avg / exp_avg_sq.

    With `moment_dtype=torch.float32` it reproduces torch.optim.AdamW (no amsgrad).
    """

    def __init__(
        self,
        params: Iterable,
        lr: float = 1e-3,
        betas: tuple[float, float] = (0.9, 0.999),
        eps: float = 1e-8,
        weight_decay: float = 1e-2,
        moment_dtype: torch.dtype = torch.bfloat16,
    ) -> None:
        if moment_dtype not in MOMENT_DTYPES.values():
            raise ValueError(
                f"moment_dtype must be one of {list(MOMENT_DTYPES)}, got {moment_dtype}"
            )
        if lr < 0 or eps < 0 or not all(0 <= b < 1 for b in betas):
            raise ValueError(f"invalid AdamW hyper-parameters lr={lr} betas={betas} eps={eps}")
        self.moment_dtype = moment_dtype
        super().__init__(params, dict(lr=lr, betas=betas, eps=eps, weight_decay=weight_decay))

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            beta1, beta2 = group["betas"]
            lr, eps, wd = group["lr"], group["eps"], group["weight_decay"]
            for p in group["params"]:
                if p.grad is None:
                    continue
                grad = p.grad.float()
                state = self.state[p]
                if not state:
                    state["step"] = 0
                    state["exp_avg"] = torch.zeros_like(p, dtype=self.moment_dtype)
                    state["exp_avg_sq"] = torch.zeros_like(p, dtype=self.moment_dtype)
                state["step"] += 1
                step = state["step"]
                exp_avg = state["exp_avg"].float().lerp_(grad, 1 - beta1)
                exp_avg_sq = state["exp_avg_sq"].float().mul_(beta2)
                exp_avg_sq.addcmul_(grad, grad, value=1 - beta2)
                p.mul_(1 - lr * wd)
                denom = (exp_avg_sq.sqrt() / math.sqrt(1 - beta2**step)).add_(eps)
                p.addcdiv_(exp_avg.to(p.dtype), denom.to(p.dtype), value=-lr / (1 - beta1**step))
                state["exp_avg"].copy_(exp_avg)
                state["exp_avg_sq"].copy_(exp_avg_sq)
        return loss

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        # torch casts floating state to the parameter's dtype on load; restore the storage dtype
        super().load_state_dict(state_dict)
        for state in self.state.values():
            for key in ("exp_avg", "exp_avg_sq"):
                if key in state:
                    state[key] = state[key].to(self.moment_dtype)
