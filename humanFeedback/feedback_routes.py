"""The labelling server's routes: the trainer's API, the page's API, the labeller-quality routes and the clips
(every route is documented in humanFeedback/README.md and humanFeedback/openapi.yaml). ``add_routes`` registers
them on the app that feedback_server.create_app builds, which also guards every request (token, Host, origin)
and turns errors into JSON.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from clip_files import CLIP_MIMES, sniff_clip_mime
from flask import Flask, Response, jsonify, render_template, request, send_file
from request_checks import (
    ENV_ID_RE,
    MAX_INSTRUCTION,
    ApiError,
    check_id,
    check_labeller,
    check_meta,
    check_text,
    int_arg,
    json_body,
    shown,
    wait_arg,
)
from store import CHOICES, Store

LONG_POLL_RETRY_S = 2  # when to come back, for a long-poll answered at once because every slot was taken


def add_routes(app: Flask, store: Store, long_poll_slots: int | None = None) -> None:
    """Register every route on ``app``, serving ``store``. ``long_poll_slots``: how many long-polls may block at
    once (None: no limit); a long-poll beyond them is answered at once, with ``retry_after``."""
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
        # a part whose header a stray CR cuts has no name: werkzeug keys it None, which sorts with no str
        unknown = sorted((form.keys() - fields) | (files.keys() - {"clip_a", "clip_b"}), key=repr)
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
