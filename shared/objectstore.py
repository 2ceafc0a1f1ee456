"""Attachments' bytes, addressed by SHA-256. A directory by default; intake writes, the
verification service reads. Each service checks who may see an object before reading it."""

from __future__ import annotations

import hashlib
import os
import re
import tempfile
from pathlib import Path

from anyio import to_thread

_SHA256 = re.compile(r"^[0-9a-f]{64}$")


class ObjectNotFound(Exception):
    pass


class DirectoryObjectStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def _path(self, sha256: str) -> Path:
        if not _SHA256.fullmatch(sha256):
            raise ValueError("not a SHA-256 hex digest")
        return self.root / sha256[:2] / sha256[2:4] / sha256

    def _put(self, data: bytes) -> str:
        sha256 = hashlib.sha256(data).hexdigest()
        path = self._path(sha256)
        if path.exists():
            return sha256  # same content, same address: nothing to write
        path.parent.mkdir(parents=True, exist_ok=True)
        # Write then rename, so a reader never sees half a file.
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".upload-")
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, path)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return sha256

    def _get(self, sha256: str) -> bytes:
        try:
            return self._path(sha256).read_bytes()
        except FileNotFoundError as exc:
            raise ObjectNotFound(sha256) from exc

    async def put(self, data: bytes) -> str:
        return await to_thread.run_sync(self._put, data)

    async def get(self, sha256: str) -> bytes:
        return await to_thread.run_sync(self._get, sha256)


def sniff_content_type(data: bytes) -> str | None:
    """The type by the file's own bytes, not by its name or the client's claim."""
    if data.startswith(b"\xff\xd8\xff"):
        return "image/jpeg"
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return "image/png"
    if data.startswith(b"%PDF-"):
        return "application/pdf"
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "image/webp"
    return None
