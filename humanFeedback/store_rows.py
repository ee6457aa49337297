"""What the store hands the HTTP layer: its rows as JSON-ready dicts (times as ISO 8601 UTC, ``meta`` as an
object, clips by file name), and the errors it raises, which become 4xx JSON answers.

A damaged row (an edited database) still converts: a time that is no time reads as None and a ``meta`` that is no
JSON object as ``{}``, so one row cannot break a listing.
"""

from __future__ import annotations

import json
import sqlite3
from datetime import datetime, timezone
from typing import Any

from clip_files import CLIP_MIMES


class StoreError(Exception):
    """Base of the errors the HTTP layer turns into 4xx JSON; ``code`` is a short machine-readable name."""

    status = 400

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


class NotFound(StoreError):
    status = 404


class Conflict(StoreError):
    status = 409


class Forbidden(StoreError):
    status = 403


def iso(ts: float) -> str | None:
    """Epoch seconds -> ISO 8601 UTC with milliseconds, e.g. ``2025-01-31T12:00:00.123Z``; None for a value that is
    no time (a damaged row must not break a listing)."""
    try:
        return datetime.fromtimestamp(ts, tz=timezone.utc).isoformat(timespec="milliseconds").replace("+00:00", "Z")
    except (TypeError, ValueError, OverflowError, OSError):
        return None


def _meta(text: object) -> dict[str, Any]:
    """A stored ``meta`` column -> the object; a damaged one reads as ``{}`` (the rest of the row stays usable)."""
    try:
        value = json.loads(text)  # type: ignore[arg-type]
    except (TypeError, ValueError, RecursionError):
        return {}
    return value if isinstance(value, dict) else {}


def run_dict(row: sqlite3.Row) -> dict[str, Any]:
    return {
        "run_id": row["run_id"],
        "instruction": row["instruction"],
        "env_id": row["env_id"],
        "meta": _meta(row["meta"]),
        "created_at": iso(row["created_at"]),
    }


def query_dict(db: sqlite3.Connection, row: sqlite3.Row, now: float) -> dict[str, Any]:
    """A ``queries`` row as the API shows it at time ``now``: an expired lease reads as pending."""
    state = row["state"]
    if state == "leased" and row["lease_expires"] <= now:
        state = "pending"  # an expired lease is pending again
    clips = {}
    for side in ("a", "b"):
        mime = db.execute("SELECT mime FROM clips WHERE clip_id = ?", (row[f"clip_{side}"],)).fetchone()
        clips[side] = f"{row[f'clip_{side}']}.{CLIP_MIMES[mime['mime']]}"
    out = {
        "run_id": row["run_id"],
        "query_id": row["query_id"],
        "session": row["session"],
        "state": state,
        "clip_a": clips["a"],
        "clip_b": clips["b"],
        "meta": _meta(row["meta"]),
        "created_at": iso(row["created_at"]),
    }
    if state == "leased":
        out["lease_holder"] = row["lease_holder"]
        out["lease_expires"] = iso(row["lease_expires"])
    return out


def event_dict(row: sqlite3.Row) -> dict[str, Any]:
    out = {
        "seq": row["seq"],
        "type": row["type"],
        "query_id": row["query_id"],
        "labeller": row["labeller"],
        "created_at": iso(row["created_at"]),
    }
    if row["type"] == "label":
        out["label"] = row["label"]
    return out
