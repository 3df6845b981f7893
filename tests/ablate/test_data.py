"""Data: tokenizers, deterministic split and batches, exact validation windows, datasets."""

from __future__ import annotations

import pytest
import torch

from ablate import registry
from ablate.core.config import DataConfig
from ablate.core.data import IGNORE, Corpus, load_corpus, train_batch, val_batches
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


@pytest.mark.parametrize("stride", [0, 5, 16])
def test_validation_scores_every_held_out_token_once(stride):
    cfg = small(eval_stride=stride)
    corpus = load_corpus(cfg)
    scored, inputs = [], []
    for x_BT, y_BT in val_batches(corpus, cfg, batch_size=5):
        keep = y_BT != IGNORE
        scored.append(y_BT[keep])
        inputs.append(x_BT[keep])
    # every validation token exactly once (the first of each chunk and the tail included)
    assert torch.equal(torch.cat(scored), corpus.val_N)
    before = torch.cat([corpus.ids_N[lo - 1 : hi - 1] for lo, hi in corpus.val_spans])
    assert torch.equal(torch.cat(inputs), before)  # each predicted from the token before it
    capped = small(eval_windows=3)
    assert sum(x.shape[0] for x, _ in val_batches(corpus, capped)) == 3


def test_sliding_windows_give_full_context():
    cfg = small(eval_stride=4)
    for _, y_BT in val_batches(load_corpus(cfg), cfg):
        for y_T in y_BT:
            first = int((y_T != IGNORE).nonzero()[0])
            assert first == 0 or first >= cfg.seq_len - 4  # context: the window before


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
    # the split is a partition of the tokenized text: chunks spread over it, in order
    dataset, tokenizer = registry.build(cfg.dataset), registry.build(cfg.tokenizer)
    text = dataset.load_text()
    tokenizer.fit(text)
    ids_N = torch.tensor(tokenizer.encode(text))
    assert torch.equal(corpus.ids_N, ids_N)
    spans = sorted(corpus.train_spans + corpus.val_spans)
    assert spans[0][0] == 0 and spans[-1][1] == len(ids_N)
    assert all(a[1] == b[0] for a, b in zip(spans, spans[1:]))
    assert len(corpus.val_spans) == cfg.val_chunks
    assert corpus.val_spans[0][1] < len(ids_N) / 2  # not only the tail
    assert len(corpus.val_N) == int(len(ids_N) * cfg.val_fraction)
    is_val = torch.zeros(len(ids_N), dtype=torch.bool)
    for lo, hi in corpus.val_spans:
        is_val[lo:hi] = True
    # sampled windows, with every token replaced by its position in the text
    pos = Corpus(corpus.tokenizer, corpus.train_N, corpus.val_N, {}, torch.arange(len(ids_N)))
    pos.train_spans, pos.val_spans = corpus.train_spans, corpus.val_spans
    batches = [train_batch(pos, cfg, 0, step) for step in range(1, 401)]
    assert all(torch.equal(y_BT, x_BT + 1) for x_BT, y_BT in batches)  # contiguous windows
    seen = torch.cat([y_BT for _, y_BT in batches] + [x_BT for x_BT, _ in batches])
    assert not is_val[seen].any(), "a training window reads a validation position"
    last = corpus.train_spans[-1][1] - 1
    assert seen.min() >= 0 and seen.max() > 0.9 * last  # and the sampler spans the split
    for _, y_BT in val_batches(pos, cfg):
        assert is_val[y_BT[y_BT != IGNORE]].all()


def test_the_last_training_token_can_be_sampled():
    ids_N = torch.arange(40)
    corpus = Corpus(None, ids_N[:20], ids_N[20:])  # one segment of 20 tokens
    cfg = DataConfig(seq_len=16, batch_size=64)
    ends = torch.cat([train_batch(corpus, cfg, 0, s)[1][:, -1] for s in range(20)])
    assert set(ends.tolist()) == {16, 17, 18, 19}  # every start 0..3, the last token 19


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
