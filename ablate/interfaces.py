"""Interfaces every registered component implements: small bases with optional hooks.

The trainer calls the hooks on every `Component` in the model, never naming one:
`extra_losses()` after each forward, `after_optimizer_step()` once per optimizer step and
`metrics()` when it logs. Shapes (docs/design.md#shapes): B batch, T time, D model width,
V vocabulary, N = B*T tokens.

The contract of a component, checked by `ablate check GROUP/NAME` (`ablate.testing`):

- `@register(group, name)` on a subclass of the group's base below (`BASES`).
- A nested frozen, keyword-only dataclass `Config`: its fields are the component's settings,
  each with a short comment. Optional `Config.check(self, root) -> None` is called with the
  root run `Config` (`ablate.core.config.Config`) after validation and raises ValueError
  naming the offending key; other components' fields are read from `root`.
- The constructor, by group: attention, ffn, mtp `(cfg, ctx: BuildContext)`; norm
  `(cfg, dim)`; router `(cfg, ctx, num_experts, topk)` (built by its FFN); precision
  `(cfg, device)`; dataset and tokenizer `(cfg)`. Build with `registry.build(cfg, *args)`.
"""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from ablate.bases import Dataset, Drafter, Precision, Tokenizer  # noqa: F401  (re-exported)
from ablate.posttrain.bases import PostTrain, Reward  # the post-training groups' bases


@dataclass(frozen=True)
class BuildContext:
    """What a model component is built with besides its own config.

    Attributes:
        model: the resolved `ModelConfig` (width, heads, max length...).
        layer_idx: index of the block the component sits in (-1 outside the trunk).
        make_block: builds one more Transformer block from the same registries (for MTP).
    """

    model: Any
    layer_idx: int = 0
    make_block: Callable[[int], nn.Module] | None = None


class Component(nn.Module):
    """Base of every model component; hooks default to doing nothing."""

    Config: ClassVar[type]
    registry_group: ClassVar[str]
    registry_name: ClassVar[str]
    # How `metrics()` values combine across modules: "mean" (default) or "sum".
    metric_reduce: ClassVar[dict[str, str]] = {}

    def extra_losses(self) -> dict[str, torch.Tensor]:
        """Loss terms to add to the objective (already weighted), logged under their keys.

        Called once after every forward in training; return terms of that forward only.
        """
        return {}

    def after_optimizer_step(self) -> None:
        """Called once after each optimizer step (e.g. a routing-bias update)."""

    def metrics(self) -> dict[str, float]:
        """Logging-only numbers (loads, cache sizes); may reset internal counters.

        The trainer calls it at every train log step (model in train mode) and once after
        each evaluation pass (model in eval mode; keys are logged with a `val_` prefix), so
        a component that counts per mode keeps separate counters for `self.training`.
        """
        return {}

    def final_metrics(self, model: nn.Module, corpus: Any) -> dict[str, float]:
        """Once after training (eval mode, no grad): costlier measurements such as decode
        speed or speculative acceptance. `corpus` is the trial's `ablate.core.data.Corpus`."""
        return {}

    def drafter(self, model: nn.Module) -> Drafter | None:
        """A `Drafter` for greedy speculative decoding of `model`, or None (the default).

        Decoding loops ask every component and use the first drafter offered.
        """
        return None


