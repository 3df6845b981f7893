"""Trial references (`ablate.core.stages`): `train.init_from: trial:<id>` loads a sibling
trial's final weights, records what it loaded, and enters the id as the parent's id."""

from __future__ import annotations

import json

import pytest
import torch

from ablate.core import stages
from ablate.core.config import config_hash, load_config
from ablate.core.trainer import train
from ablate.core.trial import build
from tests.ablate.sweep_helpers import FAST, TINY

SMALL = [f"{k}={v}" for k, v in FAST.items()] + ["train.steps=3", "train.eval_every=3"]


def _parent(tmp_path):
    cfg = load_config(TINY, SMALL)
    out = tmp_path / "trials" / config_hash(cfg)
    assert train(cfg, out)["status"] == "done"
    return cfg, out


def test_reference_loads_the_parents_final_weights_and_records_them(tmp_path):
    parent_cfg, parent_dir = _parent(tmp_path)
    ref = stages.make_ref(config_hash(parent_cfg))
    child_cfg = load_config(TINY, [*SMALL, f"train.init_from={ref}", "train.lr=1e-4"])
    child_dir = tmp_path / "trials" / config_hash(child_cfg)
    _, model, _ = build(child_cfg, torch.device("cpu"), child_dir)
    want = stages.final_weights(parent_dir)
    for key, t in model.state_dict().items():
        assert torch.equal(t, want[key]), key
    record = json.loads((child_dir / stages.RECORD).read_text())
    assert record["trial_id"] == config_hash(parent_cfg)
    assert record["sha256"] == stages.weights_sha256(parent_dir)
    assert record["weights"] == "train"
    summary = train(child_cfg, child_dir)
    assert summary["status"] == "done"
    assert summary["init_from"] == record
    # a fresh init of the same config would be another model: the weights really came across
    _, fresh, _ = build(load_config(TINY, SMALL), torch.device("cpu"))
    assert not torch.equal(fresh.state_dict()["tok_emb.weight"], want["tok_emb.weight"])


def test_reference_is_part_of_the_id_without_any_files():
    plain = config_hash(load_config(TINY, SMALL))
    a = config_hash(load_config(TINY, [*SMALL, "train.init_from=trial:" + "a" * 12]))
    b = config_hash(load_config(TINY, [*SMALL, "train.init_from=trial:" + "b" * 12]))
    assert len({plain, a, b}) == 3


def test_unfinished_missing_or_malformed_references_are_value_errors(tmp_path):
    trial_dir = tmp_path / "trials" / ("c" * 12)
    with pytest.raises(ValueError, match=r"train.init_from=trial:a{12}: trial a{12} has not"):
        stages.resolve_dir("trial:" + "a" * 12, trial_dir)
    with pytest.raises(ValueError, match="12-hex trial id"):
        stages.resolve_dir("trial:abc", trial_dir)
    diverged = tmp_path / "trials" / ("d" * 12)
    diverged.mkdir(parents=True)
    (diverged / "summary.json").write_text(json.dumps({"status": "diverged"}))
    with pytest.raises(ValueError, match="ended 'diverged'"):
        stages.resolve_dir("trial:" + "d" * 12, trial_dir, key="distill.teacher")
    assert stages.resolve_dir(str(diverged), trial_dir) == diverged  # a plain path: unchanged
    cfg = load_config(TINY, [*SMALL, "train.init_from=trial:" + "a" * 12])
    with pytest.raises(ValueError, match="has not finished"):
        train(cfg, trial_dir)


def test_weights_that_do_not_fit_name_the_key(tmp_path):
    parent_cfg, _ = _parent(tmp_path)
    ref = stages.make_ref(config_hash(parent_cfg))
    wider = load_config(TINY, [*SMALL, "model.dim=48", f"train.init_from={ref}"])
    with pytest.raises(ValueError, match=r"train.init_from=trial:.*do not fit the model"):
        build(wider, torch.device("cpu"), tmp_path / "trials" / "x")


def test_a_teacher_reference_loads_the_referenced_trial(tmp_path):
    from types import SimpleNamespace

    from ablate.core.data import load_corpus
    from ablate.posttrain.pool import load_sampler

    parent_cfg, parent_dir = _parent(tmp_path)
    ref = stages.make_ref(config_hash(parent_cfg))
    tokenizer = load_corpus(parent_cfg.data).tokenizer
    ctx = SimpleNamespace(device=torch.device("cpu"), tokenizer=tokenizer, trial_dir=None)
    with pytest.raises(ValueError, match="needs the student's trial directory"):
        load_sampler(ref, ctx)
    ctx.trial_dir = tmp_path / "trials" / ("e" * 12)
    teacher = load_sampler(ref, ctx)
    want = stages.final_weights(parent_dir)
    assert all(torch.equal(t, want[k]) for k, t in teacher.state_dict().items())
