"""The content-addressed image store: `images/<sha256[:2]>/<sha256>.<ext>`, written once, never renamed.

A file is written under a temporary name in `tmp/` (outside the store), flushed to disk and renamed
into place, so the store never holds a partial file, even after SIGKILL. Identical bytes are stored
once however many posts link them.
"""

from __future__ import annotations

import hashlib
import os
import uuid
from pathlib import Path


class ImageStore:
    def __init__(self, data_dir: str | Path):
        self.root = Path(data_dir) / "images"
        self.tmp = Path(data_dir) / "tmp"
        self._made: set[Path] = set()  # directories known to exist: mkdir costs a syscall even then

    def _ensure_dir(self, path: Path) -> None:
        if path not in self._made:
            path.mkdir(parents=True, exist_ok=True)
            self._made.add(path)

    def path_for(self, sha256: str, ext: str) -> Path:
        return self.root / sha256[:2] / f"{sha256}.{ext}"

    def put(self, data: bytes, ext: str, sha256: str | None = None) -> tuple[str, bool]:
        """Store bytes; returns (sha256, created). `created` is False when the bytes were already there."""
        sha256 = sha256 or hashlib.sha256(data).hexdigest()
        target = self.path_for(sha256, ext)
        if target.exists():
            return sha256, False
        self._ensure_dir(target.parent)
        self._ensure_dir(self.tmp)
        partial = self.tmp / f"{uuid.uuid4().hex}.part"
        try:
            with open(partial, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            # link() is atomic and fails if the name exists: the file appears only when complete, and
            # of two writers of the same bytes (threads or processes) exactly one reports `created`.
            os.link(partial, target)
            return sha256, True
        except FileExistsError:
            return sha256, False
        finally:
            partial.unlink(missing_ok=True)

    def clean_partials(self) -> int:
        """Remove what a killed run left in tmp/. Returns how many files were removed."""
        if not self.tmp.exists():
            return 0
        removed = 0
        for partial in self.tmp.glob("*.part"):
            partial.unlink(missing_ok=True)
            removed += 1
        return removed

    def files(self) -> list[Path]:
        return sorted(self.root.glob("*/*.*")) if self.root.exists() else []
