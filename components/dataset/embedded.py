"""Embedded default corpus: the Python standard library's own top-level modules.

Exists on every machine that runs the tool, needs no download. Files are read in sorted name
order (private `_*.py` modules skipped) and cut at `max_chars`; the fingerprint (sha256 and the
Python version) is recorded because another Python version ships other sources.
"""

from __future__ import annotations

import hashlib
import os
import sys
from dataclasses import dataclass
from pathlib import Path

from ablate.interfaces import Dataset
from ablate.registry import register


@register("dataset", "embedded")
class Embedded(Dataset):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        max_chars: int = 1_000_000  # corpus size cap, in characters

        def check(self, root) -> None:
            if self.max_chars < 10_000:
                raise ValueError("max_chars must be at least 10000")

    def load_text(self) -> str:
        self.root = Path(os.__file__).parent
        parts, size = [], 0
        for path in sorted(self.root.glob("*.py")):
            if path.name.startswith("_"):
                continue
            text = path.read_text(encoding="utf-8", errors="replace")
            parts.append(text)
            size += len(text)
            if size >= self.cfg.max_chars:
                break
        text = "".join(parts)[: self.cfg.max_chars]
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()
        return text

    def describe(self) -> dict:
        return {
            "source": str(self.root),
            "python": sys.version.split()[0],
            "sha256": getattr(self, "sha256", ""),
        }
