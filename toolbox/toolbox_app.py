"""The toolbox's Flask app: a page (static/) and the JSON endpoints it reads, over one runs directory.

The routes are documented in toolbox/README.md. Every file served comes from :func:`toolbox_runs.run_file`
(media inside a run of the runs directory) or from this folder's ``static/``; errors are JSON 4xx.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import toolbox_runs as runs
from flask import Flask, jsonify, request, send_file, send_from_directory
from flask.json.provider import DefaultJSONProvider
from werkzeug.exceptions import HTTPException

HERE = Path(__file__).resolve().parent
STATIC = HERE / "static"
MAX_TAGS = 32

# The page loads nothing from elsewhere (an offline machine has no CDN) and runs no inline script.
SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; media-src 'self'; object-src 'none'; "
    "base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
}


def _finite(value: Any) -> Any:
    """``value`` with every NaN or infinity replaced by None: JSON has neither (Python writes ``NaN``, which the
    page's JSON.parse refuses, failing the whole view), and a run's files may hold them (args.json, summary.json)."""
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, dict):
        return {k: _finite(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_finite(v) for v in value]
    return value


class _JSON(DefaultJSONProvider):
    def dumps(self, obj: Any, **kwargs: Any) -> str:
        return super().dumps(_finite(obj), **kwargs)


class _App(Flask):
    json_provider_class = _JSON


def create_app(runs_dir: str | Path) -> Flask:
    root = Path(runs_dir).expanduser().resolve()
    app = _App(__name__, static_folder=None)
    app.config["RUNS_DIR"] = root
    app.url_map.merge_slashes = False  # '//etc/passwd' reaches run_file (and is refused) instead of a redirect
    cache = runs.ScalarCache()

    @app.after_request
    def _headers(response):
        response.headers.update(SECURITY_HEADERS)
        if request.path.startswith("/api/"):
            response.headers["Cache-Control"] = "no-store"
        return response

    @app.errorhandler(runs.NotFound)
    def _not_found(e):
        return jsonify(error=str(e)), 404

    @app.errorhandler(runs.BadRequest)
    def _bad_request(e):
        return jsonify(error=str(e)), 400

    @app.errorhandler(HTTPException)
    def _http_error(e):
        return jsonify(error=e.description or e.name), e.code

    @app.get("/")
    def index():
        return send_from_directory(STATIC, "index.html")

    @app.get("/static/<name>")
    def static_file(name: str):
        if name not in ("toolbox.js", "toolbox.css"):
            raise runs.NotFound(f"no static file {name!r}")
        return send_from_directory(STATIC, name)

    @app.get("/api/runs")
    def list_runs():
        return jsonify(runs_dir=str(root), runs=runs.list_runs(root, cache))

    @app.get("/api/runs/<run_id>")
    def run_detail(run_id: str):
        summary = runs.summarize(root, run_id, cache)
        args = runs._read_json(runs.run_path(root, run_id) / "args.json")
        return jsonify(**summary, args=args if isinstance(args, dict) else {})

    @app.get("/api/runs/<run_id>/scalars")
    def scalars(run_id: str):
        data = cache.scalars(runs.run_path(root, run_id))
        tags = request.args.getlist("tag")
        if not tags:
            return jsonify(tags=sorted(data))
        if len(tags) > MAX_TAGS:
            raise runs.BadRequest(f"at most {MAX_TAGS} tags per request")
        return jsonify(scalars={t: data.get(t, []) for t in tags})

    @app.get("/api/runs/<run_id>/curves")
    def curves(run_id: str):
        metric = request.args.get("metric", runs.RETURN_TAG)
        if metric not in runs.CURVE_METRICS:
            raise runs.BadRequest(f"metric must be one of {', '.join(runs.CURVE_METRICS)}")
        data = cache.scalars(runs.run_path(root, run_id))
        return jsonify(metric=metric, has_labels=runs.LABELS_TAG in data, points=runs.curve(data, metric))

    @app.get("/api/runs/<run_id>/videos")
    def videos(run_id: str):
        return jsonify(runs.videos(root, run_id, cache))

    @app.get("/api/runs/<run_id>/queries")
    def queries(run_id: str):
        session = request.args.get("session")
        if session is not None and not (session.isdigit() and len(session) < 9):
            raise runs.BadRequest("session must be a non-negative integer")
        return jsonify(runs.queries(root, run_id, None if session is None else int(session)))

    @app.get("/files/<run_id>/<path:relative>")
    def run_media(run_id: str, relative: str):
        path = runs.run_file(root, run_id, relative)
        # conditional=True answers Range requests (browsers seek in videos with them) and If-Modified-Since
        return send_file(path, mimetype=runs.MEDIA_TYPES[path.suffix.lower()], conditional=True, max_age=60)

    return app
