"""CleanRLHF labelling server: people compare two clips in a browser; the trainer talks to it over HTTP.

    python humanFeedback/feedback_server.py --host 127.0.0.1 --port 5001 --data-dir DIR [--token T]

``create_app(...)`` builds the Flask app (used by the tests): the guard every request passes (token, Host, origin),
the response headers, the JSON errors, and the routes of feedback_routes.py; ``main()`` serves it with waitress.
Every route is documented in humanFeedback/README.md. This module never imports the trainer (``framework/``); the trainer starts
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
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

from feedback_routes import add_routes
from flask import Flask, Response, jsonify, request
from flask.json.provider import DefaultJSONProvider
from request_checks import LOOPBACK_NAMES, MAX_JSON_BYTES, ApiError, host_name, is_loopback
from server_options import TOKEN_ENV, data_dir_problem, parse_args, remove_new_dirs, write_ready_file
from store import Store, StoreError
from werkzeug.exceptions import HTTPException

HERE = Path(__file__).resolve().parent

log = logging.getLogger("feedback_server")
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

    add_routes(app, store, long_poll_slots)
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
