"""`ablate list` printed from its cache: the same text as built afresh, rebuilt when a source file
changes, bypassed by plugins, and an unreadable cache is ignored."""

from __future__ import annotations

import subprocess
import sys

import pytest

from ablate import cli, listing_cache
from ablate.cli_inspect import _listing
from tests.conftest import REPO


@pytest.fixture()
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    return tmp_path / "cache" / "ablate"


def _list(capsys, *argv) -> str:
    assert cli.main(["list", *argv]) == 0
    return capsys.readouterr().out


def test_cached_listing_equals_the_fresh_one(cache, capsys):
    fresh = _listing(None, "*", [])
    assert "attention:" in fresh and "  mla " in fresh
    assert _list(capsys) == fresh  # builds and writes the cache
    [written] = cache.glob("list-*.txt")
    assert written.read_text() == fresh
    assert _list(capsys) == fresh  # read back
    assert _list(capsys, "attention") == _listing("attention", "*", [])  # its own key
    assert len(list(cache.glob("list-*.txt"))) == 2


def test_cached_listing_imports_no_torch(cache):
    code = (
        "import contextlib, io, sys\n"
        "from ablate.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()):\n"
        "    assert main(['list']) == 0\n"
        "print('torch' in sys.modules)\n"
    )
    env_run = dict(cwd=REPO, capture_output=True, text=True, check=True)
    first = subprocess.run([sys.executable, "-c", code], **env_run).stdout.strip()
    second = subprocess.run([sys.executable, "-c", code], **env_run).stdout.strip()
    assert (first, second) == ("True", "False")


def test_a_changed_source_file_changes_the_key(tmp_path, monkeypatch):
    src = tmp_path / "pkg"
    (src / "sub").mkdir(parents=True)
    (src / "sub" / "m.py").write_text("X = 1  # a field comment\n")
    monkeypatch.setattr(listing_cache, "source_roots", lambda: [src])
    before = listing_cache.key(None, "*")
    assert listing_cache.key(None, "*") == before and listing_cache.key("ffn", "*") != before
    (src / "sub" / "m.py").write_text("X = 1  # a changed field comment\n")
    changed = listing_cache.key(None, "*")
    (src / "n.py").write_text("")
    assert len({before, changed, listing_cache.key(None, "*")}) == 3


def test_plugins_and_installed_entry_points_bypass_the_cache(cache, capsys, monkeypatch):
    assert _list(capsys, "--plugins", "components") == _listing(None, "*", [])
    assert not cache.exists()
    monkeypatch.setattr(listing_cache.importlib.metadata, "entry_points", lambda group: ["ep"])
    assert listing_cache.key(None, "*") is None


def test_a_corrupt_or_unwritable_cache_is_ignored(cache, capsys):
    key = listing_cache.key(None, "*")
    cache.mkdir(parents=True)
    (cache / f"list-{key}.txt").mkdir()  # unreadable as a file; unwritable in its place
    assert _list(capsys) == _listing(None, "*", [])
