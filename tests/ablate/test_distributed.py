"""One trial over 2 CPU processes (gloo): DDP and FSDP2 equal a single process over the same
global batch to fp32 rounding (losses, weights, routing biases identical on every rank), and a
checkpoint written at one world size resumes at another.

The ranks are started with torch.multiprocessing; each runs `trainer.train` in a process group
it joined itself, then saves its full state for the test to compare.
"""

from __future__ import annotations

import json
import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from ablate.core import distributed, trainer
from ablate.core.checkpoint import read_checkpoint
from ablate.core.config import config_hash, load_config
from ablate.core.trainer import train
from tests.conftest import REPO

TINY = REPO / "sweeps" / "base" / "tiny.yaml"
STEPS = 6
COMMON = [
    "model.dim=32",
    "model.num_layers=2",
    "data.batch_size=4",  # the global batch: 2 windows per rank
    "data.seq_len=32",
    "data.dataset.max_chars=50000",
    "data.eval_windows=8",
    f"train.steps={STEPS}",
    "train.checkpoint_every=3",
    "train.eval_every=3",
    "train.warmup_steps=2",
    "train.log_every=1",
    "train.threads=1",
    "train.grad_accum=2",
]
MOE = [
    "model.ffn.name=moe",
    "model.ffn.num_routed_experts=4",
    "model.ffn.topk=2",
    "model.ffn.router.name=sigmoid_bias",
    "model.ffn.router.update_rate=0.01",
    "model.ffn.router.seq_aux_alpha=0.001",
]
TOL = {"rtol": 1e-4, "atol": 1e-5}


def _rank_main(rank: int, world: int, port: int, jobs: list[tuple[list[str], str, int]]) -> None:
    """One rank: run each (overrides, out dir, stop_after) job, save this rank's state."""
    os.environ.update(
        {"RANK": str(rank), "WORLD_SIZE": str(world), "LOCAL_RANK": str(rank)}
        | {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(port)}
    )
    dist.init_process_group("gloo", rank=rank, world_size=world)
    built = []
    setup = trainer.setup
    trainer.setup = lambda *a, **k: built.append(setup(*a, **k)) or built[-1]
    for overrides, out, stop_after in jobs:
        train(load_config(TINY, COMMON + overrides), out, stop_after=stop_after)
        run = built.pop()
        model_sd, _ = distributed.full_state(run.model, run.opt, run.ranks)
        torch.save(model_sd, Path(out) / f"rank{rank}.pt")
    dist.barrier()  # no rank tears gloo down while another still talks to it
    dist.destroy_process_group()


def _spawn(jobs: list[tuple[list[str], str, int]], world: int = 2) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    mp.spawn(_rank_main, args=(world, port, jobs), nprocs=world, join=True)


def _losses(out: Path) -> list[dict[str, float]]:
    """Per logged row: losses (main, extra terms, validation) and the clipped gradient norm.
    (Train-time MoE load metrics are rank 0's shard, so they are not compared.)"""
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    keep = ("loss", "val_loss", "grad_norm")
    return [{k: v for k, v in r.items() if k in keep or k.startswith("loss/")} for r in rows]


def _weights(out: Path) -> dict[str, torch.Tensor]:
    path = out / "checkpoint.pt"
    cfg_hash = torch.load(path, weights_only=False)["config_hash"]
    return read_checkpoint(path, cfg_hash, torch.device("cpu"))["model"]


def _assert_equal_runs(single: Path, multi: Path) -> None:
    torch.testing.assert_close(_losses(multi), _losses(single), **TOL)
    ref, got = _weights(single), _weights(multi)
    assert ref.keys() == got.keys()
    for k in ref:
        torch.testing.assert_close(got[k], ref[k], **TOL, msg=k)


def _assert_ranks_agree(out: Path, world: int = 2) -> None:
    """Every rank ends with the same full state; routing biases bit-identical."""
    states = [torch.load(out / f"rank{r}.pt", weights_only=False) for r in range(world)]
    for k, v in states[0].items():
        for other in states[1:]:
            if k.endswith("router.bias"):
                assert torch.equal(other[k], v), k
            else:
                torch.testing.assert_close(other[k], v, **TOL)


def _single(overrides: list[str], out: Path) -> Path:
    train(load_config(TINY, COMMON + overrides), out)
    return out


def test_ddp_and_fsdp_moe_equal_single_process(tmp_path):
    """MoE with sigmoid_bias routing: both engines equal one process; biases moved alike."""
    single = _single(MOE, tmp_path / "single")
    ddp, fsdp = tmp_path / "ddp", tmp_path / "fsdp"
    _spawn(
        [
            (MOE + ["train.distributed=ddp"], str(ddp), None),
            (MOE + ["train.distributed=fsdp"], str(fsdp), None),
        ]
    )
    for out in (ddp, fsdp):
        _assert_equal_runs(single, out)
        _assert_ranks_agree(out)
        bias = [v for k, v in _weights(out).items() if k.endswith("router.bias")]
        assert bias and all(b.abs().sum() > 0 for b in bias)  # the bias update ran
        summary = json.loads((out / "summary.json").read_text())
        assert summary["distributed"]["world_size"] == 2
    cfg = load_config(TINY, COMMON + MOE + ["train.distributed=fsdp"])
    assert config_hash(cfg) == config_hash(load_config(TINY, COMMON + MOE))  # operational


@pytest.mark.slow
def test_dense_resume_across_world_sizes(tmp_path):
    """Single-process checkpoint at step 3 -> FSDP over 2 ranks; FSDP's step 3 -> 1 process."""
    single = _single([], tmp_path / "single")
    part = tmp_path / "one_then_two"
    train(load_config(TINY, COMMON), part, stop_after=3)
    two_then_one, ddp = tmp_path / "two_then_one", tmp_path / "ddp"
    _spawn(
        [
            (["train.distributed=fsdp"], str(part), None),
            (["train.distributed=fsdp"], str(two_then_one), 3),
            (["train.distributed=ddp"], str(ddp), None),
        ]
    )
    train(load_config(TINY, COMMON), two_then_one)
    for out in (part, two_then_one, ddp):
        _assert_equal_runs(single, out)
    assert json.loads((part / "summary.json").read_text())["resumed_from"] == 3


def test_world_size_checks(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "2")
    with pytest.raises(ValueError, match="train.distributed=none but WORLD_SIZE=2"):
        distributed.init("none", 4, torch.device("cpu"))
    monkeypatch.setenv("WORLD_SIZE", "3")
    with pytest.raises(ValueError, match=r"data.batch_size=4 .* world size 3"):
        distributed.init("ddp", 4, torch.device("cpu"))


@pytest.mark.parametrize("mode", ["ddp", "fsdp"])
def test_group_of_one_without_torchrun(tmp_path, mode):
    """Plain `python` (no torchrun environment): a process group of one, then closed again."""
    single = _single([], tmp_path / "single")
    one = _single([f"train.distributed={mode}"], tmp_path / mode)
    _assert_equal_runs(single, one)
    assert not dist.is_initialized()
    assert json.loads((one / "summary.json").read_text())["distributed"]["world_size"] == 1
