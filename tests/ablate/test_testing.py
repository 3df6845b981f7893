"""The shipped conformance checks catch broken plugins living outside the repo.

Plugin modules are written to tmp_path (put on sys.path), as a user's own package would be,
and checked through `ablate check ... --plugins MOD` and the pytest plugin.
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import pytest

from ablate import registry
from ablate.cli import main

SWA = '''
"""Sliding-window attention: each query sees its last `window` positions."""
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ablate.interfaces import Attention
from ablate.nn.attention import update_cache
from ablate.nn.rope import apply_rope, rope_table
from ablate.registry import register


@register("attention", "NAME")
class SlidingWindow(Attention):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        window: int = 4  # positions each query sees, itself included

    def __init__(self, cfg, ctx):
        super().__init__()
        m = ctx.model
        self.window, self.num_heads, self.head_dim = cfg.window, m.num_heads, m.dim // m.num_heads
        self.wqkv = nn.Linear(m.dim, 3 * m.dim, bias=False)
        self.wo = nn.Linear(m.dim, m.dim, bias=False)
        rope = rope_table(self.head_dim, m.max_seq_len, m.rope_theta)
        self.register_buffer("rope_TP", rope, persistent=False)

    def forward(self, x_BTD, *, start_pos=0, cache=None):
        B, T, _ = x_BTD.shape
        qkv = self.wqkv(x_BTD).view(B, T, 3, self.num_heads, self.head_dim).unbind(2)
        rot_TP = self.rope_TP[start_pos : start_pos + T]
        q, k, v = apply_rope(qkv[0], rot_TP), apply_rope(qkv[1], rot_TP), qkv[2]
        if cache is not None:
            STORE
        pos_T1 = torch.arange(start_pos, start_pos + T)[:, None]
        key_1S = torch.arange(k.shape[1])[None, :]
        mask_TS = (key_1S <= pos_T1) & (key_1S > pos_T1 - self.window)
        o = F.scaled_dot_product_attention(
            q.transpose(1, 2), k.transpose(1, 2), v.transpose(1, 2), attn_mask=mask_TS
        )
        return self.wo(o.transpose(1, 2).reshape(B, T, -1))

    def new_cache(self, batch_size, max_len, dtype, device="cpu"):
        shape = (batch_size, max_len, self.num_heads, self.head_dim)
        return {"k": torch.zeros(shape, dtype=dtype, device=device),
                "v": torch.zeros(shape, dtype=dtype, device=device)}
'''
STORES = {
    "good": "k, v = update_cache(cache, start_pos, k=k, v=v)",
    # The bug: only v is written; past keys are read back as the zeros the cache started with.
    "bad": "(v,) = update_cache(cache, start_pos, v=v)\n"
    '            k = torch.cat([cache["k"][:B, :start_pos], k], dim=1)',
}

LOSSY_TOKENIZER = """
from dataclasses import dataclass

from ablate.interfaces import Tokenizer
from ablate.registry import register


@register("tokenizer", "zz_lossy")
class Lossy(Tokenizer):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        pass

    @property
    def vocab_size(self):
        return 256

    def encode(self, text):
        return list(text.encode("utf-8"))

    def decode(self, ids):
        return bytes(ids).decode("utf-8").lower()  # the bug: not the inverse of encode
"""


TWO_PATHS = """
import dataclasses
from dataclasses import dataclass

from ablate.registry import register
from zz_paths_bad import SlidingWindow as Bad
from zz_paths_good import SlidingWindow as Good


@register("attention", "zz_paths")
class TwoPaths(Good):
    @dataclass(frozen=True, kw_only=True)
    class Config(Good.Config):
        store_keys: bool = True  # False: decode through the broken cache path

    @classmethod
    def cache_variants(cls, cfg):
        return [dataclasses.replace(cfg, store_keys=False)]

    def __init__(self, cfg, ctx):
        super().__init__(cfg, ctx)
        self.store_keys = cfg.store_keys

    def forward(self, x_BTD, *, start_pos=0, cache=None):
        impl = Good.forward if self.store_keys else Bad.forward
        return impl(self, x_BTD, start_pos=start_pos, cache=cache)
"""


TRACED_NORM = """
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import nn

from ablate.interfaces import Norm
from ablate.registry import register


@register("norm", "zz_traced")
class TracedDiffers(Norm):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        eps: float = 1e-6

    def __init__(self, cfg, dim):
        super().__init__()
        self.eps, self.weight = cfg.eps, nn.Parameter(torch.ones(dim))

    def forward(self, x):
        y = F.rms_norm(x, x.shape[-1:], self.weight, self.eps)
        return y * 1.01 if torch.compiler.is_compiling() else y  # a trace-only change
