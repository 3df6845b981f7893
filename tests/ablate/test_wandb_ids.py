"""W&B run ids: one trial in two sweep directories gets two runs, a resumed trial keeps its run,
a moved directory keeps its token and a copy gets a new one; ids follow W&B's rules. Offline."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import torch
import wandb

from ablate.study import launch, wandb_ids
from ablate.study.ledger import Ledger
from ablate.study.sweep import load_sweep
from tests.ablate.sweep_helpers import write_sweep

ID_RULE = re.compile(r"[a-z0-9_-]{1,64}")


@pytest.fixture(autouse=True)
def _keep_torch_threads():
    threads = torch.get_num_threads()
    yield
    torch.set_num_threads(threads)


def _token(sweep_dir) -> str:
    ledger = Ledger(sweep_dir / "ledger.sqlite")
    try:
        return wandb_ids.sweep_token(ledger)
    finally:
        ledger.close()


def _offline_run_ids(sweep_dir) -> dict[str, list[str]]:
    """Trial id -> the run ids of the offline W&B runs in its directory."""
    return {
        trial.name: ["-".join(p.name.rsplit("-", 2)[1:]) for p in runs]  # `<trial id>-<token>`
        for trial in (sweep_dir / "trials").iterdir()
        if (runs := sorted((trial / "wandb").glob("offline-run-*")))
    }


def test_run_id_follows_wandb_rules():
    assert wandb_ids.run_id("0123456789ab", "deadbeef") == "0123456789ab-deadbeef"
    long = wandb_ids.run_id("X" * 80 + "/y", "deadbeef")
    assert ID_RULE.fullmatch(long) and long.endswith("-deadbeef") and len(long) == 64
    assert ID_RULE.fullmatch(wandb_ids.run_id("Arm.Seed 1", "Tok"))


def test_same_trial_in_two_sweep_dirs_gets_two_runs(tmp_path, monkeypatch):
    path = write_sweep(tmp_path, arms={"a": {}}, seeds=(0,), steps=2, tracking="offline")
    for where in ("one", "two"):
        (tmp_path / where).mkdir()
        monkeypatch.chdir(tmp_path / where)
        assert launch.run_sweep(load_sweep(path)) == 0
    one, two = (_offline_run_ids(tmp_path / w / "runs" / "t") for w in ("one", "two"))
    assert one.keys() == two.keys() and len(one) == 1  # the same trial id in both
    [trial_id] = one
    [id_one], [id_two] = one[trial_id], two[trial_id]
    assert id_one != id_two
    for where, rid in (("one", id_one), ("two", id_two)):
        sweep_dir = tmp_path / where / "runs" / "t"
        assert rid == wandb_ids.run_id(trial_id, _token(sweep_dir))
        assert ID_RULE.fullmatch(rid)
        # the run's data is there too (a relative run dir resolved in the W&B service's own
        # working directory, the first test's, lost it)
        assert list((sweep_dir / "trials" / trial_id / "wandb").glob(f"*-{rid}/run-{rid}.wandb"))


def test_resumed_trial_continues_its_own_run(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    sweep = load_sweep(write_sweep(tmp_path, arms={"a": {}}, seeds=(0,), tracking="offline"))
    ids, real_init, real_train = [], wandb.init, launch.trainer.train

    def init(**kwargs):
        ids.append(kwargs["id"])
        return real_init(**kwargs)

    def train(cfg, out, **kwargs):  # Ctrl-C stops the first attempt at its last logged step
        def ctrl_c(record):
            if record.get("step") == 10 and "loss" in record:
                raise KeyboardInterrupt

        extra = [ctrl_c] if len(ids) < 1 else []
        return real_train(cfg, out, **kwargs | {"callbacks": [*kwargs["callbacks"], *extra]})

    monkeypatch.setattr(wandb, "init", init)
    monkeypatch.setattr(launch.trainer, "train", train)
    with pytest.raises(KeyboardInterrupt):
        launch.run_sweep(sweep)
    wandb.teardown()  # the Ctrl-C ends the process and its W&B service
    assert launch.run_sweep(sweep) == 0
    [row] = Ledger(sweep.run_dir / "ledger.sqlite", readonly=True).rows()
    assert row["state"] == "done"  # a Ctrl-C gives the trial back: not a failed attempt
    summary = json.loads((sweep.run_dir / "trials" / row["trial_id"] / "summary.json").read_text())
    assert summary["resumed_from"] == 5  # from the checkpoint of the first attempt
    rid = wandb_ids.run_id(row["trial_id"], _token(sweep.run_dir))
    assert ids == [rid, rid]
    assert _offline_run_ids(sweep.run_dir) == {row["trial_id"]: [rid]}  # one run, replayed


def test_moved_dir_keeps_its_token_and_a_copy_gets_a_new_one(tmp_path):
    original = tmp_path / "runs" / "t"
    Ledger(original / "ledger.sqlite").close()
    token = _token(original)
    assert _token(original) == token  # a later run of the same directory
    copy = tmp_path / "copy" / "t"
    shutil.copytree(original, copy)
    with pytest.warns(UserWarning, match="copy of the sweep"):
        copied = _token(copy)
    assert copied != token and _token(copy) == copied and _token(original) == token
    moved = tmp_path / "moved" / "t"
    shutil.move(original, moved)
    assert _token(moved) == token  # its old path is gone: a move, not a copy
