"""Text the server cannot return is refused before it is stored, and no stored row breaks a listing (issue 9,
item 1): a lone UTF-16 surrogate (the JSON escape ``\\ud800``), NUL and other control characters, deep nesting,
in every free-text field, key and echoed name; and a store that already holds such rows (written by an older
server, or edited) still answers every read."""

from __future__ import annotations

import io
import json
import sqlite3

import pytest
import requests
from feedback_server import create_app

from rlhf.feedback_server_process import start_feedback_server

from .feedback_testutil import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON = {**AUTH, "Content-Type": "application/json"}
RUN = '{"run_id": "r1", "instruction": "hop", "env_id": "Hopper-v5"'

# Raw JSON texts (escapes written as the client sends them), each one bad somewhere a person could type.
BAD_BODIES = {
    "/api/runs": [
        RUN + ', "meta": {"k": "\\ud800"}}',  # the issue's sequence
        RUN + ', "meta": {"\\udfff": 1}}',  # in a key
        RUN + ', "meta": {"a": ["x", {"b": "\\ud83d"}]}}',  # nested, half of a pair
        RUN + ', "meta": {"k": "a\\u0000b"}}',  # NUL
        RUN + ', "meta": {"k": "bell\\u0007"}}',
        '{"run_id": "r1", "instruction": "hop\\ud800", "env_id": "Hopper-v5"}',
        '{"run_id": "r1", "instruction": "hop\\u0000", "env_id": "Hopper-v5"}',
        '{"run_id": "r1", "instruction": "' + "x" * 2001 + '", "env_id": "Hopper-v5"}',
        RUN + ', "\\ud800": 1}',  # an unknown field's name is echoed in the error
        RUN + ', "meta": ' + '{"a": ' * 40 + "1" + "}" * 40 + "}",  # deep nesting
        RUN + ', "meta": ' + "[" * 5000 + "]" * 5000 + "}",  # deeper than the JSON parser's recursion
        RUN + ', "meta": {"k": "' + "\\ud800" * 1000 + '"}}',
    ],
    "/api/claim": [
        '{"labeller": "ann\\ud800"}',
        '{"labeller": "ann\\u0000"}',
        '{"labeller": "ann", "\\ud800\\u0000": 1}',
        '{"labeller": "ann", "run_id": "r\\ud800"}',
        '{"labeller": ' + "[" * 5000 + "]" * 5000 + "}",
    ],
    "/api/answer": [
        '{"labeller": "ann", "run_id": "good", "query_id": "q0", "choice": "A\\ud800"}',
        '{"labeller": "ann", "run_id": "good", "query_id": "q0\\u0000", "choice": "A"}',
        '{"labeller": "\\udc80", "run_id": "good", "query_id": "q0", "choice": "A"}',
    ],
    "/api/undo": ['{"labeller": "ann", "run_id": "\\ud800"}', '{"labeller": "\\ud800"}'],
    "/api/release": ['{"labeller": "\\ud800"}', '{"labeller": "a", "' + "\\ud800" * 3000 + '": 0}'],
}


def _upload(post, run_id: str, query_id: str, clips: list[bytes], **fields: str):
    return post(
        f"/api/runs/{run_id}/queries",
        data={"query_id": query_id, "session": "1", **fields},
        files={"clip_a": ("a.webm", clips[0], "video/webm"), "clip_b": ("b.webm", clips[1], "video/webm")},
    )


