"""Conformance suite: every registered model component must pass these, automatically.

Each component is built from its default config inside a tiny Transformer (routers inside the
first FFN that has a router slot) and checked for shapes, finite loss, gradient flow, seed
determinism, causality, config round-trip and hooks.
"""

from __future__ import annotations

import dataclasses
import math

import pytest
import torch

from ablate import registry
from ablate.core.config import Config, DataConfig, from_dict, to_dict, to_yaml
from ablate.core.model import Transformer
from ablate.interfaces import components
from tests.conftest import tiny_model_config

MODEL_GROUPS = ("attention", "ffn", "norm", "mtp")


def _router_host(router_cfg):
    """Default config of the first FFN with a `router` slot, holding `router_cfg`."""
    for name in registry.names("ffn"):
        cfg_cls = registry.get("ffn", name).Config
        for f in dataclasses.fields(cfg_cls):
            if f.metadata.get("group") == "router":
                return dataclasses.replace(cfg_cls(), **{f.name: router_cfg})
    pytest.skip("no FFN with a router slot is registered")


def _cases():
    cases = [(g, n) for g in MODEL_GROUPS for n in registry.names(g)]
    cases += [("router", n) for n in registry.names("router")]
    return cases


def build(group: str, name: str, seed: int = 0) -> Transformer:
    cfg = registry.get(group, name).Config()
    if group == "router":
        group, cfg = "ffn", _router_host(cfg)
    torch.manual_seed(seed)
    return Transformer(tiny_model_config(**{group: cfg}))


def batch(seed: int = 1, B: int = 2, T: int = 16):
    g = torch.Generator().manual_seed(seed)
    idx = torch.randint(0, 37, (B, T + 1), generator=g)
    return idx[:, :-1], idx[:, 1:]


@pytest.mark.parametrize("group,name", _cases())
class TestConformance:
    def test_shapes_loss_grads(self, group, name):
        model = build(group, name)
        x, y = batch()
        logits, loss = model(x, y)
        assert logits.shape == (*x.shape, 37)
        total = loss + sum(
            (v for c in components(model) for v in c.extra_losses().values()), torch.zeros(())
        )
        assert torch.isfinite(total)
        total.backward()
        missing = [n for n, p in model.named_parameters() if p.grad is None]
        assert not missing, f"no gradient reaches {missing}"
        assert all(torch.isfinite(p.grad).all() for p in model.parameters())

    def test_seed_determinism(self, group, name):
        x, _ = batch()
        a, b = build(group, name, seed=3).eval(), build(group, name, seed=3).eval()
        c = build(group, name, seed=4).eval()
        with torch.no_grad():
            assert torch.equal(a(x)[0], b(x)[0])
            assert not torch.equal(a(x)[0], c(x)[0])

    def test_causal(self, group, name):
        model = build(group, name).eval()
        x, _ = batch(T=12)
        x2 = x.clone()
        x2[:, 8:] = (x2[:, 8:] + 5) % 37
        with torch.no_grad():
            a, b = model(x)[0], model(x2)[0]
        torch.testing.assert_close(a[:, :8], b[:, :8], rtol=1e-5, atol=1e-5)
        assert not torch.allclose(a[:, 8:], b[:, 8:])

    def test_config_round_trip(self, group, name):
        cfg = registry.get(group, name).Config()
        if group == "router":
            group, cfg = "ffn", _router_host(cfg)
        full = Config(model=tiny_model_config(**{group: cfg}), data=DataConfig(seq_len=16))
        again = from_dict(to_dict(full))
        assert again == full
        from omegaconf import OmegaConf

        assert from_dict(OmegaConf.to_container(OmegaConf.create(to_yaml(full)))) == full

    def test_hooks_run(self, group, name):
        model = build(group, name)
        opt = torch.optim.AdamW(model.parameters(), lr=1e-3)
        for _ in range(2):
            x, y = batch()
            _, loss = model(x, y)
            for c in components(model):
                loss = loss + sum(c.extra_losses().values(), torch.zeros(()))
            loss.backward()
            opt.step()
            opt.zero_grad()
            for c in components(model):
                c.after_optimizer_step()
        for c in components(model):
            for k, v in c.metrics().items():
                assert isinstance(k, str) and math.isfinite(float(v)), (k, v)
