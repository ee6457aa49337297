"""Reading a finished (or interrupted) run directory: its TensorBoard scalars, process by process.

A run resumed with ``--resume`` holds one TensorBoard events file per process that wrote to it; the resumed
process repeats the steps after the last checkpoint, so for each tag and step the value written last wins.
Wall-clock time is counted per process (each file's time since its own first event) and summed over the earlier
processes, so the time a run was stopped is not counted, while the work a crash threw away is.
"""

from __future__ import annotations

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


def read_scalars(run_dir: Path, every_event: bool = False) -> dict[str, list[Scalar]]:
    """Every scalar tag of the run: tag -> values sorted by step, one per step (the last written). With
    ``every_event``, every value as written, process after process (a final evaluation logged at the step of a
    periodic one appears twice; tests check that)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    merged: dict[str, dict[int, Scalar]] = {}
    written: dict[str, list[Scalar]] = {}
    offset = 0.0
    for path in event_files(run_dir):
        acc = EventAccumulator(str(path), size_guidance={"scalars": 0})
        acc.Reload()
        tags = acc.Tags().get("scalars", [])
        events = [(tag, e) for tag in tags for e in acc.Scalars(tag)]
        if not events:
            continue
        try:  # the file's first event is written when the process opens it, before any scalar
            start = acc.FirstEventTimestamp()
        except ValueError:
            start = min(e.wall_time for _, e in events)
        end = max(e.wall_time for _, e in events)
        for tag, e in events:
            scalar = Scalar(e.step, e.value, offset + e.wall_time - start)
            merged.setdefault(tag, {})[e.step] = scalar
            written.setdefault(tag, []).append(scalar)
        offset += end - start
    if every_event:
        return written
    return {tag: [by_step[s] for s in sorted(by_step)] for tag, by_step in merged.items()}


def value_at(series: list[Scalar], step: int, default: float = 0.0) -> float:
    """The last value logged at or before ``step`` (a counter such as the labels so far)."""
    value = default
    for s in series:
        if s.step > step:
            break
        value = s.value
    return value
