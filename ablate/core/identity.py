"""Trial identity: the canonical form of everything that can change a trial's result.

Left out: operational settings, which change what is recorded or when, never a result (the
training loop reads no evaluation, log or checkpoint: there is no early stopping), and
records (`notes`, `tracking`). Normalised: `train.device: auto` becomes the device it resolves
to; an explicit `model.vocab_size` equal to the tokenizer's becomes 0 (taken from the tokenizer).
A `train.init_from` path adds its weights' sha256, a `trial:<id>` reference that id.
`train.compile`, `optimizer_impl` and `tf32` count only where they change what runs.
Added: the fingerprint of the data actually used (`data`: the corpus content hash, the hash of
the token ids, so of the tokenizer's vocabulary, and the vocabulary size) and of out-of-tree
code (`code`). The data fingerprint needs the corpus: it is loaded once per distinct data
config and process.
"""

from __future__ import annotations

import functools
import hashlib
import json
import os
from typing import Any

import torch

# train.distributed: the same global batch over 1 or N ranks, equal to fp32 reduction order, so
# a checkpoint resumes at any world size in the same trial (ablate.core.distributed)
OPERATIONAL = ("train.log_every", "train.eval_every", "train.checkpoint_every", "train.distributed")
# post-training evaluation samples from its own seeded generator: it never changes training
POST_OPERATIONAL = ("log_every", "eval_every", "checkpoint_every")


def _canonical_json(d: Any) -> str:
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


@functools.cache
def _fingerprint(data_json: str, data_dir: str) -> tuple[tuple[str, Any], ...]:
    # data_dir: where datasets look for local copies; part of the key as it picks the file
    from ablate.core.config import from_dict
    from ablate.core.data import load_corpus

    data = json.loads(data_json)
    # A model just long enough for the windows: only the data section is under test here.
    model = {"max_seq_len": max(256, int(data.get("seq_len", 0)))}
    cfg = from_dict({"data": data, "model": model}, "<data fingerprint>").data
    try:
        corpus = load_corpus(cfg)
    except (ValueError, OSError) as e:  # not readable here (a dry run elsewhere): training says so
        return (("unavailable", str(e)), ("vocab_size", None))
    ids_N = torch.cat([corpus.train_N, corpus.val_N]).numpy()
    return (
        ("sha256", corpus.info.get("sha256", "")),
        ("tokens_sha256", hashlib.sha256(ids_N.tobytes()).hexdigest()),
        ("vocab_size", corpus.tokenizer.vocab_size),
    )


def data_fingerprint(data: dict) -> dict[str, Any]:
    """Corpus content hash, token-id hash and vocabulary size of a canonical data config."""
    return dict(_fingerprint(_canonical_json(data), os.environ.get("ABLATE_DATA_DIR", "")))


def resolved_device(name: str) -> str:
    """The device `auto` resolves to on this machine; other names unchanged."""
    if name != "auto":
        return name
    return "cuda" if torch.cuda.is_available() else "cpu"


def identity(d: dict, code: dict[str, str]) -> dict[str, Any]:
    """The identity form of a canonical config dict `d` (a modified copy)."""
    d = json.loads(_canonical_json(d))
    d.pop("tracking", None)
    d.pop("notes", None)
    post = d.pop("post", None)  # kept only when a stage trains: other ids stay as they were
    if post and any(s["name"] != "none" and s.get("steps", 0) > 0 for s in post["stages"]):
        for key in POST_OPERATIONAL:
            post.pop(key, None)
        d["post"] = post
    evals = d.pop("eval", None)  # kept only when it measures something: ids stay as they were
    if evals and evals["weight_quant"]:
        d["eval"] = evals
    for key in OPERATIONAL:
        section, name = key.split(".")
        d[section].pop(name, None)
    d["train"]["device"] = resolved_device(d["train"]["device"])
    d["train"]["threads"] = d["train"]["threads"] or 1
    _runtime_defaults(d["train"])
    init_from = d["train"].pop("init_from", "")  # absent when unset: ids stay as they were
    if init_from.startswith("trial:"):  # another trial's id (ablate.core.stages): its files
        from ablate.core.stages import ref_id  # do not exist before it runs

        d["init_trial"] = ref_id(init_from)
    elif init_from:
        from ablate.interop.convert import weights_fingerprint

        d["init_fingerprint"] = weights_fingerprint(init_from)
    data = data_fingerprint(d["data"])
    if d["model"]["vocab_size"] == data["vocab_size"]:
        d["model"]["vocab_size"] = 0
    d["data_fingerprint"] = data
    if code:
        d["code"] = code
    return d


def _runtime_defaults(train: dict) -> None:
    """Drop `train.compile`, `optimizer_impl` and `tf32` (ablate.core.runtime) at their defaults,
    so trials that leave them unset keep their ids: compile off, the kernels that `auto` picks
    on the resolved device (spelled out or not), TF32 on, or any TF32 on the CPU (a no-op)."""
    from ablate.core.runtime import resolved_impl

    device_type = train["device"].split(":")[0]
    if not train.get("compile", False):
        train.pop("compile", None)
    impl = train.pop("optimizer_impl", "auto")
    if resolved_impl(impl, device_type) != resolved_impl("auto", device_type):
        train["optimizer_impl"] = impl
    if train.pop("tf32", True) is False and device_type == "cuda":
        train["tf32"] = False


def identity_hash(d: dict, code: dict[str, str]) -> str:
    """12-hex id of `identity(d, code)`."""
    return hashlib.sha256(_canonical_json(identity(d, code)).encode()).hexdigest()[:12]


def differing_keys(a: dict, b: dict, prefix: str = "") -> list[str]:
    """Dotted keys whose values differ between two canonical config dicts."""
    out = []
    for key in sorted(set(a) | set(b)):
        va, vb = a.get(key), b.get(key)
        if isinstance(va, dict) and isinstance(vb, dict):
            out += differing_keys(va, vb, f"{prefix}{key}.")
        elif va != vb:
            out.append(prefix + key)
    return out
