"""Hypothesis fuzzing of every route: whatever a client sends, the answer is never a 5xx and always JSON, and every
read still works afterwards (issue 9: one bad string must not poison the store). The text covers the hostile edge
cases: lone UTF-16 surrogates, NUL and other control characters, very long strings, deep nesting, in values and in
keys, in JSON bodies, form fields, file names, query parameters and paths; and a restart on the fuzzed store."""

from __future__ import annotations

import io
import json
from urllib.parse import quote

import pytest
from feedback_server import create_app
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from .feedback_testutil import TOKEN

pytestmark = pytest.mark.xdist_group("fuzz")  # one worker, in file order: the last test restarts the fuzzed store

AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIELDS = ["run_id", "instruction", "env_id", "meta", "labeller", "query_id", "choice", "wait", "x"]
# Any code point, lone surrogates included (hypothesis leaves category Cs out unless told), plus the known-bad ones.
any_char = st.characters(exclude_categories=())
nasty = st.sampled_from(
    ["\ud800", "\udfff", "\ud83d", "a\udc80b", "\x00", "a\x00b", "\x07", "\x1b[31m", "\x7f", "\r\n", "\ufffe", "\u202e"]
)
edge_text = (
    st.text(any_char, max_size=40)
    | st.builds(lambda a, b, c: a + b + c, st.text(max_size=8), nasty, st.text(max_size=8))
    | st.sampled_from(["x" * 2001, "é" * 8193, "\ud800" * 3000, "x" * 70_000])  # past each length limit
)
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | edge_text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(edge_text | st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Values that are sometimes valid, so that fuzzing gets past the first check of a route.
plausible = st.sampled_from(["hopper-s1", "q0", "ann", "A", "B", "equal", "skip", "Hopper-v5", "", "../x"])
bodies = st.dictionaries(st.sampled_from(FIELDS) | edge_text, plausible | json_values, max_size=5)
POST_ROUTES = ["/api/runs", "/api/claim", "/api/answer", "/api/undo", "/api/release"]


def deep(depth: int, open_: str = "[", close: str = "]") -> str:
    """JSON nested ``depth`` levels deep, as text (json.dumps itself would give up at Python's recursion limit)."""
    return open_ * depth + "1" * (open_ == "[") + close * depth


deep_json = st.builds(
    lambda d, kind, where: where.replace("DEEP", deep(d) if kind else '{"a":' * d + "1" + "}" * d),
    st.sampled_from([33, 200, 1000, 30_000]),
    st.booleans(),
    st.sampled_from(
        [
            "DEEP",
            '{"run_id": "r-deep", "instruction": "hop", "env_id": "Hopper-v5", "meta": {"a": DEEP}}',
            '{"labeller": "ann", "run_id": DEEP}',
            '{"labeller": DEEP}',
        ]
    ),
)


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory, webm_clips):
    app = create_app(tmp_path_factory.mktemp("fuzz"), token=TOKEN, max_upload_bytes=1024 * 1024)
    c = app.test_client()
    c.post("/api/runs", json={"run_id": "hopper-s1", "instruction": "hop", "env_id": "Hopper-v5"}, headers=AUTH)
    for i in range(3):
        c.post(
            "/api/runs/hopper-s1/queries",
            headers=AUTH,
            content_type="multipart/form-data",
            data={
                "query_id": f"q{i}",
                "session": "1",
                "clip_a": (io.BytesIO(webm_clips[0]), "a.webm"),
                "clip_b": (io.BytesIO(webm_clips[1]), "b.webm"),
            },
        )
    yield c
    app.extensions["feedback_store"].close()


def check(r):
    assert r.status_code < 500, (r.status_code, r.data[:300])
    assert r.mimetype == "application/json"
    json.loads(r.data.decode("utf-8"))  # strict UTF-8: a lone surrogate could not have been encoded


READS = [
    "/api/runs",
    "/api/runs/hopper-s1",
    "/api/runs/hopper-s1/status",
    "/api/runs/hopper-s1/events",
    "/api/runs/hopper-s1/queries/q0",
    "/api/progress",
    "/api/progress?labeller=ann",
    "/api/health",
]


def reads_still_work(c) -> None:
    """The invariant after every example: every listing and read answers 200 with strict-UTF-8 JSON."""
    for path in READS:
        r = c.get(path, headers=AUTH)
        assert r.status_code == 200, (path, r.status_code, r.data[:300])
        check(r)
    runs = c.get("/api/runs", headers=AUTH).get_json()["runs"]
    for run in runs[-3:]:  # the newest ones, which the fuzz may just have registered
        check(c.get(f"/api/runs/{quote(run['run_id'])}", headers=AUTH))


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(POST_ROUTES), body=bodies | json_values)
def test_json_routes_never_500(fuzz_client, route, body):
    # json.dumps writes a lone surrogate as the escape "\ud800", exactly what a hostile client sends.
    check(fuzz_client.post(route, data=json.dumps(body), headers=AUTH, content_type="application/json"))
    reads_still_work(fuzz_client)


VALID = {
    "/api/runs": {"run_id": "r-text", "instruction": "hop", "env_id": "Hopper-v5", "meta": {"seed": 1}},
    "/api/claim": {"labeller": "ann", "run_id": "hopper-s1"},
    "/api/answer": {"labeller": "ann", "run_id": "hopper-s1", "query_id": "q0", "choice": "A"},
    "/api/undo": {"labeller": "ann"},
    "/api/release": {"labeller": "ann"},
}


