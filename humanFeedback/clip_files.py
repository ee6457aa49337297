"""Content-addressed clip files on disk, next to the labelling server's database.

A clip is stored once under ``<sha256 of its bytes>.<webm|mp4>``: nothing a client sends becomes part of a path.
Writing is atomic and durable: a temporary name, ``fsync``, rename to the final name, ``fsync`` of the directory,
all before the query that refers to the clip is committed (see store.py). Temporaries left by a killed server
are never referenced and are removed at start-up.
"""

from __future__ import annotations

import hashlib
import os
import re
import uuid
from pathlib import Path

CLIP_MIMES = {"video/webm": "webm", "video/mp4": "mp4"}
CLIP_NAME_RE = re.compile(r"[0-9a-f]{64}\.(webm|mp4)")
_TMP_PREFIX = ".tmp-"


def sniff_clip_mime(data: bytes) -> str | None:
    """The container of ``data`` from its magic bytes: WebM (EBML header) or MP4 (``ftyp`` box), else None."""
    if data[:4] == b"\x1a\x45\xdf\xa3":
        return "video/webm"
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return "video/mp4"
    return None


def remove_temporaries(clip_dir: Path) -> None:
    """Delete half-written clips of a server that was killed while writing them."""
    for stale in clip_dir.glob(_TMP_PREFIX + "*"):
        stale.unlink(missing_ok=True)


def write_clip(clip_dir: Path, data: bytes, mime: str) -> str:
    """Store ``data`` (atomic, fsynced) unless the same bytes are already there; return its id (sha256 hex)."""
    clip_id = hashlib.sha256(data).hexdigest()
    final = clip_dir / f"{clip_id}.{CLIP_MIMES[mime]}"
    if not final.exists():
        tmp = clip_dir / f"{_TMP_PREFIX}{uuid.uuid4().hex}"
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, final)
        fsync_dir(clip_dir)
    return clip_id


def fsync_dir(path: Path) -> None:
    """Make a rename in ``path`` durable (POSIX; directories cannot be opened for fsync on Windows)."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def parse_clip_name(name: object) -> tuple[str, str] | None:
    """``<sha256>.<ext>`` -> (clip id, ext); None for any other name."""
    if not isinstance(name, str) or not CLIP_NAME_RE.fullmatch(name):
        return None
    clip_id, ext = name.split(".")
    return clip_id, ext


def clip_path(clip_dir: Path, name: str) -> Path | None:
    """The file of a well-formed clip name if it sits directly inside ``clip_dir`` (no ``..``, sibling-prefix or
    symlink escapes) and exists; None otherwise. ``clip_dir`` must be resolved."""
    path = (clip_dir / name).resolve()
    return path if path.parent == clip_dir and path.is_file() else None