def test_the_issue_sequence_over_a_socket_and_after_a_restart(tmp_path, webm_clips):
    """POST with "\\ud800" in meta answers 400 and GET /api/runs stays 200, also after a restart on the same data."""
    data = tmp_path / "data"
    with start_feedback_server(port=0, data_dir=data, token=TOKEN) as server:
        http = requests.Session()
        http.headers.update(AUTH)
        post = lambda path, **kw: http.post(server.url + path, timeout=10, **kw)  # noqa: E731
        good = post("/api/runs", json={"run_id": "good", "instruction": "hop", "env_id": "Hopper-v5"})
        assert good.status_code == 201
        assert _upload(post, "good", "q0", webm_clips).status_code == 201
        for route, bodies in BAD_BODIES.items():
            for body in bodies:
                r = post(route, data=body.encode(), headers={"Content-Type": "application/json"})
                assert r.status_code == 400, (route, body[:80], r.status_code, r.text[:200])
                r.json()  # always a JSON error that could be encoded
                assert http.get(server.url + "/api/runs", timeout=10).status_code == 200
        # A query's meta and an unknown form field's name are client text too.
        for fields in ({"meta": '{"k": "\\ud800"}'}, {"meta": '{"k": "\\u0000"}'}, {"meta": "[" * 20000}):
            r = _upload(post, "good", "q1", webm_clips, **fields)
            assert r.status_code == 400, (fields, r.status_code, r.text[:200])
        r = _upload(post, "good", "q1", webm_clips, **{"x" * 500: "1"})
        assert r.status_code == 400 and len(r.json()["message"]) < 300
        listing = http.get(server.url + "/api/runs", timeout=10)
        assert listing.status_code == 200 and [r["run_id"] for r in listing.json()["runs"]] == ["good"]
        assert listing.json()["runs"][0]["counts"]["total"] == 1  # nothing was stored by the refused requests
        claimed = post("/api/claim", json={"labeller": "ann"})
        assert claimed.status_code == 200 and claimed.json()["query"]["query_id"] == "q0"
    with start_feedback_server(port=0, data_dir=data, token=TOKEN) as again:
        r = requests.get(again.url + "/api/runs", headers=AUTH, timeout=10)
        assert r.status_code == 200 and [run["run_id"] for run in r.json()["runs"]] == ["good"]


def test_bad_text_is_refused_before_anything_is_stored(client, auth):
    """Test client: every bad body answers 400 with a JSON error; the database's rows are the same afterwards."""
    client.post("/api/runs", json={"run_id": "good", "instruction": "hop", "env_id": "Hopper-v5"}, headers=auth)
    store = client.application.extensions["feedback_store"]

    def rows():
        with store._cond:
            return [
                store._db.execute(f"SELECT COUNT(*) FROM {t}").fetchone()[0]
                for t in ("runs", "queries", "labels", "events", "labellers")
            ]

    before = rows()
    for route, bodies in BAD_BODIES.items():
        for body in bodies:
            r = client.post(route, data=body, headers={**auth, "Content-Type": "application/json"})
            assert r.status_code == 400, (route, body[:80], r.status_code, r.data[:200])
            msg = r.get_json()["message"]
            assert len(msg) < 400 and not any("\ud800" <= c <= "\udfff" or c == "\0" for c in msg)
    assert rows() == before
    assert client.get("/api/runs", headers=auth).status_code == 200


def test_text_that_can_be_returned_is_kept_exactly(client, auth):
    """The refusal is narrow: emoji (a valid surrogate *pair* in JSON), accents, tabs and newlines round-trip."""
    meta = {"note": "ok 😀 \t café\nline 2", "😀": [1, {"deep": "ü"}], "n": None}
    body = '{"run_id": "u1", "instruction": "hop \\ud83d\\ude00 vite", "env_id": "Hopper-v5", "meta": ' + json.dumps(
        meta
    )
    r = client.post("/api/runs", data=body + "}", headers={**auth, "Content-Type": "application/json"})
    assert r.status_code == 201, r.data
    run = client.get("/api/runs/u1", headers=auth).get_json()["run"]
    assert run["instruction"] == "hop 😀 vite" and run["meta"] == meta


def _poison(db_path) -> None:
    """What an older server stored (it accepted "\\ud800"), plus rows damaged by hand."""
    db = sqlite3.connect(db_path)
    db.execute("UPDATE runs SET meta = ? WHERE run_id = 'good'", ('{"k": "\\ud800", "\\udfff": 1}',))
    db.execute("UPDATE queries SET meta = ? WHERE query_id = 'q0'", ('{"k": "\\ud800"}',))
    db.execute("INSERT INTO runs VALUES ('bytes', CAST(x'686f70ff' AS TEXT), 'Hopper-v5', '{not json', 1.0)")
    db.execute("INSERT INTO runs VALUES ('list', 'hop', 'Hopper-v5', '[1, 2]', 'not a time')")
    db.execute("INSERT INTO runs VALUES ('huge', 'hop', 'Hopper-v5', ?, 1e300)", ("[" * 100000 + "]" * 100000,))
    db.commit()
    db.close()


