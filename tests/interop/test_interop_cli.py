"""`ablate import-hf`, `ablate eval` and `ablate generate` on an imported checkpoint."""

from __future__ import annotations

import json
import math

import torch

from ablate.cli import main
from ablate.infer.perplexity import perplexity
from ablate.interop.convert import load_model
from tests.conftest import REPO
from tests.interop.hf_helpers import build_hf, save_hf, tiny_v3


def test_import_eval_generate_export(tmp_path, capsys):
    src = save_hf(build_hf("v3", tiny_v3()), tmp_path / "hf")
    trial = tmp_path / "imported"
    assert (
        main(["import-hf", str(src), "--out", str(trial), "model.attention.cache_impl=naive"]) == 0
    )
    assert {"config.yaml", "model.safetensors"} <= {p.name for p in trial.iterdir()}
    corpus = tmp_path / "corpus.txt"
    corpus.write_text((REPO / "README.md").read_text()[:3000])
    capsys.readouterr()
    for ckpt in (trial, src):  # the imported trial and the HF directory score the same
        assert main(["eval", str(ckpt), "--data", str(corpus), "--seq-len", "48"]) == 0
    first, second = (json.loads(line) for line in capsys.readouterr().out.splitlines())
    assert first["ppl"] == second["ppl"] and first["tokens"] == len(corpus.read_bytes()) - 1
    assert math.isclose(first["ppl"], math.exp(first["loss"]))
    assert main(["generate", str(trial), "--prompt", "The", "--tokens", "12"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("The") and len(out.encode()) > 3
    assert main(["export-hf", str(trial), str(tmp_path / "again")]) == 0
    assert (tmp_path / "again" / "config.json").is_file()


def test_perplexity_scores_every_token_once(tmp_path):
    src = save_hf(build_hf("v3", tiny_v3()), tmp_path / "hf")
    _, model = load_model(src)
    ids = torch.randint(0, 256, (61,), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        logits, _ = model(ids[None, :-1])
    loss = torch.nn.functional.cross_entropy(logits[0], ids[1:]).item()
    result = perplexity(model, ids, 60)  # one window: the full forward's loss
    assert result["tokens"] == 60 and math.isclose(result["loss"], loss, rel_tol=1e-6)
    windows = perplexity(model, ids, 25)  # 3 windows, the last one short
    assert windows["tokens"] == 60 and windows["loss"] != result["loss"]
