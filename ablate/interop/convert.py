"""HF DeepSeek checkpoint directories <-> trial directories, and one loader for all of them.

A trial directory holds `config.yaml` and its weights as `model.safetensors` (harness names;
written by `import_hf`, and beside `checkpoint.pt` by training) or inside `checkpoint.pt`.
An HF directory holds `config.json` and safetensors shards in DeepSeek names; an exported one
also `ablate.json`, the trial's data section, so that a re-import keeps its tokenizer.
"""

from __future__ import annotations

import functools
import hashlib
import json
import warnings
from collections.abc import Sequence
from pathlib import Path

import torch

from ablate.core.config import (
    Config,
    Layers,
    from_layers,
    load_config,
    replace,
    to_dict,
    to_yaml,
)
from ablate.core.fsio import atomic_write_text
from ablate.core.model import Transformer
from ablate.interop import hf_config, hf_config_export, hf_weights, io

HF_CONFIG = "config.json"
WEIGHTS = io.SINGLE  # a trial's weights in harness names
DATA_SIDECAR = "ablate.json"  # an exported trial's data section (tokenizer), read back on import
TRAINING_STATE = ("mtp.num_steps",)  # persistent buffers with no DeepSeek name (not exported)


def read_hf_config(ckpt_dir: Path) -> dict:
    path = ckpt_dir / HF_CONFIG
    if not path.is_file():
        raise ValueError(f"{ckpt_dir}: no {HF_CONFIG} (is this a Hugging Face checkpoint?)")
    return json.loads(path.read_text())


def _dense_module(cfg: Config) -> str:
    """Where the harness keeps a dense SwiGLU: the dense FFN's `mlp`, or MoE's first layers."""
    from ablate import registry

    return "ffn.mlp" if registry.name_of(cfg.model.ffn)[1] == "dense" else "ffn.dense"


def load_hf(
    ckpt_dir: str | Path, overrides: Sequence[str] = (), device: str = "cpu"
) -> tuple[Config, Transformer]:
    """Config and model (eval mode) of an HF DeepSeek checkpoint; FP8 weights dequantized."""
    ckpt_dir = Path(ckpt_dir)
    hf = read_hf_config(ckpt_dir)
    raw = hf_config.to_ablate(hf)
    tensors = io.read_tensors(ckpt_dir)
    block = hf_config.fp8_block(hf)
    tensors = hf_weights.dequantize(tensors, block or hf_weights.DEFAULT_FP8_BLOCK)
    m = raw["model"]
    depth = m["mtp"].get("depth", 0)
    if depth and not any(k.startswith(f"model.layers.{m['num_layers']}.") for k in tensors):
        warnings.warn(
            f"{ckpt_dir}: num_nextn_predict_layers={depth} but no MTP weights; imported "
            "without MTP",
            stacklevel=2,
        )
        m["mtp"], depth = {"name": "none"}, 0
    if (ckpt_dir / DATA_SIDECAR).is_file():  # exported by the harness: its own tokenizer
        raw["data"] = json.loads((ckpt_dir / DATA_SIDECAR).read_text())["data"]
    layers = Layers()
    layers.add(str(ckpt_dir / HF_CONFIG), raw)
    cfg = from_layers(layers, list(overrides))
    sd = hf_weights.to_ablate(tensors, m["num_layers"], depth, _dense_module(cfg))
    if not hf.get("rope_interleave", True):
        a = cfg.model.attention
        hf_weights.interleave_rope(sd, cfg.model.num_heads, a.qk_nope_head_dim, a.qk_rope_head_dim)
    return cfg, _model_with(cfg, sd, device)


def _model_with(cfg: Config, sd: dict, device: str) -> Transformer:
    """A model of `cfg` holding `sd`: a tied head follows the embedding, and persistent
    training buffers absent from `sd` (e.g. MTP's step count) keep their initial values."""
    model = Transformer(cfg.model).to(device)
    own = model.state_dict()
    if cfg.model.tie_embeddings:
        sd.setdefault("head.weight", sd.get("tok_emb.weight"))
    buffers = {name for name, _ in model.named_buffers()}
    for key in own.keys() - sd.keys():
        if key in buffers:
            sd[key] = own[key]
    unknown, missing = sorted(sd.keys() - own.keys()), sorted(own.keys() - sd.keys())
    if unknown or missing:
        raise ValueError(
            f"weights do not fit the model: missing {missing[:5]}, unexpected {unknown[:5]}"
        )
    model.load_state_dict(sd)
    return model.eval()


def import_hf(ckpt_dir: str | Path, out: str | Path, overrides: Sequence[str] = ()) -> Path:
    """Write an HF checkpoint as a trial directory (config.yaml + model.safetensors)."""
    cfg, model = load_hf(ckpt_dir, overrides)
    out = Path(out)
    io.write_tensors(out, model.state_dict())
    atomic_write_text(out / "config.yaml", to_yaml(cfg))
    source = {"imported_from": str(Path(ckpt_dir).resolve()), "overrides": list(overrides)}
    atomic_write_text(out / "import.json", json.dumps(source, indent=2) + "\n")
    return out


