"""Harness overhead: 20 steps of `ablate.core.trainer.train` (hooks, logging, one evaluation,
the final checkpoint and summary) against the same 20 steps as a bare PyTorch loop."""

from __future__ import annotations

import itertools
import math

import torch

from ablate.core.config import load_config
from ablate.core.data import train_batch
from ablate.core.trainer import lr_at, train
from ablate.core.trial import build, param_groups
from tests.conftest import REPO

OVERRIDES = [
    "model.dim=64",
    "model.num_layers=2",
    "data.batch_size=8",
    "data.seq_len=64",
    "data.eval_windows=8",
    "train.steps=20",
    "train.eval_every=100000",
    "train.log_every=10",
    "train.checkpoint_every=0",
    "train.threads=1",
]


def _cfg():
    return load_config(REPO / "sweeps" / "base" / "tiny.yaml", OVERRIDES)


def _bare(cfg, corpus, model, batches):
    tc = cfg.train
    opt = torch.optim.AdamW(param_groups(model, tc.weight_decay), lr=tc.lr)
    for step, (x, y) in enumerate(batches, start=1):
        for g in opt.param_groups:
            g["lr"] = lr_at(step, tc)
        _, loss = model(x, y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), tc.grad_clip)
        opt.step()
        opt.zero_grad(set_to_none=True)
    return float(loss.detach())


def test_bare_loop(benchmark):
    cfg = _cfg()
    corpus, model, _ = build(cfg, torch.device("cpu"))
    batches = [train_batch(corpus, cfg.data, cfg.train.seed, s) for s in range(1, 21)]
    loss = benchmark(_bare, cfg, corpus, model, batches)
    assert math.isfinite(loss)


def test_harness(benchmark, tmp_path):
    cfg = _cfg()
    dirs = (tmp_path / str(i) for i in itertools.count())

    def fresh():
        return (cfg, next(dirs)), {"resume": False}

    summary = benchmark.pedantic(train, setup=fresh, rounds=5, warmup_rounds=1)
    assert summary["status"] == "done" and summary["steps"] == 20
