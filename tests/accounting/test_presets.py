"""Presets: they validate, and `inspect` gives the published sizes of the real models."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from ablate.accounting.inspect import inspect
from ablate.core.config import load_config, to_dict
from tests.conftest import REPO

PRESETS = REPO / "sweeps" / "presets"
# preset -> (total params without MTP, activated per token), as published: V3 README (671B /
# 37B), V2 README (236B / 21B), V2 paper appendix B (V2-Lite 15.7B / 2.4B), GPT-2 (124M).
PUBLISHED = {  # (value, unit of its last published digit)
    "deepseek_v3": ((671e9, 1e9), (37e9, 1e9)),
    "deepseek_v2": ((236e9, 1e9), (21e9, 1e9)),
    "deepseek_v2_lite": ((15.7e9, 0.1e9), (2.4e9, 0.1e9)),
}


def close(value: float, published: tuple[float, float]) -> bool:
    """Within half a unit of the published figure's last digit (it is rounded) plus 1%."""
    figure, unit = published
    return abs(value - figure) <= unit / 2 + 0.01 * figure


@pytest.mark.parametrize("path", sorted(PRESETS.glob("*.yaml")), ids=lambda p: p.stem)
def test_preset_validates_and_round_trips(path):
    cfg = load_config(path)
    assert cfg.model.vocab_size > 0  # inspect needs the real vocabulary
    assert to_dict(load_config(path)) == to_dict(cfg)


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_totals(name):
    r = inspect(load_config(PRESETS / f"{name}.yaml"))
    total, active = PUBLISHED[name]
    assert close(r["params"]["total"], total), r["params"]
    assert close(r["params"]["active"], active), r["params"]


def test_close_is_strict_enough():
    assert close(671.03e9, (671e9, 1e9)) and not close(680e9, (671e9, 1e9))
    lite = PUBLISHED["deepseek_v2_lite"][1]
    assert close(2.451e9, lite) and not close(2.66e9, lite)  # with the embedding: too many


def test_deepseek_v3_numbers():
    r = inspect(load_config(PRESETS / "deepseek_v3.yaml"))
    assert r["kv_cache_bytes_per_token"] == {"bf16": (512 + 64) * 2 * 61, "fp8": (512 + 64) * 61}
    assert r["kv_cache_bytes_per_128k"]["bf16"] == 70_272 * 131_072
    groups = {(g["section"], g["group"]): g for g in r["groups"]}
    routed = groups["main", "ffn.routed_experts"]
    assert routed["params"] == 58 * 256 * 3 * 7168 * 2048  # 58 MoE layers of 256 experts
    assert routed["active"] == routed["params"] * 8 / 256
    assert groups["main", "ffn.dense"]["params"] == 3 * 3 * 7168 * 18432
    assert 11e9 < r["params"]["mtp_total"] < 12e9  # 14B released, with its own emb and head


def test_gpt2_small_ties_the_head():
    r = inspect(load_config(PRESETS / "gpt2_small.yaml"))
    groups = {g["group"]: g for g in r["groups"]}
    assert groups["head"]["params"] == 0 and groups["head"]["active"] == 50257 * 768
    assert r["params"]["total"] == pytest.approx(124e6, rel=0.01)


def test_meta_build_of_v3_allocates_nothing():
    code = (
        "import resource, torch\n"
        "from ablate.core.config import load_config\n"
        "from ablate.accounting.params import build_meta, count_params\n"
        f"cfg = load_config({str(PRESETS / 'deepseek_v3.yaml')!r})\n"
        "before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "model = build_meta(cfg)\n"
        "n = sum(p.numel() for p in model.parameters())\n"
        "after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss\n"
        "print(n, (after - before) * 1024)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    )
    n, grown = map(int, out.stdout.split())
    assert n > 680e9  # 2.7 TB in fp32 had it been allocated
    assert grown < 300e6, f"building V3 on meta grew the peak RSS by {grown / 1e6:.0f} MB"


def test_cli_inspect_json(capsys):
    from ablate.cli import main

    path = str(PRESETS / "deepseek_v2_lite.yaml")
    assert main(["inspect", path, "--json", "model.num_layers=4"]) == 0
    r = json.loads(capsys.readouterr().out)
    assert r["params"]["total"] < 4e9 and r["kv_cache_bytes_per_token"]["bf16"] == 576 * 2 * 4
    assert main(["inspect", path, "model.vocab_size=0"]) == 2  # a clear error, no traceback
