"""Checks of the non-model groups: precision transforms, datasets and tokenizers.

Precision: applied to a tiny fp32 model, a forward under `autocast()` and a backward are
finite, its optimizer builds and steps, `summary()` is JSON. Dataset: `load_text()` is a
non-empty str and the same twice, `describe()` is JSON. Tokenizer: after `fit` on a sample,
ids are ints in [0, vocab_size) and `decode` inverts `encode`.
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import torch

from ablate import registry
from ablate.core.model import Transformer
from ablate.testing.configs import SAMPLE_TEXT, sample_config, tiny_model_config
from ablate.testing.contract import CheckSkipped, Subject
from ablate.testing.model_checks import batch


def _json(s: Subject, obj: object, what: str) -> None:
    try:
        json.dumps(obj)
    except (TypeError, ValueError) as e:
        s.fail(f"{what} is not JSON-serialisable ({e})")


def _param_groups(model: torch.nn.Module) -> list[dict]:
    """Matrices with weight decay, the rest without: the trainer's two groups."""
    params = [p for p in model.parameters() if p.requires_grad]
    return [
        {"params": [p for p in params if p.dim() >= 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() < 2], "weight_decay": 0.0},
    ]


def precision_step(s: Subject) -> None:
    """apply() -> forward under autocast() -> scaled backward -> unscale -> optimizer step,
    all finite; metrics() JSON, state_dict() round-trips."""
    torch.manual_seed(0)
    precision = registry.build(s.default_config(), torch.device("cpu"))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # e.g. a transform reporting the layers it skips
        model = precision.apply(Transformer(tiny_model_config()))
    s.expect(isinstance(model, torch.nn.Module), "apply() must return the model")
    opt = precision.build_optimizer(_param_groups(model), lr=1e-2, betas=(0.9, 0.95))
    s.expect(isinstance(opt, torch.optim.Optimizer), "build_optimizer() gave no Optimizer")
    before = [p.detach().clone() for p in model.parameters()]
    x_BT, y_BT = batch()
    with precision.autocast():
        logits_BTV, loss = model(x_BT, y_BT)
    s.expect(logits_BTV.shape[:2] == x_BT.shape, f"logits shape {tuple(logits_BTV.shape)}")
    s.expect(bool(torch.isfinite(loss)), f"loss under autocast() is not finite ({loss.item()})")
    precision.scale_loss(loss).backward()
    s.expect(not precision.unscale_grads(model), "unscale_grads() reports an overflow")
    precision.update(False)
    bad = [
        n for n, p in model.named_parameters() if p.grad is not None and not p.grad.isfinite().all()
    ]
    s.expect(not bad, f"non-finite gradients in {bad}")
    opt.step()
    after = list(model.parameters())
    s.expect(all(p.isfinite().all() for p in after), "parameters are not finite after a step")
    s.expect(
        any(not torch.equal(a, b) for a, b in zip(before, after)),
        "an optimizer step changed no parameter",
    )
    _json(s, precision.summary(), "summary()")
    _json(s, precision.metrics(), "metrics()")
    state = precision.state_dict()
    precision.load_state_dict(state)
    s.expect(precision.state_dict() == state, "load_state_dict(state_dict()) changed the state")


def dataset_text(s: Subject) -> None:
    """load_text() is a non-empty str, the same from two instances; describe() is JSON."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = sample_config(s, Path(tmp))
        texts, described = [], []
        for _ in range(2):
            dataset = registry.build(cfg)
            try:
                texts.append(dataset.load_text())
            except ValueError as e:
                if getattr(cfg, "download", True) is False:
                    raise CheckSkipped(f"no local copy (checks never download): {e}") from None
                raise
            described.append(dataset.describe())
    s.expect(isinstance(texts[0], str), f"load_text() gave a {type(texts[0]).__name__}, not str")
    s.expect(len(texts[0]) > 0, "load_text() gave an empty corpus")
    s.expect(texts[0] == texts[1], "load_text() differs between two instances of one config")
    s.expect(isinstance(described[0], dict), "describe() must return a dict")
    _json(s, described[0], "describe()")


def _fitted(s: Subject):
    tokenizer = registry.build(s.default_config())
    tokenizer.fit(SAMPLE_TEXT)
    return tokenizer


def tokenizer_ids(s: Subject) -> None:
    """After fit, encode gives ints in [0, vocab_size), the same from two fitted instances."""
    tokenizer = _fitted(s)
    vocab = tokenizer.vocab_size
    s.expect(isinstance(vocab, int) and vocab > 0, f"vocab_size={vocab!r} is no positive int")
    ids = tokenizer.encode(SAMPLE_TEXT)
    s.expect(isinstance(ids, list) and len(ids) > 0, "encode() gave no list of ids")
    s.expect(all(type(i) is int for i in ids), "encode() ids are not all Python ints")
    out = sorted({i for i in ids if not 0 <= i < vocab})
    s.expect(not out, f"ids outside [0, vocab_size={vocab}): {out[:5]}")
    s.expect(_fitted(s).encode(SAMPLE_TEXT) == ids, "two fits of one text encode differently")


def tokenizer_round_trip(s: Subject) -> None:
    """decode(encode(text)) == text for the fitted text and for a part of it."""
    tokenizer = _fitted(s)
    for text in (SAMPLE_TEXT, SAMPLE_TEXT[3:40]):
        back = tokenizer.decode(tokenizer.encode(text))
        if back != text:
            at = next((i for i, (a, b) in enumerate(zip(back, text)) if a != b), len(back))
            s.fail(
                f"decode(encode(text)) != text (first difference at character {at}: "
                f"{back[at : at + 10]!r} vs {text[at : at + 10]!r})"
            )
