"""How a trial runs (ablate.core.runtime): the train.compile / optimizer_impl / tf32 fields, the
AdamW kernels each choice builds, TF32 flags, their place in the trial id, compile's loss."""

from __future__ import annotations

import shutil

import pytest
import torch
from safetensors.torch import load_file

from ablate.core import runtime
from ablate.core.config import ConfigError, config_hash, load_config
from ablate.core.trainer import train
from ablate.core.trial import setup
from tests.ablate.test_trainer import FAST, TINY

SMALL = ["data.dataset.max_chars=50000"]


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("train.compile=yes", "train.compile: expected bool"),
        ("train.optimizer_impl=fast", "train.optimizer_impl: must be one of"),
        ("train.tf32=1", "train.tf32: expected bool"),
    ],
)
def test_bad_values_name_the_key(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(TINY, [override])


@pytest.mark.parametrize(
    ("impl", "fused", "foreach"),
    [("auto", None, True), ("foreach", None, True), ("fused", True, None), ("for", False, False)],
)
def test_optimizer_kernels_follow_optimizer_impl_on_the_cpu(tmp_path, impl, fused, foreach):
    run = setup(load_config(TINY, [*FAST, f"train.optimizer_impl={impl}"]), tmp_path)
    assert type(run.opt) is torch.optim.AdamW
    assert (run.opt.defaults["fused"], run.opt.defaults["foreach"]) == (fused, foreach)
    assert run.runtime["optimizer_impl"] == ("foreach" if impl == "auto" else impl)


def test_auto_picks_fused_on_cuda():
    assert runtime.adamw_kwargs("auto", torch.device("cuda")) == {"fused": True}
    assert runtime.adamw_kwargs("auto", torch.device("cpu")) == {"foreach": True}


def test_an_optimizer_without_the_choice_warns_and_records_what_ran(tmp_path):
    over = [*FAST, "train.precision.name=bf16", "train.precision.moment_dtype=bfloat16"]
    with pytest.warns(UserWarning, match="optimizer_impl=fused skipped"):
        run = setup(load_config(TINY, [*over, "train.optimizer_impl=fused"]), tmp_path)
    assert run.runtime["optimizer_impl"] == "for"


def test_tf32_flags_are_set_per_cuda_trial_and_left_alone_on_the_cpu():
    before = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    try:
        for enabled in (False, True):
            assert runtime.set_tf32(enabled, torch.device("cuda")) is enabled
            assert torch.backends.cuda.matmul.allow_tf32 is enabled
            assert torch.backends.cudnn.allow_tf32 is enabled
        assert runtime.set_tf32(False, torch.device("cpu")) is None
        assert torch.backends.cuda.matmul.allow_tf32 is True  # untouched on the CPU
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = before


@pytest.mark.parametrize(
    ("overrides", "same"),
    [
        (["train.compile=false", "train.optimizer_impl=auto", "train.tf32=true"], True),
        (["train.optimizer_impl=foreach"], True),  # what auto picks on the CPU
        (["train.tf32=false"], True),  # a no-op on the CPU
        (["train.compile=true"], False),
        (["train.optimizer_impl=fused"], False),
        (["train.optimizer_impl=for"], False),
    ],
)
def test_runtime_fields_count_in_the_id_only_where_they_change_what_runs(overrides, same):
    ref = config_hash(load_config(TINY, SMALL))
    assert (config_hash(load_config(TINY, [*SMALL, *overrides])) == ref) is same


def test_tf32_off_is_part_of_a_cuda_trials_id():
    cuda = [*SMALL, "train.device=cuda"]
    ref = config_hash(load_config(TINY, cuda))
    assert config_hash(load_config(TINY, [*cuda, "train.optimizer_impl=fused"])) == ref
    assert config_hash(load_config(TINY, [*cuda, "train.tf32=false"])) != ref


@pytest.mark.slow
@pytest.mark.skipif(
    not (shutil.which("cc") or shutil.which("gcc")), reason="inductor on the CPU needs a C compiler"
)
@pytest.mark.parametrize(
    "arm,rel",
    [
        ([], 1e-4),
        (["model.ffn.name=moe"], 1e-4),  # grouped GEMM: fp32 on the CPU only eagerly
        # FP8Linear eager inside the compiled forward: traced, its quantization went non-finite
        (["train.precision.name=fp8_block", "model.dim=128"], 1e-3),
    ],
    ids=["dense", "moe", "fp8_block"],
)
def test_compiled_training_matches_eager(tmp_path, arm, rel):
    over = [*FAST, "train.steps=8", "train.eval_every=8", *arm]
    eager = train(load_config(TINY, over), tmp_path / "eager")
    torch._dynamo.utils.counters.clear()
    compiled = train(load_config(TINY, [*over, "train.compile=true"]), tmp_path / "compiled")
    assert torch._dynamo.utils.counters["stats"]["unique_graphs"] >= 1  # it did compile
    assert compiled["runtime"]["compile"] is True and eager["runtime"]["compile"] is False
    assert compiled["status"] == "done"
    assert compiled["train_loss"] == pytest.approx(eager["train_loss"], rel=rel)
    assert compiled["val_loss"] == pytest.approx(eager["val_loss"], rel=rel)


def test_foreach_and_loop_adamw_train_bit_for_bit_alike_on_the_cpu(tmp_path):
    # auto picks foreach on the CPU without a new trial id: its results must be the loop's
    over = [*FAST, "train.steps=6", "train.eval_every=6"]
    loop = train(load_config(TINY, [*over, "train.optimizer_impl=for"]), tmp_path / "for")
    multi = train(load_config(TINY, [*over, "train.optimizer_impl=foreach"]), tmp_path / "fe")
    assert (loop["runtime"]["optimizer_impl"], multi["runtime"]["optimizer_impl"]) == (
        "for",
        "foreach",
    )
    assert (multi["train_loss"], multi["val_loss"]) == (loop["train_loss"], loop["val_loss"])
    saved = [load_file(tmp_path / d / "model.safetensors") for d in ("for", "fe")]
    assert saved[0].keys() == saved[1].keys()
    assert all(torch.equal(saved[0][k], saved[1][k]) for k in saved[0])
