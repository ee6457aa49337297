"""CleanRLHF labelling server: people compare two clips in a browser; the trainer talks to it over HTTP.

    python humanFeedback/feedback_server.py --host 127.0.0.1 --port 5001 --data-dir DIR [--token T]

``create_app(...)`` builds the Flask app (used by the tests); ``main()`` serves it with waitress. Every route is
documented in humanFeedback/README.md. This module never imports the trainer (``framework/``); the trainer starts
it as a subprocess by path and speaks HTTP to it.
"""

from __future__ import annotations

import errno
import hmac
import json
import logging
import os
import re
import secrets
import signal
import socket
import sqlite3
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from clip_files import CLIP_MIMES, sniff_clip_mime
from flask import Flask, Response, jsonify, render_template, request, send_file
from flask.json.provider import DefaultJSONProvider
from request_checks import (
    ENV_ID_RE,
    LOOPBACK_NAMES,
    MAX_INSTRUCTION,
    MAX_JSON_BYTES,
    ApiError,
    check_id,
    check_labeller,
    check_meta,
    check_text,
    host_name,
    int_arg,
    is_loopback,
    json_body,
    shown,
    wait_arg,
)
from server_options import TOKEN_ENV, data_dir_problem, parse_args, remove_new_dirs, write_ready_file
from store import CHOICES, Store, StoreError
from werkzeug.exceptions import HTTPException

HERE = Path(__file__).resolve().parent

log = logging.getLogger("feedback_server")
LONG_POLL_RETRY_S = 2  # when to come back, for a long-poll answered at once because every slot was taken
_SURROGATE_RE = re.compile("[\ud800-\udfff]")


class _JSON(DefaultJSONProvider):
    """UTF-8 JSON that always encodes: a lone surrogate that reached a stored row anyway (a store written before it
    was refused, an edited database) comes out as U+FFFD instead of failing the whole response (issue 9)."""

    ensure_ascii = False
    sort_keys = False

    def dumps(self, obj: Any, **kwargs: Any) -> str:
        text = super().dumps(obj, **kwargs)
        # With ensure_ascii=False a surrogate can only sit inside a JSON string, so replacing it keeps valid JSON.
        return _SURROGATE_RE.sub("\ufffd", text)


class _App(Flask):
    json_provider_class = _JSON


def _error(status: int, code: str, message: str, headers: dict[str, str] | None = None) -> Response:
    resp = jsonify(error=code, message=message)
    resp.status_code = status
    for k, v in (headers or {}).items():
        resp.headers[k] = v
    return resp


