"""Bases of the components that are not model modules: a numeric precision, a dataset, a
tokenizer and a speculative-decoding drafter. `ablate.interfaces` re-exports them with the
model components' bases and the registry's `BASES`; import them from there.
"""

from __future__ import annotations

import contextlib
from abc import ABC, abstractmethod
from typing import Any, ClassVar

import torch
from torch import nn


class Drafter(ABC):
    """Proposes `num_drafts` (Y) tokens ahead of the main model, for one sequence at a time.

    A decoding loop calls `reset` per sequence, `observe` with the main model's trunk output
    (before the final norm) at positions whose input ids are committed, and `propose` with
    every committed id; it keeps the longest prefix of drafts the main model agrees with.
    """

    num_drafts: int

    @abstractmethod
    def reset(self, max_len: int, dtype: torch.dtype, device: torch.device) -> None:
        """Start a sequence of at most `max_len` positions (allocate caches)."""

    @abstractmethod
    def observe(self, h_1TD: torch.Tensor, start_pos: int) -> None:
        """Record the main hidden states of positions `start_pos .. start_pos+T-1`."""

    @abstractmethod
    def propose(self, ids_1T: torch.Tensor) -> torch.Tensor:
        """Drafts (1, Y) for positions T..T+Y-1, given the committed ids t_0..t_{T-1}."""


class Precision(ABC):
    """Numeric precision as a transform of a built model plus a forward context."""

    Config: ClassVar[type]
    registry_group: ClassVar[str]
    registry_name: ClassVar[str]

    def __init__(self, cfg: Any, device: torch.device) -> None:
        self.cfg, self.device = cfg, device

    @abstractmethod
    def apply(self, model: nn.Module) -> nn.Module:
        """Transform the model in place (e.g. swap Linears) and return it."""

    def autocast(self) -> contextlib.AbstractContextManager:
        """Context the forward pass runs under."""
        return contextlib.nullcontext()

    def build_optimizer(self, param_groups: list[dict], **adamw: Any) -> torch.optim.Optimizer:
        """The optimizer over the (transformed) model; AdamW with fp32 state by default. `adamw`
        may hold `fused` / `foreach` (train.optimizer_impl); an optimizer without them drops them.
        """
        return torch.optim.AdamW(param_groups, **adamw)

    def scale_loss(self, loss: torch.Tensor) -> torch.Tensor:
        """The loss to call backward on (loss scaling); the loss itself by default."""
        return loss

    def unscale_grads(self, model: nn.Module) -> bool:
        """Undo `scale_loss` on the gradients, before clipping; True when one is not finite
        (this rank's view). Default: nothing to undo, False."""
        return False

    def update(self, overflow: bool) -> None:
        """After each step, with whether any rank's gradients overflowed (the optimizer step
        is then skipped); e.g. a dynamic loss scale's backoff or growth."""

    def metrics(self) -> dict[str, float]:
        """Logging-only numbers at train log steps (a loss scale, skipped steps)."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """State that a bit-identical resume needs (saved in the checkpoint); none by default."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned."""

    def summary(self) -> dict[str, Any]:
        """Facts to record in the trial summary (backend that ran, error statistics)."""
        return {}


class Configured(ABC):
    """A registered component built from its `Config` alone (`registry.build(cfg)`)."""

    Config: ClassVar[type]
    registry_group: ClassVar[str]
    registry_name: ClassVar[str]

    def __init__(self, cfg: Any) -> None:
        self.cfg = cfg


class Dataset(Configured):
    """A text corpus."""

    @abstractmethod
    def load_text(self) -> str:
        """The whole corpus as one string (deterministic)."""

    def describe(self) -> dict[str, Any]:
        """Provenance to record (source path, fingerprint)."""
        return {}


class Tokenizer(Configured):
    """Text <-> token ids; `fit` sees the whole corpus first."""

    def fit(self, text: str) -> None:
        """Build the vocabulary from the corpus (no-op for fixed vocabularies)."""

    @property
    @abstractmethod
    def vocab_size(self) -> int: ...

    @abstractmethod
    def encode(self, text: str) -> list[int]: ...

    @abstractmethod
    def decode(self, ids: list[int]) -> str: ...
