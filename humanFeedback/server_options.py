"""The labelling server's command line, checked before anything starts (issue 9, item 4): flags in range and finite,
a token that can travel in a header and a link, a data dir that can be created, and the ready signal. A problem is
one line and exit code 2 (argparse's usual usage dump is left out), and nothing is created on the way.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

HERE = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = HERE / "feedback_data"  # gitignored
TOKEN_ENV = "FEEDBACK_SERVER_TOKEN"
# Bounds of the numeric flags: beyond them a value is a typo, or breaks the server later (an infinite lease cannot be
# written as a time, so every claim would fail; NaN compares false with everything). Checked before anything starts.
LEASE_SECONDS = (1.0, 7 * 24 * 3600.0)
MAX_UPLOAD_MB = (0.1, 4096.0)
THREADS = (2, 1024)
TOKEN_RE = re.compile(r"[!-~]{1,512}")  # printable ASCII, no spaces: it travels in a header and in the page's URL


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        """One line and exit code 2 (argparse would print the whole usage first)."""
        self.exit(2, f"{self.prog}: error: {message} (see --help)\n")


def _number(kind: type, lo: float, hi: float) -> Callable[[str], float]:
    def parse(text: str) -> float:
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
        if not (math.isfinite(value) and lo <= value <= hi):
            raise argparse.ArgumentTypeError(f"{text!r} is not in [{lo:g}, {hi:g}]")
        return value

    return parse


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = _Parser(description="CleanRLHF human-feedback labelling server (waitress).")
    p.add_argument("--host", default="127.0.0.1", help="bind address; anything but loopback requires --token")
    p.add_argument("--port", type=_number(int, 0, 65535), default=5001, help="TCP port (0 picks a free one)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="SQLite database and clip store")
    p.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"shared secret required on every request ('auto' generates one; default ${TOKEN_ENV}, which keeps it "
        "off the command line, where every user of the machine can read it)",
    )
    p.add_argument(
        "--lease-seconds",
        type=_number(float, *LEASE_SECONDS),
        default=120.0,
        help=f"how long a claimed query stays reserved, in [{LEASE_SECONDS[0]:g}, {LEASE_SECONDS[1]:g}]",
    )
    p.add_argument(
        "--threads",
        type=_number(int, *THREADS),
        default=64,
        help=f"worker threads, in [{THREADS[0]}, {THREADS[1]}]; each open long-poll holds one, and a quarter are "
        "kept for everything else (a long-poll beyond the rest is answered at once, with retry_after)",
    )
    p.add_argument(
        "--max-upload-mb",
        type=_number(float, *MAX_UPLOAD_MB),
        default=64.0,
        help=f"largest request body (413 beyond), in [{MAX_UPLOAD_MB[0]:g}, {MAX_UPLOAD_MB[1]:g}]",
    )
    p.add_argument(
        "--ready-file",
        type=Path,
        help="once the server answers, write {url, port, pid, data_dir, api_version} there as JSON (atomically; "
        "never the token), and remove it on a clean stop: a machine-readable ready signal",
    )
    args = p.parse_args(argv)
    if args.ready_file is not None and (args.ready_file.is_dir() or not args.ready_file.parent.is_dir()):
        p.error(f"--ready-file {args.ready_file}: must be a file in an existing directory")
    if args.token is not None and args.token != "auto" and not TOKEN_RE.fullmatch(args.token):
        where = "--token" if argv is not None and "--token" in argv else f"--token (or ${TOKEN_ENV})"
        p.error(f"{where} must be 1-512 printable ASCII characters without spaces")
    return args


def data_dir_problem(path: Path) -> str | None:
    """Why ``path`` cannot be (or be made) the data dir, found without creating anything; None if it can."""
    if path.exists():
        if not path.is_dir():
            return "exists and is not a directory"
        return None if os.access(path, os.W_OK | os.X_OK) else "is not writable"
    parent = path.absolute().parent
    while not parent.exists():
        parent = parent.parent
    if not parent.is_dir():
        return f"cannot be created: {parent} is a file, not a directory"
    if not os.access(parent, os.W_OK | os.X_OK):
        return f"cannot be created: {parent} is not writable"
    return None


def remove_new_dirs(path: Path, existed: Path) -> None:
    """Undo the creation of ``path`` (and its new parents up to ``existed``) after a failed start: only what a
    server that never answered can have written there."""
    for name in ("feedback.sqlite3-wal", "feedback.sqlite3-shm", "feedback.sqlite3", "server.lock"):
        (path / name).unlink(missing_ok=True)
    for d in [path / "clips", path, *(p for p in path.parents if existed in p.parents)]:
        try:
            d.rmdir()  # only if empty: anything we did not write stays
        except OSError:
            break


def write_ready_file(path: Path, url: str, port: int, data_dir: Path) -> None:
    """The ready signal: written once the socket listens and the store is open (requests are served from then on),
    by rename, so a reader never sees half a file. No token: files get shared."""
    info = {"url": url, "port": port, "pid": os.getpid(), "data_dir": str(data_dir), "api_version": 1}
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    tmp.write_text(json.dumps(info) + "\n")
    os.replace(tmp, path)
