"""Reading run directories for the toolbox: discovery, TensorBoard scalars, videos and queried clips.

A run directory is read through its files only (the layout is documented in toolbox/README.md), with the
framework's own readers of its two contracts: ``run.json`` (rlhf.manifest) and the TensorBoard scalars
(rlhf.runs). Every path that comes from a request goes through :func:`run_path` / :func:`run_file`, which only ever
return paths inside the runs directory.
"""

from __future__ import annotations

import json
import math
import re
import sqlite3
import threading
from collections import Counter
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rlhf import runs as run_reader
from rlhf.manifest import ManifestError, effective_status, read_manifest

RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.+=-]*")
EVAL_VIDEO = re.compile(r"step_(\d+)\.mp4")
MEDIA_TYPES = {".mp4": "video/mp4", ".webm": "video/webm", ".png": "image/png", ".jpg": "image/jpeg"}
LABEL_NAMES = {0.0: "A better", 0.5: "equally good", 1.0: "B better", None: "skipped"}
UNANSWERED = "not answered"
# The labelling server a human-feedback run autostarted keeps its store here (humanFeedback/store.py): the clips
# people labelled are there even without --capture-video (issue 12, item 6).
SERVER_DB = Path("feedback_server") / "feedback.sqlite3"
SERVER_QUERY_ID = re.compile(r"s(\d+)-q(\d+)")
SHOWN_FLAGS = {"env_id", "exp_name", "seed"}  # columns of their own
RETURN_TAG, EVAL_TAG, LABELS_TAG = "charts/episodic_return", "eval/mean_return", "feedback/total_labels"
CURVE_METRICS = (RETURN_TAG, EVAL_TAG, "eval/std_return", "reward_model/val_accuracy", "reward_model/pearson")


class NotFound(LookupError):
    """A run or file that does not exist, or that a request may not reach (the app answers 404)."""


class BadRequest(ValueError):
    """A malformed request (the app answers 400)."""


# ---- safe paths -------------------------------------------------------------------------------------------------


