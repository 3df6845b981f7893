"""Functions that run eagerly under `torch.compile` (across a graph break), marked at no cost.

`torch.compiler.disable` imports dynamo when applied (~1.2 s, and Triton), which as a
decorator would land on every command's start-up. `eager` records the function instead;
`prepare_compile()`, called before anything is traced, switches each marked function to its
disabled version. Until then a marked function is a plain call.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import TypeVar

import torch

F = TypeVar("F", bound=Callable)
_SWITCHES: list[Callable[[], None]] = []


def eager(fn: F) -> F:
    """Mark `fn` (a function or method) to run eagerly inside a compiled region."""
    impl = [fn]

    @functools.wraps(fn)
    def run(*args, **kwargs):
        return impl[0](*args, **kwargs)

    def switch() -> None:
        if impl[0] is fn:
            impl[0] = torch.compiler.disable(fn)

    _SWITCHES.append(switch)
    return run  # type: ignore[return-value]


def prepare_compile() -> None:
    """Make every function marked `eager` run outside the graphs `torch.compile` builds."""
    for switch in _SWITCHES:
        switch()
