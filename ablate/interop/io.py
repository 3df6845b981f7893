"""Safetensors checkpoints in HF layout: one file or shards named by
`model.safetensors.index.json` (`weight_map`: tensor name -> shard file). Local files only."""

from __future__ import annotations

import json
from pathlib import Path

import torch

SINGLE = "model.safetensors"
INDEX = "model.safetensors.index.json"
MAX_SHARD_BYTES = 5 * 2**30  # transformers' default max_shard_size


def shard_files(ckpt_dir: Path) -> list[Path]:
    """The safetensors files of a checkpoint directory: the index's shards, else every file."""
    index = ckpt_dir / INDEX
    if index.is_file():
        names = sorted(set(json.loads(index.read_text())["weight_map"].values()))
        missing = [n for n in names if not (ckpt_dir / n).is_file()]
        if missing:
            raise ValueError(f"{index}: shard(s) {', '.join(missing)} not found")
        return [ckpt_dir / n for n in names]
    files = sorted(ckpt_dir.glob("*.safetensors"))
    if not files:
        raise ValueError(f"{ckpt_dir}: no *.safetensors file")
    return files


def read_tensors_file(path: str | Path) -> dict[str, torch.Tensor]:
    """The tensors of one safetensors file, on the CPU."""
    from safetensors.torch import load_file

    return load_file(path)


def read_tensors(ckpt_dir: str | Path) -> dict[str, torch.Tensor]:
    """Every tensor of a checkpoint directory, on the CPU, in its stored dtype."""
    out: dict[str, torch.Tensor] = {}
    for path in shard_files(Path(ckpt_dir)):
        for key, t in read_tensors_file(path).items():
            if key in out:
                raise ValueError(f"{path}: tensor {key} is also in another shard")
            out[key] = t
    return out


def write_tensors(
    out_dir: str | Path, tensors: dict[str, torch.Tensor], max_shard_bytes: int = MAX_SHARD_BYTES
) -> list[Path]:
    """Write `tensors` as safetensors shards of at most `max_shard_bytes` (one file, no index,
    when they fit); shared storage is copied, as safetensors requires."""
    from safetensors.torch import save_file

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    shards: list[dict[str, torch.Tensor]] = [{}]
    size = 0
    for key in sorted(tensors):
        t = tensors[key].detach().to("cpu").contiguous().clone()
        nbytes = t.numel() * t.element_size()
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append({})
            size = 0
        shards[-1][key] = t
        size += nbytes
    if len(shards) == 1:
        save_file(shards[0], out_dir / SINGLE, metadata={"format": "pt"})
        return [out_dir / SINGLE]
    paths, weight_map = [], {}
    for i, shard in enumerate(shards, 1):
        name = f"model-{i:05d}-of-{len(shards):05d}.safetensors"
        save_file(shard, out_dir / name, metadata={"format": "pt"})
        weight_map.update(dict.fromkeys(shard, name))
        paths.append(out_dir / name)
    total = sum(t.numel() * t.element_size() for t in tensors.values())
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (out_dir / INDEX).write_text(json.dumps(index, indent=2) + "\n")
    return paths
