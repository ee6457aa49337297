"""The trainer's side of the human-feedback server (humanFeedback/feedback_server.py): pure HTTP, no shared files.

    client = FeedbackClient("http://127.0.0.1:5001", run_id="hopper-s1", token=None)
    client.register_run("make the hopper hop forward", "Hopper-v5")
    client.upload_query("s3-q7", session=3, clip_a=webm_a, clip_b=webm_b, mime="video/webm")
    log = LabelLog()                                         # rlhf.label_log
    log.apply(client.events(after=log.last_seq, wait=25))   # long-poll: returns as soon as a label arrives
    log.labels   # {"s3-q7": 1.0}  -- P(B > A): 0.0 A better, 1.0 B better, 0.5 equal; skips are in log.skipped

Every call is idempotent, so connection errors (a restarting server) are retried with exponential backoff.
Starting the server itself is :mod:`rlhf.feedback_server_process`.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

import requests

if TYPE_CHECKING:  # the log the long-poll folds events into; it imports this module's event type
    from rlhf.label_log import LabelLog


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
        labellers: int = 1,
    ) -> dict[str, Any]:
        """Send a query and its two clips (``mime`` video/webm or video/mp4). Idempotent on ``query_id``.
        ``labellers=2`` asks two different labellers (a doubled query, for their agreement).

        Returns the server's answer: ``{"query": {...}, "created": bool, "same_content": bool}``.
        """
        ext = {"video/webm": "webm", "video/mp4": "mp4"}[mime]
        files = {"clip_a": (f"a.{ext}", clip_a, mime), "clip_b": (f"b.{ext}", clip_b, mime)}
        data = {"query_id": query_id, "session": str(int(session))}
        if meta:
            data["meta"] = json.dumps(meta)
        if labellers != 1:
            data["labellers"] = str(int(labellers))
        return self._request("POST", f"/api/runs/{self.run_id}/queries", files=files, data=data)

    def announce_session(self, session: int, queries: int) -> None:
        """Tell the server that ``session`` will hold ``queries`` pairs, before they are rendered (idempotent), so
        that the page counts the pairs still being rendered."""
        body = {"session": int(session), "queries": int(queries)}
        self._request("POST", f"/api/runs/{self.run_id}/sessions", json=body)

    def repeat_query(self, query_id: str, session: int, repeat_of: str) -> dict[str, Any]:
        """Ask the labelled query ``repeat_of`` again as ``query_id`` (sides swapped), of the labellers who labelled
        it, to measure their self-consistency. Idempotent on ``query_id``."""
        body = {"query_id": query_id, "session": int(session), "repeat_of": repeat_of}
        return self._request("POST", f"/api/runs/{self.run_id}/repeats", json=body)

    def labeller_stats(self, whole_server: bool = False) -> list[dict[str, Any]]:
        """Per-labeller statistics (answers, median answer time, agreement, self-consistency, excluded) of this run,
        or of every run on the server."""
        params = {} if whole_server else {"run_id": self.run_id}
        return self._request("GET", "/api/labellers", params=params)["labellers"]

    def exclude_labeller(self, name: str, excluded: bool = True) -> int:
        """Exclude a labeller on the server (or take them back); how many queries changed state."""
        body = {"excluded": bool(excluded)}
        return int(
            self._request("POST", f"/api/labellers/{quote(name, safe='')}/exclude", json=body)["queries_changed"]
        )

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

    def withdraw(self) -> int:
        """Remove the run's unanswered queries from the server (the run no longer waits for them); how many."""
        return int(self._request("POST", f"/api/runs/{self.run_id}/withdraw")["withdrawn"])

    def status(self) -> RunStatus:
        s = self._request("GET", f"/api/runs/{self.run_id}/status")
        return RunStatus(**{k: s[k] for k in RunStatus.__dataclass_fields__})