def run_path(root: Path, run_id: str) -> Path:
    """The directory of run ``run_id``: a direct child of the (resolved) runs directory, never anything else."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id) or run_id in (".", ".."):
        raise NotFound(f"no run {run_id!r}")
    path = (root / run_id).resolve()
    if path.parent != root or not path.is_dir():  # symlinks leading out of the runs directory are refused too
        raise NotFound(f"no run {run_id!r}")
    return path


def run_file(root: Path, run_id: str, relative: str) -> Path:
    """A media file inside run ``run_id``; refuses absolute paths, '..', hidden parts, links out, other types."""
    run = run_path(root, run_id)
    parts = relative.replace("\\", "/").split("/")
    if relative.startswith("/") or any(p in ("", ".", "..") or p.startswith(".") for p in parts):
        raise NotFound(f"no file {relative!r} in run {run_id!r}")
    path = run.joinpath(*parts).resolve()
    if not path.is_relative_to(run) or path.suffix.lower() not in MEDIA_TYPES or not path.is_file():
        raise NotFound(f"no file {relative!r} in run {run_id!r}")
    return path


# ---- TensorBoard scalars ----------------------------------------------------------------------------------------


class ScalarCache:
    """The runs' scalars as the page's JSON wants them: tag -> [(step, value)] sorted by step, finite values only
    (JSON has no NaN). Read by the framework's one run reader (:class:`rlhf.runs.ScalarCache`: re-read only when an
    event file changed, a resumed run's re-logged steps keep the value written last, a truncated record ends a
    file quietly); thread-safe."""

    def __init__(self) -> None:
        self._reader = run_reader.ScalarCache()
        self._lock = threading.Lock()
        self._shaped: dict[Path, tuple[object, dict[str, list[tuple[int, float]]]]] = {}

    def scalars(self, run: Path) -> dict[str, list[tuple[int, float]]]:
        raw = self._reader.scalars(run)
        with self._lock:
            hit = self._shaped.get(run)
            if hit and hit[0] is raw:
                return hit[1]
        shaped = {tag: [(s.step, s.value) for s in series if math.isfinite(s.value)] for tag, series in raw.items()}
        with self._lock:
            self._shaped[run] = (raw, shaped)
        return shaped


def last(series: list[tuple[int, float]] | None) -> float | None:
    return series[-1][1] if series else None


def curve(scalars: dict[str, list[tuple[int, float]]], metric: str) -> list[list[float | int | None]]:
    """[[step, labels, value]] of ``metric``; labels = the cumulative number of labels given up to that step
    (None for runs without feedback, i.e. the oracle baselines)."""
    labels = scalars.get(LABELS_TAG)
    points, i, count = [], 0, 0.0
    for step, value in scalars.get(metric, []):
        if labels is not None:
            while i < len(labels) and labels[i][0] <= step:
                count = labels[i][1]
                i += 1
        points.append([step, None if labels is None else int(count), value])
    return points


# ---- run summaries ----------------------------------------------------------------------------------------------


def _read_json(path: Path) -> Any:
    """A run's JSON file, or None if it is missing or damaged (not UTF-8, not JSON, nested past the parser's
    recursion limit): one bad file must not fail the listing of every run."""
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError, RecursionError):
        return None


def manifest(run: Path) -> dict[str, Any]:
    """The run's ``run.json`` (rlhf.manifest: algorithm, env, seed, status, step), or {} for a run without a
    readable one (written before run.json existed, or damaged): one bad file must not fail the listing."""
    try:
        return read_manifest(run) or {}
    except ManifestError:
        return {}


def eval_videos(run: Path) -> list[tuple[int, str]]:
    """[(step, path relative to the run)] of ``videos/eval/step_*.mp4``, by step."""
    folder = run / "videos" / "eval"
    found = []
    for p in folder.glob("step_*.mp4") if folder.is_dir() else []:
        m = EVAL_VIDEO.fullmatch(p.name)
        if m and p.resolve().is_relative_to(run) and p.is_file():  # links out of the run are not listed
            found.append((int(m.group(1)), f"videos/eval/{p.name}"))
    return sorted(found)


def is_run(path: Path) -> bool:
    return path.is_dir() and (
        (path / "run.json").is_file() or (path / "args.json").is_file() or any(path.glob("events.out.tfevents.*"))
    )


def summarize(root: Path, run_id: str, cache: ScalarCache) -> dict[str, Any]:
    run = run_path(root, run_id)
    args = _read_json(run / "args.json")
    args = args if isinstance(args, dict) else {}
    parts = run_id.split("__")
    named = len(parts) == 4
    header = manifest(run)
    scalars = cache.scalars(run)
    last_step = max((s[-1][0] for s in scalars.values() if s), default=None)
    unix = int(parts[3]) if named and parts[3].isdigit() else int(run.stat().st_mtime)
    evaluation = _read_json(run / "evaluation" / "summary.json")
    return {
        "id": run_id,
        "env_id": header.get("env_id") or args.get("env_id") or (parts[0] if named else None),
        "exp_name": args.get("exp_name") or (parts[1] if named else run_id),
        "seed": args.get("seed", int(parts[2]) if named and parts[2].isdigit() else None),
        "time": unix,
        "date": datetime.fromtimestamp(unix, timezone.utc).strftime("%Y-%m-%d %H:%M UTC"),
        "algorithm": header.get("algorithm"),
        "status": effective_status(header) if header else None,
        "steps": header.get("step", last_step),
        "total_timesteps": args.get("total_timesteps"),
        "labels": None if last(scalars.get(LABELS_TAG)) is None else int(last(scalars[LABELS_TAG])),
        "last_eval_return": last(scalars.get(EVAL_TAG)),
        "last_train_return": last(scalars.get(RETURN_TAG)),
        "has_checkpoint": (run / "checkpoints" / "final.json").is_file(),
        "eval_videos": len(eval_videos(run)),
        "has_queries": (run / "videos" / "queries" / "index.jsonl").is_file() or (run / SERVER_DB).is_file(),
        "evaluation_mean_return": evaluation.get("mean") if isinstance(evaluation, dict) else None,
    }


def list_runs(root: Path, cache: ScalarCache) -> list[dict[str, Any]]:
    """Summaries of the runs directly under ``root``, newest first, each with ``differs``: its flags that differ
    from the other runs' (``flag_differences``), so that runs of one env, experiment and seed can be told apart."""
    runs, flags = [], {}
    for child in sorted(root.iterdir()) if root.is_dir() else []:
        if RUN_ID.fullmatch(child.name) and is_run(child):
            try:
                runs.append(summarize(root, child.name, cache))
            except (NotFound, OSError):  # removed or unreadable while listing
                continue
            args = _read_json(child / "args.json")
            flags[child.name] = args if isinstance(args, dict) else {}
    differs = flag_differences(flags)
    for r in runs:
        r["differs"] = differs.get(r["id"], {})
    return sorted(runs, key=lambda r: (-r["time"], r["id"]))