# ---------------------------------------------------------------------- the app
def create_app(
    data_dir: Path,
    token: str | None = None,
    lease_seconds: float = 120.0,
    max_upload_bytes: int = 64 * 1024 * 1024,
    allowed_hosts: set[str] | None = None,
    long_poll_slots: int | None = None,
) -> Flask:
    """Build the labelling app over ``data_dir`` (created if missing).

    ``token``: if set, every route but /static and the page (``GET /``) requires ``Authorization: Bearer <token>``
    or ``?token=<token>``.
    Without a token only loopback ``Host`` headers are accepted (blocks DNS-rebinding from web pages);
    ``allowed_hosts`` adds names to that list. ``max_upload_bytes`` caps any request body (413 beyond).
    ``long_poll_slots``: how many long-polls may block at once (None: no limit). Each holds a worker thread, so
    the CLI keeps some workers free for everything else; a long-poll beyond the slots is answered at once.
    """
    app = _App(__name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"))
    app.url_map.merge_slashes = False  # "/api/runs//status" is a JSON 404, not an HTML redirect
    app.config.update(
        MAX_CONTENT_LENGTH=max_upload_bytes,
        MAX_FORM_MEMORY_SIZE=MAX_JSON_BYTES,
        MAX_FORM_PARTS=16,
    )
    store = Store(Path(data_dir), lease_seconds=lease_seconds)
    app.extensions["feedback_store"] = store
    hosts = LOOPBACK_NAMES | (allowed_hosts or set())
    slots = None if long_poll_slots is None else threading.BoundedSemaphore(max(long_poll_slots, 1))

    @contextmanager
    def _long_poll(wait: float) -> Iterator[float]:
        """The seconds this request may block: ``wait`` while a slot is free, else 0 (answered at once, and told
        when to come back: ``_retry_after``), so that open long-polls never take the last worker (issue 9)."""
        if wait <= 0 or slots is None:
            yield wait
        elif slots.acquire(blocking=False):
            try:
                yield wait
            finally:
                slots.release()
        else:
            yield 0.0

    def _retry_after(resp: Response) -> Response:
        resp.headers["Retry-After"] = str(LONG_POLL_RETRY_S)
        return resp

    token_bytes = token.encode() if token else None

    @app.before_request
    def _guard() -> Response | None:
        if request.path.startswith("/static/"):
            return None
        # Browsers say where a request comes from; refuse anything a foreign page made us do.
        site = request.headers.get("Sec-Fetch-Site")
        # Following a link to the page from elsewhere (chat, mail) is fine: a GET navigation changes nothing.
        navigation = request.method in ("GET", "HEAD") and request.headers.get("Sec-Fetch-Mode") == "navigate"
        if site is not None and site not in ("same-origin", "none") and not navigation:
            return _error(403, "cross_site", "cross-site requests are not allowed")
        origin = request.headers.get("Origin")
        # Host part only: behind a TLS proxy the page is https:// while we see http://.
        if origin is not None and request.method not in ("GET", "HEAD") and urlsplit(origin).netloc != request.host:
            return _error(403, "cross_origin", "cross-origin requests are not allowed")
        if token_bytes is None:
            if host_name(request.host) not in hosts:
                return _error(400, "bad_host", "unexpected Host header (start the server with --token to serve it)")
            return None
        if request.path == "/" and request.method in ("GET", "HEAD"):
            # The page holds no data (like /static): it keeps the token of the link it was opened with and drops it
            # from the address bar, so a reload comes here without one (issue 9, item 5). Its API calls carry it.
            return None
        supplied = ""
        auth = request.headers.get("Authorization", "")
        if auth.startswith("Bearer "):
            supplied = auth[len("Bearer ") :]
        elif "token" in request.args:
            supplied = request.args.get("token", "")
        if not hmac.compare_digest(supplied.encode(), token_bytes):
            return _error(401, "unauthorized", "missing or wrong token", {"WWW-Authenticate": "Bearer"})
        return None

    @app.after_request
    def _headers(resp: Response) -> Response:
        resp.headers["X-Content-Type-Options"] = "nosniff"
        resp.headers["Referrer-Policy"] = "no-referrer"  # the page URL may carry the token
        resp.headers["X-Frame-Options"] = "DENY"
        resp.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; media-src 'self'; object-src 'none'; "
            "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
        )
        if request.path.startswith("/api/") or request.path == "/":
            resp.headers["Cache-Control"] = "no-store"
        return resp

    @app.errorhandler(ApiError)
    def _api_error(e: ApiError) -> Response:
        return _error(e.status, e.code, e.message)

    @app.errorhandler(StoreError)
    def _store_error(e: StoreError) -> Response:
        return _error(e.status, e.code, e.message)

    @app.errorhandler(HTTPException)
    def _http_error(e: HTTPException) -> Response:
        resp = e.get_response()
        code = re.sub(r"\W+", "_", (e.name or "error").lower()).strip("_")
        message = e.description
        if e.code == 413:
            code, message = "too_large", f"the request is larger than {max_upload_bytes} bytes (--max-upload-mb)"
        resp.set_data(json.dumps({"error": code, "message": message}))
        resp.content_type = "application/json"
        return resp  # type: ignore[return-value]  # werkzeug's Response (get_response), which Flask serves as is

    @app.errorhandler(Exception)
    def _unexpected(e: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.path)
        return _error(500, "internal_error", "internal server error (see the server log)")

    def _run_id(run_id: str) -> str:
        check_id(run_id, "run_id")
        store.get_run(run_id)
        return run_id

    def _query_out(q: dict[str, Any]) -> dict[str, Any]:
        return dict(q, clip_a_url=f"/clips/{q['clip_a']}", clip_b_url=f"/clips/{q['clip_b']}")

    # ---------------------------------------------------------------- page
    @app.get("/")
    def page() -> str:
        return render_template("index.html")

    # ---------------------------------------------------------------- trainer API
    @app.get("/api/health")
    def health() -> Response:
        return jsonify(status="ok", api_version=1)

    @app.get("/api/runs")
    def list_runs() -> Response:
        return jsonify(runs=store.list_runs())

    @app.post("/api/runs")
    def register_run() -> tuple[Response, int]:
        data = json_body({"run_id", "instruction", "env_id", "meta"}, {"run_id", "instruction", "env_id"})
        run_id = check_id(data["run_id"], "run_id")
        instruction = check_text(data["instruction"], "instruction", MAX_INSTRUCTION)
        if not isinstance(data["env_id"], str) or not ENV_ID_RE.fullmatch(data["env_id"]):
            raise ApiError(400, "invalid_field", f"env_id must be a string matching {ENV_ID_RE.pattern}")
        meta = check_meta(data.get("meta", {}))
        run, created = store.register_run(run_id, instruction, data["env_id"], meta)
        return jsonify(run=run, created=created), 201 if created else 200

    @app.get("/api/runs/<run_id>")
    def get_run(run_id: str) -> Response:
        _run_id(run_id)
        return jsonify(run=store.get_run(run_id), counts=store.status(run_id))

    @app.post("/api/runs/<run_id>/queries")
    def upload_query(run_id: str) -> tuple[Response, int]:
        _run_id(run_id)
        if request.mimetype != "multipart/form-data":
            raise ApiError(415, "unsupported_media_type", "upload a query as multipart/form-data")
        form, files = request.form, request.files
        fields = {"query_id", "session", "meta", "labellers"}
        unknown = sorted((form.keys() - fields) | (files.keys() - {"clip_a", "clip_b"}))
        if unknown:
            raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(shown(k) for k in unknown[:5])}")
        for name in ("query_id", "session"):
            if len(form.getlist(name)) != 1:
                raise ApiError(400, "missing_field", f"exactly one form field {name!r} is required")
        query_id = check_id(form["query_id"], "query_id")
        if not re.fullmatch(r"[0-9]{1,9}", form["session"]):
            raise ApiError(400, "invalid_field", "session must be a non-negative integer (< 1e9)")
        wanted = form.get("labellers", "1")
        if wanted not in ("1", "2"):
            raise ApiError(400, "invalid_field", "labellers must be 1 or 2 (how many different labellers answer it)")
        meta: dict[str, Any] = {}
        if "meta" in form:
            try:
                meta = check_meta(json.loads(form["meta"]))
            except (ValueError, RecursionError) as e:
                raise ApiError(400, "invalid_field", "meta must be a JSON object") from e
        clips = []
        for side in ("clip_a", "clip_b"):
            if len(files.getlist(side)) != 1:
                raise ApiError(400, "missing_field", f"exactly one file {side!r} is required")
            f = files[side]
            data = f.read()
            if not data:
                raise ApiError(400, "invalid_field", f"{side} is empty")
            mime = sniff_clip_mime(data)
            declared = f.mimetype
            if mime is None or (declared in CLIP_MIMES and declared != mime):
                raise ApiError(415, "unsupported_media_type", f"{side} must be a video/webm or video/mp4 file")
            clips.append((data, mime))
        query, created, same = store.add_query(
            run_id, query_id, int(form["session"]), clips[0], clips[1], meta, wanted=int(wanted)
        )
        return jsonify(query=_query_out(query), created=created, same_content=same), 201 if created else 200

    @app.post("/api/runs/<run_id>/sessions")
    def announce_session(run_id: str) -> Response:
        _run_id(run_id)
        data = json_body({"session", "queries"}, {"session", "queries"})
        for name, low, high in (("session", 0, 10**9 - 1), ("queries", 1, 100_000)):
            value = data[name]
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise ApiError(400, "invalid_field", f"{name} must be an integer in [{low}, {high}]")
        store.announce_session(run_id, data["session"], data["queries"])
        return jsonify(session=data["session"], queries=data["queries"], counts=store.status(run_id))

    @app.post("/api/runs/<run_id>/repeats")
    def repeat_query(run_id: str) -> tuple[Response, int]:
        _run_id(run_id)
        data = json_body({"query_id", "session", "repeat_of"}, {"query_id", "session", "repeat_of"})
        session = data["session"]
        if not isinstance(session, int) or isinstance(session, bool) or not 0 <= session < 10**9:
            raise ApiError(400, "invalid_field", "session must be a non-negative integer (< 1e9)")
        query, created = store.add_repeat(
            run_id, check_id(data["query_id"], "query_id"), session, check_id(data["repeat_of"], "repeat_of")
        )
        return jsonify(query=_query_out(query), created=created), 201 if created else 200

    @app.get("/api/runs/<run_id>/queries/<query_id>")
    def get_query(run_id: str, query_id: str) -> Response:
        _run_id(run_id)
        return jsonify(query=_query_out(store.get_query(run_id, check_id(query_id, "query_id"))))

    @app.get("/api/runs/<run_id>/events")
    def events(run_id: str) -> Response:
        _run_id(run_id)
        after = int_arg("after", 0, 0, 2**62)
        limit = int_arg("limit", 500, 1, 1000)
        wait = wait_arg()
        with _long_poll(wait) as granted:
            evs = store.events(run_id, after=after, wait=granted, limit=limit)
        last_seq = evs[-1]["seq"] if evs else after
        if granted < wait and not evs:
            return _retry_after(jsonify(events=evs, last_seq=last_seq, retry_after=LONG_POLL_RETRY_S))
        return jsonify(events=evs, last_seq=last_seq)

    @app.get("/api/runs/<run_id>/status")
    def status(run_id: str) -> Response:
        _run_id(run_id)
        return jsonify(store.status(run_id))

    @app.post("/api/runs/<run_id>/withdraw")
    def withdraw(run_id: str) -> Response:
        _run_id(run_id)
        return jsonify(withdrawn=store.withdraw(run_id), counts=store.status(run_id))

    # ---------------------------------------------------------------- page API
    def _optional_run(data: dict[str, Any]) -> str | None:
        run_id = data.get("run_id")
        return None if run_id is None else _run_id(check_id(run_id, "run_id"))

    @app.post("/api/claim")
    def claim() -> Response:
        data = json_body({"labeller", "run_id", "prefetch"}, {"labeller"})
        labeller = check_labeller(data["labeller"])
        run_id = _optional_run(data)
        prefetch = data.get("prefetch", False)
        if not isinstance(prefetch, bool):
            raise ApiError(400, "invalid_field", "prefetch must be true or false")
        leases = [dict(_query_out(q), run=store.get_run(q["run_id"])) for q in store.claim_leases(
            labeller, run_id, hold=2 if prefetch else 1)]  # fmt: skip
        # next: with prefetch, a second pair leased too, whose clips the page loads while the first plays.
        # lease_seconds: the page renews its leases (by claiming again) while the pair is on screen.
        return jsonify(
            query=leases[0] if leases else None,
            next=leases[1] if len(leases) > 1 else None,
            progress=store.progress(labeller, run_id),
            lease_seconds=store.lease_seconds,
        )

    @app.get("/api/wait")
    def wait_for_work() -> Response:
        run_id = request.args.get("run_id")
        run_id = None if run_id is None else _run_id(run_id)
        labeller = request.args.get("labeller")
        labeller = None if labeller is None else check_labeller(labeller)
        wait = wait_arg()
        with _long_poll(wait) as granted:
            claimable = store.wait_claimable(run_id, wait=granted, labeller=labeller)
        if granted < wait and not claimable:
            return _retry_after(jsonify(claimable=claimable, retry_after=LONG_POLL_RETRY_S))
        return jsonify(claimable=claimable)

    @app.post("/api/answer")
    def answer() -> Response:
        data = json_body({"labeller", "run_id", "query_id", "choice"}, {"labeller", "run_id", "query_id", "choice"})
        labeller = check_labeller(data["labeller"])
        run_id = _run_id(check_id(data["run_id"], "run_id"))
        query_id = check_id(data["query_id"], "query_id")
        if not isinstance(data["choice"], str) or data["choice"] not in CHOICES:
            raise ApiError(400, "invalid_field", f"choice must be one of {list(CHOICES)}")
        event = store.answer(labeller, run_id, query_id, data["choice"])
        return jsonify(event=event, progress=store.progress(labeller, run_id))

    @app.post("/api/undo")
    def undo() -> Response:
        data = json_body({"labeller", "run_id"}, {"labeller"})
        labeller = check_labeller(data["labeller"])
        run_id = _optional_run(data)
        q = store.undo(labeller, run_id)
        out = dict(_query_out(q), run=store.get_run(q["run_id"]))
        return jsonify(query=out, progress=store.progress(labeller, run_id))

    @app.post("/api/release")
    def release() -> Response:
        data = json_body({"labeller"}, {"labeller"})
        return jsonify(released=store.release(check_labeller(data["labeller"])))

    @app.get("/api/progress")
    def progress() -> Response:
        labeller = request.args.get("labeller")
        run_id = request.args.get("run_id")
        return jsonify(
            store.progress(
                None if labeller is None else check_labeller(labeller),
                None if run_id is None else _run_id(run_id),
            )
        )

    # ---------------------------------------------------------------- labeller quality (labeller_stats.py)
    def _labeller_stats() -> list[dict[str, Any]]:
        run_id = request.args.get("run_id")
        return store.labeller_stats(None if run_id is None else _run_id(run_id))

    @app.get("/api/labellers")
    def labellers() -> Response:
        return jsonify(labellers=_labeller_stats())

    @app.post("/api/labellers/<name>/exclude")
    def exclude_labeller(name: str) -> Response:
        name = check_labeller(name)
        data = json_body({"excluded"}, set())
        excluded = data.get("excluded", True)
        if not isinstance(excluded, bool):
            raise ApiError(400, "invalid_field", "excluded must be true or false")
        changed = store.set_excluded(name, excluded)
        return jsonify(labeller=name, excluded=excluded, queries_changed=changed)

    @app.get("/labellers")
    def labellers_page() -> str:
        return render_template("labellers.html", labellers=_labeller_stats(), run_id=request.args.get("run_id"))

    # ---------------------------------------------------------------- clips
    @app.get("/clips/<name>")
    def clip(name: str) -> Response:
        path, mime = store.clip_file(name)
        # Content-addressed, so immutable; conditional=True answers Range requests (seeking, looping).
        resp = send_file(path, mimetype=mime, conditional=True, etag=True, max_age=3600)
        resp.headers["Cache-Control"] = "private, max-age=3600, immutable"
        return resp

    return app