@st.composite
def almost_valid(draw) -> tuple[str, dict]:
    """A valid body of a route with one hostile change: a field's value, a new key, or text deep in its meta."""
    route = draw(st.sampled_from(sorted(VALID)))
    body = dict(VALID[route])
    if route == "/api/runs":
        body["run_id"] = f"r-{draw(st.integers(0, 10**9))}"  # new runs, so that the text would really be stored
    change = draw(st.sampled_from(["value", "key", "meta"]))
    if change == "value":
        body[draw(st.sampled_from(sorted(body)))] = draw(edge_text)
    elif change == "key":
        body[draw(edge_text)] = draw(json_values)
    else:
        body["meta"] = draw(st.dictionaries(edge_text, json_values, min_size=1, max_size=3))
    return route, body


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(case=almost_valid())
def test_hostile_text_in_otherwise_valid_bodies(fuzz_client, case):
    route, body = case
    r = fuzz_client.post(route, data=json.dumps(body), headers=AUTH, content_type="application/json")
    check(r)
    reads_still_work(fuzz_client)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(POST_ROUTES), body=deep_json)
def test_deeply_nested_json_never_500(fuzz_client, route, body):
    check(fuzz_client.post(route, data=body, headers=AUTH, content_type="application/json"))
    reads_still_work(fuzz_client)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    run_id=plausible | edge_text,
    fields=st.dictionaries(
        st.sampled_from(["query_id", "session", "meta"]) | edge_text.filter(lambda t: t and len(t) < 200),
        plausible | st.just("1") | edge_text | json_values.map(json.dumps) | deep_json,
        max_size=4,
    ),
    filename=edge_text.filter(lambda t: len(t) < 300),
    mime=st.sampled_from(["video/webm", "video/mp4", "text/plain", "application/octet-stream"]),
)
@example(run_id="hopper-s1", fields={"\r": "1"}, filename="\r", mime="video/webm")  # a part without a name: was a 500
def test_upload_route_never_500(fuzz_client, webm_clips, run_id, fields, filename, mime):
    """Multipart: form fields, their names and file names carry the same hostile text, sent as a hostile client
    would (raw bytes; a surrogate in its invalid three-byte form)."""
    parts = [(k, None, v.encode("utf-8", "surrogatepass"), None) for k, v in fields.items()]
    parts += [("clip_a", filename, webm_clips[2], mime), ("clip_b", "b.webm", webm_clips[3], "video/webm")]
    body = b""
    for name, fname, value, ctype in parts:
        disposition = f'form-data; name="{name}"' + ("" if fname is None else f'; filename="{fname}"')
        body += b"--BOUNDARY\r\nContent-Disposition: " + disposition.encode("utf-8", "surrogatepass")
        body += (b"" if ctype is None else b"\r\nContent-Type: " + ctype.encode()) + b"\r\n\r\n" + value + b"\r\n"
    body += b"--BOUNDARY--\r\n"
    path = f"/api/runs/{quote(run_id.encode('utf-8', 'surrogatepass'), safe='')}/queries"
    check(fuzz_client.post(path, data=body, headers=AUTH, content_type="multipart/form-data; boundary=BOUNDARY"))
    reads_still_work(fuzz_client)


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    route=st.sampled_from(POST_ROUTES),
    raw=st.binary(max_size=200),
    ctype=st.sampled_from(
        ["application/json", "text/plain", "multipart/form-data", "application/x-www-form-urlencoded"]
    ),
)
def test_raw_bodies_never_500(fuzz_client, route, raw, ctype):
    check(fuzz_client.post(route, data=raw, headers=AUTH, content_type=ctype))
    reads_still_work(fuzz_client)


short_text = edge_text.filter(lambda t: len(t) < 3000)  # a URL of 70 kB only tests werkzeug's patience


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    run_id=plausible | short_text,
    query_id=plausible | short_text,
    params=st.dictionaries(
        st.sampled_from(["after", "limit", "labeller", "run_id", "token"]) | short_text,
        short_text | st.integers().map(str) | st.sampled_from(["١", "%ED%A0%80", "%00", "%C0%80"]),
        max_size=3,
    ),
    template=st.sampled_from(
        [
            "/api/runs/{r}",
            "/api/runs/{r}/status",
            "/api/runs/{r}/events",
            "/api/runs/{r}/queries/{q}",
            "/api/progress",
            "/api/wait",
            "/clips/{q}",
            "/api/runs/{r}/queries",
            "/api/runs",
            "/api/health",
            "/",
        ]
    ),
)
def test_get_routes_never_500(fuzz_client, run_id, query_id, params, template):
    # Surrogates cannot be UTF-8; a client can still send their (invalid) three-byte form, which "surrogatepass" makes.
    enc = {"safe": "", "encoding": "utf-8", "errors": "surrogatepass"}
    path = template.format(r=quote(run_id, **enc), q=quote(query_id, **enc))
    query = "&".join(f"{quote(k, **enc)}={quote(v, **enc)}" for k, v in params.items())
    # wait is left out on purpose: a valid wait would only make the test slow, its parsing is tested elsewhere.
    r = fuzz_client.get(path + ("?" + query if query else ""), headers=AUTH)
    assert r.status_code < 500, (path, params, r.status_code)
    if not (path.startswith("/clips/") or path == "/") or r.status_code != 200:
        check(r)  # JSON, except a clip's bytes and the page
    reads_still_work(fuzz_client)


def test_the_fuzzed_store_reads_after_a_restart(fuzz_client):
    """Last in this file: whatever the fuzz got stored, a server restarted on the same data dir lists it."""
    store = fuzz_client.application.extensions["feedback_store"]
    data_dir = store.data_dir
    with store._cond:
        n_runs = store._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    store.close()
    app = create_app(data_dir, token=TOKEN)
    try:
        c = app.test_client()
        reads_still_work(c)
        assert len(c.get("/api/runs", headers=AUTH).get_json()["runs"]) == n_runs >= 1
    finally:
        app.extensions["feedback_store"].close()
