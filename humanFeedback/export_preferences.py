"""Export one run's labels from a labelling server's store as a preference dataset (issue 12, item 3):

    python humanFeedback/export_preferences.py --data-dir D --run-id R --out labels.safetensors

The store (``<data-dir>/feedback.sqlite3``, opened read-only, so a running server may keep serving) gives each
query's answers, who gave them and when; each query's label is what the trainer makes of them (the majority of its
labellers' current answers, without undone answers, skips, or labellers excluded on the server or by
``--exclude-labeller``). The server keeps
clips, not the segments' numbers: those are the trainer's ``pending_queries/session_NNNN.npz`` files, one per
session, which it writes before uploading the session (framework/rlhf/human.py). A server the trainer started
itself (``--feedback-server-autostart``) keeps its data in ``<run>/feedback_server``, next to
``<run>/pending_queries``, which is where ``--segments-dir`` looks by default.

The file is format ``cleanrlhf-preferences`` version 1, documented in framework/rlhf/pref_dataset.py (written here
without importing it: the server never imports the trainer). A problem is one line and exit code 2.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import sqlite3
import sys
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import NoReturn

import numpy as np

FORMAT, VERSION = "cleanrlhf-preferences", 1
QUERY_ID_RE = re.compile(r"s(\d{4,})-q(\d{3,})")  # the trainer's query ids: session and index within it
SEGMENT_FIELDS = ("obs", "actions", "next_obs", "true_rewards", "mask", "physics_states")


class ExportError(Exception):
    """Why the export cannot be made; one line."""


def _majority(answers: dict[str, float | None]) -> float | None:
    """The strict majority of the labels (None: skips, which abstain); None without one. The trainer's rule
    (framework/rlhf/labeller_quality.py, ``combine``), written again here: the server never imports the trainer."""
    labels = [v for v in answers.values() if v is not None]
    if not labels:
        return None
    value, n = Counter(labels).most_common(1)[0]
    return value if 2 * n > len(labels) else None


def labelled_queries(data_dir: Path, run_id: str, exclude: set[str]) -> tuple[str, list[dict]]:
    """(the run's env id, its labelled queries in the order their labels were settled: query_id, session, label,
    labeller, time). A query's label is what the trainer makes of its answers: each labeller's latest answer not
    undone, the labellers the server excludes and ``exclude`` left out, the strict majority of the rest (a doubled
    query whose two labellers disagree has none). "labeller" names who gave it ("+"-joined when two agreed), "time"
    is when the last of them answered. Repeats (a pair asked again to measure self-consistency) never train."""
    db_path = data_dir / "feedback.sqlite3"
    if not db_path.is_file():
        raise ExportError(f"{data_dir}: no labelling server store here (no feedback.sqlite3)")
    try:
        db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True)
        try:
            run = db.execute("SELECT env_id FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if run is None:
                known = [r[0] for r in db.execute("SELECT run_id FROM runs ORDER BY created_at")]
                raise ExportError(f"{db_path}: no run {run_id!r} (runs: {', '.join(known) or 'none'})")
            excluded = {r[0] for r in db.execute("SELECT name FROM labellers WHERE excluded")}
            rows = db.execute(
                "SELECT q.query_id, q.session, l.kind, l.label, l.labeller, l.created_at FROM queries q "
                "JOIN labels l ON l.run_id = q.run_id AND l.query_id = q.query_id AND l.retracted_at IS NULL "
                "WHERE q.run_id = ? AND q.repeat_of IS NULL ORDER BY q.pk, l.id",
                (run_id,),
            ).fetchall()
        finally:
            db.close()
    except sqlite3.DatabaseError as e:
        raise ExportError(f"{db_path}: not a readable labelling server store ({e})") from e
    drop = excluded | exclude
    answers: dict[str, dict[str, tuple[float | None, float]]] = {}  # query -> labeller -> (label, time)
    sessions: dict[str, int] = {}
    for query_id, session, kind, label, labeller, created_at in rows:
        if labeller not in drop:  # later answers of one labeller replace earlier ones (ordered by id)
            answers.setdefault(query_id, {})[labeller] = (float(label) if kind == "label" else None, created_at)
            sessions[query_id] = session
    out = []
    for query_id, given in answers.items():
        label = _majority({who: v for who, (v, _) in given.items()})
        if label is not None:
            agreed = sorted(who for who, (v, _) in given.items() if v == label)
            out.append({"query_id": query_id, "session": sessions[query_id], "label": label,
                        "labeller": "+".join(agreed), "time": max(t for _, t in given.values())})  # fmt: skip
    return run[0], sorted(out, key=lambda q: q["time"])


def _segments(path: Path) -> dict[str, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            arrays = {k: np.asarray(f[k]) for k in f.files}
    except (OSError, ValueError) as e:
        raise ExportError(f"{path}: not a readable session file ({e})") from e
    for side in ("a", "b"):
        missing = [k for k in SEGMENT_FIELDS if k != "next_obs" and f"{side}_{k}" not in arrays]
        if missing:
            raise ExportError(f"{path}: not a session file of queried segments (no {side}_{missing[0]})")
        if f"{side}_next_obs" not in arrays:  # written before segments kept it: each step's successor
            obs = arrays[f"{side}_obs"]
            arrays[f"{side}_next_obs"] = np.concatenate([obs[:, 1:], obs[:, -1:]], axis=1)
    return arrays


def build(data_dir: Path, run_id: str, segments_dir: Path, exclude: set[str]) -> tuple[dict, dict]:
    """(arrays, metadata) of the dataset."""
    env_id, queries = labelled_queries(data_dir, run_id, exclude)
    sessions: dict[int, dict[str, np.ndarray]] = {}
    parts: dict[str, list[np.ndarray]] = {f"{s}.{k}": [] for s in "ab" for k in SEGMENT_FIELDS}
    for q in queries:
        match = QUERY_ID_RE.fullmatch(q["query_id"])
        if match is None or int(match.group(1)) != q["session"]:
            raise ExportError(f"query {q['query_id']!r} of run {run_id!r} was not asked by a CleanRLHF trainer")
        session, index = int(match.group(1)), int(match.group(2))
        if session not in sessions:
            path = segments_dir / f"session_{session:04d}.npz"
            if not path.is_file():
                raise ExportError(f"{path}: missing, the segments of session {session} (see --segments-dir)")
            sessions[session] = _segments(path)
        arrays = sessions[session]
        if index >= len(arrays["a_obs"]):
            raise ExportError(f"query {q['query_id']!r}: its session file holds {len(arrays['a_obs'])} pairs")
        for side in "ab":
            for k in SEGMENT_FIELDS:
                parts[f"{side}.{k}"].append(arrays[f"{side}_{k}"][index])
    if not queries:
        raise ExportError(f"run {run_id!r} has no labels to export")
    first = sessions[min(sessions)]
    dtypes = {"mask": np.bool_}
    out = {
        k: np.ascontiguousarray(np.stack(v).astype(dtypes.get(k.split(".")[1], np.float32))) for k, v in parts.items()
    }
    out["label"] = np.array([q["label"] for q in queries], np.float32)
    out["time"] = np.array([q["time"] for q in queries], np.float64)
    out["session"] = np.array([q["session"] for q in queries], np.int64)
    meta = {
        "env_id": env_id,
        "segment_length": int(first["a_obs"].shape[1]),
        "obs_dim": int(first["a_obs"].shape[2]),
        "act_dim": int(first["a_actions"].shape[2]),
        "state_dim": int(first["a_physics_states"].shape[2]),
        "true_rewards_known": True,  # the trainer's segments carry the environment's rewards
        "source": "server-export",
        "created_at": datetime.now(timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z"),
        "pairs": {
            "run_id": [run_id] * len(queries),
            "labeller": [q["labeller"] for q in queries],
            "query_id": [q["query_id"] for q in queries],
        },
    }
    return out, meta


def export(data_dir: Path, run_id: str, out: Path, segments_dir: Path | None = None, exclude=()) -> int:
    """Write the dataset; returns how many labelled pairs it holds."""
    data_dir = Path(data_dir)
    if segments_dir is None:
        segments_dir = data_dir.resolve().parent / "pending_queries"
        if data_dir.resolve().parent.name != run_id or not segments_dir.is_dir():
            raise ExportError(
                f"--segments-dir is needed: {data_dir} is not the server of run {run_id!r} started by its trainer "
                "(give the run's pending_queries directory)"
            )
    from safetensors.numpy import save_file

    arrays, meta = build(data_dir, run_id, Path(segments_dir), set(exclude))
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    save_file(arrays, str(tmp), metadata={"format": FORMAT, "version": str(VERSION), "dataset": json.dumps(meta)})
    os.replace(tmp, out)
    return len(arrays["label"])


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def main(argv: list[str] | None = None) -> int:
    parser = _Parser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data-dir", type=Path, required=True, help="the server's --data-dir")
    parser.add_argument("--run-id", required=True, help="the run on the server (its run directory's name)")
    parser.add_argument("--out", type=Path, required=True, help="the dataset file to write (.safetensors)")
    parser.add_argument(
        "--segments-dir",
        type=Path,
        help="the run's pending_queries directory (default: next to a data dir the run's trainer started)",
    )
    parser.add_argument(
        "--exclude-labeller", action="append", default=[], metavar="NAME", help="leave out this labeller's labels"
    )
    args = parser.parse_args(argv)
    try:
        n = export(args.data_dir, args.run_id, args.out, args.segments_dir, args.exclude_labeller)
    except ExportError as e:
        print(f"{parser.prog}: error: {e}", file=sys.stderr)
        return 2
    print(f"wrote {n} labelled pairs of run {args.run_id} to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
