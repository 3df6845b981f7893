"""Preflight: bad corpora and models too large for the machine are refused before any work,
with one message naming the file and the key; `ablate run` then leaves no runs/ or reports/.
"""

from __future__ import annotations

import errno
from pathlib import Path

import pytest
import torch

from ablate import cli
from ablate.core import data as data_mod
from ablate.core import preflight as pf
from ablate.core.config import ConfigError, from_layers, load_layers
from ablate.core.model import Transformer
from ablate.study import launch
from tests.ablate.sweep_helpers import FAST, TINY, write_sweep

GOOD_TEXT = "def f(x):\n    return x + 1\n" * 400  # 11,200 characters, 18 distinct


@pytest.fixture(autouse=True)
def _fresh_cache(monkeypatch):
    torch_threads = torch.get_num_threads()
    pf.check_data.cache_clear()
    monkeypatch.delenv(pf.SKIP_MEMORY_ENV, raising=False)
    yield
    torch.set_num_threads(torch_threads)


def _check(corpus: Path, *overrides: str):
    layers = load_layers(TINY)
    cfg = from_layers(layers, ["data.dataset={name: text, path: " + str(corpus) + "}", *overrides])
    return pf.preflight(cfg, layers)


def _refused(corpus: Path, *overrides: str) -> ConfigError:
    with pytest.raises(ConfigError) as e:
        _check(corpus, *overrides)
    return e.value


def test_good_corpus_passes(tmp_path):
    (tmp_path / "c.txt").write_text(GOOD_TEXT)
    facts = _check(tmp_path / "c.txt")
    assert facts.vocab_size == len(set(GOOD_TEXT))
    assert facts.num_train_tokens + facts.num_val_tokens == len(GOOD_TEXT)


@pytest.mark.parametrize(
    "content, needle",
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"\x00" * 5000, "is one character ('\\x00') repeated 5000 times"),
        (b"a" * 5000, "is one character ('a') repeated 5000 times"),
        (bytes(range(1, 9)) * 1000 + b"some text", "mostly control characters"),
        (b"hello \xff\xfe world" * 100, "not UTF-8 text: byte 0xff at byte offset 6"),
        (GOOD_TEXT[:300].encode(), "too small for seq_len 64"),
    ],
)
def test_bad_corpus_is_refused_naming_file_and_key(tmp_path, content, needle):
    corpus = tmp_path / "c.txt"
    if content is not None:
        corpus.write_bytes(content)
    e = _refused(corpus)
    if "too small" in needle:  # named where seq_len is set
        assert (e.source, e.key) == (str(TINY), "data.seq_len")
    else:
        assert (e.source, e.key) == ("command line", "data.dataset.path")
    assert needle in e.msg and str(corpus) in e.msg


def test_directory_and_unreadable_file(tmp_path, monkeypatch):
    assert "is not a regular file" in _refused(tmp_path).msg
    corpus = tmp_path / "c.txt"
    corpus.write_text(GOOD_TEXT)

    def denied(self):  # permission bits do not apply to root: fail the read itself
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    monkeypatch.setattr(Path, "read_bytes", denied)
    assert "is not readable (Permission denied)" in _refused(corpus).msg


def test_each_distinct_data_config_is_loaded_once(tmp_path, monkeypatch):
    (tmp_path / "c.txt").write_text(GOOD_TEXT)
    calls = []
    real = data_mod.load_corpus
    monkeypatch.setattr(data_mod, "load_corpus", lambda cfg: calls.append(cfg) or real(cfg))
    for lr in (1e-3, 2e-3, 3e-3):  # other train settings: the same data config
        _check(tmp_path / "c.txt", f"train.lr={lr}")
    _check(tmp_path / "c.txt", "data.val_fraction=0.2")
    assert len(calls) == 2


def test_count_params_on_meta_matches_a_real_build():
    cfg = from_layers(load_layers(TINY), ["model.vocab_size=96", "model.ffn.name=moe"])
    assert pf.count_params(cfg.model) == Transformer(cfg.model).num_params()


def test_model_too_large_for_the_machine_is_refused_unless_overridden(monkeypatch):
    layers = load_layers(TINY)
    cfg = from_layers(layers, ["model.dim=65536", "model.num_layers=64"])
    with pytest.raises(ConfigError) as e:
        pf.preflight(cfg, layers)
    assert (e.value.source, e.value.key) == ("command line", "model")
    assert "parameters" in e.value.msg and "GiB available" in e.value.msg
    assert pf.SKIP_MEMORY_ENV in e.value.msg
    monkeypatch.setenv(pf.SKIP_MEMORY_ENV, "1")
    pf.preflight(cfg, layers)  # the user knows better: nothing is allocated here


def test_memory_estimate_against_available_memory(monkeypatch):
    layers = load_layers(TINY)
    cfg = from_layers(layers)
    est = pf.check_memory(cfg, 96)
    assert 0 < est["state"] + est["activations"] < est["available"]
    assert est["state"] == pf.BYTES_PER_PARAM * est["num_params"]
    monkeypatch.setattr(pf, "available_bytes", lambda device: (10_000_000, "test"))
    with pytest.raises(pf.PreflightError, match="has 0.0 GiB available \\(test\\)"):
        pf.check_memory(cfg, 96)


def test_available_bytes_reads_the_machine():
    avail, where = pf.available_bytes("cpu")
    assert avail > 0 and where


def _bad_corpus_sweep(work: Path, arm_path: bool = False) -> Path:
    (work / "nul.txt").write_bytes(b"\x00" * 5000)
    (work / "good.txt").write_text(GOOD_TEXT)
    fast = {k: v for k, v in FAST.items() if k != "data.dataset.max_chars"}
    dataset = {"name": "text", "path": str(work / ("good.txt" if arm_path else "nul.txt"))}
    arms = {"a": {}, "b": {"data.dataset.path": str(work / "nul.txt")} if arm_path else {}}
    if not arm_path:
        arms["b"] = {"model.dim": 64}
    return write_sweep(work, arms=arms, seeds=(0,), overrides={**fast, "data.dataset": dataset})


@pytest.mark.parametrize("dry_run", [False, True])
def test_ablate_run_on_a_bad_corpus_fails_before_any_directory(
    tmp_path, monkeypatch, capsys, dry_run
):
    monkeypatch.chdir(tmp_path)
    sweep = _bad_corpus_sweep(tmp_path)
    monkeypatch.setattr(launch.trainer, "train", lambda *a, **k: pytest.fail("a trial started"))
    assert cli.main(["run", str(sweep), *(["--dry-run"] if dry_run else [])]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "Traceback" not in err
    assert f"error: {sweep}: overrides.data.dataset.path: the corpus" in err
    assert not (tmp_path / "runs").exists() and not (tmp_path / "reports").exists()


def test_arm_with_a_bad_corpus_names_the_arm_key(tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    sweep = _bad_corpus_sweep(tmp_path, arm_path=True)
    assert cli.main(["run", str(sweep), "--dry-run"]) == cli.EXIT_USAGE
    assert f"{sweep}: arms.b.data.dataset.path: the corpus" in capsys.readouterr().err


def test_ablate_train_validates_before_writing_out(tmp_path, capsys):
    (tmp_path / "bin.txt").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 20)
    out = tmp_path / "out"
    args = ["train", str(TINY), "data.dataset.name=text", f"data.dataset.path={tmp_path}/bin.txt"]
    assert cli.main([*args, "--out", str(out)]) == cli.EXIT_USAGE
    err = capsys.readouterr().err
    assert "data.dataset.path" in err and "byte offset 0" in err and "Traceback" not in err
    assert not out.exists()
