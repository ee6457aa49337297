"""Checkpoints without pickle: tensors and arrays in safetensors, everything else in JSON.

A state is any tree of dicts/lists/tuples whose leaves are tensors, numpy arrays or JSON scalars (module and
optimizer state dicts, RNG states, counters). The tree's shape goes to ``<name>.json`` with each tensor leaf
replaced by a reference into ``<name>.safetensors``; dict keys keep their type (optimizer states use int keys).
Files are written to a temporary name and renamed, so a crash never leaves a half-written checkpoint, and a
truncated or tampered file fails to load with a message naming it.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import signal
import threading
from pathlib import Path
from typing import Any

import numpy as np
import torch

log = logging.getLogger("cleanrlhf")

FORMAT = "cleanrlhf-checkpoint-1"


class CheckpointError(RuntimeError):
    """A checkpoint file is missing, truncated, tampered with, or from an incompatible run."""


def _flatten(node: Any, tensors: dict[str, torch.Tensor], path: str) -> Any:
    if isinstance(node, torch.Tensor):
        tensors[path] = node.detach().cpu().contiguous()
        return {"__tensor__": path}
    if isinstance(node, np.ndarray):
        tensors[path] = torch.from_numpy(np.ascontiguousarray(node))
        return {"__ndarray__": path}
    if isinstance(node, dict):
        return {"__dict__": [[k, _flatten(v, tensors, f"{path}.{k}")] for k, v in node.items()]}
    if isinstance(node, (list, tuple)):
        items = [_flatten(v, tensors, f"{path}.{i}") for i, v in enumerate(node)]
        return {"__tuple__": items} if isinstance(node, tuple) else items
    if node is None or isinstance(node, (bool, int, float, str)):
        return node
    if isinstance(node, (np.integer, np.floating, np.bool_)):
        return node.item()
    raise TypeError(f"cannot store a {type(node).__name__} at {path!r} in a checkpoint")


def _unflatten(node: Any, tensors: dict[str, torch.Tensor]) -> Any:
    if isinstance(node, dict):
        if "__tensor__" in node:
            return tensors[node["__tensor__"]]
        if "__ndarray__" in node:
            return tensors[node["__ndarray__"]].numpy()
        if "__tuple__" in node:
            return tuple(_unflatten(v, tensors) for v in node["__tuple__"])
        return {k: _unflatten(v, tensors) for k, v in node["__dict__"]}
    if isinstance(node, list):
        return [_unflatten(v, tensors) for v in node]
    return node


def _atomic_write(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def save_state(path: Path, state: dict[str, Any]) -> None:
    """Write ``path.safetensors`` and ``path.json`` (the JSON, written last, records the tensors' SHA-256)."""
    from safetensors.torch import save

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors: dict[str, torch.Tensor] = {}
    tree = _flatten(state, tensors, "state")
    blob = save(tensors) if tensors else b""
    _atomic_write(path.with_suffix(".safetensors"), blob)
    meta = {"format": FORMAT, "sha256": hashlib.sha256(blob).hexdigest(), "tree": tree}
    _atomic_write(path.with_suffix(".json"), json.dumps(meta).encode())


def load_state(path: Path) -> dict[str, Any]:
    """Inverse of :func:`save_state`; raises :class:`CheckpointError` with the file's name on any damage."""
    from safetensors.torch import load

    path = Path(path)
    meta_path, blob_path = path.with_suffix(".json"), path.with_suffix(".safetensors")
    for p in (meta_path, blob_path):
        if not p.is_file():
            raise CheckpointError(f"checkpoint file {p} does not exist")
    try:
        meta = json.loads(meta_path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as e:
        raise CheckpointError(f"checkpoint file {meta_path} is not valid JSON (truncated or corrupted): {e}") from e
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"{meta_path} is not a CleanRLHF checkpoint (format {FORMAT})")
    blob = blob_path.read_bytes()
    if hashlib.sha256(blob).hexdigest() != meta.get("sha256"):
        raise CheckpointError(f"checkpoint file {blob_path} does not match its checksum (truncated or modified)")
    try:
        tensors = load(blob) if blob else {}
        return _unflatten(meta["tree"], tensors)
    except Exception as e:  # a checksum-valid but inconsistent pair, e.g. files from two different saves
        raise CheckpointError(f"checkpoint {path} is inconsistent: {e}") from e


def save_bundle(directory: Path, parts: dict[str, dict[str, Any]]) -> None:
    """Save several states as one unit: a crash leaves either the previous bundle or the new one, never a mix.

    The parts are written into ``<directory>.tmp`` and the directories are swapped by renames; a crash in the
    middle of the swap leaves the previous bundle at ``<directory>.old``, which :func:`load_bundle` falls back to.
    """
    directory = Path(directory)
    tmp, old = directory.with_name(directory.name + ".tmp"), directory.with_name(directory.name + ".old")
    with signals_deferred():
        shutil.rmtree(tmp, ignore_errors=True)
        for name, state in parts.items():
            save_state(tmp / name, state)
        if directory.exists():
            shutil.rmtree(old, ignore_errors=True)
            os.replace(directory, old)
        os.replace(tmp, directory)
        shutil.rmtree(old, ignore_errors=True)


@contextlib.contextmanager
def signals_deferred(doing: str = ""):
    """Hold SIGINT and SIGTERM until the block is done, then act on them as usual (``doing``: what the block does,
    logged when a signal waits for it).

    A second Ctrl-C about 0.1 s after the first (or one SIGINT that ``uv run`` forwards twice) used to interrupt
    the checkpoint written on the first and leave only ``resume.tmp`` (issue 9, item 7). Python runs signal
    handlers in the main thread only, so swapping the handlers there is enough (blocking the signal in the main
    thread is not: another thread may take it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    received: list[int] = []

    def hold(signum, frame) -> None:
        if doing and not received:
            log.warning("%s received: stopping after %s", signal.Signals(signum).name, doing)
        received.append(signum)

    previous = {s: signal.signal(s, hold) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        if received:
            handler = previous[signal.Signals(received[0])]
            if callable(handler):
                handler(received[0], None)
            elif handler == signal.SIG_DFL:
                signal.raise_signal(received[0])


def load_bundle(directory: Path, names: tuple[str, ...]) -> dict[str, dict[str, Any]]:
    """The parts ``names`` of the bundle at ``directory`` (or of ``<directory>.old`` after a crash mid-swap)."""
    directory = Path(directory)
    if not directory.is_dir():
        fallback = directory.with_name(directory.name + ".old")
        if not fallback.is_dir():
            raise CheckpointError(f"no checkpoint at {directory}")
        directory = fallback
    return {name: load_state(directory / name) for name in names}


def rng_state(np_rngs: dict[str, np.random.Generator]) -> dict[str, Any]:
    """Torch (CPU and CUDA) and named numpy generator states, for exact resume."""
    state: dict[str, Any] = {
        "torch": torch.get_rng_state(),
        "numpy": {k: g.bit_generator.state for k, g in np_rngs.items()},
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng_state(state: dict[str, Any], np_rngs: dict[str, np.random.Generator]) -> None:
    torch.set_rng_state(state["torch"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, g in np_rngs.items():
        g.bit_generator.state = state["numpy"][name]
