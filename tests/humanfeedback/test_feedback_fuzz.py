"""Hypothesis fuzzing of the JSON routes: whatever a client sends, the answer is never a 500 and always JSON."""

from __future__ import annotations

import json
from urllib.parse import quote

import pytest
from feedback_server import create_app
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from .feedback_testutil import TOKEN

AUTH = {"Authorization": f"Bearer {TOKEN}"}
FIELDS = ["run_id", "instruction", "env_id", "meta", "labeller", "query_id", "choice", "wait", "x"]
json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner, max_size=4),
    max_leaves=12,
)
# Values that are sometimes valid, so that fuzzing gets past the first check of a route.
plausible = st.sampled_from(["hopper-s1", "q0", "ann", "A", "B", "equal", "skip", "Hopper-v5", "", "../x"])
bodies = st.dictionaries(st.sampled_from(FIELDS), plausible | json_values, max_size=5)
POST_ROUTES = ["/api/runs", "/api/claim", "/api/answer", "/api/undo", "/api/release"]


@pytest.fixture(scope="module")
def fuzz_client(tmp_path_factory, webm_clips):
    import io

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
    json.loads(r.data)


@settings(max_examples=250, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(route=st.sampled_from(POST_ROUTES), body=bodies | json_values)
def test_json_routes_never_500(fuzz_client, route, body):
    check(fuzz_client.post(route, data=json.dumps(body), headers=AUTH, content_type="application/json"))


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


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    run_id=plausible | st.text(max_size=30),
    query_id=plausible | st.text(max_size=30),
    params=st.dictionaries(
        st.sampled_from(["after", "limit", "labeller", "run_id", "token"]),
        st.text(max_size=12) | st.integers().map(str),
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
        ]
    ),
)
def test_get_routes_never_500(fuzz_client, run_id, query_id, params, template):
    path = template.format(r=quote(run_id, safe=""), q=quote(query_id, safe=""))
    # wait is left out on purpose: a valid wait would only make the test slow, its parsing is tested elsewhere.
    r = fuzz_client.get(path, query_string=params, headers=AUTH)
    assert r.status_code < 500, (path, params, r.status_code)