def flag_differences(flags: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """run id -> {flag: value} for every flag whose value in that run is not the most common one among the runs
    that have the flag (all of them on a tie). Flags a run lacks (another algorithm's) and the columns of their own
    (env, experiment, seed) are left out."""
    out: dict[str, dict[str, Any]] = {run: {} for run in flags}
    for key in sorted({k for args in flags.values() for k in args} - SHOWN_FLAGS):
        values = {run: json.dumps(args[key], sort_keys=True) for run, args in flags.items() if key in args}
        counts = Counter(values.values())
        if len(counts) < 2:
            continue
        (first, n_first), (_, n_second) = counts.most_common(2)
        common = first if n_first > n_second else None  # on a tie no value is "the usual one"
        for run, value in values.items():
            if value != common:
                out[run][key] = flags[run][key]
    return out


# ---- videos and queries -----------------------------------------------------------------------------------------


def videos(root: Path, run_id: str, cache: ScalarCache) -> dict[str, Any]:
    """Evaluation videos over training (with the evaluation return at their step) and evaluation.py's output."""
    run = run_path(root, run_id)
    returns = dict(cache.scalars(run).get(EVAL_TAG, []))
    over_training = [{"step": step, "path": rel, "return": returns.get(step)} for step, rel in eval_videos(run)]
    final = None
    summary = _read_json(run / "evaluation" / "summary.json")
    if isinstance(summary, dict):
        names = [n for n in summary.get("videos", []) if isinstance(n, str) and (run / "evaluation" / n).is_file()]
        final = {
            **{
                k: summary.get(k)
                for k in (
                    "algorithm",
                    "env_id",
                    "step",
                    "episodes",
                    "mean",
                    "std",
                    "ci95_low",
                    "ci95_high",
                    "min",
                    "max",
                    "median",
                    "returns",
                )
            },
            "videos": [f"evaluation/{n}" for n in names if "/" not in n],
            "plot": "evaluation/returns.png" if (run / "evaluation" / "returns.png").is_file() else None,
        }
    return {"eval": over_training, "evaluation": final}


def _label(value: Any) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or float(value) not in (0.0, 0.5, 1.0):
        raise ValueError(f"label {value!r}")
    return float(value)


def server_queries(run: Path) -> list[dict[str, Any]]:
    """The queries of the labelling server the run autostarted (its store in ``feedback_server/``, read-only), with
    the answer given to each (the latest not undone), in upload order; [] without one or if it cannot be read."""
    db_path = run / SERVER_DB
    if not db_path.is_file():
        return []
    try:
        db = sqlite3.connect(f"{db_path.resolve().as_uri()}?mode=ro", uri=True, timeout=2)
    except sqlite3.Error:
        return []
    try:
        rows = db.execute(
            "SELECT q.query_id, q.session, q.state, ca.clip_id || '.' || CASE ca.mime WHEN 'video/mp4' THEN 'mp4' "
            "ELSE 'webm' END, cb.clip_id || '.' || CASE cb.mime WHEN 'video/mp4' THEN 'mp4' ELSE 'webm' END, "
            "(SELECT l.label FROM labels l WHERE l.run_id = q.run_id AND l.query_id = q.query_id "
            "AND l.retracted_at IS NULL ORDER BY l.id DESC LIMIT 1) "
            "FROM queries q JOIN clips ca ON ca.clip_id = q.clip_a JOIN clips cb ON cb.clip_id = q.clip_b "
            "WHERE q.run_id = ? ORDER BY q.pk",
            (run.name,),
        ).fetchall()
    except sqlite3.Error:  # not a labelling store, or one being created
        return []
    finally:
        db.close()
    out = []
    for query_id, session, state, clip_a, clip_b, label in rows:
        m = SERVER_QUERY_ID.fullmatch(str(query_id))
        answered = state in ("labelled", "skipped")
        out.append({
            "session": int(session),
            "query": int(m.group(2)) if m else len(out),
            "step": None,
            "label": label if answered and label in (0.0, 0.5, 1.0) else None,
            "answered": answered,
            "clip_a": f"feedback_server/clips/{clip_a}",
            "clip_b": f"feedback_server/clips/{clip_b}",
        })  # fmt: skip
    return out


def queries(root: Path, run_id: str, session: int | None = None) -> dict[str, Any]:
    """Queried clip pairs from ``videos/queries/index.jsonl`` (one session, or all), with their labels; without
    that index (no --capture-video), those of the labelling server the run autostarted (``server_queries``).

    Malformed lines and clip paths that leave ``videos/queries/`` are counted in ``invalid_lines`` and left out;
    a clip still being rendered has ``exists`` false.
    """
    run = run_path(root, run_id)
    folder = run / "videos" / "queries"
    index = folder / "index.jsonl"
    if not index.is_file() and (run / SERVER_DB).is_file():
        return _server_listing(root, run_id, server_queries(run), session)
    entries, sessions, invalid = [], set(), 0
    lines = index.read_text(errors="replace").splitlines() if index.is_file() else []
    for line in lines:
        if not line.strip():
            continue
        try:
            q = json.loads(line)
            entry = {
                "session": int(q["session"]),
                "query": int(q["query"]),
                "step": int(q["step"]),
                "label": _label(q.get("label")),
            }
            for side in ("a", "b"):
                clip = q[f"clip_{side}"]
                if not isinstance(clip, str):
                    raise ValueError("clip path")
                path = run_file(root, run_id, f"videos/queries/{clip}") if (folder / clip).is_file() else None
                if path is None and not (folder / clip).resolve().is_relative_to(folder.resolve()):
                    raise ValueError("clip outside videos/queries")
                entry[f"clip_{side}"] = f"videos/queries/{clip}"
                entry[f"exists_{side}"] = path is not None
        except (KeyError, TypeError, ValueError, NotFound):
            invalid += 1
            continue
        entry["label_name"] = LABEL_NAMES[entry["label"]]
        sessions.add(entry["session"])
        if session is None or entry["session"] == session:
            entries.append(entry)
    return {"sessions": sorted(sessions), "queries": entries, "invalid_lines": invalid}


def _server_listing(root: Path, run_id: str, found: list[dict[str, Any]], session: int | None) -> dict[str, Any]:
    entries = []
    for q in found:
        for side in ("a", "b"):
            try:
                run_file(root, run_id, q[f"clip_{side}"])
                q[f"exists_{side}"] = True
            except NotFound:
                q[f"exists_{side}"] = False
        q["label_name"] = LABEL_NAMES[q["label"]] if q.pop("answered") else UNANSWERED
        if session is None or q["session"] == session:
            entries.append(q)
    return {"sessions": sorted({q["session"] for q in found}), "queries": entries, "invalid_lines": 0}
