"""Any local UTF-8 text file as a corpus."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from ablate.interfaces import Dataset
from ablate.registry import register


@register("dataset", "text")
class Text(Dataset):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        path: str = ""  # the file to read

        def check(self, root) -> None:
            if not self.path:
                raise ValueError("path is required for the text dataset")

    def load_text(self) -> str:
        path = Path(self.cfg.path).expanduser()
        if not path.is_file():
            raise ValueError(f"data.dataset.path: no such file {path}")
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError as e:
            raise ValueError(f"data.dataset.path: {path} is not UTF-8 text ({e})") from None
        self.sha256 = hashlib.sha256(text.encode()).hexdigest()
        return text

    def describe(self) -> dict:
        return {
            "source": str(Path(self.cfg.path).expanduser().resolve()),
            "sha256": getattr(self, "sha256", ""),
        }
