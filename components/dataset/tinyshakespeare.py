"""Tiny Shakespeare (Karpathy's char-rnn corpus, 1,115,394 bytes).

Looked up, in order: `path`, `$ABLATE_DATA_DIR/tinyshakespeare.txt`, the user cache dir, then
downloaded from its public URL. Every copy, local or downloaded, is checked against the
known sha256: a truncated or edited copy would otherwise train silently under the same trial id.
"""

from __future__ import annotations

import hashlib
import os
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from ablate.interfaces import Dataset
from ablate.registry import register

URL = "https://raw.githubusercontent.com/karpathy/char-rnn/master/data/tinyshakespeare/input.txt"
SHA256 = "86c4e6aa9db7c042ec79f339dcb96d42b0075e16b8fc2e86bf0ca57e2dc565ed"
FILENAME = "tinyshakespeare.txt"
NUM_BYTES = 1_115_394


def cache_dir() -> Path:
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("ablate"))


@register("dataset", "tinyshakespeare")
class TinyShakespeare(Dataset):
    @dataclass(frozen=True, kw_only=True)
    class Config:
        path: str = ""  # explicit file; empty = search $ABLATE_DATA_DIR, cache, then download
        download: bool = True  # fetch from the public URL when no local copy exists

    def candidates(self) -> list[Path]:
        out = [Path(self.cfg.path).expanduser()] if self.cfg.path else []
        if os.environ.get("ABLATE_DATA_DIR"):
            out.append(Path(os.environ["ABLATE_DATA_DIR"]) / FILENAME)
        out.append(cache_dir() / FILENAME)
        return out

    def locate(self) -> Path:
        for path in self.candidates():
            if path.is_file():
                return path
        target = cache_dir() / FILENAME
        if self.cfg.download:
            try:
                with urllib.request.urlopen(URL, timeout=20) as r:
                    blob = r.read()
            except OSError as e:
                raise ValueError(self._missing(f"download from {URL} failed ({e})")) from None
            if hashlib.sha256(blob).hexdigest() != SHA256:
                raise ValueError(f"downloaded {URL} does not match sha256 {SHA256}")
            target.parent.mkdir(parents=True, exist_ok=True)
            tmp = target.with_suffix(".tmp")
            tmp.write_bytes(blob)
            tmp.replace(target)
            return target
        raise ValueError(self._missing("download is off"))

    def _missing(self, why: str) -> str:
        places = ", ".join(str(p) for p in self.candidates())
        return (
            f"tinyshakespeare not found ({why}). Put {FILENAME} in one of: {places} "
            f"(or set data.dataset.path / $ABLATE_DATA_DIR); source: {URL}"
        )

    def load_text(self) -> str:
        self.path = self.locate()
        blob = self.path.read_bytes()
        self.sha256 = hashlib.sha256(blob).hexdigest()
        if self.sha256 != SHA256:
            raise ValueError(
                f"data.dataset: {self.path} is not Tiny Shakespeare ({len(blob):,} bytes, "
                f"sha256 {self.sha256[:12]}; the corpus is {NUM_BYTES:,} bytes, sha256 "
                f"{SHA256[:12]}): a truncated or edited copy. Replace it with {URL}, "
                "or use dataset `text` for another file"
            )
        return blob.decode("utf-8")

    def describe(self) -> dict:
        return {"source": str(getattr(self, "path", "")), "sha256": getattr(self, "sha256", "")}
