"""Every route of the labelling server through Flask's test client: the happy paths, and every kind of bad input
answered with a 4xx JSON error (never a 500)."""

from __future__ import annotations

import io
import json
import os

import pytest
from feedback_server import create_app

from .feedback_testutil import TOKEN

RUN = {"run_id": "hopper-s1", "instruction": "make the hopper hop forward", "env_id": "Hopper-v5"}


def register(client, auth, run=RUN):
    r = client.post("/api/runs", json=run, headers=auth)
    assert r.status_code in (200, 201), r.json
    return r


def upload(client, auth, query_id, a, b, run_id="hopper-s1", session="1", mime="video/webm", **extra):
    data = {
        "query_id": query_id,
        "session": session,
        "clip_a": (io.BytesIO(a), "a.webm", mime),
        "clip_b": (io.BytesIO(b), "b.webm", mime),
        **extra,
    }
    return client.post(f"/api/runs/{run_id}/queries", data=data, headers=auth, content_type="multipart/form-data")


def claim(client, auth, labeller="ann", **extra):
    r = client.post("/api/claim", json={"labeller": labeller, **extra}, headers=auth)
    assert r.status_code == 200, r.json
    assert r.json["lease_seconds"] == 120  # the page renews its lease at a third of this
    return r.json["query"]


def answer(client, auth, query_id, choice, labeller="ann", run_id="hopper-s1"):
    return client.post(
        "/api/answer",
        json={"labeller": labeller, "run_id": run_id, "query_id": query_id, "choice": choice},
        headers=auth,
    )


def assert_json_error(r, status):
    assert r.status_code == status, (r.status_code, r.data[:300])
    assert r.mimetype == "application/json"
    body = r.get_json()
    assert isinstance(body["error"], str) and isinstance(body["message"], str)
    return body


# ---------------------------------------------------------------------- auth and headers
def test_token_required_on_every_route(client, auth):
    for method, path in [
        ("GET", "/api/health"),
        ("GET", "/api/runs"),
        ("POST", "/api/runs"),
        ("GET", "/api/runs/x/events"),
        ("POST", "/api/claim"),
        ("GET", "/clips/x.webm"),
        ("GET", "/no/such/route"),
    ]:
        r = client.open(path, method=method)
        assert_json_error(r, 401)
        assert r.headers["WWW-Authenticate"] == "Bearer"
        r = client.open(path, method=method, headers={"Authorization": "Bearer wrong-token-0123456789abcd"})
        assert_json_error(r, 401)
        r = client.open(path + "?token=wrong", method=method)
        assert_json_error(r, 401)
    assert client.get("/api/health", headers=auth).json == {"status": "ok", "api_version": 1}
    assert client.get(f"/api/health?token={TOKEN}").status_code == 200
    page = client.get(f"/?token={TOKEN}")
    assert page.status_code == 200 and b'id="clip-a"' in page.data and b'id="clip-b"' in page.data
    # The page itself is public, like its code: it holds no data, and once it has stored the token of its link it
    # drops it from the address bar, so a reload asks for "/" without one. Every API call still needs the token.
    assert client.get("/").data == page.data and client.post("/").status_code == 401
    # Static code is public (it contains no data), so <script src> needs no token.
    assert client.get("/static/feedback.js").status_code == 200


def test_security_headers_and_no_cors(client, auth):
    r = client.get("/api/health", headers={**auth, "Origin": "http://evil.example"})
    assert "Access-Control-Allow-Origin" not in r.headers
    assert r.headers["X-Content-Type-Options"] == "nosniff"
    assert r.headers["Referrer-Policy"] == "no-referrer"
    assert "default-src 'self'" in r.headers["Content-Security-Policy"]
    assert r.headers["Cache-Control"] == "no-store"


