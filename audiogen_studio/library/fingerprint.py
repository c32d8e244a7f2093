"""Which exact model made a take: a content hash of a model bundle (issue 7 §2).

``bundle_fingerprint(folder)`` is the SHA-256 over ``bundle.json``'s bytes and, for every
weights file the manifest declares (sorted by component), its name and the SHA-256 of its bytes.
Two folders with the same files give the same fingerprint wherever they live; retraining or
editing the manifest changes it. Hashing tens of MB of weights takes a fraction of a second, so
each file's digest is cached in this process by ``(path, size, mtime_ns)``: a bundle is hashed
once per process, and again only when a file changes.
"""

from __future__ import annotations

import hashlib
import json
import os
from functools import lru_cache
from pathlib import Path

__all__ = ["bundle_fingerprint", "file_sha256"]

_BLOCK = 1 << 20


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while block := f.read(_BLOCK):
            h.update(block)
    return h.hexdigest()


def file_sha256(path: str | Path) -> str:
    """SHA-256 (hex) of a file's bytes, cached by path, size and modification time."""
    st = os.stat(path)
    return _file_digest(str(Path(path).resolve()), st.st_size, st.st_mtime_ns)


def bundle_fingerprint(folder: str | Path) -> str:
    """Content hash of a model bundle folder (``bundle.json`` + declared weights), hex.

    A weights file the manifest names but that is absent contributes its name only (the
    bundle would not load anyway); an unreadable manifest raises ``OSError``/``ValueError``.
    """
    root = Path(folder)
    manifest = root / "bundle.json"
    raw = manifest.read_bytes()
    data = json.loads(raw.decode("utf-8"))
    h = hashlib.sha256(b"AGS-BUNDLE\0")
    h.update(hashlib.sha256(raw).digest())
    components = data.get("components", {}) if isinstance(data, dict) else {}
    for name in sorted(components):
        spec = components[name]
        file = str(spec.get("file", "")) if isinstance(spec, dict) else ""
        h.update(f"{name}\0{file}\0".encode())
        path = root / file
        if file and path.is_file():
            h.update(bytes.fromhex(file_sha256(path)))
    return h.hexdigest()
