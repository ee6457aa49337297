"""CleanRLHF labelling server: people compare two clips in a browser; the trainer talks to it over HTTP.

    python humanFeedback/feedback_server.py --host 127.0.0.1 --port 5001 --data-dir DIR [--token T]

``create_app(...)`` builds the Flask app (used by the tests); ``main()`` serves it with waitress. Every route is
documented in humanFeedback/README.md. This module never imports the trainer (``framework/``); the trainer starts
it as a subprocess by path and speaks HTTP to it.
"""

from __future__ import annotations

import argparse
import hmac
import json
import logging
import os
import re
import secrets
import signal
import socket
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

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
from store import CHOICES, Store, StoreError
from werkzeug.exceptions import HTTPException

HERE = Path(__file__).resolve().parent
DEFAULT_DATA_DIR = HERE / "feedback_data"  # gitignored
TOKEN_ENV = "FEEDBACK_SERVER_TOKEN"

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
) -> Flask:
    """Build the labelling app over ``data_dir`` (created if missing).

    ``token``: if set, every route but /static requires ``Authorization: Bearer <token>`` or ``?token=<token>``.
    Without a token only loopback ``Host`` headers are accepted (blocks DNS-rebinding from web pages);
    ``allowed_hosts`` adds names to that list. ``max_upload_bytes`` caps any request body (413 beyond).
    """
    app = _App(__name__, template_folder=str(HERE / "templates"), static_folder=str(HERE / "static"))
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
        return resp

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
        unknown = sorted((form.keys() - {"query_id", "session", "meta"}) | (files.keys() - {"clip_a", "clip_b"}))
        if unknown:
            raise ApiError(400, "unknown_field", f"unknown field(s): {', '.join(shown(k) for k in unknown[:5])}")
        for name in ("query_id", "session"):
            if len(form.getlist(name)) != 1:
                raise ApiError(400, "missing_field", f"exactly one form field {name!r} is required")
        query_id = check_id(form["query_id"], "query_id")
        if not re.fullmatch(r"[0-9]{1,9}", form["session"]):
            raise ApiError(400, "invalid_field", "session must be a non-negative integer (< 1e9)")
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
        query, created, same = store.add_query(run_id, query_id, int(form["session"]), clips[0], clips[1], meta)
        return jsonify(query=_query_out(query), created=created, same_content=same), 201 if created else 200

    @app.get("/api/runs/<run_id>/queries/<query_id>")
    def get_query(run_id: str, query_id: str) -> Response:
        _run_id(run_id)
        return jsonify(query=_query_out(store.get_query(run_id, check_id(query_id, "query_id"))))

    @app.get("/api/runs/<run_id>/events")
    def events(run_id: str) -> Response:
        _run_id(run_id)
        after = int_arg("after", 0, 0, 2**62)
        limit = int_arg("limit", 500, 1, 1000)
        evs = store.events(run_id, after=after, wait=wait_arg(), limit=limit)
        return jsonify(events=evs, last_seq=evs[-1]["seq"] if evs else after)

    @app.get("/api/runs/<run_id>/status")
    def status(run_id: str) -> Response:
        _run_id(run_id)
        return jsonify(store.status(run_id))

    # ---------------------------------------------------------------- page API
    def _optional_run(data: dict[str, Any]) -> str | None:
        run_id = data.get("run_id")
        return None if run_id is None else _run_id(check_id(run_id, "run_id"))

    @app.post("/api/claim")
    def claim() -> Response:
        data = json_body({"labeller", "run_id"}, {"labeller"})
        labeller = check_labeller(data["labeller"])
        run_id = _optional_run(data)
        q = store.claim(labeller, run_id)
        out = None if q is None else dict(_query_out(q), run=store.get_run(q["run_id"]))
        # lease_seconds: the page renews its lease (by claiming again) while the pair is on screen.
        return jsonify(query=out, progress=store.progress(labeller, run_id), lease_seconds=store.lease_seconds)

    @app.get("/api/wait")
    def wait_for_work() -> Response:
        run_id = request.args.get("run_id")
        run_id = None if run_id is None else _run_id(run_id)
        return jsonify(claimable=store.wait_claimable(run_id, wait=wait_arg()))

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
def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description="CleanRLHF human-feedback labelling server (waitress).")
    p.add_argument("--host", default="127.0.0.1", help="bind address; anything but loopback requires --token")
    p.add_argument("--port", type=int, default=5001, help="TCP port (0 picks a free one)")
    p.add_argument("--data-dir", type=Path, default=DEFAULT_DATA_DIR, help="SQLite database and clip store")
    p.add_argument(
        "--token",
        default=os.environ.get(TOKEN_ENV) or None,
        help=f"shared secret required on every request ('auto' generates one; default ${TOKEN_ENV})",
    )
    p.add_argument("--lease-seconds", type=float, default=120.0, help="how long a claimed query stays reserved")
    p.add_argument("--threads", type=int, default=32, help="worker threads (each open long-poll holds one)")
    p.add_argument("--max-upload-mb", type=float, default=64.0, help="largest request body (413 beyond)")
    args = p.parse_args(argv)
    if args.lease_seconds <= 0 or args.threads < 2 or args.max_upload_mb <= 0 or not 0 <= args.port < 65536:
        p.error("--lease-seconds and --max-upload-mb must be > 0, --threads >= 2, --port in [0, 65535]")
    return args


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

    import waitress  # imported here so that the tests of create_app do not need it

    max_bytes = int(args.max_upload_mb * 1024 * 1024)
    try:
        app = create_app(args.data_dir, token=token, lease_seconds=args.lease_seconds, max_upload_bytes=max_bytes)
    except RuntimeError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    store: Store = app.extensions["feedback_store"]
    try:
        server = waitress.create_server(
            app,
            host=args.host,
            port=args.port,
            threads=args.threads,
            # Slightly above Flask's limit so moderately oversized uploads get our JSON 413, not waitress's.
            max_request_body_size=2 * max_bytes,
            ident="cleanrlhf-feedback",
        )
    except OSError as e:
        print(f"error: cannot listen on {args.host}:{args.port}: {e}", file=sys.stderr)
        store.close()
        return 1

    def _stop(signum: int, _frame: object) -> None:
        store.begin_shutdown()  # open long-polls return at once
        raise SystemExit(0)  # waitress's loop catches it and shuts its threads down

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    shown = socket.gethostname() if args.host in ("0.0.0.0", "::") else args.host
    shown = f"[{shown}]" if ":" in shown else shown
    url = f"http://{shown}:{server.effective_port}/" + (f"?token={token}" if token else "")
    print(f"CleanRLHF feedback server (data: {args.data_dir.resolve()})", flush=True)
    print(f"Open {url}", flush=True)
    try:
        server.run()
    finally:
        server.close()
        store.close()
        print("feedback server stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
