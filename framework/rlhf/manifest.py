"""``run.json``: what a run directory is, in one small versioned file that every script writes (issue 8, item 5).

The toolbox, the benchmarks and the tests read this instead of guessing the algorithm from the flags or walking a
checkpoint's private format. Written by rename (a reader never sees half a file) when the run opens, at every
checkpoint and when it ends::

    {"format_version": 1, "algorithm": "sac_rlhf", "env_id": "Hopper-v5", "seed": 1, "exp_name": "sac_rlhf",
     "status": "finished", "step": 1000000, "total_timesteps": 1000000, "created": 1796316436.1,
     "updated": 1796320001.7, "pid": 4242, "host": "node3", "resumes": 0,
     "paths": {"args": "args.json", "checkpoint_final": "checkpoints/final", ...}}

``status``: ``running`` while a process works on it, then ``finished`` (the budget or early stopping ended it),
``interrupted`` (Ctrl-C or SIGTERM: a checkpoint was saved, ``--resume`` continues) or ``crashed`` (an exception;
the last periodic checkpoint, if any, resumes). A run killed outright (SIGKILL, a node lost) still says
``running``: :func:`effective_status` tells it apart by its process (``stopped`` when that process is gone on this
host). ``paths`` lists, relative to the run directory, the files of :data:`KNOWN_PATHS` that exist (checkpoints by the stem
that evaluation.py and ``--resume`` take).
"""

from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from typing import Any

MANIFEST = "run.json"
FORMAT_VERSION = 1
STATUSES = ("running", "finished", "interrupted", "crashed")
KNOWN_PATHS = {
    "args": "args.json",
    "log": "log.log",  # rlhf.tracking.LOG_FILE (a test checks they agree; importing it here would pull in torch)
    "resumes": "resumes.jsonl",
    "checkpoint_final": "checkpoints/final",
    "checkpoint_resume": "checkpoints/resume",
    "preferences": "preferences.safetensors",
    "eval_videos": "videos/eval",
    "query_clips": "videos/queries",
    "feedback_server": "feedback_server",
    "evaluation": "evaluation",
}
REQUIRED = {"format_version": int, "algorithm": str, "env_id": str, "seed": int, "status": str, "step": int}


class ManifestError(ValueError):
    """A ``run.json`` that is not one this version can read: one line naming the file and the field."""


def write_manifest(run_dir: Path, **fields: Any) -> dict[str, Any]:
    """Write (or update) ``run_dir/run.json`` with ``fields``; keeps what an earlier write recorded (``created``,
    fields not given again), stamps ``updated``, ``pid``, ``host`` and the existing ``paths``. Returns the manifest."""
    run_dir = Path(run_dir)
    path = run_dir / MANIFEST
    try:
        old = read_manifest(run_dir) or {}
    except ManifestError:
        old = {}  # a damaged file from before is replaced, not trusted
    now = time.time()
    manifest = {"format_version": FORMAT_VERSION, "created": now, **old, **fields}
    if manifest["status"] not in STATUSES:
        raise ValueError(f"run status {manifest['status']!r}: expected one of {', '.join(STATUSES)}")
    manifest.update(updated=now, pid=os.getpid(), host=socket.gethostname())
    manifest["paths"] = {name: rel for name, rel in KNOWN_PATHS.items() if _exists(run_dir / rel)}
    tmp = path.with_name(f".{MANIFEST}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, path)
    return manifest


def _exists(path: Path) -> bool:
    """A file or folder, or a checkpoint named by its stem (rlhf.checkpoint writes ``<stem>.json`` and
    ``<stem>.safetensors``; evaluation.py and --resume take the stem)."""
    return path.exists() or path.with_name(path.name + ".json").exists()


def read_manifest(run_dir: Path) -> dict[str, Any] | None:
    """The run's manifest, or None if it has none (a run from before run.json, or not a run). Raises
    :class:`ManifestError` for a file that is not valid JSON, misses a field, has a field of the wrong type, or
    comes from a newer format."""
    path = Path(run_dir) / MANIFEST
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError) as e:
        raise ManifestError(f"{path}: cannot be read ({e})") from e
    try:
        manifest = json.loads(text)
    except (ValueError, RecursionError) as e:
        raise ManifestError(f"{path}: not JSON ({e})") from e
    if not isinstance(manifest, dict):
        raise ManifestError(f"{path}: not a JSON object")
    for key, kind in REQUIRED.items():
        value = manifest.get(key)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ManifestError(f"{path}: field {key!r} must be {kind.__name__}, found {value!r}")
    if manifest["format_version"] > FORMAT_VERSION:
        raise ManifestError(f"{path}: format version {manifest['format_version']} is newer than this code's "
                            f"({FORMAT_VERSION}); update CleanRLHF")  # fmt: skip
    if manifest["status"] not in STATUSES:
        raise ManifestError(
            f"{path}: field 'status' must be one of {', '.join(STATUSES)}, found {manifest['status']!r}"
        )
    if not isinstance(manifest.get("paths", {}), dict):
        raise ManifestError(f"{path}: field 'paths' must be an object")
    return manifest


def effective_status(manifest: dict[str, Any]) -> str:
    """``status``, except that a ``running`` run whose process is gone from this host reads ``stopped`` (killed
    without a chance to say so). On another host a running run cannot be checked and stays ``running``."""
    status = manifest["status"]
    if status != "running" or manifest.get("host") != socket.gethostname() or not isinstance(manifest.get("pid"), int):
        return status
    try:
        os.kill(manifest["pid"], 0)
    except ProcessLookupError:
        return "stopped"
    except PermissionError:  # another user's live process
        return status
    return status
