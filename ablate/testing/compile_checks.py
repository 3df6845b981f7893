"""`train.compile` conformance: traced by `torch.compile`, a training step gives eager's results.

The model holding a component (or a tiny model under a precision transform) takes one training
forward and backward eagerly and, from the same seed, through `torch.compile` with the
`aot_eager` backend: dynamo's tracing and AOT autograd, where a component that cannot be traced
fails, without inductor's code generation (quick, and no C++ compiler needed). Losses,
gradients and buffers (e.g. a router's counts) must agree, and something must have compiled.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from contextlib import nullcontext

import torch

from ablate import registry
from ablate.core.model import Transformer
from ablate.interfaces import components
from ablate.nn.eager import prepare_compile
from ablate.testing.configs import routed_ffn_config, tiny_model_config
from ablate.testing.contract import Subject
from ablate.testing.model_checks import batch, build_model, total_loss

# Relative error allowed (norm of the difference over eager's): fp32 steps agreed exactly
# here; under bf16 autocast traced ops round differently (measured up to 3.8e-3, ~1 bf16 ulp),
# and an FP8 GEMM input that lands across a rounding boundary moves by an E4M3 step (1.5e-2).
FP32_TOLERANCE, PRECISION_TOLERANCE = 1e-5, 5e-2
PRECISION_DIM = 128  # wide enough for FP8's 128-wide tiles


def _traced(model: torch.nn.Module) -> tuple[Callable, list]:
    """`model` under torch.compile (aot_eager), and the list of graphs it compiles."""
    prepare_compile()
    torch._dynamo.reset()  # a recompile limit reached by earlier checks would fall back silently
    aot_eager, graphs = torch._dynamo.lookup_backend("aot_eager"), []

    def backend(gm, example_inputs):
        graphs.append(gm)
        return aot_eager(gm, example_inputs)

    return torch.compile(model, backend=backend), graphs


def _step(model: torch.nn.Module, forward: Callable, autocast) -> dict[str, torch.Tensor]:
    """Loss, gradients and buffers after one training forward and backward."""
    x_BT, y_BT = batch()
    with autocast():
        _, loss = forward(x_BT, y_BT)
        total = total_loss(model, loss)
    total.backward()
    for c in components(model):
        c.after_optimizer_step()
    out = {"loss": total.detach()}
    out.update({f"grad {n}": p.grad for n, p in model.named_parameters() if p.grad is not None})
    out.update({f"buffer {n}": b for n, b in model.named_buffers()})
    return out


def _compare(s: Subject, build: Callable[[], torch.nn.Module], autocast, tolerance: float) -> None:
    eager = build()
    want = _step(eager, eager, autocast)
    model = build()
    forward, graphs = _traced(model)
    try:
        got = _step(model, forward, autocast)
    except Exception as e:  # noqa: BLE001 - any tracing failure is the finding
        s.fail(f"torch.compile fails: {type(e).__name__}: {str(e).strip().splitlines()[0]}")
    finally:
        torch._dynamo.reset()
    s.expect(bool(graphs), "torch.compile compiled no graph (all of it fell back to eager)")
    s.expect(got.keys() == want.keys(), "compiled: other gradients or buffers than eager's")
    for k, v in want.items():
        err = _relative_error(got[k], v)
        s.expect(err <= tolerance, f"compiled {k} differs from eager by {err:.1e} (relative)")


def _relative_error(got: torch.Tensor, want: torch.Tensor) -> float:
    """||got - want|| / ||want|| (inf where got is not finite; 0 for two zero tensors)."""
    got, want = got.double(), want.double()
    if not got.isfinite().all():
        return float("inf")
    scale = want.norm().item()
    return (got - want).norm().item() / scale if scale else float((got != 0).any())


def compiled_matches_eager(s: Subject) -> None:
    """The model holding the component: compiled and eager training steps agree."""
    _compare(s, lambda: build_model(s), nullcontext, FP32_TOLERANCE)


def precision_compiled(s: Subject) -> None:
    """A 128-wide tiny model (routed FFN when one is registered) under the transform's
    `apply()` and `autocast()`: compiled and eager training steps agree."""
    precision = registry.build(s.default_config(), torch.device("cpu"))
    ffn = routed_ffn_config()
    changes = {"dim": PRECISION_DIM, **({"ffn": ffn} if ffn is not None else {})}

    def build() -> torch.nn.Module:
        torch.manual_seed(0)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # e.g. a transform reporting the layers it skips
            return precision.apply(Transformer(tiny_model_config(**changes)))

    _compare(s, build, precision.autocast, PRECISION_TOLERANCE)
