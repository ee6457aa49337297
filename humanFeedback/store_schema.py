"""The labelling server's SQLite database: its tables, the columns later versions added (ALTERed into an older
database when it is opened), and how it is opened (WAL, ``synchronous=FULL``, foreign keys; see store.py for why).
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

SCHEMA_VERSION = 2
# Columns added after version 1, added to an older database when it is opened (ALTER TABLE keeps its rows).
_ADDED_COLUMNS = (
    ("queries", "wanted", "INTEGER NOT NULL DEFAULT 1"),  # how many different labellers answer it
    ("queries", "repeat_of", "TEXT"),  # the query (same run) this one re-asks, sides swapped
    ("queries", "leased_at", "REAL"),  # when the current holder got the pair (renewals keep it)
    ("labels", "seconds", "REAL"),  # from being handed the pair to answering it
    ("labellers", "excluded", "INTEGER NOT NULL DEFAULT 0"),
)

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS runs (
    run_id TEXT PRIMARY KEY,
    instruction TEXT NOT NULL,
    env_id TEXT NOT NULL,
    meta TEXT NOT NULL DEFAULT '{}',
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS clips (
    clip_id TEXT PRIMARY KEY,          -- sha256 of the bytes; the file is clips/<clip_id>.<ext>
    mime TEXT NOT NULL,
    size INTEGER NOT NULL,
    created_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS labellers (
    name TEXT PRIMARY KEY,
    first_seen REAL NOT NULL,
    last_seen REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS queries (
    pk INTEGER PRIMARY KEY AUTOINCREMENT,   -- upload order: queries are served first in, first out
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    query_id TEXT NOT NULL,
    session INTEGER NOT NULL,
    clip_a TEXT NOT NULL REFERENCES clips(clip_id),
    clip_b TEXT NOT NULL REFERENCES clips(clip_id),
    meta TEXT NOT NULL DEFAULT '{}',
    state TEXT NOT NULL CHECK (state IN ('pending', 'leased', 'labelled', 'skipped')),
    lease_holder TEXT REFERENCES labellers(name),
    lease_expires REAL,
    created_at REAL NOT NULL,
    UNIQUE (run_id, query_id)
);
CREATE INDEX IF NOT EXISTS queries_state ON queries (state, pk);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    run_id TEXT NOT NULL,
    query_id TEXT NOT NULL,
    kind TEXT NOT NULL CHECK (kind IN ('label', 'skip')),
    label REAL CHECK (label IN (0.0, 0.5, 1.0)),
    labeller TEXT NOT NULL REFERENCES labellers(name),
    created_at REAL NOT NULL,
    retracted_at REAL,
    FOREIGN KEY (run_id, query_id) REFERENCES queries(run_id, query_id)
);
CREATE INDEX IF NOT EXISTS labels_labeller ON labels (labeller, id);
-- a query's answers: who may claim it (a doubled query's second labeller, a repeat's), whether it is done
CREATE INDEX IF NOT EXISTS labels_query ON labels (run_id, query_id);
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,  -- global and increasing; a run's events are a subsequence
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    type TEXT NOT NULL CHECK (type IN ('label', 'skip', 'retract')),
    query_id TEXT NOT NULL,
    label REAL,
    labeller TEXT NOT NULL,
    created_at REAL NOT NULL
);
CREATE INDEX IF NOT EXISTS events_run ON events (run_id, seq);
CREATE TABLE IF NOT EXISTS sessions (   -- announced by the trainer before it renders them (issue 12, item 6)
    run_id TEXT NOT NULL REFERENCES runs(run_id),
    session INTEGER NOT NULL,
    queries INTEGER NOT NULL,
    created_at REAL NOT NULL,
    PRIMARY KEY (run_id, session)
);
"""


def _text(raw: bytes) -> str:
    """SQLite text -> str. Bytes that are not UTF-8 (an edited database) become U+FFFD instead of an error that
    would fail every listing holding the row."""
    return raw.decode("utf-8", "replace")


def open_database(path: Path) -> sqlite3.Connection:
    """Open (or create) the database at ``path`` and bring its tables to :data:`SCHEMA_VERSION`. One connection is
    shared by the server's threads (``check_same_thread=False``): its user serialises every use."""
    db = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=10)
    db.row_factory = sqlite3.Row
    db.text_factory = _text
    mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
    if mode.lower() != "wal":
        db.close()
        raise RuntimeError(f"SQLite refused WAL mode (got {mode!r}) for {path.parent}")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("PRAGMA foreign_keys=ON")
    db.executescript(SCHEMA)
    for table, column, decl in _ADDED_COLUMNS:
        if column not in {r["name"] for r in db.execute(f"PRAGMA table_info({table})")}:
            db.execute(f"ALTER TABLE {table} ADD COLUMN {column} {decl}")
    db.execute("INSERT OR REPLACE INTO meta VALUES ('schema_version', ?)", (str(SCHEMA_VERSION),))
    return db
