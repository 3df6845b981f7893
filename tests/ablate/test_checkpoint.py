"""Checkpoints: the round trip restores weights, optimizer and RNGs; the log is cut on resume."""

from __future__ import annotations

import json
import random

import pytest
import torch

from ablate.core.checkpoint import load_checkpoint, save_checkpoint, truncate_metrics


def _model_and_opt(seed: int) -> tuple[torch.nn.Module, torch.optim.Optimizer]:
    torch.manual_seed(seed)
    model = torch.nn.Linear(4, 3)
    opt = torch.optim.AdamW(model.parameters(), lr=0.1)
    model(torch.randn(2, 4)).sum().backward()
    opt.step()
    return model, opt


def test_round_trip_restores_state_and_random_streams(tmp_path):
    model, opt = _model_and_opt(0)
    save_checkpoint(tmp_path / "c.pt", model, opt, 7, "abc")
    want = (torch.rand(3), random.random())  # what the saved run draws next
    other, other_opt = _model_and_opt(1)
    step = load_checkpoint(tmp_path / "c.pt", other, other_opt, "abc", torch.device("cpu"))
    assert step == 7
    assert torch.equal(other.weight, model.weight)
    assert other_opt.state_dict()["state"][0]["step"] == opt.state_dict()["state"][0]["step"]
    got = (torch.rand(3), random.random())
    assert torch.equal(got[0], want[0]) and got[1] == want[1]
    assert not (tmp_path / "c.pt.tmp").exists()
    with pytest.raises(ValueError, match="belongs to config abc"):
        load_checkpoint(tmp_path / "c.pt", other, other_opt, "xyz", torch.device("cpu"))


def test_truncate_metrics_keeps_records_up_to_the_step(tmp_path):
    path = tmp_path / "metrics.jsonl"
    assert truncate_metrics(path, 3) == []
    records = [{"step": s, "loss": float(s)} for s in range(1, 6)]
    path.write_text("".join(json.dumps(r) + "\n" for r in records) + "\n")
    assert truncate_metrics(path, 3) == records[:3]
    assert [json.loads(line) for line in path.read_text().splitlines()] == records[:3]
