"""Code fingerprints: the file hash of every component that lives outside the source tree.

A trial's summary records the git revision (and diff) of this repository, which covers the
shipped components. A plugin (from `plugins:` or an entry point) lives elsewhere, so its module
file's sha256 joins the trial id instead: editing the plugin's code gives new trial ids.
"""

from __future__ import annotations

import hashlib
import sys
from pathlib import Path
from typing import Any

from ablate import registry
from ablate.core.validate import walk


def _source_dirs() -> tuple[Path, ...]:
    """The engine and shipped-component packages (both under this repository's git tree)."""
    registry.bootstrap()  # imports `components`
    engine = Path(__file__).resolve().parents[1]
    shipped = Path(sys.modules["components"].__file__).resolve().parent
    return engine, shipped


def module_file(cls: type) -> Path | None:
    """The file defining `cls`'s module, or None for a module without one (e.g. `__main__`)."""
    path = getattr(sys.modules.get(cls.__module__), "__file__", None)
    return Path(path).resolve() if path else None


def code_fingerprints(cfg: Any) -> dict[str, str]:
    """`{"group/name": sha256 of its module file}` for each out-of-tree component in `cfg`."""
    dirs = _source_dirs()
    out: dict[str, str] = {}
    for _, node in walk(cfg):
        if not registry.is_config(type(node)):
            continue
        group, name = registry.name_of(node)
        path = module_file(registry.get(group, name))
        if path is None or any(path.is_relative_to(d) for d in dirs):
            continue
        out[f"{group}/{name}"] = hashlib.sha256(path.read_bytes()).hexdigest()
    return dict(sorted(out.items()))
