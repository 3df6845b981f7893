"""Registry: registration rules, listing, CLI listing, lazy imports."""

from __future__ import annotations

import subprocess
import sys
from dataclasses import dataclass

import pytest

from ablate import registry
from ablate.interfaces import FFN
from tests.conftest import REPO


def make(config_frozen=True, base=FFN):
    class Thing(base):
        @dataclass(frozen=config_frozen, kw_only=True)
        class Config:
            width: int = 3  # a field

        def forward(self, x):
            return x

    return Thing


def test_register_list_and_duplicate_fails_loudly():
    registry.register("ffn", "zz_test")(make())
    try:
        assert "zz_test" in registry.names("ffn")
        assert registry.names("ffn", "zz_*") == ["zz_test"]
        with pytest.raises(ValueError, match="duplicate registration ffn/zz_test"):
            registry.register("ffn", "zz_test")(make())
    finally:
        registry.unregister("ffn", "zz_test")
    assert "zz_test" not in registry.names("ffn")


@pytest.mark.parametrize(
    "group,name,cls,err",
    [
        ("nope", "x", None, "unknown component group"),
        ("ffn", "Bad-Name", None, "snake_case"),
        ("ffn", "zz_frozen", make(config_frozen=False), "frozen"),
        ("attention", "zz_base", make(), "must subclass Attention"),
    ],
)
def test_bad_registrations(group, name, cls, err):
    with pytest.raises((ValueError, TypeError), match=err):
        registry.register(group, name)(cls or make())


def test_missing_config_is_rejected():
    class NoConfig(FFN):
        def forward(self, x):
            return x

    with pytest.raises(TypeError, match="nested `Config`"):
        registry.register("ffn", "zz_noconfig")(NoConfig)


def test_unknown_name_suggests_close_matches():
    with pytest.raises(ValueError, match="did you mean dense"):
        registry.get("ffn", "dens")


def test_cli_list_prints_fields_and_defaults():
    out = subprocess.run(
        [sys.executable, "-m", "ablate", "list"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    for group in registry.GROUPS:
        assert f"{group}:" in out
    assert "mha" in out and "head_dim=0" in out and "rmsnorm" in out and "eps=1e-06" in out


def test_import_is_light():
    code = (
        "import sys, ablate, ablate.cli, ablate.core.config, ablate.registry; "
        "bad = [m for m in ('wandb', 'optuna', 'matplotlib', 'torch') if m in sys.modules]; "
        "print(bad)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == "[]"
