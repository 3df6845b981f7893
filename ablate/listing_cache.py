"""A cache of `ablate list`'s text, so that listing the registry does not import torch.

The key hashes everything the listing is built from: the source of the `ablate`,
`components` and `kernels` packages (configs, defaults and field comments live there), the
installed torch version, the entry-point plugins of the `ablate.components` group (whose
sources are outside these packages: with any installed, nothing is cached) and the command's
arguments. A changed file changes the key, so a stale listing cannot be printed; a cache that
cannot be read or written is ignored.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import importlib.util
import os
import sys
from pathlib import Path

PACKAGES = ("ablate", "components", "kernels")
ENTRY_POINT_GROUP = "ablate.components"  # as ablate.registry (not imported: it is cheap, but
# this module must stay import-free of anything that pulls in torch)


def cache_dir() -> Path:
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "ablate"


def source_roots() -> list[Path]:
    """The package directories the listing's text comes from, found without importing them."""
    roots = []
    for name in PACKAGES:
        spec = importlib.util.find_spec(name)
        if spec is None or not spec.submodule_search_locations:
            continue
        roots.extend(Path(p) for p in spec.submodule_search_locations)
    return roots


def key(group: str | None, pattern: str) -> str | None:
    """The cache key of a listing, or None where it must not be cached (plugins installed)."""
    if importlib.metadata.entry_points(group=ENTRY_POINT_GROUP):
        return None
    h = hashlib.sha256(f"{sys.version}\0{group}\0{pattern}\0".encode())
    with contextlib.suppress(importlib.metadata.PackageNotFoundError):
        h.update(importlib.metadata.version("torch").encode())
    for root in source_roots():
        for path in sorted(root.rglob("*.py")):
            h.update(str(path.relative_to(root)).encode() + b"\0" + path.read_bytes() + b"\0")
    return h.hexdigest()[:32]


def read(key: str) -> str | None:
    try:
        return (cache_dir() / f"list-{key}.txt").read_text()
    except OSError:
        return None


def write(key: str, text: str) -> None:
    """Best effort, atomic: a reader sees the whole listing or none."""
    path = cache_dir() / f"list-{key}.txt"
    with contextlib.suppress(OSError):
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(f".{os.getpid()}.tmp")
        tmp.write_text(text)
        os.replace(tmp, path)