# ---------------------------------------------------------------------- CLI
def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(levelname)s %(message)s")
    token = secrets.token_urlsafe(24) if args.token == "auto" else args.token
    if not is_loopback(args.host) and not token:
        print(
            f"error: refusing to bind {args.host!r} without a token: anyone who can reach it could read clips and "
            f"label. Pass --token SECRET (or --token auto, or set ${TOKEN_ENV}), or bind 127.0.0.1.",
            file=sys.stderr,
        )
        return 2
    if token and len(token) < 16:
        print("warning: a token shorter than 16 characters is easy to guess", file=sys.stderr)
    data_dir = args.data_dir.expanduser()
    problem = data_dir_problem(data_dir)
    if problem is not None:
        print(f"error: --data-dir {data_dir}: {problem}", file=sys.stderr)
        return 2

    import waitress  # imported here so that the tests of create_app do not need it

    max_bytes = int(args.max_upload_mb * 1024 * 1024)
    # Listen first, so that a port in use leaves nothing behind (no data dir is created); the app is plugged in
    # once the store is open, before the first request is read.
    holder: dict[str, Flask] = {}
    try:
        server = waitress.create_server(
            lambda environ, start_response: holder["app"](environ, start_response),
            host=args.host,
            port=args.port,
            threads=args.threads,
            # Every open page holds a connection or two (keep-alive, its long-poll): waitress's default of 100
            # would stop accepting, health checks included, at about 40 labellers.
            connection_limit=max(100, 8 * args.threads),
            # Slightly above Flask's limit so moderately oversized uploads get our JSON 413, not waitress's.
            max_request_body_size=2 * max_bytes,
            ident="cleanrlhf-feedback",
        )
    except (OSError, ValueError) as e:
        reason = "the port is already in use" if getattr(e, "errno", None) == errno.EADDRINUSE else str(e)
        print(f"error: cannot listen on {args.host}:{args.port}: {reason}", file=sys.stderr)
        return 2
    existed = next(p for p in [data_dir.absolute(), *data_dir.absolute().parents] if p.exists())
    try:
        app = create_app(
            data_dir,
            token=token,
            lease_seconds=args.lease_seconds,
            max_upload_bytes=max_bytes,
            long_poll_slots=args.threads - max(args.threads // 4, 1),
        )
    except (RuntimeError, OSError, sqlite3.Error) as e:
        server.close()
        if not isinstance(e, RuntimeError):  # another server's data dir (RuntimeError) is left as it is
            remove_new_dirs(data_dir.absolute(), existed)
        print(f"error: {e}", file=sys.stderr)
        return 1 if isinstance(e, RuntimeError) else 2
    holder["app"] = app
    store: Store = app.extensions["feedback_store"]
    stopping = threading.Event()

    def _stop(signum: int, _frame: object) -> None:
        # A second signal (a second Ctrl-C; `uv run` forwarding one signal twice) must not interrupt the shutdown:
        # it would land in store.close() while that holds the store's lock and deadlock on it.
        if stopping.is_set():
            return
        stopping.set()
        store.begin_shutdown()  # open long-polls return at once
        raise SystemExit(0)  # waitress's loop catches it and shuts its threads down

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    shown_host = socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host
    shown_host = f"[{shown_host}]" if ":" in shown_host else shown_host
    # A token taken from the environment stays out of this output: it is someone's log file (the trainer keeps
    # an autostarted server's log in the run directory, which is shared), and its owner knows where it is.
    from_env = token is not None and token == os.environ.get(TOKEN_ENV)
    shown_token = f"${TOKEN_ENV}" if from_env else (quote(token, safe="") if token else "")
    url = f"http://{shown_host}:{server.effective_port}/" + (f"?token={shown_token}" if token else "")
    print(f"CleanRLHF feedback server (data: {data_dir.resolve()})", flush=True)
    print(f"Open {url}", flush=True)  # for people: programs wait for --ready-file (rlhf.server_ready)
    if args.ready_file is not None:
        base = f"http://{shown_host}:{server.effective_port}"
        write_ready_file(args.ready_file, base, server.effective_port, data_dir.resolve())
    try:
        server.run()
    finally:
        server.close()
        store.close()
        if args.ready_file is not None:
            args.ready_file.unlink(missing_ok=True)
        print("feedback server stopped", flush=True)
        # Stopped cleanly: a late repeat of the signal must not turn exit code 0 into death by that signal while
        # the interpreter finalises (it puts the default handlers back).
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
    return 0


if __name__ == "__main__":
    sys.exit(main())
