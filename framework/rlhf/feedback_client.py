"""The trainer's side of the human-feedback server (humanFeedback/feedback_server.py): pure HTTP, no shared files.

    client = FeedbackClient("http://127.0.0.1:5001", run_id="hopper-s1", token=None)
    client.register_run("make the hopper hop forward", "Hopper-v5")
    client.upload_query("s3-q7", session=3, clip_a=webm_a, clip_b=webm_b, mime="video/webm")
    log = LabelLog()
    log.apply(client.events(after=log.last_seq, wait=25))   # long-poll: returns as soon as a label arrives
    log.labels   # {"s3-q7": 1.0}  -- P(B > A): 0.0 A better, 1.0 B better, 0.5 equal; skips are in log.skipped

Every call is idempotent, so connection errors (a restarting server) are retried with exponential backoff.
``start_feedback_server`` runs the server as a subprocess by path (used by ``--feedback-server-autostart``);
this module never imports ``humanFeedback``.
"""

from __future__ import annotations

import atexit
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import requests

SERVER_SCRIPT = Path(__file__).resolve().parents[2] / "humanFeedback" / "feedback_server.py"
TOKEN_ENV = "FEEDBACK_SERVER_TOKEN"
MAX_WAIT = 30.0  # the server's long-poll cap
_RETRY_STATUS = {502, 503, 504}


class FeedbackServerError(RuntimeError):
    """The server answered with an error; ``status`` (HTTP), ``error`` (code) and ``message`` come from its JSON."""

    def __init__(self, status: int, error: str, message: str) -> None:
        super().__init__(f"feedback server: HTTP {status} {error}: {message}")
        self.status, self.error, self.message = status, error, message


class FeedbackConnectionError(ConnectionError):
    """The server could not be reached, even after retries."""


EventType = Literal["label", "skip", "retract"]


@dataclass(frozen=True)
class FeedbackEvent:
    """One entry of a run's event log. ``label`` is P(B > A) in {0.0, 0.5, 1.0} for ``label`` events, else None."""

    seq: int
    type: EventType
    query_id: str
    labeller: str
    created_at: str  # ISO 8601 UTC
    label: float | None = None


@dataclass(frozen=True)
class RunStatus:
    run_id: str
    pending: int
    leased: int
    labelled: int
    skipped: int
    total: int
    last_seq: int


@dataclass
class LabelLog:
    """The current answers of a run, folded from its event log (a retract undoes the query's last answer)."""

    last_seq: int = 0
    labels: dict[str, float] = field(default_factory=dict)
    skipped: set[str] = field(default_factory=set)

    def apply(self, events: Iterable[FeedbackEvent]) -> None:
        for ev in events:
            if ev.seq <= self.last_seq:
                continue  # already applied (e.g. a retried fetch)
            self.labels.pop(ev.query_id, None)
            self.skipped.discard(ev.query_id)
            if ev.type == "label":
                if ev.label not in (0.0, 0.5, 1.0):
                    raise ValueError(f"label event {ev.seq} carries {ev.label!r}, not P(B > A) in {{0, 0.5, 1}}")
                self.labels[ev.query_id] = float(ev.label)
            elif ev.type == "skip":
                self.skipped.add(ev.query_id)
            self.last_seq = ev.seq

    def answered(self, query_id: str) -> bool:
        return query_id in self.labels or query_id in self.skipped