def test_a_store_holding_bad_rows_still_answers_every_read(tmp_path, webm_clips):
    data = tmp_path / "data"
    app = create_app(data, token=TOKEN)
    c = app.test_client()
    assert c.post("/api/runs", json={"run_id": "good", "instruction": "hop", "env_id": "Hopper-v5"}, headers=AUTH)
    files = {"clip_a": (io.BytesIO(webm_clips[0]), "a.webm"), "clip_b": (io.BytesIO(webm_clips[1]), "b.webm")}
    up = c.post("/api/runs/good/queries", data={"query_id": "q0", "session": "1", **files}, headers=AUTH)
    assert up.status_code == 201
    app.extensions["feedback_store"].close()
    _poison(data / "feedback.sqlite3")

    app = create_app(data, token=TOKEN)  # a restart on the poisoned data dir
    c = app.test_client()
    try:
        listing = c.get("/api/runs", headers=AUTH)
        assert listing.status_code == 200, listing.data[:300]
        runs = {r["run_id"]: r for r in listing.get_json()["runs"]}
        assert set(runs) == {"good", "bytes", "list", "huge"}
        assert runs["good"]["meta"] == {"k": "\ufffd", "\ufffd": 1}  # shown, not fatal
        assert runs["bytes"]["instruction"] == "hop\ufffd" and runs["bytes"]["meta"] == {}
        assert runs["list"]["meta"] == {} and runs["list"]["created_at"] is None
        assert runs["huge"]["meta"] == {} and runs["huge"]["created_at"] is None
        for run_id in runs:
            assert c.get(f"/api/runs/{run_id}", headers=AUTH).status_code == 200
            assert c.get(f"/api/runs/{run_id}/status", headers=AUTH).status_code == 200
        # The query whose meta holds the surrogate is claimed, shown and answered, not stuck on a 500.
        q = c.post("/api/claim", json={"labeller": "ann"}, headers=AUTH)
        assert q.status_code == 200 and q.get_json()["query"]["meta"] == {"k": "\ufffd"}
        assert c.get("/api/runs/good/queries/q0", headers=AUTH).status_code == 200
        a = c.post(
            "/api/answer", json={"labeller": "ann", "run_id": "good", "query_id": "q0", "choice": "B"}, headers=AUTH
        )
        assert a.status_code == 200
        assert c.get("/api/runs/good/events", headers=AUTH).get_json()["last_seq"] == 1
        assert c.get("/api/progress", headers=AUTH).status_code == 200
    finally:
        app.extensions["feedback_store"].close()


@pytest.mark.parametrize("session", ["١", "1\n", " 1", "+1"])
def test_session_is_ascii_digits(client, auth, webm_clips, session):
    """``\\d`` matched any Unicode digit ("١" is Arabic-Indic one): the session must be ASCII digits."""
    client.post("/api/runs", json={"run_id": "good", "instruction": "hop", "env_id": "Hopper-v5"}, headers=auth)
    files = {"clip_a": (io.BytesIO(webm_clips[0]), "a.webm"), "clip_b": (io.BytesIO(webm_clips[1]), "b.webm")}
    r = client.post("/api/runs/good/queries", data={"query_id": "q0", "session": session, **files}, headers=auth)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_field"


@pytest.mark.parametrize("param", ["after=١", "limit=٥", "wait=١"])
def test_numeric_parameters_are_ascii_digits(client, auth, param):
    client.post("/api/runs", json={"run_id": "good", "instruction": "hop", "env_id": "Hopper-v5"}, headers=auth)
    r = client.get(f"/api/runs/good/events?{param}", headers=auth)
    assert r.status_code == 400 and r.get_json()["error"] == "invalid_parameter"


def test_a_doubled_slash_is_a_json_404_not_an_html_redirect(client, auth):
    """Found by the fuzz: werkzeug merged "//" with a 308 HTML redirect; every answer of the API is JSON."""
    for path in ("/api/runs//status", "/api//health", "/api/runs/x//events"):
        r = client.get(path, headers=auth)
        assert r.status_code == 404 and r.mimetype == "application/json", (path, r.status_code, r.mimetype)
