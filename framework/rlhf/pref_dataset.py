"""Preference datasets: labelled pairs in one versioned file that outlives the run, to load into another run
(``--preferences-load``), score offline (framework/train_reward_model.py) or share (issue 12, item 3).

Format ``cleanrlhf-preferences``, version 1: one safetensors file (no pickle). With N pairs of segments of H steps:

===========================  ==============  ========================================================================
array                        shape, dtype    meaning
===========================  ==============  ========================================================================
``label``                    (N,) float32    P(B ≻ A) in {0, 0.5, 1} (skipped queries are not labels: not stored)
``time``                     (N,) float64    when the label was given, Unix seconds (NaN: not known)
``session``                  (N,) int64      the feedback session of its run that asked it
``a.obs``, ``b.obs``         (N, H, o) f32   observations of segment A and B
``a.actions`` ...            (N, H, a) f32   actions
``a.next_obs`` ...           (N, H, o) f32   observations after each action
``a.true_rewards`` ...       (N, H) f32      the environment's rewards (0 on padding; all 0 when not known)
``a.mask`` ...               (N, H) bool     False on the padding after an episode's termination (rlhf.segments)
``a.physics_states`` ...     (N, H, s) f32   rlhf.envs.get_physics_state of each observation, to re-render a clip
===========================  ==============  ========================================================================

The header's metadata holds ``format`` (``cleanrlhf-preferences``), ``version`` (``1``) and ``dataset``, a JSON
object: ``env_id``, ``segment_length`` (H), ``obs_dim``, ``act_dim``, ``state_dim``, ``true_rewards_known``,
``source`` (who wrote it: ``run`` or ``server-export``), ``created_at`` (ISO 8601 UTC) and ``pairs``:
``{"run_id": [N], "labeller": [N], "query_id": [N]}``, one string per pair (a simulated teacher's labeller is
``simulated:<preset>`` or ``simulated:<module:function>``).

humanFeedback/export_preferences.py writes the same format from a server's store without importing this module
(the server never imports the trainer); tests/test_pref_dataset.py reads its files back through :func:`read`.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path

import numpy as np

from rlhf.segments import Segments

FORMAT = "cleanrlhf-preferences"
VERSION = 1
RUN_FILE = "preferences.safetensors"  # the dataset every RLHF run writes into its run directory
VALID_LABELS = (0.0, 0.5, 1.0)
_SEGMENT_DTYPES = {"obs": np.float32, "actions": np.float32, "next_obs": np.float32, "true_rewards": np.float32,
                   "mask": np.bool_, "physics_states": np.float32}  # fmt: skip
_PAIR_STRINGS = ("run_id", "labeller", "query_id")


class DatasetError(ValueError):
    """A file that is not a readable preference dataset of this format, or one that does not fit a run; the
    message names the file."""


@dataclass
class LabelledPairs:
    """N labelled pairs with where each label came from (see the module docstring for the meaning of each field)."""

    env_id: str
    seg_a: Segments
    seg_b: Segments
    labels: np.ndarray  # (N,) float32
    times: np.ndarray  # (N,) float64
    sessions: np.ndarray  # (N,) int64
    run_ids: list[str] = field(default_factory=list)
    labellers: list[str] = field(default_factory=list)
    query_ids: list[str] = field(default_factory=list)
    true_rewards_known: bool = True
    source: str = "run"

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def segment_length(self) -> int:
        return self.seg_a.length

    def dims(self) -> dict[str, int]:
        return {"segment_length": self.seg_a.length, "obs_dim": int(self.seg_a.obs.shape[2]),
                "act_dim": int(self.seg_a.actions.shape[2]),
                "state_dim": int(self.seg_a.physics_states.shape[2])}  # fmt: skip

    def check(self) -> None:
        """ValueError for pairs that do not make a dataset (shapes, dtypes, labels, one string per pair)."""
        n, dims = len(self.labels), self.dims()
        shapes = {"obs": ("segment_length", "obs_dim"), "actions": ("segment_length", "act_dim"),
                  "next_obs": ("segment_length", "obs_dim"), "true_rewards": ("segment_length",),
                  "mask": ("segment_length",), "physics_states": ("segment_length", "state_dim")}  # fmt: skip
        for side, seg in (("a", self.seg_a), ("b", self.seg_b)):
            for name, dims_of in shapes.items():
                value, want = getattr(seg, name), (n, *(dims[d] for d in dims_of))
                if value.shape != want:
                    raise ValueError(f"{side}.{name} has shape {value.shape}, expected {want}")
                if value.dtype != _SEGMENT_DTYPES[name]:
                    raise ValueError(f"{side}.{name} is {value.dtype}, expected {np.dtype(_SEGMENT_DTYPES[name])}")
            if n and not seg.mask[:, 0].all():
                raise ValueError(f"{side}.mask: every segment has at least its first step")
        for name, value, dtype in (("label", self.labels, np.float32), ("time", self.times, np.float64),
                                   ("session", self.sessions, np.int64)):  # fmt: skip
            if value.shape != (n,) or value.dtype != dtype:
                raise ValueError(f"{name} must be ({n},) {np.dtype(dtype)}, got {value.shape} {value.dtype}")
        if not np.isin(self.labels, VALID_LABELS).all():
            raise ValueError(f"labels must be P(B > A) in {VALID_LABELS}; got {np.unique(self.labels).tolist()}")
        for name in _PAIR_STRINGS:
            values = getattr(self, f"{name}s")
            if len(values) != n or not all(isinstance(v, str) for v in values):
                raise ValueError(f"pairs.{name} must be {n} strings")

    def select(self, index: np.ndarray) -> LabelledPairs:
        """The pairs at ``index`` (integer or boolean array)."""
        index = np.flatnonzero(index) if np.asarray(index).dtype == bool else np.asarray(index, np.int64)
        return LabelledPairs(self.env_id, self.seg_a[index], self.seg_b[index], self.labels[index], self.times[index],
                             self.sessions[index], [self.run_ids[i] for i in index],
                             [self.labellers[i] for i in index], [self.query_ids[i] for i in index],
                             self.true_rewards_known, self.source)  # fmt: skip

    def head(self, n: int) -> LabelledPairs:
        """The first ``n`` pairs."""
        return self.select(np.arange(min(n, len(self))))

    @staticmethod
    def concatenate(parts: list[LabelledPairs]) -> LabelledPairs:
        """One dataset from several of the same environment and shapes (ValueError otherwise)."""
        first = parts[0]
        for p in parts[1:]:
            if p.env_id != first.env_id or p.dims() != first.dims():
                raise ValueError(f"cannot join pairs of {p.env_id} {p.dims()} with {first.env_id} {first.dims()}")
        return LabelledPairs(
            env_id=first.env_id,
            seg_a=Segments.concatenate([p.seg_a for p in parts]),
            seg_b=Segments.concatenate([p.seg_b for p in parts]),
            labels=np.concatenate([p.labels for p in parts]),
            times=np.concatenate([p.times for p in parts]),
            sessions=np.concatenate([p.sessions for p in parts]),
            run_ids=[s for p in parts for s in p.run_ids],
            labellers=[s for p in parts for s in p.labellers],
            query_ids=[s for p in parts for s in p.query_ids],
            true_rewards_known=all(p.true_rewards_known for p in parts),
            source=first.source if all(p.source == first.source for p in parts) else "mixed",
        )


def empty(env_id: str, length: int, obs_dim: int, act_dim: int, state_dim: int) -> LabelledPairs:
    return LabelledPairs(env_id, Segments.empty(length, obs_dim, act_dim, state_dim),
                         Segments.empty(length, obs_dim, act_dim, state_dim), np.zeros(0, np.float32),
                         np.zeros(0, np.float64), np.zeros(0, np.int64))  # fmt: skip


def write(path: str | Path, pairs: LabelledPairs) -> None:
    """Write ``pairs`` to ``path`` (a temporary file renamed into place: a crash never leaves half a dataset)."""
    from safetensors.numpy import save_file

    pairs.check()
    arrays = {"label": pairs.labels, "time": pairs.times, "session": pairs.sessions}
    for side, seg in (("a", pairs.seg_a), ("b", pairs.seg_b)):
        arrays |= {f"{side}.{f.name}": np.ascontiguousarray(getattr(seg, f.name)) for f in fields(Segments)}
    meta = {"env_id": pairs.env_id, **pairs.dims(), "true_rewards_known": pairs.true_rewards_known,
            "source": pairs.source,
            "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
            "pairs": {name: list(getattr(pairs, f"{name}s")) for name in _PAIR_STRINGS}}  # fmt: skip
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    save_file(arrays, str(tmp), metadata={"format": FORMAT, "version": str(VERSION), "dataset": json.dumps(meta)})
    os.replace(tmp, path)


def read(path: str | Path) -> LabelledPairs:
    """The dataset at ``path``, validated; :class:`DatasetError` naming the file for anything else."""
    path = Path(path)
    try:
        return _read(path)
    except DatasetError:
        raise
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise DatasetError(f"{path}: not a readable preference dataset ({e})") from e
    except Exception as e:  # safetensors' own error type for a file that is not safetensors
        raise DatasetError(f"{path}: not a preference dataset (not a safetensors file: {e})") from e


def _read(path: Path) -> LabelledPairs:
    from safetensors import safe_open

    if not path.is_file():
        raise DatasetError(f"{path}: no such file")
    with safe_open(str(path), "np") as f:
        header = f.metadata() or {}
        if header.get("format") != FORMAT:
            raise DatasetError(f"{path}: not a preference dataset (format {header.get('format')!r}, not {FORMAT!r})")
        version = header.get("version", "")
        if version != str(VERSION):
            newer = version.isdigit() and int(version) > VERSION
            raise DatasetError(f"{path}: format version {version!r}; this CleanRLHF reads version {VERSION}"
                               + (" (update CleanRLHF to read it)" if newer else ""))  # fmt: skip
        arrays = {key: f.get_tensor(key) for key in f.keys()}  # noqa: SIM118 (safe_open has no __iter__)
    meta = json.loads(header["dataset"])
    if not isinstance(meta, dict) or not isinstance(meta.get("pairs"), dict):
        raise DatasetError(f"{path}: its 'dataset' metadata is not a JSON object with 'pairs'")

    def segments(side: str) -> Segments:
        return Segments(**{name: arrays[f"{side}.{name}"] for name in _SEGMENT_DTYPES})

    pairs = LabelledPairs(
        env_id=str(meta["env_id"]),
        seg_a=segments("a"),
        seg_b=segments("b"),
        labels=arrays["label"],
        times=arrays["time"],
        sessions=arrays["session"],
        **{f"{name}s": meta["pairs"][name] for name in _PAIR_STRINGS},
        true_rewards_known=bool(meta["true_rewards_known"]),
        source=str(meta.get("source", "")),
    )
    try:
        pairs.check()
    except ValueError as e:
        raise DatasetError(f"{path}: {e}") from e
    declared = {k: meta.get(k) for k in pairs.dims()}
    if declared != pairs.dims():
        raise DatasetError(f"{path}: its metadata says {declared}, its arrays are {pairs.dims()}")
    return pairs


def check_fits(pairs: LabelledPairs, where: str, env_id: str, length: int, obs_dim: int, act_dim: int,
               state_dim: int) -> None:  # fmt: skip
    """ValueError, naming ``where``, when the pairs were labelled on another environment or with other shapes."""
    if pairs.env_id != env_id:
        raise ValueError(f"{where}: labelled on {pairs.env_id}, this run is {env_id}")
    want = {"segment_length": length, "obs_dim": obs_dim, "act_dim": act_dim, "state_dim": state_dim}
    for key, value in want.items():
        if pairs.dims()[key] != value:
            hint = " (--trajectory-length)" if key == "segment_length" else ""
            raise ValueError(f"{where}: its {key} is {pairs.dims()[key]}, this run's is {value}{hint}")
