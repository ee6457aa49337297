"""The labeller-quality rules of the store (issue 12, item 4; the statistics are labeller_stats.py): which queries a
labeller may be handed, when a query has its answers, exclusions, and repeats. Functions over the store's
connection; the store holds its lock and transaction around every call.

A query may want answers from two different labellers (``wanted``): it goes back to pending after the first answer,
for anyone but who answered it, and is done once ``wanted`` labellers who are not excluded answered it. A *repeat*
re-asks an answered query (its clips swapped left for right) of the labellers who labelled the original, and only
of them, to measure their self-consistency. An excluded labeller can claim nothing more, and their answers count
towards no query: queries only they answered are pending again for the others.
"""

from __future__ import annotations

import sqlite3

from store_rows import Conflict, Forbidden, NotFound

# A query the labeller ``:who`` may be handed: pending (or its lease ran out), not answered by them already (the
# second answer of a doubled query comes from someone else), and, for a repeat, one whose original they labelled.
CLAIMABLE = (
    "(q.state = 'pending' OR (q.state = 'leased' AND q.lease_expires <= :now))"
    " AND NOT EXISTS (SELECT 1 FROM labels l WHERE l.run_id = q.run_id AND l.query_id = q.query_id"
    " AND l.labeller = :who AND l.retracted_at IS NULL)"
    " AND (q.repeat_of IS NULL OR EXISTS (SELECT 1 FROM labels o WHERE o.run_id = q.run_id"
    " AND o.query_id = q.repeat_of AND o.labeller = :who AND o.kind = 'label' AND o.retracted_at IS NULL))"
)


def touch(db: sqlite3.Connection, name: str, now: float) -> None:
    """Note that ``name`` was seen now (first seen too, the first time)."""
    db.execute(
        "INSERT INTO labellers (name, first_seen, last_seen) VALUES (?, ?, ?) "
        "ON CONFLICT(name) DO UPDATE SET last_seen = excluded.last_seen",
        (name, now, now),
    )


def check_not_excluded(db: sqlite3.Connection, labeller: str) -> None:
    row = db.execute("SELECT excluded FROM labellers WHERE name = ?", (labeller,)).fetchone()
    if row is not None and row["excluded"]:
        raise Forbidden("labeller_excluded", "your answers are no longer used here; ask the study's organiser")


def settle(db: sqlite3.Connection, pk: int) -> None:
    """Put an unleased query in the state its answers make: done (``labelled`` if one of them is a label, else
    ``skipped``) once ``wanted`` labellers who are not excluded answered it, else ``pending``."""
    row = db.execute(
        "SELECT q.wanted, COUNT(l.id) AS n, SUM(l.kind = 'label') AS labels FROM queries q "
        "LEFT JOIN labels l ON l.run_id = q.run_id AND l.query_id = q.query_id AND l.retracted_at IS NULL "
        "AND l.labeller NOT IN (SELECT name FROM labellers WHERE excluded) WHERE q.pk = ?",
        (pk,),
    ).fetchone()
    state = "pending" if row["n"] < row["wanted"] else ("labelled" if row["labels"] else "skipped")
    db.execute("UPDATE queries SET state = ? WHERE pk = ? AND state NOT IN ('leased', ?)", (state, pk, state))


def set_excluded(db: sqlite3.Connection, labeller: str, excluded: bool, now: float) -> int:
    """Exclude ``labeller`` (or take them back) and settle the queries they answered again. Returns how many
    queries changed state."""
    touch(db, labeller, now)
    db.execute("UPDATE labellers SET excluded = ? WHERE name = ?", (int(excluded), labeller))
    if excluded:  # a lease they hold goes back to the others
        db.execute(
            "UPDATE queries SET state = 'pending', lease_holder = NULL, lease_expires = NULL, leased_at = NULL "
            "WHERE state = 'leased' AND lease_holder = ?",
            (labeller,),
        )
    pks = [
        r["pk"]
        for r in db.execute(
            "SELECT DISTINCT q.pk, q.state FROM queries q JOIN labels l ON l.run_id = q.run_id AND "
            "l.query_id = q.query_id WHERE l.labeller = ? AND l.retracted_at IS NULL",
            (labeller,),
        )
    ]
    before = db.total_changes
    for pk in pks:
        settle(db, pk)
    return db.total_changes - before


def excluded_names(db: sqlite3.Connection) -> set[str]:
    return {r["name"] for r in db.execute("SELECT name FROM labellers WHERE excluded")}


def repeatable(db: sqlite3.Connection, run_id: str, repeat_of: str) -> sqlite3.Row:
    """The query ``repeat_of`` if it can be repeated: it exists, is no repeat itself, and a labeller who is not
    excluded labelled it. Raises NotFound or Conflict (``repeat_of_repeat``, ``not_labelled``) otherwise."""
    orig = db.execute("SELECT * FROM queries WHERE run_id = ? AND query_id = ?", (run_id, repeat_of)).fetchone()
    if orig is None:
        raise NotFound("unknown_query", f"no query {repeat_of!r} in run {run_id!r}")
    if orig["repeat_of"] is not None:
        raise Conflict("repeat_of_repeat", f"query {repeat_of!r} is itself a repeat")
    labelled = db.execute(
        "SELECT 1 FROM labels WHERE run_id = ? AND query_id = ? AND kind = 'label' AND retracted_at IS NULL "
        "AND labeller NOT IN (SELECT name FROM labellers WHERE excluded)",
        (run_id, repeat_of),
    ).fetchone()
    if labelled is None:
        raise Conflict("not_labelled", f"query {repeat_of!r} has no label to repeat yet")
    return orig


def insert_repeat(db: sqlite3.Connection, orig: sqlite3.Row, query_id: str, session: int, now: float) -> None:
    """Store ``query_id`` as a repeat of ``orig``, its clips swapped (so that the labeller does not answer from
    where the better clip was)."""
    db.execute(
        "INSERT INTO queries (run_id, query_id, session, clip_a, clip_b, meta, state, created_at, "
        "wanted, repeat_of) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, 1, ?)",
        (orig["run_id"], query_id, session, orig["clip_b"], orig["clip_a"], orig["meta"], now, orig["query_id"]),
    )