"""


def write_swa(tmp_path, kind: str, name: str = "") -> str:
    """A sliding-window attention plugin registered as `name` in module `name`."""
    name = name or f"zz_swa_{kind}"
    src = SWA.replace("NAME", name).replace("STORE", STORES[kind])
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(src))
    return name


def run_cli(tmp_path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(tmp_path)}
    return subprocess.run(
        [sys.executable, "-m", "ablate", *args],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_cli_fails_a_cache_that_drops_keys(tmp_path):
    name = write_swa(tmp_path, "bad")
    out = run_cli(tmp_path, "check", f"attention/{name}", "--plugins", name)
    assert out.returncode == 1, out.stdout + out.stderr
    fail = [line for line in out.stdout.splitlines() if line.startswith("FAIL")]
    assert len(fail) == 1, out.stdout
    assert f"attention/{name}::cached_decoding: attention/{name}: cached decoding" in fail[0]
    assert "differs from the full forward at position 1 (max abs diff" in fail[0]
    assert f"ok    attention/{name}::causality" in out.stdout  # the rest of the contract holds


def test_cli_passes_the_correct_plugin(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    name = write_swa(tmp_path, "good")
    try:
        assert main(["check", f"attention/{name}", "--plugins", name]) == 0
        lines = capsys.readouterr().out.splitlines()
        assert lines[-1] == "8 ok, 0 failed, 0 skipped"
        assert all(line.startswith("ok ") for line in lines[:-1])
    finally:
        registry.unregister("attention", name)


def check_plugin(tmp_path, monkeypatch, capsys, module: str, source: str, subject: str):
    """`ablate check SUBJECT --plugins MODULE` with MODULE's `source` on sys.path: (rc, stdout).
    The plugin's registration is removed afterwards."""
    monkeypatch.syspath_prepend(str(tmp_path))
    (tmp_path / f"{module}.py").write_text(source)
    try:
        rc = main(["check", subject, "--plugins", module])
        return rc, capsys.readouterr().out
    finally:
        registry.unregister(*subject.split("/"))


def test_cli_fails_a_tokenizer_whose_decode_is_lossy(tmp_path, monkeypatch, capsys):
    args = ("zz_lossy_tok", LOSSY_TOKENIZER, "tokenizer/zz_lossy")
    rc, out = check_plugin(tmp_path, monkeypatch, capsys, *args)
    assert rc == 1
    assert "ok    tokenizer/zz_lossy::tokenizer_ids" in out
    assert (
        "FAIL  tokenizer/zz_lossy::tokenizer_round_trip: tokenizer/zz_lossy: "
        "decode(encode(text)) != text (first difference at character 30: 'hello" in out
    )


def test_cli_fails_a_broken_alternative_cache_path(tmp_path, monkeypatch, capsys):
    monkeypatch.syspath_prepend(str(tmp_path))
    for kind in ("good", "bad"):
        write_swa(tmp_path, kind, f"zz_paths_{kind}")
    (tmp_path / "zz_paths.py").write_text(TWO_PATHS)
    try:
        assert main(["check", "attention/zz_paths", "--plugins", "zz_paths"]) == 1
        out = capsys.readouterr().out
    finally:
        for name in ("zz_paths", "zz_paths_good", "zz_paths_bad"):
            registry.unregister("attention", name)
    assert "ok    attention/zz_paths::cached_decoding" in out
    assert (
        "FAIL  attention/zz_paths::cache_variants: attention/zz_paths: cache variant "
        "store_keys=False: cached decoding differs from the full forward at position 1" in out
    )


def test_cli_fails_a_norm_that_compiles_differently(tmp_path, monkeypatch, capsys):
    rc, out = check_plugin(
        tmp_path, monkeypatch, capsys, "zz_traced", TRACED_NORM, "norm/zz_traced"
    )
    assert rc == 1
    assert "ok    norm/zz_traced::seed_determinism" in out
    fail = [line for line in out.splitlines() if line.startswith("FAIL")]
    assert len(fail) == 1, out
    want = "norm/zz_traced::compiled_matches_eager: norm/zz_traced: compiled grad "
    assert want in fail[0] and "differs from eager by" in fail[0]


def test_cli_selection_errors_exit_2(capsys):
    assert main(["check", "attention/no_such"]) == 2
    assert "unknown attention 'no_such'" in capsys.readouterr().err
    assert main(["check", "nope"]) == 2


def test_pytest_plugin_runs_the_checks_in_a_plugin_test_suite(tmp_path):
    name = write_swa(tmp_path, "bad")
    (tmp_path / "test_contract.py").write_text(
        "def test_contract(ablate_case):\n    ablate_case.run()\n"
    )
    args = ["--ablate-check", f"attention/{name}", "--ablate-plugins", name]
    out = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", *args],
        env={**os.environ, "PYTHONPATH": str(tmp_path)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 1, out.stdout + out.stderr
    assert f"test_contract[attention/{name}::cached_decoding]" in out.stdout
    assert "1 failed, 7 passed" in out.stdout


@pytest.mark.parametrize(
    "spec,group,pattern",
    [("norm", "norm", "*"), ("router/*", "router", "*"), ("mtp/none", "mtp", "none")],
)
def test_selection_by_group_name_and_glob(spec, group, pattern):
    from ablate.testing import conformance_cases

    subjects = {c.subject.name for c in conformance_cases([spec]) if c.subject.group == group}
    assert sorted(subjects) == registry.names(group, pattern)
    assert all(c.subject.group == group for c in conformance_cases([spec]))