class FeedbackClient:
    """Typed client for one run on the labelling server."""

    def __init__(
        self,
        url: str,
        run_id: str,
        token: str | None = None,
        timeout: float = 10.0,
        retries: int = 6,
        backoff: float = 0.25,
    ) -> None:
        """``timeout``: seconds to connect and per read (a long-poll adds its ``wait``); ``retries`` on connection
        errors and 502/503/504, sleeping ``backoff * 2**attempt`` (capped at 8 s) in between."""
        self.url = url.rstrip("/")
        self.run_id = run_id
        self.timeout = timeout
        self.retries = retries
        self.backoff = backoff
        self._http = requests.Session()
        self._http.headers["Accept"] = "application/json"
        if token:
            self._http.headers["Authorization"] = f"Bearer {token}"

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> FeedbackClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _request(self, method: str, path: str, extra_timeout: float = 0.0, **kw: Any) -> dict[str, Any]:
        last: Exception | None = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(self.backoff * 2 ** (attempt - 1), 8.0))
            try:
                resp = self._http.request(
                    method, self.url + path, timeout=(self.timeout, self.timeout + extra_timeout), **kw
                )
            except (requests.ConnectionError, requests.Timeout) as e:
                last = e
                continue
            if resp.status_code in _RETRY_STATUS:
                last = FeedbackServerError(resp.status_code, "unavailable", resp.text[:200])
                continue
            try:
                payload = resp.json()
            except ValueError:
                payload = None
            if not resp.ok:
                if isinstance(payload, dict):
                    raise FeedbackServerError(resp.status_code, payload.get("error", "?"), payload.get("message", ""))
                raise FeedbackServerError(resp.status_code, "http_error", resp.text[:200])
            if not isinstance(payload, dict):
                raise FeedbackServerError(resp.status_code, "bad_response", "the server did not answer JSON")
            return payload
        if isinstance(last, FeedbackServerError):
            raise last
        raise FeedbackConnectionError(
            f"feedback server {self.url} unreachable after {self.retries + 1} attempts: {last}"
        ) from last

    def health(self) -> dict[str, Any]:
        return self._request("GET", "/api/health")

    def register_run(self, instruction: str, env_id: str, meta: dict[str, Any] | None = None) -> dict[str, Any]:
        """Create the run (idempotent: an existing run is returned unchanged). Returns the run's JSON."""
        body = {"run_id": self.run_id, "instruction": instruction, "env_id": env_id, "meta": meta or {}}
        return self._request("POST", "/api/runs", json=body)["run"]

    def upload_query(
        self,
        query_id: str,
        session: int,
        clip_a: bytes,
        clip_b: bytes,
        mime: str = "video/webm",
        meta: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Send a query and its two clips (``mime`` video/webm or video/mp4). Idempotent on ``query_id``.

        Returns the server's answer: ``{"query": {...}, "created": bool, "same_content": bool}``.
        """
        ext = {"video/webm": "webm", "video/mp4": "mp4"}[mime]
        files = {"clip_a": (f"a.{ext}", clip_a, mime), "clip_b": (f"b.{ext}", clip_b, mime)}
        data = {"query_id": query_id, "session": str(int(session))}
        if meta:
            data["meta"] = json.dumps(meta)
        return self._request("POST", f"/api/runs/{self.run_id}/queries", files=files, data=data)

    def events(self, after: int = 0, wait: float = 0.0, limit: int = 500) -> list[FeedbackEvent]:
        """Events with ``seq > after``, oldest first. With ``wait > 0`` the server holds the request until an
        event arrives or ``wait`` seconds (≤ 30) pass, so callers never busy-wait."""
        wait = min(max(float(wait), 0.0), MAX_WAIT)
        payload = self._request(
            "GET",
            f"/api/runs/{self.run_id}/events",
            extra_timeout=wait,
            params={"after": int(after), "wait": f"{wait:.3f}", "limit": int(limit)},
        )
        return [
            FeedbackEvent(
                seq=e["seq"],
                type=e["type"],
                query_id=e["query_id"],
                labeller=e["labeller"],
                created_at=e["created_at"],
                label=e.get("label"),
            )
            for e in payload["events"]
        ]

    def all_events(self, after: int = 0) -> list[FeedbackEvent]:
        """Every event after ``after`` (pages through the log); a restarted trainer calls ``all_events(0)``."""
        out: list[FeedbackEvent] = []
        while True:
            page = self.events(after=after, limit=1000)
            out += page
            if len(page) < 1000:
                return out
            after = page[-1].seq

    def wait_for(
        self,
        query_ids: Iterable[str],
        log: LabelLog,
        timeout: float | None = None,
        on_progress: Callable[[LabelLog, int], None] | None = None,
    ) -> bool:
        """Long-poll the event log into ``log`` until every query in ``query_ids`` is answered (label or skip).

        Never busy-waits: each request blocks on the server for up to 25 s. ``on_progress(log, n_missing)`` is
        called after every batch of events and every empty poll (a place for a status line). Returns True when all
        are answered, False when ``timeout`` seconds passed first (None: wait forever).
        """
        wanted = set(query_ids)
        deadline = None if timeout is None else time.monotonic() + timeout
        while True:
            missing = sum(not log.answered(q) for q in wanted)
            if on_progress is not None:
                on_progress(log, missing)
            if missing == 0:
                return True
            left = 25.0 if deadline is None else min(25.0, deadline - time.monotonic())
            if left <= 0:
                return False
            log.apply(self.events(after=log.last_seq, wait=left))

    def is_up(self) -> bool:
        """Whether a feedback server answers at this URL (one quick try, no retries)."""
        try:
            self._http.get(self.url + "/api/health", timeout=2.0).raise_for_status()
            return True
        except requests.RequestException:
            return False

    def status(self) -> RunStatus:
        s = self._request("GET", f"/api/runs/{self.run_id}/status")
        return RunStatus(**{k: s[k] for k in RunStatus.__dataclass_fields__})


# ---------------------------------------------------------------------- running the server
class FeedbackServerProcess:
    """A server started by :func:`start_feedback_server`; ``stop()`` (or leaving the ``with``) ends it."""

    def __init__(self, proc: subprocess.Popen, url: str, token: str | None, log_path: Path) -> None:
        self.proc, self.url, self.token, self.log_path = proc, url, token, log_path

    @property
    def page_url(self) -> str:
        """The link to give labellers (carries the token)."""
        return self.url + "/" + (f"?token={self.token}" if self.token else "")

    def client(self, run_id: str, **kw: Any) -> FeedbackClient:
        return FeedbackClient(self.url, run_id, token=self.token, **kw)

    def stop(self, timeout: float = 10.0) -> int | None:
        """SIGTERM (clean shutdown: the WAL is checkpointed), then SIGKILL after ``timeout``. Returns the exit code."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode

    def __enter__(self) -> FeedbackServerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _log_tail(path: Path, n: int = 2000) -> str:
    try:
        return path.read_text(errors="replace")[-n:]
    except OSError:
        return ""


def start_feedback_server(
    host: str = "127.0.0.1",
    port: int = 5001,
    data_dir: str | Path | None = None,
    token: str | None = None,
    lease_seconds: float | None = None,
    max_upload_mb: float | None = None,
    log_path: str | Path | None = None,
    startup_timeout: float = 30.0,
    python: str = sys.executable,
) -> FeedbackServerProcess:
    """Start ``humanFeedback/feedback_server.py`` as a subprocess and return once it answers HTTP.

    ``port=0`` picks a free port (read back from the server's "Open http://..." line). The token travels in the
    environment, not on the command line. Output goes to ``log_path`` (default ``<data_dir>/server.log``).
    The process is stopped at interpreter exit if the caller did not stop it.
    Raises RuntimeError with the log's tail if the server exits or does not answer within ``startup_timeout``.
    """
    if not SERVER_SCRIPT.is_file():
        raise FileNotFoundError(f"feedback server not found at {SERVER_SCRIPT}")
    data = Path(data_dir) if data_dir is not None else SERVER_SCRIPT.parent / "feedback_data"
    data.mkdir(parents=True, exist_ok=True)
    log = Path(log_path) if log_path is not None else data / "server.log"
    offset = log.stat().st_size if log.exists() else 0
    cmd = [python, str(SERVER_SCRIPT), "--host", host, "--port", str(port), "--data-dir", str(data)]
    if lease_seconds is not None:
        cmd += ["--lease-seconds", str(lease_seconds)]
    if max_upload_mb is not None:
        cmd += ["--max-upload-mb", str(max_upload_mb)]
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    env.pop(TOKEN_ENV, None)
    if token:
        env[TOKEN_ENV] = token
    with open(log, "ab") as out:
        # Own session: a Ctrl-C in the trainer's terminal reaches the trainer, which then stops us cleanly.
        proc = subprocess.Popen(cmd, stdout=out, stderr=subprocess.STDOUT, env=env, start_new_session=True)
    server: FeedbackServerProcess | None = None
    deadline = time.monotonic() + startup_timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"feedback server exited with code {proc.returncode}:\n{_log_tail(log)}")
        if server is None:
            with open(log, "rb") as f:
                f.seek(offset)
                m = re.search(rb"Open (http://\S+?)/(?:\?token=\S*)?\s", f.read())
            if m:
                url = m.group(1).decode()
                if host in ("0.0.0.0", "::"):  # the printed host is the machine's name; we are local
                    url = re.sub(r"//.*:(\d+)$", r"//127.0.0.1:\1", url)
                server = FeedbackServerProcess(proc, url, token, log)
        if server is not None:
            try:
                server.client("health", timeout=2.0, retries=0).health()
                atexit.register(server.stop)
                return server
            except (FeedbackConnectionError, FeedbackServerError):
                pass
        time.sleep(0.05)  # bounded start-up wait only
    proc.kill()
    proc.wait()
    raise RuntimeError(f"feedback server did not answer within {startup_timeout:.0f} s:\n{_log_tail(log)}")
