"""Export: a trained trial written as an HF checkpoint loads in transformers' DeepSeek classes
and gives the harness's logits; export then import gives identical tensors and logits."""

from __future__ import annotations

import json

import pytest
import torch

from ablate.core.config import load_config
from ablate.core.trainer import train
from ablate.interop.convert import export_hf, import_hf, load_model, trial_weights
from tests.conftest import REPO
from tests.interop.hf_helpers import hf_logits, transformers_or_skip

TINY = REPO / "sweeps" / "base" / "tiny.yaml"
TRAIN = [  # a few steps: the routing bias and every weight moved away from initialization
    "data.dataset.max_chars=20000",
    "data.seq_len=32",
    "data.batch_size=4",
    "data.eval_windows=2",
    "train.steps=4",
    "train.warmup_steps=1",
    "train.eval_every=4",
    "train.checkpoint_every=4",
    "train.threads=1",
    "model.max_seq_len=32",
    "model.attention.name=mla",
    "+model.attention.q_lora_rank=24",
    "+model.attention.kv_lora_rank=16",
    "+model.attention.qk_rope_head_dim=8",
    "model.ffn.name=moe",
    "+model.ffn.first_k_dense=1",
    "+model.ffn.num_routed_experts=8",
    "+model.ffn.topk=2",
]
SIGMOID = ["+model.ffn.router.num_groups=2", "+model.ffn.router.topk_groups=1"]
SOFTMAX = ["+model.ffn.router.name=softmax_aux"]
MTP = ["model.mtp.name=mtp"]


@pytest.fixture(scope="module")
def trials(tmp_path_factory):
    """Trained trials: V3-style with MTP (sigmoid router) and V2-style (softmax router)."""
    root = tmp_path_factory.mktemp("trials")
    out = {}
    for name, extra in {"v3": SIGMOID + MTP, "v2": SOFTMAX}.items():
        train(load_config(TINY, TRAIN + extra), root / name)
        out[name] = root / name
    return out


def x_BT() -> torch.Tensor:
    return torch.randint(0, 30, (2, 19), generator=torch.Generator().manual_seed(2))


@pytest.mark.parametrize(
    "name, cls", [("v3", "DeepseekV3ForCausalLM"), ("v2", "DeepseekV2ForCausalLM")]
)
def test_exported_trial_loads_in_transformers_with_our_logits(trials, name, cls, tmp_path):
    tr = transformers_or_skip()
    out = export_hf(trials[name], tmp_path / "hf")
    assert json.loads((out / "config.json").read_text())["architectures"] == [cls]
    hf_model = getattr(tr, cls).from_pretrained(out, torch_dtype=torch.float32).eval()
    _, model = load_model(trials[name])
    with torch.no_grad():
        want, _ = model(x_BT())
    assert (hf_logits(hf_model, x_BT()) - want).abs().max().item() <= 1e-5


@pytest.mark.parametrize("name", ["v3", "v2"])
def test_export_then_import_is_identical(trials, name, tmp_path):
    hf_dir = export_hf(trials[name], tmp_path / "hf")
    back = import_hf(hf_dir, tmp_path / "back")
    before, after = trial_weights(trials[name]), trial_weights(back)
    before.pop("mtp.num_steps", None), after.pop("mtp.num_steps", None)  # training state
    assert before.keys() == after.keys()
    for key, t in before.items():
        assert torch.equal(after[key], t), key
    (_, a), (_, b) = load_model(trials[name]), load_model(back)
    with torch.no_grad():
        assert torch.equal(a(x_BT())[0], b(x_BT())[0])
    if name == "v3":  # the MTP module went out as layer num_layers and came back
        assert any(k.startswith("mtp.depths.0.block.") for k in after)