def test_cross_site_requests_refused(client, auth):
    r = client.post("/api/claim", json={"labeller": "ann"}, headers={**auth, "Origin": "http://evil.example"})
    assert_json_error(r, 403)
    for origin in ["null", "http://localhost.evil.example", "http://evil.example/http://localhost"]:
        r = client.post("/api/claim", json={"labeller": "ann"}, headers={**auth, "Origin": origin})
        assert_json_error(r, 403)
    r = client.post("/api/claim", json={"labeller": "ann"}, headers={**auth, "Origin": "https://localhost"})
    assert r.status_code == 200  # the same host behind a TLS-terminating proxy
    r = client.get("/api/health", headers={**auth, "Sec-Fetch-Site": "cross-site"})
    assert_json_error(r, 403)
    # Following a link to the page from another site (chat, mail) works; fetching from another site does not.
    nav = {"Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
    assert client.get(f"/?token={TOKEN}", headers=nav).status_code == 200
    assert_json_error(client.post("/api/claim", json={"labeller": "ann"}, headers={**auth, **nav}), 403)
    r = client.get("/api/health", headers={**auth, "Sec-Fetch-Site": "cross-site", "Sec-Fetch-Mode": "cors"})
    assert_json_error(r, 403)
    # Same-origin requests from the page pass.
    r = client.post(
        "/api/claim",
        json={"labeller": "ann"},
        headers={**auth, "Origin": "http://localhost", "Sec-Fetch-Site": "same-origin"},
    )
    assert r.status_code == 200


def test_without_token_only_loopback_host_headers(tmp_path):
    app = create_app(tmp_path / "d")
    try:
        c = app.test_client()
        assert c.get("/api/health").status_code == 200
        assert c.get("/api/health", headers={"Host": "127.0.0.1:5001"}).status_code == 200
        assert c.get("/api/health", headers={"Host": "[::1]:5001"}).status_code == 200
        # DNS rebinding: a page on evil.example resolving to 127.0.0.1 must not drive the API.
        assert_json_error(c.get("/api/health", headers={"Host": "evil.example:5001"}), 400)
    finally:
        app.extensions["feedback_store"].close()


# ---------------------------------------------------------------------- runs
def test_register_run_is_idempotent(client, auth):
    r = client.post("/api/runs", json={**RUN, "meta": {"seed": 1}}, headers=auth)
    assert r.status_code == 201 and r.json["created"] is True
    assert r.json["run"]["instruction"] == RUN["instruction"] and r.json["run"]["meta"] == {"seed": 1}
    r2 = client.post("/api/runs", json={**RUN, "instruction": "something else"}, headers=auth)
    assert r2.status_code == 200 and r2.json["created"] is False
    assert r2.json["run"] == r.json["run"]  # the existing run, unchanged
    runs = client.get("/api/runs", headers=auth).json["runs"]
    assert [x["run_id"] for x in runs] == ["hopper-s1"]
    assert runs[0]["counts"]["total"] == 0
    got = client.get("/api/runs/hopper-s1", headers=auth).json
    assert got["run"]["env_id"] == "Hopper-v5" and got["counts"]["last_seq"] == 0


@pytest.mark.parametrize(
    "body",
    [
        [RUN],
        "just a string",
        None,
        {**RUN, "run_id": 5},
        {**RUN, "run_id": None},
        {**RUN, "run_id": ["a"]},
        {**RUN, "run_id": ""},
        {**RUN, "run_id": "../etc"},
        {**RUN, "run_id": "a/b"},
        {**RUN, "run_id": ".hidden"},
        {**RUN, "run_id": "x" * 129},
        {**RUN, "run_id": "naïve"},
        {**RUN, "instruction": 3},
        {**RUN, "instruction": "x" * 2001},
        {**RUN, "instruction": "bell\x07"},
        {**RUN, "env_id": ""},
        {**RUN, "env_id": "Hopper v5"},
        {**RUN, "env_id": True},
        {**RUN, "meta": [1, 2]},
        {**RUN, "meta": {"big": "x" * 9000}},
        {**RUN, "extra": 1},
        {k: v for k, v in RUN.items() if k != "env_id"},
    ],
)
def test_register_run_rejects_bad_fields(client, auth, body):
    r = client.post("/api/runs", data=json.dumps(body), headers=auth, content_type="application/json")
    assert_json_error(r, 400)


def test_register_run_malformed_json_and_media_type(client, auth):
    assert_json_error(client.post("/api/runs", data="{not json", headers=auth, content_type="application/json"), 400)
    assert_json_error(
        client.post("/api/runs", data='{"meta": NaN}', headers=auth, content_type="application/json"), 400
    )
    assert_json_error(client.post("/api/runs", data=b"\xff\xfe", headers=auth, content_type="application/json"), 400)
    assert_json_error(client.post("/api/runs", data=json.dumps(RUN), headers=auth, content_type="text/plain"), 415)
    assert_json_error(client.post("/api/runs", data=b"x" * 70_000, headers=auth, content_type="application/json"), 413)


def test_method_not_allowed_and_unknown_routes(client, auth):
    r = client.get("/api/claim", headers=auth)
    assert_json_error(r, 405)
    assert "POST" in r.headers["Allow"]
    assert_json_error(client.delete("/api/runs", headers=auth), 405)
    assert_json_error(client.get("/api/nothing-here", headers=auth), 404)
    assert_json_error(client.get("/api/runs/unknown-run", headers=auth), 404)
    assert_json_error(client.get("/api/runs/unknown-run/status", headers=auth), 404)
    assert_json_error(client.get("/api/runs/bad%20id/status", headers=auth), 400)


# ---------------------------------------------------------------------- queries
def test_upload_query_is_idempotent(client, auth, webm_clips, app):
    register(client, auth)
    a, b, c = webm_clips[:3]
    r = upload(client, auth, "s1-q0", a, b, meta=json.dumps({"returns": [1.5, 2.0]}))
    assert r.status_code == 201, r.json
    q = r.json["query"]
    assert q["state"] == "pending" and q["session"] == 1 and q["meta"] == {"returns": [1.5, 2.0]}
    assert q["clip_a_url"] == f"/clips/{q['clip_a']}" and q["clip_a"].endswith(".webm")
    r2 = upload(client, auth, "s1-q0", a, b)
    assert r2.status_code == 200 and r2.json["created"] is False and r2.json["same_content"] is True
    r3 = upload(client, auth, "s1-q0", a, c)
    assert r3.status_code == 200 and r3.json["same_content"] is False
    assert r3.json["query"]["clip_b"] == q["clip_b"]  # never overwritten
    assert client.get("/api/runs/hopper-s1/status", headers=auth).json["total"] == 1
    got = client.get("/api/runs/hopper-s1/queries/s1-q0", headers=auth).json["query"]
    assert got["clip_a"] == q["clip_a"]
    assert_json_error(client.get("/api/runs/hopper-s1/queries/nope", headers=auth), 404)
    # Clips are stored once per content, named by their hash.
    names = sorted(p.name for p in (app.extensions["feedback_store"].clip_dir).iterdir())
    assert len(names) == 3 and all(len(n) == len("0" * 64 + ".webm") for n in names)


def test_upload_mp4(client, auth, mp4_clip):
    register(client, auth)
    r = upload(client, auth, "q-mp4", mp4_clip, mp4_clip, mime="video/mp4")
    assert r.status_code == 201, r.json
    assert r.json["query"]["clip_a"].endswith(".mp4")
    clip = client.get(r.json["query"]["clip_a_url"], headers=auth)
    assert clip.status_code == 200 and clip.mimetype == "video/mp4" and clip.data == mp4_clip


def test_upload_rejects_bad_input(client, auth, webm_clips, mp4_clip):
    register(client, auth)
    a, b = webm_clips[:2]

    def post(data, run_id="hopper-s1", **kw):
        return client.post(
            f"/api/runs/{run_id}/queries",
            data=data,
            headers=auth,
            content_type=kw.get("content_type", "multipart/form-data"),
        )

    def form(**over):
        base = {
            "query_id": "q1",
            "session": "2",
            "clip_a": (io.BytesIO(a), "a.webm", "video/webm"),
            "clip_b": (io.BytesIO(b), "b.webm", "video/webm"),
        }
        base.update(over)
        return {k: v for k, v in base.items() if v is not None}

    assert_json_error(client.post("/api/runs/hopper-s1/queries", json={"query_id": "q"}, headers=auth), 415)
    assert_json_error(post(form(query_id=None)), 400)
    assert_json_error(post(form(query_id="../../x")), 400)
    assert_json_error(post(form(query_id="")), 400)
    for bad_session in ["-1", "abc", "1.5", "1e3", "", "9999999999"]:
        assert_json_error(post(form(session=bad_session)), 400)
    assert_json_error(post(form(clip_b=None)), 400)
    assert_json_error(post(form(clip_a=(io.BytesIO(b""), "a.webm", "video/webm"))), 400)
    assert_json_error(post(form(clip_a=(io.BytesIO(b"GIF89a not a video"), "a.webm", "video/webm"))), 415)
    assert_json_error(post(form(clip_a=(io.BytesIO(mp4_clip), "a.webm", "video/webm"))), 415)  # lies about type
    assert_json_error(post(form(extra="1")), 400)
    assert_json_error(post(form(clip_c=(io.BytesIO(a), "c.webm", "video/webm"))), 400)
    assert_json_error(post(form(meta="[1]")), 400)
    assert_json_error(post(form(meta="{bad")), 400)
    assert_json_error(post(form(query_id=["q1", "q2"])), 400)
    assert_json_error(post(form(), run_id="no-such-run"), 404)
    assert_json_error(post(form(), run_id="bad%20run"), 400)
    assert client.get("/api/runs/hopper-s1/status", headers=auth).json["total"] == 0


def test_upload_too_large_is_413_json(client, auth, webm_clips):
    register(client, auth)
    big = webm_clips[0] + b"\0" * (3 * 1024 * 1024)  # the app's limit is 2 MiB
    assert_json_error(upload(client, auth, "big", big, webm_clips[1]), 413)


# ---------------------------------------------------------------------- labelling
def test_claim_answer_undo_and_events(client, auth, webm_clips):
    register(client, auth)
    for i in range(4):
        assert upload(client, auth, f"q{i}", webm_clips[i], webm_clips[i + 1]).status_code == 201
    q = claim(client, auth)
    assert q["query_id"] == "q0" and q["state"] == "leased" and q["lease_holder"] == "ann"
    assert q["run"]["instruction"] == RUN["instruction"]
    assert claim(client, auth)["query_id"] == "q0"  # the same labeller resumes their lease
    assert claim(client, auth, labeller="bob")["query_id"] == "q1"  # never the query ann holds
    # The label encoding is fixed project-wide: P(B > A).
    r = answer(client, auth, "q0", "A")
    assert r.status_code == 200 and r.json["event"]["label"] == 0.0 and r.json["event"]["type"] == "label"
    assert r.json["progress"]["mine"] == 1
    assert answer(client, auth, "q1", "B", labeller="bob").json["event"]["label"] == 1.0
    assert claim(client, auth)["query_id"] == "q2"
    assert answer(client, auth, "q2", "equal").json["event"]["label"] == 0.5
    assert claim(client, auth)["query_id"] == "q3"
    # Undo: the last answer (q2) is retracted and handed back to ann first; q3 goes back to the pool.
    u = client.post("/api/undo", json={"labeller": "ann"}, headers=auth)
    assert u.status_code == 200 and u.json["query"]["query_id"] == "q2" and u.json["query"]["lease_holder"] == "ann"
    assert u.json["progress"]["mine"] == 1
    assert claim(client, auth, labeller="bob")["query_id"] == "q3"
    assert claim(client, auth)["query_id"] == "q2"
    skip = answer(client, auth, "q2", "skip")
    assert skip.json["event"]["type"] == "skip" and "label" not in skip.json["event"]
    status = client.get("/api/runs/hopper-s1/status", headers=auth).json
    assert status == {
        "pending": 0,
        "leased": 1,
        "labelled": 2,
        "skipped": 1,
        "total": 4,
        "rendering": 0,
        "run_id": "hopper-s1",
        "last_seq": 5,
    }
    evs = client.get("/api/runs/hopper-s1/events?after=0", headers=auth).json
    assert [(e["type"], e["query_id"], e.get("label"), e["labeller"]) for e in evs["events"]] == [
        ("label", "q0", 0.0, "ann"),
        ("label", "q1", 1.0, "bob"),
        ("label", "q2", 0.5, "ann"),
        ("retract", "q2", None, "ann"),
        ("skip", "q2", None, "ann"),
    ]
    assert [e["seq"] for e in evs["events"]] == [1, 2, 3, 4, 5] and evs["last_seq"] == 5
    assert all(e["created_at"].endswith("Z") for e in evs["events"])
    later = client.get("/api/runs/hopper-s1/events?after=3&limit=1", headers=auth).json
    assert [e["seq"] for e in later["events"]] == [4] and later["last_seq"] == 4
    empty = client.get("/api/runs/hopper-s1/events?after=5&wait=0.2", headers=auth).json
    assert empty == {"events": [], "last_seq": 5}
    prog = client.get("/api/progress?labeller=ann&run_id=hopper-s1", headers=auth).json
    assert prog["mine"] == 2 and prog["labelled"] == 2 and prog["skipped"] == 1


def test_answer_and_undo_conflicts(client, auth, webm_clips):
    register(client, auth)
    upload(client, auth, "q0", webm_clips[0], webm_clips[1])
    upload(client, auth, "q1", webm_clips[1], webm_clips[2])
    assert_json_error(answer(client, auth, "q0", "A"), 409)  # not claimed
    claim(client, auth)
    assert_json_error(answer(client, auth, "q0", "A", labeller="bob"), 409)  # leased to ann
    assert_json_error(answer(client, auth, "q0", "C"), 400)
    assert_json_error(answer(client, auth, "q0", 1.0), 400)
    assert_json_error(answer(client, auth, "nope", "A"), 404)
    assert_json_error(answer(client, auth, "q0", "A", run_id="other"), 404)
    assert answer(client, auth, "q0", "A").status_code == 200
    assert_json_error(answer(client, auth, "q0", "B"), 409)  # never labelled twice
    body = assert_json_error(client.post("/api/undo", json={"labeller": "bob"}, headers=auth), 409)
    assert body["error"] == "nothing_to_undo"
    assert_json_error(client.post("/api/undo", json={"labeller": "ann", "run_id": "zzz"}, headers=auth), 404)
    assert claim(client, auth)["query_id"] == "q1"
    assert client.post("/api/release", json={"labeller": "ann"}, headers=auth).json == {"released": 1}
    assert claim(client, auth, labeller="bob")["query_id"] == "q1"


@pytest.mark.parametrize(
    "path, body",
    [
        ("/api/claim", {}),
        ("/api/claim", {"labeller": ""}),
        ("/api/claim", {"labeller": " ann"}),
        ("/api/claim", {"labeller": "x" * 65}),
        ("/api/claim", {"labeller": "a<script>"}),
        ("/api/claim", {"labeller": 7}),
        ("/api/claim", {"labeller": "ann", "run_id": 3}),
        ("/api/claim", {"labeller": "ann", "wait": 5}),
        ("/api/answer", {"labeller": "ann", "run_id": "hopper-s1", "query_id": "q0"}),
        ("/api/answer", {"labeller": "ann", "run_id": "hopper-s1", "query_id": ["q0"], "choice": "A"}),
        ("/api/undo", {"labeller": None}),
        ("/api/release", {"labeller": "ann", "x": 1}),
    ],
)
def test_page_routes_reject_bad_fields(client, auth, path, body):
    register(client, auth)
    assert_json_error(client.post(path, json=body, headers=auth), 400)


def test_query_parameters_are_validated(client, auth):
    register(client, auth)
    for qs in [
        "after=-1",
        "after=abc",
        "after=1e3",
        "after=" + "9" * 30,
        "wait=31",
        "wait=-1",
        "wait=nan",
        "wait=inf",
        "limit=0",
        "limit=1001",
    ]:
        assert_json_error(client.get(f"/api/runs/hopper-s1/events?{qs}", headers=auth), 400)
    assert_json_error(client.get("/api/wait?wait=100", headers=auth), 400)
    assert_json_error(client.get("/api/wait?run_id=../x", headers=auth), 400)
    assert_json_error(client.get("/api/progress?labeller=%20", headers=auth), 400)
    assert client.get("/api/wait?wait=0", headers=auth).json == {"claimable": 0}


# ---------------------------------------------------------------------- clips
def test_clip_serving_with_ranges(client, auth, webm_clips):
    register(client, auth)
    q = upload(client, auth, "q0", webm_clips[0], webm_clips[1]).json["query"]
    r = client.get(q["clip_a_url"], headers=auth)
    assert r.status_code == 200 and r.mimetype == "video/webm" and r.data == webm_clips[0]
    assert client.get(q["clip_b_url"] + f"?token={TOKEN}").data == webm_clips[1]  # how <video src> fetches
    part = client.get(q["clip_a_url"], headers={**auth, "Range": "bytes=0-99"})
    assert part.status_code == 206 and part.data == webm_clips[0][:100]
    assert_json_error(client.get(q["clip_a_url"]), 401)
    assert_json_error(client.get(q["clip_a_url"].replace(".webm", ".mp4"), headers=auth), 404)


def test_clip_serving_cannot_escape_the_store(client, auth, app, webm_clips):
    register(client, auth)
    upload(client, auth, "q0", webm_clips[0], webm_clips[1])
    store = app.extensions["feedback_store"]
    secret = b"TOP-SECRET-OUTSIDE-THE-STORE"
    data_dir = store.data_dir
    (data_dir / "secret.txt").write_bytes(secret)
    # A sibling directory whose name starts like the store's ("clips2" vs "clips"), holding a valid-looking clip.
    fake = "ab" * 32 + ".webm"
    (data_dir / "clips2").mkdir()
    (data_dir / "clips2" / fake).write_bytes(secret)
    # A symlink inside the store pointing out of it, even if registered in the database, is not served.
    link = "cd" * 32 + ".webm"
    os.symlink(data_dir / "secret.txt", store.clip_dir / link)
    with store._cond, store._tx() as db:
        db.execute("INSERT INTO clips VALUES (?, 'video/webm', 1, 0)", ("cd" * 32,))
        db.execute("INSERT INTO clips VALUES (?, 'video/webm', 1, 0)", ("ab" * 32,))
    attempts = [
        "/clips/../secret.txt",
        "/clips/..%2fsecret.txt",
        "/clips/..%2Fsecret.txt",
        "/clips/%2e%2e%2fsecret.txt",
        "/clips/%2e%2e/secret.txt",
        "/clips/....//secret.txt",
        "/clips/..\\secret.txt",
        "/clips/..%5csecret.txt",
        f"/clips/../clips2/{fake}",
        f"/clips/..%2fclips2%2f{fake}",
        f"/clips/%2e%2e%2fclips2%2f{fake}",
        f"/clips2/{fake}",
        f"/clips/{fake}",
        f"/clips/{link}",
        "/clips/",
        "/clips/%00",
        "/clips/x.webm%00.webm",
        "/clips//etc/passwd",
        "/clips/%2fetc%2fpasswd",
        "/clips/feedback.sqlite3",
        "/clips/.tmp-x",
        "/static/../feedback_server.py",
        "/static/..%2ffeedback_server.py",
        "/static/%2e%2e/store.py",
        "/static/..%2f..%2fhumanFeedback%2ffeedback_data%2ffeedback.sqlite3",
    ]
    for path in attempts:
        r = client.get(path, headers=auth)
        assert 400 <= r.status_code < 500, (path, r.status_code)
        assert secret not in r.data and b"SQLite" not in r.data and b"import" not in r.data, path


def test_announced_sessions_count_the_pairs_still_being_rendered(client, auth, webm_clips):
    """Issue 12, item 6: before its clips exist, an announced session shows as `rendering` (not as "nothing
    pending"), each upload moves a pair from rendering to pending, and withdrawing the run drops what never came."""
    register(client, auth)
    status = lambda: client.get("/api/runs/hopper-s1/status", headers=auth).json  # noqa: E731
    r = client.post("/api/runs/hopper-s1/sessions", json={"session": 1, "queries": 3}, headers=auth)
    assert r.status_code == 200 and r.json["counts"]["rendering"] == 3 and r.json["counts"]["total"] == 0
    assert upload(client, auth, "q0", webm_clips[0], webm_clips[1]).status_code == 201
    assert (status()["rendering"], status()["pending"]) == (2, 1)
    progress = client.get("/api/progress?labeller=ann", headers=auth).json
    assert progress["rendering"] == 2 and progress["total"] == 1
    # Repeating the announcement (a restarted trainer) changes nothing; another session adds its own pairs.
    client.post("/api/runs/hopper-s1/sessions", json={"session": 1, "queries": 3}, headers=auth)
    client.post("/api/runs/hopper-s1/sessions", json={"session": 2, "queries": 4}, headers=auth)
    assert status()["rendering"] == 6
    assert client.post("/api/runs/hopper-s1/withdraw", headers=auth).status_code == 200
    assert status()["rendering"] == 0
    for bad in ({"session": 1}, {"session": -1, "queries": 2}, {"session": 1, "queries": True},
                {"session": "1", "queries": 2}, {"session": 1, "queries": 100_001}):  # fmt: skip
        assert_json_error(client.post("/api/runs/hopper-s1/sessions", json=bad, headers=auth), 400)
    assert_json_error(client.post("/api/runs/nope/sessions", json={"session": 1, "queries": 2}, headers=auth), 404)


def test_prefetch_leases_the_next_pair_too(client, auth, webm_clips):
    """Issue 12, item 2: with "prefetch" a labeller holds the pair on screen and the next one (renewed together);
    nobody else is handed either; a claim without prefetch gives the second back."""
    register(client, auth)
    for i in range(3):
        assert upload(client, auth, f"q{i}", webm_clips[i], webm_clips[i + 1]).status_code == 201
    both = client.post("/api/claim", json={"labeller": "ann", "prefetch": True}, headers=auth).json
    assert (both["query"]["query_id"], both["next"]["query_id"]) == ("q0", "q1")
    assert both["next"]["lease_holder"] == "ann" and both["progress"]["leased"] == 2
    again = client.post("/api/claim", json={"labeller": "ann", "prefetch": True}, headers=auth).json
    assert (again["query"]["query_id"], again["next"]["query_id"]) == ("q0", "q1")  # renewed, not new ones
    assert claim(client, auth, labeller="bob")["query_id"] == "q2"
    assert answer(client, auth, "q1", "B").status_code == 200  # the prefetched pair is answered like any other
    assert answer(client, auth, "q0", "A").status_code == 200
    assert client.post("/api/claim", json={"labeller": "ann", "prefetch": True}, headers=auth).json["query"] is None
    assert upload(client, auth, "q3", webm_clips[3], webm_clips[4]).status_code == 201
    assert upload(client, auth, "q4", webm_clips[4], webm_clips[5]).status_code == 201
    both = client.post("/api/claim", json={"labeller": "ann", "prefetch": True}, headers=auth).json
    assert (both["query"]["query_id"], both["next"]["query_id"]) == ("q3", "q4")
    one = client.post("/api/claim", json={"labeller": "ann"}, headers=auth).json
    assert one["query"]["query_id"] == "q3" and one["next"] is None
    assert answer(client, auth, "q2", "A", labeller="bob").status_code == 200
    assert claim(client, auth, labeller="bob")["query_id"] == "q4"  # given back by ann's plain claim
    assert_json_error(client.post("/api/claim", json={"labeller": "ann", "prefetch": "yes"}, headers=auth), 400)
