"""Sessions announced by the trainer before it renders them (issue 12, item 6): how many pairs a session will hold,
so that progress counts the pairs still being rendered (``rendering``) instead of reading "nothing pending" while a
session is half uploaded. Functions over the store's connection; the store holds its lock and transaction.
"""

from __future__ import annotations

import sqlite3


def announce(db: sqlite3.Connection, run_id: str, session: int, queries: int, now: float) -> None:
    """Record that ``session`` of the run will hold ``queries`` pairs. Idempotent; another size replaces it."""
    db.execute(
        "INSERT INTO sessions VALUES (?, ?, ?, ?) ON CONFLICT(run_id, session) DO UPDATE SET queries = excluded.queries",
        (run_id, session, queries, now),
    )


def rendering(db: sqlite3.Connection, run_id: str | None) -> int:
    """Announced pairs not uploaded yet (still being rendered), of one run or all."""
    where = "" if run_id is None else "WHERE s.run_id = ?"
    return db.execute(
        "SELECT COALESCE(SUM(MAX(s.queries - (SELECT COUNT(*) FROM queries q WHERE q.run_id = s.run_id "
        f"AND q.session = s.session), 0)), 0) FROM sessions s {where}",
        () if run_id is None else (run_id,),
    ).fetchone()[0]


def forget(db: sqlite3.Connection, run_id: str) -> None:
    """Drop the run's announcements: it ended (withdrawn), so nothing more will come."""
    db.execute("DELETE FROM sessions WHERE run_id = :run", {"run": run_id})
