"""Durable store of the labelling server: SQLite (WAL) for runs, queries, labels, labellers and the event log,
plus the content-addressed clip files on disk (clip_files.py).

Durability: every mutation is one transaction committed before the HTTP handler answers. The database runs in
WAL mode with ``synchronous=FULL``: a commit appends its frames to the ``-wal`` file with ``write()`` *and*
``fsync()``s it before ``COMMIT`` returns. ``write()`` alone already survives ``kill -9`` of the server (the data
sits in the kernel's page cache, and SQLite replays the WAL when the database is opened again); the ``fsync``
makes an acknowledged label survive a power cut or kernel crash too (``synchronous=NORMAL`` in WAL mode may roll
back the last commits in that case). One fsync per label costs about a millisecond, nothing next to a human.
Clip files are written to a temporary name, fsynced, renamed to their final name and the directory fsynced,
all before the query row that refers to them is committed.

Concurrency: one connection guarded by one ``threading.Condition``. Every operation runs under the condition's
lock, which makes "claim the next pending query" atomic (a query is never leased to two labellers), and every
mutation ``notify_all``s so that long-polls (``events``, ``claim(wait=...)``) wake up without busy-waiting.

Sessions: a trainer announces how many pairs a session will hold before it renders them, so that progress counts
the pairs still being rendered (``rendering``; store_sessions.py) instead of reading "nothing pending" mid-session.

Query states: ``pending`` -> ``leased`` (to one labeller until ``lease_expires``) -> ``labelled`` | ``skipped``.
A labeller holds one lease, or two when their page prefetches the next pair (``claim(..., hold=2)``).
An expired lease counts as pending and may be claimed by anyone; the old holder can still answer as long as no
one else has claimed it. Undo retracts the labeller's last answer (a ``retract`` event) and leases that query
back to them.

Labeller quality (issue 12, item 4): doubled queries, repeats and exclusions follow store_labellers.py, and the
statistics are labeller_stats.py. The tables are store_schema.py; the dicts and errors handed out, store_rows.py;
session announcements, store_sessions.py.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import store_labellers as labellers
import store_sessions as sessions
from clip_files import CLIP_MIMES, clip_path, parse_clip_name, remove_temporaries, write_clip
from labeller_stats import labeller_stats
from store_labellers import CLAIMABLE
from store_rows import Conflict, Forbidden, NotFound, StoreError, event_dict, iso, query_dict, run_dict
from store_schema import open_database

try:
    import fcntl
except ImportError:  # not POSIX: no data-dir lock
    fcntl = None  # type: ignore[assignment]

# Label encoding is fixed project-wide: P(B > A). "skip" is not a label.
CHOICES: dict[str, float | None] = {"A": 0.0, "B": 1.0, "equal": 0.5, "skip": None}
__all__ = ["CHOICES", "Conflict", "Forbidden", "NotFound", "Store", "StoreError", "iso"]


class Store:
    """All state of the labelling server. Thread-safe; one instance per data dir and process."""

    def __init__(self, data_dir: Path, lease_seconds: float = 120.0, clock: Callable[[], float] = time.time) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.clip_dir = self.data_dir / "clips"
        self.clip_dir.mkdir(parents=True, exist_ok=True)
        # One server per data dir: leases and long-poll wake-ups live in this process's memory.
        self._lock_file = open(self.data_dir / "server.lock", "a+b")  # noqa: SIM115 (held until close())
        if fcntl is not None:
            try:
                fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                self._lock_file.close()
                raise RuntimeError(f"another feedback server is already using {self.data_dir}") from None
        self.lease_seconds = float(lease_seconds)
        self._clock = clock
        remove_temporaries(self.clip_dir)
        self._cond = threading.Condition(threading.Lock())
        self._closing = False
        # One connection shared by the server's threads; every use is under self._cond's lock.
        self._db = open_database(self.data_dir / "feedback.sqlite3")

    # ------------------------------------------------------------------ plumbing
    @contextmanager
    def _tx(self, notify: bool = True) -> Iterator[sqlite3.Connection]:
        """One write transaction; the caller holds ``self._cond``. Commits (durably) or rolls back.

        ``notify`` wakes the long-polls; bookkeeping writes that change nothing they wait for pass False
        (otherwise two waiting claimers would wake each other forever).
        """
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")
        if notify:
            self._cond.notify_all()

    def close(self) -> None:
        """Wake every long-poll, then checkpoint the WAL and close the database. A second call does nothing."""
        self.begin_shutdown()
        with self._cond:
            if self._lock_file.closed:
                return
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
            self._lock_file.close()

    def begin_shutdown(self) -> None:
        """Make every waiting long-poll return now (used on SIGTERM)."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()

    def _wait(self, deadline: float, wake_at: float | None = None) -> bool:
        """Block (lock released) until notified, ``wake_at`` or ``deadline``. False once the deadline passed."""
        now = self._clock()
        if self._closing or now >= deadline:
            return False
        until = deadline if wake_at is None else min(deadline, wake_at)
        self._cond.wait(timeout=max(until - now, 0.0) + 0.001)
        return not self._closing

    # ------------------------------------------------------------------ labellers
    def set_excluded(self, labeller: str, excluded: bool) -> int:
        """Exclude ``labeller`` (or take them back): their answers count towards no query and go into no export;
        the queries they answered are settled again (pending for the others where nobody else answered).
        Returns how many queries changed state."""
        with self._cond, self._tx() as db:
            return labellers.set_excluded(db, labeller, excluded, self._clock())

    def excluded_labellers(self) -> set[str]:
        """Names whose labels must not be used: not for training, not in an exported dataset."""
        with self._cond:
            return labellers.excluded_names(self._db)

    def labeller_stats(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """Per labeller (of one run, or all): answers, median answer time, agreement on doubled queries,
        self-consistency on repeats, excluded or not (labeller_stats.py)."""
        if run_id is not None:
            self.get_run(run_id)
        with self._cond:
            stats = labeller_stats(self._db, run_id)
        return [dict(st, first_seen=iso(st["first_seen"]), last_seen=iso(st["last_seen"])) for st in stats]

    # ------------------------------------------------------------------ runs
    def register_run(
        self, run_id: str, instruction: str, env_id: str, meta: dict[str, Any] | None = None
    ) -> tuple[dict[str, Any], bool]:
        """Create the run, or return the existing one unchanged (idempotent). Returns ``(run, created)``."""
        with self._cond:
            row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
            if row is not None:
                return run_dict(row), False
            with self._tx() as db:
                db.execute(
                    "INSERT INTO runs VALUES (?, ?, ?, ?, ?)",
                    (run_id, instruction, env_id, json.dumps(meta or {}), self._clock()),
                )
            return run_dict(self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()), True

    def get_run(self, run_id: str) -> dict[str, Any]:
        with self._cond:
            row = self._db.execute("SELECT * FROM runs WHERE run_id = ?", (run_id,)).fetchone()
        if row is None:
            raise NotFound("unknown_run", f"no run {run_id!r}")
        return run_dict(row)

    def list_runs(self) -> list[dict[str, Any]]:
        with self._cond:
            rows = self._db.execute("SELECT * FROM runs ORDER BY created_at, run_id").fetchall()
            return [dict(run_dict(r), counts=self._counts(r["run_id"])) for r in rows]

    # ------------------------------------------------------------------ clips
    def put_clip(self, data: bytes, mime: str) -> str:
        """Write a clip into the store (content-addressed, atomic, fsynced: clip_files.py) and register it; returns
        its id (sha256 hex)."""
        clip_id = write_clip(self.clip_dir, data, mime)
        with self._cond, self._tx() as db:
            db.execute("INSERT OR IGNORE INTO clips VALUES (?, ?, ?, ?)", (clip_id, mime, len(data), self._clock()))
        return clip_id

    def clip_file(self, name: str) -> tuple[Path, str]:
        """The file and mime type of a stored clip named ``<sha256>.<ext>``; NotFound for anything else.

        Defence in depth: the name must match a strict pattern, be registered in the database, and the resolved
        path must sit directly inside the clip directory.
        """
        parsed = parse_clip_name(name)
        if parsed is None:
            raise NotFound("unknown_clip", "no such clip")
        clip_id, ext = parsed
        with self._cond:
            row = self._db.execute("SELECT mime FROM clips WHERE clip_id = ?", (clip_id,)).fetchone()
        path = None if row is None or CLIP_MIMES[row["mime"]] != ext else clip_path(self.clip_dir, name)
        if path is None:
            raise NotFound("unknown_clip", "no such clip")
        return path, row["mime"]

    # ------------------------------------------------------------------ queries
    def _query_dict(self, row: sqlite3.Row, now: float | None = None) -> dict[str, Any]:
        return query_dict(self._db, row, self._clock() if now is None else now)

    def add_query(
        self,
        run_id: str,
        query_id: str,
        session: int,
        clip_a: tuple[bytes, str],
        clip_b: tuple[bytes, str],
        meta: dict[str, Any] | None = None,
        wanted: int = 1,
    ) -> tuple[dict[str, Any], bool, bool]:
        """Store a query and its two clips (each ``(bytes, mime)``). Idempotent on ``(run_id, query_id)``.
        ``wanted``: how many different labellers answer it (2: a doubled query, for their agreement).

        Returns ``(query, created, same_content)``; a re-upload never duplicates, and ``same_content`` says
        whether its clips and session equal the stored ones.
        """
        self.get_run(run_id)
        id_a = self.put_clip(*clip_a)
        id_b = self.put_clip(*clip_b)
        with self._cond:
            row = self._db.execute(
                "SELECT * FROM queries WHERE run_id = ? AND query_id = ?", (run_id, query_id)
            ).fetchone()
            if row is None:
                with self._tx() as db:
                    db.execute(
                        "INSERT INTO queries (run_id, query_id, session, clip_a, clip_b, meta, state, created_at, "
                        "wanted) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                        (run_id, query_id, session, id_a, id_b, json.dumps(meta or {}), self._clock(), wanted),
                    )
                row = self._db.execute(
                    "SELECT * FROM queries WHERE run_id = ? AND query_id = ?", (run_id, query_id)
                ).fetchone()
                return self._query_dict(row), True, True
            same = (row["clip_a"], row["clip_b"], row["session"]) == (id_a, id_b, session)
            return self._query_dict(row), False, same

    def announce_session(self, run_id: str, session: int, queries: int) -> None:
        """Record that ``session`` of the run will hold ``queries`` pairs (the trainer says so before rendering
        them). Idempotent; a repeat with another size replaces it."""
        self.get_run(run_id)
        with self._cond, self._tx() as db:
            sessions.announce(db, run_id, session, queries, self._clock())

    def add_repeat(self, run_id: str, query_id: str, session: int, repeat_of: str) -> tuple[dict[str, Any], bool]:
        """Re-ask the labelled query ``repeat_of`` as ``query_id``, its clips swapped, of the labellers who labelled
        it (store_labellers.py). Idempotent on ``query_id``.
        Returns ``(query, created)``; Conflict ``not_labelled`` when nobody labelled the original yet."""
        self.get_run(run_id)
        with self._cond:
            row = self._db.execute(
                "SELECT * FROM queries WHERE run_id = ? AND query_id = ?", (run_id, query_id)
            ).fetchone()
            if row is not None:
                if row["repeat_of"] != repeat_of:
                    raise Conflict("query_exists", f"query {query_id!r} exists and is no repeat of {repeat_of!r}")
                return self._query_dict(row), False
            orig = labellers.repeatable(self._db, run_id, repeat_of)
            with self._tx() as db:
                labellers.insert_repeat(db, orig, query_id, session, self._clock())
            row = self._db.execute(
                "SELECT * FROM queries WHERE run_id = ? AND query_id = ?", (run_id, query_id)
            ).fetchone()
            return self._query_dict(row), True

    def get_query(self, run_id: str, query_id: str) -> dict[str, Any]:
        with self._cond:
            row = self._db.execute(
                "SELECT * FROM queries WHERE run_id = ? AND query_id = ?", (run_id, query_id)
            ).fetchone()
            if row is None:
                raise NotFound("unknown_query", f"no query {query_id!r} in run {run_id!r}")
            return self._query_dict(row)

    # ------------------------------------------------------------------ labelling
    def claim(self, labeller: str, run_id: str | None = None) -> dict[str, Any] | None:
        """Lease the next pending query to ``labeller`` (or renew the one they hold); None if there is none."""
        leases = self.claim_leases(labeller, run_id, hold=1)
        return leases[0] if leases else None

    def claim_leases(self, labeller: str, run_id: str | None = None, hold: int = 1) -> list[dict[str, Any]]:
        """Lease up to ``hold`` queries to ``labeller``: those they already hold (matching ``run_id``; renewed),
        then the next pending ones (first uploaded, first served). Returns them in upload order; [] if none.

        With ``hold=1`` a labeller holds one lease: if they already hold one it is renewed and returned again (a
        page reload resumes the same pair). ``hold=2`` is the page's prefetch: the pair on screen and the next one,
        whose clips it loads while the first plays. Every other lease of the labeller (another run, beyond
        ``hold``) is given back. Claiming never waits: a client that went away while waiting must not be handed a
        lease (see ``wait_claimable``).
        """
        if run_id is not None:
            self.get_run(run_id)
        run_filter = "" if run_id is None else " AND run_id = :run"
        with self._cond:
            labellers.check_not_excluded(self._db, labeller)
            now = self._clock()
            params = {"who": labeller, "now": now, "run": run_id, "until": now + self.lease_seconds, "n": hold}
            held = self._db.execute(
                "SELECT pk FROM queries WHERE state = 'leased' AND lease_holder = :who"
                + run_filter
                + " ORDER BY pk LIMIT :n",
                params,
            ).fetchall()
            fresh = self._db.execute(
                f"SELECT pk FROM queries q WHERE {CLAIMABLE} AND NOT (q.state = 'leased' AND q.lease_holder = :who)"
                + run_filter
                + " ORDER BY pk LIMIT :n",
                params,
            ).fetchall()
            keep = sorted([r["pk"] for r in held] + [r["pk"] for r in fresh][: hold - len(held)])
            marks = ",".join("?" * len(keep)) or "NULL"
            with self._tx(notify=bool(keep)) as db:
                labellers.touch(db, labeller, now)
                released = db.execute(
                    "UPDATE queries SET state = 'pending', lease_holder = NULL, lease_expires = NULL "
                    f"WHERE state = 'leased' AND lease_holder = ? AND pk NOT IN ({marks})",
                    (labeller, *keep),
                ).rowcount
                db.execute(
                    "UPDATE queries SET leased_at = CASE WHEN state = 'leased' AND lease_holder = ? "
                    "AND leased_at IS NOT NULL THEN leased_at ELSE ? END, "
                    f"state = 'leased', lease_holder = ?, lease_expires = ? WHERE pk IN ({marks})",
                    (labeller, now, labeller, params["until"], *keep),
                )
            if released and not keep:
                self._cond.notify_all()
            rows = self._db.execute(f"SELECT * FROM queries WHERE pk IN ({marks}) ORDER BY pk", keep).fetchall()
            return [self._query_dict(r, now) for r in rows]

    def wait_claimable(self, run_id: str | None = None, wait: float = 0.0, labeller: str | None = None) -> int:
        """How many queries could be claimed now (by ``labeller``: not the second answer of a doubled query they
        answered, nor a repeat of what they did not label); if none, block up to ``wait`` s until some could
        (long-poll), or until a session is announced (0 then: the page shows how many pairs are being rendered
        meanwhile). Wakes on any change and when the next lease expires, so nobody polls in a loop.
        """
        if run_id is not None:
            self.get_run(run_id)
        run_filter = "" if run_id is None else " AND run_id = :run"
        with self._cond:
            deadline = self._clock() + wait
            rendering = self._counts(run_id)["rendering"]
            while True:
                params = {"now": self._clock(), "run": run_id, "who": labeller}
                claimable = (
                    CLAIMABLE
                    if labeller is not None
                    else "(q.state = 'pending' OR (q.state = 'leased' AND q.lease_expires <= :now))"
                )
                n = self._db.execute(
                    f"SELECT COUNT(*) FROM queries q WHERE {claimable}" + run_filter, params
                ).fetchone()[0]
                if n or self._counts(run_id)["rendering"] > rendering:
                    return n
                nxt = self._db.execute(
                    "SELECT MIN(lease_expires) FROM queries WHERE state = 'leased'" + run_filter, params
                ).fetchone()[0]
                if not self._wait(deadline, nxt):
                    return 0

    def release(self, labeller: str) -> int:
        """Give back every lease ``labeller`` holds (page closed, name changed). Returns how many."""
        with self._cond, self._tx() as db:
            cur = db.execute(
                "UPDATE queries SET state = 'pending', lease_holder = NULL, lease_expires = NULL "
                "WHERE state = 'leased' AND lease_holder = ?",
                (labeller,),
            )
            return cur.rowcount

    def answer(self, labeller: str, run_id: str, query_id: str, choice: str) -> dict[str, Any]:
        """Record ``labeller``'s answer (``A``/``B``/``equal``/``skip``) to a query they hold; returns the event.

        The lease may have expired as long as nobody else claimed the query meanwhile.
        """
        label = CHOICES[choice]
        with self._cond:
            now = self._clock()
            row = self._db.execute(
                "SELECT * FROM queries WHERE run_id = ? AND query_id = ?", (run_id, query_id)
            ).fetchone()
            if row is None:
                raise NotFound("unknown_query", f"no query {query_id!r} in run {run_id!r}")
            if row["state"] in ("labelled", "skipped"):
                raise Conflict("already_answered", "this query has already been answered")
            if row["state"] != "leased" or row["lease_holder"] != labeller:
                raise Conflict("not_leased", "this query is not leased to you (claim it first)")
            kind = "skip" if label is None else "label"
            seconds = None if row["leased_at"] is None else max(now - row["leased_at"], 0.0)
            with self._tx() as db:
                labellers.touch(db, labeller, now)
                db.execute(
                    "INSERT INTO labels (run_id, query_id, kind, label, labeller, created_at, seconds) "
                    "VALUES (?,?,?,?,?,?,?)",
                    (run_id, query_id, kind, label, labeller, now, seconds),
                )
                db.execute(
                    "UPDATE queries SET state = 'pending', lease_holder = NULL, lease_expires = NULL, leased_at = NULL "
                    "WHERE pk = ?",
                    (row["pk"],),
                )
                labellers.settle(db, row["pk"])
                seq = db.execute(
                    "INSERT INTO events (run_id, type, query_id, label, labeller, created_at) VALUES (?,?,?,?,?,?)",
                    (run_id, kind, query_id, label, labeller, now),
                ).lastrowid
            return event_dict(self._db.execute("SELECT * FROM events WHERE seq = ?", (seq,)).fetchone())

    def undo(self, labeller: str, run_id: str | None = None) -> dict[str, Any]:
        """Retract ``labeller``'s last answer (label or skip) and lease that query back to them.

        Emits a ``retract`` event so a trainer that already fetched the label drops it. Repeated undos walk
        further back. Conflict ``nothing_to_undo`` when there is no answer left.
        """
        run_filter = "" if run_id is None else " AND run_id = :run"
        with self._cond:
            now = self._clock()
            params = {"who": labeller, "run": run_id, "now": now}
            last = self._db.execute(
                "SELECT * FROM labels WHERE labeller = :who AND retracted_at IS NULL"
                + run_filter
                + " ORDER BY id DESC LIMIT 1",
                params,
            ).fetchone()
            if last is None:
                raise Conflict("nothing_to_undo", "you have no answer left to undo")
            with self._tx() as db:
                db.execute("UPDATE labels SET retracted_at = ? WHERE id = ?", (now, last["id"]))
                db.execute(
                    "UPDATE queries SET state = 'pending', lease_holder = NULL, lease_expires = NULL "
                    "WHERE state = 'leased' AND lease_holder = :who",
                    params,
                )
                db.execute(
                    "UPDATE queries SET state = 'leased', lease_holder = ?, lease_expires = ?, leased_at = ? "
                    "WHERE run_id = ? AND query_id = ?",
                    (labeller, now + self.lease_seconds, now, last["run_id"], last["query_id"]),
                )
                db.execute(
                    "INSERT INTO events (run_id, type, query_id, label, labeller, created_at) "
                    "VALUES (?, 'retract', ?, NULL, ?, ?)",
                    (last["run_id"], last["query_id"], labeller, now),
                )
            row = self._db.execute(
                "SELECT * FROM queries WHERE run_id = ? AND query_id = ?", (last["run_id"], last["query_id"])
            ).fetchone()
            return self._query_dict(row, now)

    def withdraw(self, run_id: str) -> int:
        """Remove the run's unanswered (pending or leased) queries, so labellers are no longer asked what the
        trainer no longer waits for (it ended). Answered queries and the event log stay; the rows of answers that
        were undone go with their query (their label and retract events remain). Returns how many."""
        self.get_run(run_id)
        with self._cond, self._tx() as db:
            unanswered = "SELECT query_id FROM queries WHERE run_id = :run AND state IN ('pending', 'leased')"
            db.execute(f"DELETE FROM labels WHERE run_id = :run AND query_id IN ({unanswered})", {"run": run_id})
            sessions.forget(db, run_id)
            return db.execute(
                "DELETE FROM queries WHERE run_id = :run AND state IN ('pending', 'leased')", {"run": run_id}
            ).rowcount

    # ------------------------------------------------------------------ reading
    def _counts(self, run_id: str | None) -> dict[str, int]:
        now = self._clock()
        where = "" if run_id is None else "WHERE run_id = ?"
        rows = self._db.execute(
            "SELECT CASE WHEN state = 'leased' AND lease_expires <= ? THEN 'pending' ELSE state END AS s, "
            f"COUNT(*) AS n FROM queries {where} GROUP BY s",
            (now,) if run_id is None else (now, run_id),
        ).fetchall()
        counts = {"pending": 0, "leased": 0, "labelled": 0, "skipped": 0}
        counts.update({r["s"]: r["n"] for r in rows})
        counts["total"] = sum(counts.values())
        counts["rendering"] = sessions.rendering(self._db, run_id)  # not part of ``total``, which counts queries
        return counts

    def status(self, run_id: str) -> dict[str, Any]:
        """Counts of the run's queries by state, and the seq of its last event (0 if none)."""
        self.get_run(run_id)
        with self._cond:
            last = self._db.execute("SELECT MAX(seq) FROM events WHERE run_id = ?", (run_id,)).fetchone()[0]
            return dict(self._counts(run_id), run_id=run_id, last_seq=last or 0)

    def progress(self, labeller: str | None, run_id: str | None = None) -> dict[str, Any]:
        """What the page shows: counts (of one run or all runs) and this labeller's own live answers."""
        if run_id is not None:
            self.get_run(run_id)
        with self._cond:
            counts = self._counts(run_id)
            mine = 0
            if labeller is not None:
                q = "SELECT COUNT(*) FROM labels WHERE labeller = ? AND retracted_at IS NULL"
                args: tuple[Any, ...] = (labeller,)
                if run_id is not None:
                    q, args = q + " AND run_id = ?", (labeller, run_id)
                mine = self._db.execute(q, args).fetchone()[0]
            return dict(counts, mine=mine)

    def events(self, run_id: str, after: int = 0, wait: float = 0.0, limit: int = 500) -> list[dict[str, Any]]:
        """The run's events with ``seq > after`` in order; if none, block up to ``wait`` seconds for one."""
        self.get_run(run_id)
        with self._cond:
            deadline = self._clock() + wait
            while True:
                rows = self._db.execute(
                    "SELECT * FROM events WHERE run_id = ? AND seq > ? ORDER BY seq LIMIT ?", (run_id, after, limit)
                ).fetchall()
                if rows or not self._wait(deadline):
                    return [event_dict(r) for r in rows]
