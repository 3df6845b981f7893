"""Plugin fingerprints: an out-of-tree component's module hash joins the trial id."""

from __future__ import annotations

import hashlib
import sys
import textwrap

import pytest

from ablate import registry
from ablate.core.config import code_fingerprints, config_hash, from_dict, load_config
from tests.conftest import REPO

PLUGIN = """
from dataclasses import dataclass
from ablate.registry import register
from components.norm.rmsnorm import RMSNorm

@register("norm", "fp_plugin_rms")
class FingerprintRMS(RMSNorm):
    @dataclass(frozen=True, kw_only=True)
    class Config(RMSNorm.Config):
        pass
"""


@pytest.fixture
def plugin(tmp_path, monkeypatch):
    path = tmp_path / "fp_plugin_norm.py"
    path.write_text(textwrap.dedent(PLUGIN))
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "fp_plugin_norm", raising=False)
    yield path
    registry.unregister("norm", "fp_plugin_rms")


def test_plugin_module_hash_is_part_of_the_id(plugin):
    cfg = from_dict({"plugins": ["fp_plugin_norm"], "model": {"norm": {"name": "fp_plugin_rms"}}})
    digest = hashlib.sha256(plugin.read_bytes()).hexdigest()
    assert code_fingerprints(cfg) == {"norm/fp_plugin_rms": digest}
    before = config_hash(cfg)
    assert config_hash(cfg) == before  # stable while the file is unchanged
    plugin.write_text(plugin.read_text() + "\n# a change to the plugin's code\n")
    assert code_fingerprints(cfg)["norm/fp_plugin_rms"] != digest
    assert config_hash(cfg) != before


def test_plugin_listed_but_unused_adds_nothing(plugin):
    cfg = from_dict({"plugins": ["fp_plugin_norm"]})
    assert code_fingerprints(cfg) == {}


@pytest.mark.parametrize("path", sorted((REPO / "sweeps" / "base").glob("*.yaml")))
def test_shipped_components_have_no_code_entry(path):
    moe = ["model.ffn.name=moe", "model.attention.name=mla", "train.precision.name=bf16"]
    for overrides in ([], moe, ["model.mtp.name=mtp", "data.tokenizer.name=byte"]):
        assert code_fingerprints(load_config(path, overrides)) == {}
