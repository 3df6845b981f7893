"""Data: tokenizers, deterministic split and batches, exact validation windows, datasets."""

from __future__ import annotations

import pytest
import torch

from ablate import registry
from ablate.core.config import DataConfig
from ablate.core.data import Corpus, load_corpus, train_batch, val_batches
from tests.conftest import SHARED


def small(**kw) -> DataConfig:
    return DataConfig(
        dataset=registry.get("dataset", "embedded").Config(max_chars=20000),
        seq_len=16,
        batch_size=4,
        **kw,
    )


@pytest.mark.parametrize("name", ["char", "byte"])
def test_tokenizers_round_trip(name):
    tok = registry.build(registry.get("tokenizer", name).Config())
    text = "Hello, wörld!\n"
    tok.fit(text)
    assert tok.decode(tok.encode(text)) == text
    assert tok.vocab_size == (len(set(text)) if name == "char" else 256)


def test_split_and_batches_are_deterministic():
    a, b = load_corpus(small()), load_corpus(small())
    assert torch.equal(a.val_N, b.val_N) and a.info["sha256"] == b.info["sha256"]
    assert len(a.val_N) == int((len(a.train_N) + len(a.val_N)) * 0.1)
    x1, y1 = train_batch(a, small(), seed=0, step=7)
    x2, y2 = train_batch(b, small(), seed=0, step=7)
    assert torch.equal(x1, x2) and torch.equal(x1[:, 1:], y1[:, :-1])
    assert not torch.equal(x1, train_batch(a, small(), seed=1, step=7)[0])
    assert not torch.equal(x1, train_batch(a, small(), seed=0, step=8)[0])


def test_validation_windows_cover_the_split_exactly():
    cfg = small()
    corpus = load_corpus(cfg)
    ys = torch.cat([y.flatten() for _, y in val_batches(corpus, cfg, batch_size=5)])
    num = (len(corpus.val_N) - 1) // cfg.seq_len
    assert torch.equal(ys, corpus.val_N[1 : num * cfg.seq_len + 1])
    capped = small(eval_windows=3)
    assert sum(x.shape[0] for x, _ in val_batches(corpus, capped)) == 3


def _dataset_config(name: str, tmp_path):
    """A small config of every registered dataset (the shipped ones need no network)."""
    cls = registry.get("dataset", name)
    if name == "embedded":
        return cls.Config(max_chars=20000)
    if name == "text":
        (tmp_path / "c.txt").write_text("".join(f"line {i}: {i * i}\n" for i in range(2000)))
        return cls.Config(path=str(tmp_path / "c.txt"))
    if name == "tinyshakespeare":
        if not (SHARED / "data" / "tinyshakespeare.txt").exists():
            pytest.skip("shared corpus not present")
        return cls.Config(download=False)
    return cls.Config()


@pytest.mark.parametrize("name", registry.names("dataset"))
def test_no_training_window_touches_a_validation_token(name, tmp_path, monkeypatch):
    monkeypatch.setenv("ABLATE_DATA_DIR", str(SHARED / "data"))
    cfg = DataConfig(dataset=_dataset_config(name, tmp_path), seq_len=16, batch_size=8)
    corpus = load_corpus(cfg)
    # the split is a partition of the tokenized text: train its head, val its tail
    dataset, tokenizer = registry.build(cfg.dataset), registry.build(cfg.tokenizer)
    text = dataset.load_text()
    tokenizer.fit(text)
    ids_N = torch.tensor(tokenizer.encode(text))
    n_train = len(ids_N) - int(len(ids_N) * cfg.val_fraction)
    assert torch.equal(corpus.train_N, ids_N[:n_train])
    assert torch.equal(corpus.val_N, ids_N[n_train:])
    # sampled windows, with every token replaced by its position in the text
    pos = Corpus(corpus.tokenizer, torch.arange(n_train), torch.arange(n_train, len(ids_N)))
    batches = [train_batch(pos, cfg, 0, step) for step in range(1, 201)]
    assert all(torch.equal(y_BT, x_BT + 1) for x_BT, y_BT in batches)  # contiguous windows
    seen = torch.cat([y_BT for _, y_BT in batches] + [x_BT for x_BT, _ in batches])
    assert seen.max() < n_train, "a training window reads a validation position"
    assert seen.min() >= 0 and seen.max() > 0.9 * n_train  # and the sampler spans the split
    for x_BT, y_BT in val_batches(pos, cfg):
        assert x_BT.min() >= n_train and torch.equal(y_BT, x_BT + 1)


def test_text_dataset_and_missing_file(tmp_path):
    p = tmp_path / "c.txt"
    p.write_text("abc " * 1000)
    ds = registry.build(registry.get("dataset", "text").Config(path=str(p)))
    assert ds.load_text().startswith("abc")
    with pytest.raises(ValueError, match="no such file"):
        registry.build(registry.get("dataset", "text").Config(path=str(tmp_path / "x"))).load_text()


def test_tinyshakespeare_lookup_and_offline_error(tmp_path, monkeypatch):
    cls = registry.get("dataset", "tinyshakespeare")
    monkeypatch.setenv("ABLATE_DATA_DIR", str(tmp_path / "empty"))
    monkeypatch.setattr("components.dataset.tinyshakespeare.cache_dir", lambda: tmp_path / "c")
    with pytest.raises(ValueError) as e:
        registry.build(cls.Config(download=False)).load_text()
    assert "tinyshakespeare.txt" in str(e.value) and str(tmp_path / "empty") in str(e.value)
    src = SHARED / "data" / "tinyshakespeare.txt"
    if not src.exists():
        pytest.skip("shared corpus not present")
    monkeypatch.setenv("ABLATE_DATA_DIR", str(src.parent))
    ds = registry.build(cls.Config(download=False))
    assert len(ds.load_text()) == 1115394
    assert ds.describe()["sha256"].startswith("86c4e6aa")


def test_truncated_local_tinyshakespeare_is_refused(tmp_path, monkeypatch):
    src = SHARED / "data" / "tinyshakespeare.txt"
    if not src.exists():
        pytest.skip("shared corpus not present")
    (tmp_path / "tinyshakespeare.txt").write_bytes(src.read_bytes()[:600_000])
    monkeypatch.setenv("ABLATE_DATA_DIR", str(tmp_path))
    ds = registry.build(registry.get("dataset", "tinyshakespeare").Config(download=False))
    with pytest.raises(ValueError, match="600,000 bytes.*truncated or edited copy"):
        ds.load_text()
