"""Reading a run directory's TensorBoard scalars, process by process: the one reader of the toolbox, the benchmarks,
the sweeps and the tests (what the run *is* comes from its ``run.json``, :mod:`rlhf.manifest`).

A run resumed with ``--resume`` holds one TensorBoard events file per process that wrote to it; the resumed
process repeats the steps after the last checkpoint, so for each tag and step the value written last wins.
Wall-clock time is counted per process (each file's time since its own first event) and summed over the earlier
processes, so the time a run was stopped is not counted, while the work a crash threw away is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Scalar:
    step: int
    value: float
    wall_seconds: float  # seconds of the run's processes' lifetimes up to this event


def event_files(run_dir: Path) -> list[Path]:
    """The run's TensorBoard event files, oldest first (their names start with the creation time)."""

    def created(path: Path) -> tuple[float, str]:
        parts = path.name.split(".")
        try:
            return float(parts[3]), path.name
        except (IndexError, ValueError):
            return path.stat().st_mtime, path.name

    return sorted(Path(run_dir).glob("events.out.tfevents.*"), key=created)


def _file_events(path: Path):
    """(wall_time, tag or None, step, value) of every event in one file, the file's first (version) event with tag
    None; a truncated or damaged last record (a run still writing, or killed) ends the file quietly."""
    from tensorboard.backend.event_processing.event_file_loader import EventFileLoader
    from tensorboard.util import tensor_util

    try:
        for event in EventFileLoader(str(path)).Load():
            if not event.HasField("summary"):
                yield event.wall_time, None, int(event.step), 0.0
                continue
            for v in event.summary.value:
                kind = v.WhichOneof("value")
                if kind == "simple_value":  # what SummaryWriter.add_scalar writes
                    value = float(v.simple_value)
                elif kind == "tensor" and v.metadata.plugin_data.plugin_name in ("scalars", ""):
                    array = tensor_util.make_ndarray(v.tensor)
                    if array.size != 1 or array.dtype.kind not in "fiu":
                        continue
                    value = float(array.reshape(()))
                else:
                    continue
                yield event.wall_time, v.tag, int(event.step), value
    except Exception:  # tensorboard raises its own DataLossError and protobuf's DecodeError: keep what was read
        return


def read_scalars(run_dir: Path, every_event: bool = False) -> dict[str, list[Scalar]]:
    """Every scalar tag of the run: tag -> values sorted by step, one per step (the last written). With
    ``every_event``, every value as written, process after process (a final evaluation logged at the step of a
    periodic one appears twice; tests check that). Non-finite values are kept (a diverged loss is a result)."""
    merged: dict[str, dict[int, Scalar]] = {}
    written: dict[str, list[Scalar]] = {}
    offset = 0.0
    for path in event_files(run_dir):
        events = list(_file_events(path))
        scalars = [e for e in events if e[1] is not None]
        if not scalars:
            continue
        start = events[0][0]  # the file's first event is written when the process opens it, before any scalar
        end = max(wall for wall, *_ in scalars)
        for wall, tag, step, value in scalars:
            scalar = Scalar(step, value, offset + wall - start)
            merged.setdefault(tag, {})[step] = scalar
            written.setdefault(tag, []).append(scalar)
        offset += end - start
    if every_event:
        return written
    return {tag: [by_step[s] for s in sorted(by_step)] for tag, by_step in merged.items()}


class ScalarCache:
    """:func:`read_scalars` per run directory, read again only when one of its event files changed (name, size,
    mtime): for a viewer that polls many runs (the toolbox). Thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._cache: dict[Path, tuple[tuple, dict[str, list[Scalar]]]] = {}

    def scalars(self, run_dir: Path) -> dict[str, list[Scalar]]:
        files = event_files(run_dir)
        key = tuple((f.name, f.stat().st_size, f.stat().st_mtime_ns) for f in files)
        with self._lock:
            hit = self._cache.get(Path(run_dir))
            if hit and hit[0] == key:
                return hit[1]
        result = read_scalars(run_dir)
        with self._lock:
            self._cache[Path(run_dir)] = (key, result)
        return result


def value_at(series: list[Scalar], step: int, default: float = 0.0) -> float:
    """The last value logged at or before ``step`` (a counter such as the labels so far)."""
    value = default
    for s in series:
        if s.step > step:
            break
        value = s.value
    return value
