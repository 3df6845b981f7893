"""Trial weights as model.safetensors beside checkpoint.pt, committed in two phases: a crash
between any two writes leaves a checkpoint whose step's weights are still found."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from ablate.core import checkpoint as ck


def model_sd(value: float) -> dict[str, torch.Tensor]:
    lin = nn.Linear(3, 2)
    nn.init.constant_(lin.weight, value)
    return {"w": lin.weight.data, "tied": lin.weight.data, "n": torch.tensor(7)}


def save(path, value: float, step: int) -> None:
    ck.save_state(path, model_sd(value), {"state": {}}, step, "abc")


def read(path) -> dict:
    return ck.read_checkpoint(path, "abc", torch.device("cpu"))


def test_weights_beside_the_checkpoint(tmp_path):
    path = tmp_path / ck.CHECKPOINT
    save(path, 1.5, 4)
    assert "model" not in torch.load(path, weights_only=False)
    assert (tmp_path / ck.WEIGHTS).is_file() and not (tmp_path / (ck.WEIGHTS + ck.PENDING)).exists()
    got = read(path)
    assert got["step"] == 4 and torch.equal(got["model"]["w"], torch.full((2, 3), 1.5))
    assert got["model"]["n"].item() == 7


def test_crash_in_the_first_phase_keeps_the_previous_checkpoint(tmp_path, monkeypatch):
    path = tmp_path / ck.CHECKPOINT
    save(path, 1.0, 1)

    def crash(src, dst):  # every rename (atomic_write's too): the pending weights never land
        raise KeyboardInterrupt

    monkeypatch.setattr(ck.os, "replace", crash)
    with pytest.raises(KeyboardInterrupt):
        save(path, 2.0, 2)
    monkeypatch.undo()
    got = read(path)  # step 1's checkpoint and weights are both intact
    assert got["step"] == 1 and torch.equal(got["model"]["w"], torch.full((2, 3), 1.0))


def test_crash_after_the_checkpoint_finds_the_step_in_the_pending_file(tmp_path, monkeypatch):
    path = tmp_path / ck.CHECKPOINT
    save(path, 1.0, 1)
    real = ck.os.replace

    def replace(src, dst):
        if str(dst).endswith(ck.WEIGHTS):  # the last phase: weights renamed into place
            raise KeyboardInterrupt
        real(src, dst)

    monkeypatch.setattr(ck.os, "replace", replace)
    with pytest.raises(KeyboardInterrupt):
        save(path, 2.0, 2)
    monkeypatch.undo()
    got = read(path)
    assert got["step"] == 2 and torch.equal(got["model"]["w"], torch.full((2, 3), 2.0))


def test_weights_of_another_step_are_refused(tmp_path):
    path = tmp_path / ck.CHECKPOINT
    save(path, 1.0, 1)
    state = torch.load(path, weights_only=False)
    torch.save({**state, "step": 5}, path)
    with pytest.raises(ValueError, match="torn checkpoint"):
        read(path)