def trial_weights(trial: Path) -> dict[str, torch.Tensor]:
    """A trial's model state dict: its last checkpoint's, else an imported `model.safetensors`."""
    from ablate.core.checkpoint import CHECKPOINT, read_checkpoint

    if (trial / CHECKPOINT).is_file():
        ckpt_hash = torch.load(trial / CHECKPOINT, weights_only=False)["config_hash"]
        return read_checkpoint(trial / CHECKPOINT, ckpt_hash, torch.device("cpu"))["model"]
    if (trial / WEIGHTS).is_file():
        return io.read_tensors_file(trial / WEIGHTS)
    raise ValueError(f"{trial}: no {WEIGHTS} or {CHECKPOINT} (is this a trial directory?)")


def load_trial_dir(trial: Path, device: str = "cpu") -> tuple[Config, Transformer]:
    """Config and model (eval mode) of a trial directory, without loading its corpus."""
    cfg = load_config(trial / "config.yaml")
    sd = trial_weights(trial)
    if cfg.model.vocab_size == 0:  # filled from the tokenizer at training time
        vocab = sd["tok_emb.weight"].shape[0]
        cfg = replace(cfg, model=replace(cfg.model, vocab_size=vocab))
    return cfg, _model_with(cfg, dict(sd), device)


def load_model(path: str | Path, device: str = "cpu") -> tuple[Config, Transformer]:
    """Config and model of a trial directory or of an HF DeepSeek checkpoint directory."""
    path = Path(path)
    if (path / "config.yaml").is_file():
        return load_trial_dir(path, device)
    if (path / HF_CONFIG).is_file():
        return load_hf(path, device=device)
    raise ValueError(f"{path}: neither a trial directory (config.yaml) nor an HF checkpoint")


def export_hf(trial_dir: str | Path, out: str | Path) -> Path:
    """Write a trial as an HF DeepSeek checkpoint: config.json + safetensors (fp32)."""
    cfg, model = load_model(trial_dir)
    sd = {k: v for k, v in model.state_dict().items() if k not in TRAINING_STATE}
    dense = _dense_module(cfg)
    dense_w = next((v for k, v in sd.items() if k.endswith(f"{dense}.w13.weight")), None)
    experts_w = next((v for k, v in sd.items() if k.endswith("ffn.w13")), None)
    width = dense_w.shape[0] // 2 if dense_w is not None else 0
    expert_width = experts_w.shape[1] // 2 if experts_w is not None else width
    hf = hf_config_export.from_ablate(cfg.model, width or expert_width, expert_width)
    hf["torch_dtype"] = "float32"
    tensors = hf_weights.to_hf(sd, cfg.model.num_layers, dense)
    if cfg.model.tie_embeddings:
        tensors.pop("lm_head.weight")
    out = Path(out)
    io.write_tensors(out, tensors)
    atomic_write_text(out / HF_CONFIG, json.dumps(hf, indent=2) + "\n")
    sidecar = {"data": to_dict(cfg)["data"], "exported_from": str(Path(trial_dir).resolve())}
    atomic_write_text(out / DATA_SIDECAR, json.dumps(sidecar, indent=2) + "\n")
    return out


def _weight_files(path: Path) -> list[Path]:
    if (path / "config.yaml").is_file():
        from ablate.core.checkpoint import CHECKPOINT

        names = (WEIGHTS, CHECKPOINT, "config.yaml")
        return [path / n for n in names if (path / n).is_file()]
    return [path / HF_CONFIG, *io.shard_files(path)]


def weights_fingerprint(path: str) -> str:
    """sha256 over the files `init_weights(path)` reads (for the trial id of `train.init_from`)."""
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"train.init_from={path}: no such directory")
    digest = hashlib.sha256()
    for file in _weight_files(root):
        stat = file.stat()
        digest.update(
            f"{file.name}:{_file_sha256(str(file), stat.st_mtime_ns, stat.st_size)}".encode()
        )
    return digest.hexdigest()


@functools.cache
def _file_sha256(path: str, mtime_ns: int, size: int) -> str:
    """One file's sha256, computed once per (path, modification time, size) and process."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 24), b""):
            digest.update(chunk)
    return digest.hexdigest()


def init_weights(model: Transformer, path: str) -> None:
    """Load `train.init_from` (a trial directory or an HF checkpoint) into a freshly built model.

    Raises:
        ValueError: no such checkpoint, or its weights do not fit the model's config.
    """
    root = Path(path).expanduser()
    if not root.is_dir():
        raise ValueError(f"train.init_from={path}: no such directory")
    _, source = load_model(root)
    try:
        model.load_state_dict(source.state_dict())
    except RuntimeError as e:
        first = str(e).splitlines()[1] if "\n" in str(e) else str(e)
        raise ValueError(f"train.init_from={path}: weights do not fit model: {first}") from None
