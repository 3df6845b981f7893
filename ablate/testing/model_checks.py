"""Checks of model components (attention, ffn, norm, mtp, router) inside a tiny Transformer.

Each builds the component from its default config in a `tiny_model_config` model (a router
inside its host FFN) and checks shapes, finite loss, gradient flow, seed determinism,
causality and the trainer hooks; norms and routers also get a check of their own interface.
"""

from __future__ import annotations

import math

import torch

from ablate import registry
from ablate.core.model import Transformer
from ablate.interfaces import BuildContext, components
from ablate.testing.configs import TINY_MODEL, router_host, tiny_model_config
from ablate.testing.contract import Subject

VOCAB = TINY_MODEL["vocab_size"]
ROUTER_EXPERTS, ROUTER_TOPK = 8, 2  # a router checked on its own routes X of E experts


def build_model(s: Subject, seed: int = 0) -> Transformer:
    """The tiny Transformer holding `s` (default config), initialised from `seed`."""
    group, cfg = s.group, s.default_config()
    if group == "router":
        group, cfg = "ffn", router_host(cfg)
    torch.manual_seed(seed)
    return Transformer(tiny_model_config(**{group: cfg}))


def batch(seed: int = 1, B: int = 2, T: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """Random token ids and their next-token targets, (B, T) each."""
    g = torch.Generator().manual_seed(seed)
    window = torch.randint(0, VOCAB, (B, T + 1), generator=g)
    return window[:, :-1], window[:, 1:]


def total_loss(model: Transformer, loss: torch.Tensor) -> torch.Tensor:
    """The main loss plus every component's extra losses of the last forward."""
    extra = (v for c in components(model) for v in c.extra_losses().values())
    return loss + sum(extra, torch.zeros(()))


def shapes_loss_grads(s: Subject) -> None:
    """Logits are (B, T, V), the loss is finite and gradients reach every parameter."""
    model = build_model(s)
    x_BT, y_BT = batch()
    logits_BTV, loss = model(x_BT, y_BT)
    s.expect(
        tuple(logits_BTV.shape) == (*x_BT.shape, VOCAB),
        f"logits shape {tuple(logits_BTV.shape)}, expected {(*x_BT.shape, VOCAB)}",
    )
    total = total_loss(model, loss)
    s.expect(bool(torch.isfinite(total)), f"training loss is not finite ({total.item()})")
    total.backward()
    missing = [n for n, p in model.named_parameters() if p.requires_grad and p.grad is None]
    s.expect(not missing, f"no gradient reaches {missing}")
    bad = [
        n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()
    ]
    s.expect(not bad, f"non-finite gradients in {bad}")


@torch.no_grad()
def seed_determinism(s: Subject) -> None:
    """The same seed builds the same model; another seed builds another."""
    x_BT, _ = batch()
    a, b, c = (build_model(s, seed).eval() for seed in (3, 3, 4))
    s.expect(torch.equal(a(x_BT)[0], b(x_BT)[0]), "the same seed gives different outputs")
    s.expect(not torch.equal(a(x_BT)[0], c(x_BT)[0]), "different seeds give identical outputs")


@torch.no_grad()
def causality(s: Subject) -> None:
    """Outputs at positions < t never depend on the tokens from t on (and later ones do)."""
    model = build_model(s).eval()
    x_BT, _ = batch(T=12)
    cut = 8
    x2_BT = x_BT.clone()
    x2_BT[:, cut:] = (x2_BT[:, cut:] + 5) % VOCAB
    a_BTV, b_BTV = model(x_BT)[0], model(x2_BT)[0]
    diff = (a_BTV[:, :cut] - b_BTV[:, :cut]).abs().max().item()
    s.expect(
        diff <= 1e-5, f"outputs before position {cut} change with later tokens (max {diff:.1e})"
    )
    s.expect(not torch.allclose(a_BTV[:, cut:], b_BTV[:, cut:]), "outputs ignore the input tokens")


def hooks_run(s: Subject) -> None:
    """Two training steps with every hook, then `metrics()` gives finite numbers by name."""
    model = build_model(s)
    opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
    for step in range(2):
        x_BT, y_BT = batch(seed=step)
        _, loss = model(x_BT, y_BT)
        total_loss(model, loss).backward()
        opt.step()
        opt.zero_grad()
        for c in components(model):
            c.after_optimizer_step()
    for mode in (model.train, model.eval):
        mode()
        for c in components(model):
            for k, v in c.metrics().items():
                s.expect(isinstance(k, str), f"{type(c).__name__}.metrics() key {k!r} is no str")
                s.expect(math.isfinite(float(v)), f"{type(c).__name__}.metrics()[{k!r}] = {v}")


@torch.no_grad()
def norm_per_position(s: Subject) -> None:
    """A norm keeps the shape and normalises each position on its own (over the last dim)."""
    dim = TINY_MODEL["dim"]
    torch.manual_seed(0)
    norm = registry.build(s.default_config(), dim)
    x_BTD = torch.randn(2, 5, dim) * 3
    y_BTD = norm(x_BTD)
    s.expect(y_BTD.shape == x_BTD.shape, f"output shape {tuple(y_BTD.shape)} != input's")
    one = norm(x_BTD[1:, 2:3])
    s.expect(
        torch.allclose(one, y_BTD[1:, 2:3], atol=1e-6),
        "a position's output depends on other positions",
    )


def routing_outputs(s: Subject) -> None:
    """(N, D) -> weights (N, X) finite, ids (N, X) integer, in [0, E) and distinct per token."""
    E, X, N = ROUTER_EXPERTS, ROUTER_TOPK, 12
    ctx = BuildContext(tiny_model_config(), 0)
    torch.manual_seed(0)
    router = registry.build(s.default_config(), ctx, E, X)
    x_ND = torch.randn(N, TINY_MODEL["dim"])
    for mode in (router.train, router.eval):
        mode()
        weights_NX, ids_NX = router(x_ND, num_seqs=2)
        where = "train" if router.training else "eval"
        s.expect(
            tuple(weights_NX.shape) == (N, X),
            f"{where}: weights shape {tuple(weights_NX.shape)}, expected {(N, X)}",
        )
        s.expect(
            tuple(ids_NX.shape) == (N, X),
            f"{where}: ids shape {tuple(ids_NX.shape)}, expected {(N, X)}",
        )
        s.expect(
            not ids_NX.is_floating_point(), f"{where}: expert ids are {ids_NX.dtype}, not integers"
        )
        s.expect(bool(weights_NX.isfinite().all()), f"{where}: routing weights are not finite")
        s.expect(
            bool(((ids_NX >= 0) & (ids_NX < E)).all()),
            f"{where}: expert ids outside [0, {E}): {ids_NX.unique().tolist()}",
        )
        distinct = ids_NX.sort(-1).values.diff(dim=-1).ne(0).all()
        s.expect(bool(distinct), f"{where}: a token is routed to the same expert twice")
        for k, v in router.extra_losses().items():
            s.expect(bool(torch.isfinite(v)), f"{where}: extra loss {k!r} is not finite")
