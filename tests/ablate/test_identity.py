"""Trial identity: operational settings left out, no-op values normalised, the data actually
used fingerprinted, thread count fixed (results independent of --workers)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from ablate.core.config import ConfigError, config_hash, load_config, to_dict
from ablate.core.identity import identity
from ablate.study import launch
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import FAST, TINY, write_sweep

SMALL = ["data.dataset.max_chars=50000"]


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


@pytest.mark.parametrize(
    "override",
    [
        "train.log_every=3",
        "train.eval_every=7",
        "train.checkpoint_every=0",
        "train.device=auto",  # resolves to the CPU here, the default
        "model.vocab_size=0",  # the tokenizer's size, spelled out below
    ],
)
def test_operational_and_no_op_settings_keep_the_trial_id(override):
    vocab = identity(to_dict(load_config(TINY, SMALL)), {})["data_fingerprint"]["vocab_size"]
    if torch.cuda.is_available() and "device" in override:
        pytest.skip("auto resolves to CUDA here")
    ref = config_hash(load_config(TINY, [*SMALL, f"model.vocab_size={vocab}"]))
    assert config_hash(load_config(TINY, [*SMALL, override])) == ref
    assert config_hash(load_config(TINY, [*SMALL, f"model.vocab_size={vocab + 1}"])) != ref


def test_threads_zero_resolves_to_one_at_config_time():
    cfg = load_config(TINY, [*SMALL, "train.threads=0"])
    assert cfg.train.threads == 1  # recorded in config.yaml as the count that runs
    assert config_hash(cfg) == config_hash(load_config(TINY, [*SMALL, "train.threads=1"]))
    assert config_hash(cfg) != config_hash(load_config(TINY, [*SMALL, "train.threads=2"]))


def test_arms_that_differ_only_operationally_are_refused(tmp_path):
    path = write_sweep(tmp_path, arms={"a": {}, "b": {"train.log_every": 2}})
    with pytest.raises(ConfigError, match="differ only in train.log_every") as e:
        load_sweep(path)
    assert "arms.b" in str(e.value) and "not an ablation" in str(e.value)


def test_the_data_used_is_part_of_the_id(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("".join(f"line {i}: {i * i}\n" for i in range(3000)))
    over = ["data.dataset.name=text", f"data.dataset.path={corpus}"]
    before = config_hash(load_config(TINY, over))
    corpus.write_text("".join(f"line {i}: {i * 3}\n" for i in range(3000)))
    other = tmp_path / "d"
    other.mkdir()
    (other / "c.txt").write_text(corpus.read_text())
    # a fresh path (the fingerprint is cached per data config and process) with other content
    assert (
        config_hash(
            load_config(TINY, ["data.dataset.name=text", f"data.dataset.path={other / 'c.txt'}"])
        )
        != before
    )
    byte = config_hash(load_config(TINY, [*over, "data.tokenizer.name=byte"]))
    assert byte != before


def test_moe_trial_is_bit_identical_with_one_and_two_workers(tmp_path, monkeypatch):
    """The thread count is the trial's (`train.threads`), never the machine's or --workers'."""
    overrides = {**FAST, "train.threads": 0}  # as in the shipped studies
    # big enough that 1 and 2 threads round differently
    overrides.update({"model.dim": 128, "data.batch_size": 8, "data.seq_len": 64})
    arm = {
        "model.ffn.name": "moe",
        "model.ffn.num_routed_experts": 8,
        "train.precision.name": "bf16",
    }
    results = []
    for workers in (1, 2):
        run = tmp_path / f"w{workers}"
        run.mkdir()
        monkeypatch.chdir(run)
        sweep = load_sweep(
            write_sweep(run, arms={"moe": arm}, baseline="moe", seeds=(0,), overrides=overrides)
        )
        torch.set_num_threads(2)  # a fresh process's default on 2 cores
        assert launch.run_sweep(sweep, workers=workers) == 0
        trial = Path("runs/t/trials") / sweep.trials[0].trial_id
        rows = [
            json.loads(line) for line in (run / trial / "metrics.jsonl").read_text().splitlines()
        ]
        results.append([(r["step"], r.get("loss"), r.get("val_loss")) for r in rows])
    assert results[0] == results[1]


def test_windows_longer_than_the_default_context_have_an_id():
    # The data fingerprint builds its own config: it must accept any valid seq_len.
    cfg = load_config(TINY, ["model.max_seq_len=1024", "data.seq_len=512"])
    assert config_hash(cfg) != config_hash(load_config(TINY, ["model.max_seq_len=1024"]))