class Attention(Component):
    """Causal self-attention: (B, T, D) -> (B, T, D).

    Built as `(cfg, ctx)`. `cache` is the dict returned by `new_cache`; with it, `x_BTD`
    holds the tokens at positions `start_pos .. start_pos+T-1` and their keys/values are
    written into the cache. Decoding through the cache (a prefill, then one token per call)
    must give the outputs of one full forward over the whole sequence.
    """

    @abstractmethod
    def forward(
        self,
        x_BTD: torch.Tensor,
        *,
        start_pos: int = 0,
        cache: dict[str, torch.Tensor] | None = None,
    ) -> torch.Tensor: ...

    @abstractmethod
    def new_cache(
        self, batch_size: int, max_len: int, dtype: torch.dtype, device: torch.device | str = "cpu"
    ) -> dict[str, torch.Tensor]:
        """Allocate this layer's KV cache for `max_len` positions."""

    @classmethod
    def cache_variants(cls, cfg: Any) -> list[Any]:
        """Configs that compute the same layer as `cfg` through another cache path.

        Optional; default none. Each variant must build with `cfg`'s parameters (same
        state-dict keys and shapes) and give the same outputs, cached or not: the conformance
        check `cache_variants` loads `cfg`'s weights into each and compares (e.g. MLA's
        `cache_impl` naive vs absorbed).
        """
        return []

    def kv_cache_bytes_per_token(self, dtype: torch.dtype) -> int:
        """Bytes one token occupies in this layer's cache, from the real buffers' shapes."""
        cache = self.new_cache(1, 1, dtype, "meta")
        return sum(t.numel() * t.element_size() for t in cache.values())

    def score_flops_per_token(self, context: int) -> float | None:
        """Forward FLOPs per query of the scores and the value sum over `context` keys.

        Optional; None (the default) lets `ablate inspect` measure them with a FLOP counter.
        Override where the forward pads or reshapes so that a count would differ from the math.
        """
        return None

    # Whole-model KV-cache sizes: summed over layers; the `_per_layer` key is averaged.
    metric_reduce: ClassVar[dict[str, str]] = {
        "kv_cache_bytes_per_token": "sum",
        "kv_cache_elems_per_token": "sum",
        "kv_cache_bf16_bytes_per_token": "sum",
    }

    def cache_dtype(self) -> torch.dtype:
        """The dtype this layer's cache is kept in: that of its floating-point weights."""
        return next((p.dtype for p in self.parameters() if p.is_floating_point()), torch.float32)

    def metrics(self) -> dict[str, float]:
        """KV-cache size per token from the real cache buffers, at the run's dtype and BF16.

        Static sizes: reported in train mode only, so eval passes do not repeat them.
        """
        if not self.training:
            return {}
        per_layer = self.kv_cache_bytes_per_token(self.cache_dtype())
        elems = sum(t.numel() for t in self.new_cache(1, 1, torch.float32, "meta").values())
        return {
            "kv_cache_bytes_per_token_per_layer": per_layer,
            "kv_cache_bytes_per_token": per_layer,
            "kv_cache_elems_per_token": elems,
            "kv_cache_bf16_bytes_per_token": self.kv_cache_bytes_per_token(torch.bfloat16),
        }


class FFN(Component):
    """Position-wise feed-forward: (B, T, D) -> (B, T, D); built as `(cfg, ctx)`."""

    @abstractmethod
    def forward(self, x_BTD: torch.Tensor) -> torch.Tensor: ...

    def param_parts(self) -> dict[str, tuple[int, float]]:
        """This FFN's own parameters (nested components such as a router excluded) by part:
        name -> (count, fraction of them one token uses). Optional; default one `dense` part
        every token uses. An MoE reports its routed experts at X / E (`ablate inspect`)."""
        return {"dense": (sum(p.numel() for p in own_parameters(self)), 1.0)}


class Norm(Component):
    """Normalization over the last dimension, each position on its own.

    Built as `(cfg, dim)`: the trunk builds `registry.build(model.norm, model.dim)`, and
    components reuse the model's norm at their own widths (e.g. MLA's latent norms).
    """

    @abstractmethod
    def forward(self, x: torch.Tensor) -> torch.Tensor: ...


class Router(Component):
    """MoE gate: tokens (N, D) -> (weights (N, X), expert ids (N, X)), X = `topk`.

    Built by its FFN as `(cfg, ctx, num_experts, topk)` and called as
    `router(x_ND, num_seqs=B)`: the N tokens are B equal-length sequences (for
    sequence-scoped balance losses). Ids are integers in [0, num_experts), distinct per token.
    """

    @abstractmethod
    def forward(
        self, x_ND: torch.Tensor, *, num_seqs: int = 1
    ) -> tuple[torch.Tensor, torch.Tensor]: ...


class MTP(Component):
    """Multi-token prediction heads, called on the trunk's output in training.

    Built as `(cfg, ctx)` with `ctx.layer_idx = -1` and `ctx.make_block` set.
    """

    @abstractmethod
    def forward(
        self, h_BTD: torch.Tensor, idx_BT: torch.Tensor, targets_BT: torch.Tensor, model: nn.Module
    ) -> None:
        """Compute the MTP losses for this batch; `extra_losses()` returns them.

        `h_BTD` is the trunk output before the final norm; `model` is the Transformer (its
        `tok_emb`, `final_norm` and `head` are the shared embedding, norm and head).
        """


BASES: dict[str, type] = {
    "attention": Attention,
    "ffn": FFN,
    "norm": Norm,
    "router": Router,
    "mtp": MTP,
    "precision": Precision,
    "dataset": Dataset,
    "tokenizer": Tokenizer,
    "posttrain": PostTrain,
    "reward": Reward,
}


def own_parameters(module: nn.Module) -> Iterator[nn.Parameter]:
    """`module`'s parameters outside the components nested in it."""
    nested = {
        id(p)
        for m in module.modules()
        if m is not module and isinstance(m, Component)
        for p in m.parameters()
    }
    return (p for p in module.parameters() if id(p) not in nested)


def components(model: nn.Module) -> Iterator[Component]:
    """Every hook-carrying component in a model, in module order."""
    return (m for m in model.modules() if isinstance(m, Component))
