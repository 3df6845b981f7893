"""`train.init_from`: a trial starts from an imported (or HF) checkpoint's weights; the weights'
content is part of the trial id, and an unset field leaves every id as it was."""

from __future__ import annotations

import torch

from ablate.core.config import config_hash, load_config
from ablate.core.trainer import train
from ablate.core.trial import build
from ablate.interop.convert import import_hf, load_model
from tests.interop.hf_helpers import build_hf, save_hf, tiny_v3

SMALL = [
    "data.dataset.max_chars=20000",
    "data.seq_len=32",
    "data.batch_size=2",
    "data.eval_windows=2",
    "train.steps=2",
    "train.warmup_steps=1",
    "train.eval_every=2",
]


def test_trial_starts_from_the_imported_weights(tmp_path):
    src = save_hf(build_hf("v3", tiny_v3()), tmp_path / "hf")
    imported = import_hf(src, tmp_path / "imported")
    overrides = [*SMALL, f"train.init_from={src}"]  # the HF directory itself
    cfg = load_config(imported / "config.yaml", overrides)
    _, model, _ = build(cfg, torch.device("cpu"))
    _, want = load_model(imported)
    for key, t in want.state_dict().items():
        assert torch.equal(model.state_dict()[key], t), key
    summary = train(cfg, tmp_path / "trial")
    assert summary["status"] == "done"


def test_init_weights_are_part_of_the_trial_id(tmp_path):
    src = save_hf(build_hf("v3", tiny_v3()), tmp_path / "hf")
    imported = import_hf(src, tmp_path / "imported")
    plain = config_hash(load_config(imported / "config.yaml", SMALL))
    start = config_hash(load_config(imported / "config.yaml", [*SMALL, f"train.init_from={src}"]))
    assert plain != start
    save_hf(build_hf("v3", tiny_v3(), seed=1), src)  # other weights at the same path
    again = config_hash(load_config(imported / "config.yaml", [*SMALL, f"train.init_from={src}"]))
    assert again != start
