"""The HTTP shapes are defined once, in humanFeedback/openapi.yaml (issue 8, item 5): every route of the app is
in it, every answer of a real server (waitress over a socket) to a walk through every route and documented
status matches its schema, and every JSON example of humanFeedback/README.md matches the schema and the keys of
a real answer. And the machine-readable ready signal (--ready-file)."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from typing import Any

import pytest
import requests
import yaml

from .feedback_testutil import REPO, SERVER, TOKEN, serve

SPEC = yaml.safe_load((REPO / "humanFeedback" / "openapi.yaml").read_text())
README = (REPO / "humanFeedback" / "README.md").read_text()
AUTH = {"Authorization": f"Bearer {TOKEN}"}
JSON_TYPES = {
    "null": lambda v: v is None,
    "boolean": lambda v: isinstance(v, bool),
    "integer": lambda v: isinstance(v, int) and not isinstance(v, bool),
    "number": lambda v: isinstance(v, (int, float)) and not isinstance(v, bool),
    "string": lambda v: isinstance(v, str),
    "array": lambda v: isinstance(v, list),
    "object": lambda v: isinstance(v, dict),
}


def node_ref(ref: str) -> list[str]:
    return ref.removeprefix("#/").split("/")


def deref(node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        target: Any = SPEC
        for part in node_ref(node["$ref"]):
            target = target[part]
        node = target
    return node


def validate(value: Any, schema: dict[str, Any], where: str = "$", partial: bool = False) -> list[str]:
    """The subset of JSON Schema that openapi.yaml uses. ``partial``: an example that says "..." for the rest
    (its "..." keys are left out and ``required`` is not checked for that object)."""
    schema = deref(schema)
    if "oneOf" in schema:
        results = [validate(value, s, where, partial) for s in schema["oneOf"]]
        ok = sum(not r for r in results)
        return [] if ok == 1 else [f"{where}: matches {ok} of oneOf"] + [e for r in results for e in r]
    errors = []
    types = schema.get("type")
    if types is not None:
        types = types if isinstance(types, list) else [types]
        if not any(JSON_TYPES[t](value) for t in types):
            return [f"{where}: {value!r:.60} is not {types}"]
    if "enum" in schema and value not in schema["enum"]:
        errors.append(f"{where}: {value!r} not in {schema['enum']}")
    if isinstance(value, str):
        if "pattern" in schema and not re.search(schema["pattern"], value) and value != "...":
            errors.append(f"{where}: {value!r} does not match {schema['pattern']}")
        if len(value) > schema.get("maxLength", 10**9) or len(value) < schema.get("minLength", 0):
            errors.append(f"{where}: length {len(value)}")
    low, high = schema.get("minimum", -(10**18)), schema.get("maximum", 10**18)
    if JSON_TYPES["number"](value) and not low <= value <= high:
        errors.append(f"{where}: {value} out of range")
    if isinstance(value, dict):
        props = schema.get("properties", {})
        open_ended = partial and "..." in value
        if not open_ended:
            errors += [f"{where}: missing {k!r}" for k in schema.get("required", []) if k not in value]
        for k, v in value.items():
            if k == "..." and partial:
                continue
            if k in props:
                errors += validate(v, props[k], f"{where}.{k}", partial)
            elif schema.get("additionalProperties") is False:
                errors.append(f"{where}: unexpected key {k!r}")
    if isinstance(value, list) and "items" in schema:
        for i, v in enumerate(value):
            errors += validate(v, schema["items"], f"{where}[{i}]", partial)
    return errors


def response_schema(template: str, method: str, status: int) -> dict[str, Any] | None:
    """The JSON schema of a documented answer; fails if the status is not documented for the route."""
    op = SPEC["paths"][template][method.lower()]
    assert str(status) in op["responses"], f"{method} {template} answered {status}, which openapi.yaml lacks"
    resp = deref(op["responses"][str(status)])
    content = resp.get("content", {})
    return content["application/json"]["schema"] if "application/json" in content else None


def request_schema(template: str, method: str) -> dict[str, Any]:
    content = SPEC["paths"][template][method.lower()]["requestBody"]["content"]
    return next(iter(content.values()))["schema"]


class Recorder:
    """Sends requests to the real server, checks each answer against openapi.yaml, remembers what was covered."""

    def __init__(self, url: str) -> None:
        self.url = url
        self.http = requests.Session()
        self.covered: set[tuple[str, str, int]] = set()
        self.bodies: dict[tuple[str, str, int], list[Any]] = {}

    def __call__(self, method: str, template: str, path: str | None = None, expect: int = 200, **kw) -> Any:
        headers = {**AUTH, **kw.pop("headers", {})} if kw.pop("auth", True) else kw.pop("headers", {})
        r = self.http.request(method, self.url + (path or template), headers=headers, timeout=30, **kw)
        assert r.status_code == expect, (method, path or template, r.status_code, r.text[:300])
        schema = response_schema(template, method, r.status_code)
        self.covered.add((template, method.lower(), r.status_code))
        if schema is None:
            return r
        body = r.json()
        errors = validate(body, schema)
        assert not errors, (method, path or template, errors)
        self.bodies.setdefault((template, method.lower(), r.status_code), []).append(body)
        return body


def clip_form(query_id: str, a: bytes, b: bytes, **fields: str) -> dict[str, Any]:
    return {
        "data": {"query_id": query_id, "session": "3", **fields},
        "files": {"clip_a": ("a.webm", a, "video/webm"), "clip_b": ("b.webm", b, "video/webm")},
    }


@pytest.fixture(scope="module")
def walked(tmp_path_factory, webm_clips):
    """Every route and every documented status, once, against the real command (a 0.1 MB upload limit so that a
    413 is cheap). Returns the recorder."""
    tmp = tmp_path_factory.mktemp("contract")
    with serve(tmp / "data", "--max-upload-mb", "0.1") as url:
        call = Recorder(url)
        run = {"run_id": "hopper-s1", "instruction": "make the hopper hop forward", "env_id": "Hopper-v5"}
        call("GET", "/", headers={}, auth=False)
        call("GET", "/api/health")
        call("GET", "/api/health", expect=401, auth=False)
        call("POST", "/api/runs", json={**run, "meta": {"seed": 1}}, expect=201)
        call("POST", "/api/runs", json=run, expect=200)
        call("POST", "/api/runs", json={**run, "meta": {"k": "\ud800"}}, expect=400)
        call("POST", "/api/runs", data="x" * 70_000, headers={"Content-Type": "application/json"}, expect=413)
        call("POST", "/api/runs", data="{}", headers={"Content-Type": "text/plain"}, expect=415)
        call("GET", "/api/runs")
        R, Q = "/api/runs/{run_id}", "/api/runs/{run_id}/queries"
        call("GET", R, "/api/runs/hopper-s1")
        call("GET", R, "/api/runs/nope", expect=404)
        SS = "/api/runs/{run_id}/sessions"
        call("POST", SS, "/api/runs/hopper-s1/sessions", json={"session": 3, "queries": 4})
        call("POST", SS, "/api/runs/hopper-s1/sessions", json={"session": 3, "queries": 0}, expect=400)
        call("POST", SS, "/api/runs/nope/sessions", json={"session": 3, "queries": 4}, expect=404)
        a, b = webm_clips[0], webm_clips[1]
        for i in range(3):
            call("POST", Q, "/api/runs/hopper-s1/queries", **clip_form(f"s3-q{i}", a, webm_clips[2 + i]), expect=201)
        call("POST", Q, "/api/runs/hopper-s1/queries", **clip_form("s3-q0", a, webm_clips[2]), expect=200)
        call("POST", Q, "/api/runs/nope/queries", **clip_form("q9", a, b), expect=404)
        call("POST", Q, "/api/runs/hopper-s1/queries", **clip_form("q9", a, b, extra="1"), expect=400)
        call("POST", Q, "/api/runs/hopper-s1/queries", **clip_form("q9", a + b"\0" * 200_000, b), expect=413)
        call("POST", Q, "/api/runs/hopper-s1/queries", **clip_form("q9", b"not a video", b), expect=415)
        QQ = "/api/runs/{run_id}/queries/{query_id}"
        call("GET", QQ, "/api/runs/hopper-s1/queries/s3-q0")
        call("GET", QQ, "/api/runs/hopper-s1/queries/nope", expect=404)
        E, S = "/api/runs/{run_id}/events", "/api/runs/{run_id}/status"
        call("GET", E, "/api/runs/hopper-s1/events?after=0&wait=0")
        call("GET", E, "/api/runs/hopper-s1/events?after=-1", expect=400)
        call("GET", E, "/api/runs/nope/events", expect=404)
        call("GET", S, "/api/runs/hopper-s1/status")
        call("GET", S, "/api/runs/nope/status", expect=404)
        q = call("POST", "/api/claim", json={"labeller": "ann", "run_id": "hopper-s1", "prefetch": True})["query"]
        call("POST", "/api/claim", json={"labeller": "ann", "run_id": "hopper-s1"})  # back to one lease
        call("POST", "/api/claim", json={"labeller": "ann\u0000"}, expect=400)
        call("POST", "/api/claim", json={"labeller": "ann", "run_id": "nope"}, expect=404)
        call("GET", "/api/wait", "/api/wait?wait=0.1&run_id=hopper-s1")
        call("GET", "/api/wait", "/api/wait?wait=99", expect=400)
        call("GET", "/api/wait", "/api/wait?run_id=nope", expect=404)
        answer = {"labeller": "ann", "run_id": "hopper-s1", "query_id": q["query_id"], "choice": "A"}
        call("POST", "/api/answer", json=answer)
        call("POST", "/api/answer", json=answer, expect=409)
        call("POST", "/api/answer", json={**answer, "query_id": "nope"}, expect=404)
        call("POST", "/api/answer", json={**answer, "choice": "C"}, expect=400)
        call("POST", "/api/undo", json={"labeller": "ann"})
        call("POST", "/api/undo", json={"labeller": "nobody"}, expect=409)
        call("POST", "/api/undo", json={}, expect=400)
        call("POST", "/api/answer", json={**answer, "choice": "equal"})
        q2 = call("POST", "/api/claim", json={"labeller": "ann"})["query"]
        call("POST", "/api/answer", json={**answer, "query_id": q2["query_id"], "choice": "skip"})
        call("POST", "/api/claim", json={"labeller": "bob"})
        call("POST", "/api/claim", json={"labeller": "carl"})  # nothing left: "query": null
        call("POST", "/api/release", json={"labeller": "bob"})
        call("POST", "/api/release", json={"labeller": 5}, expect=400)
        call("GET", "/api/progress", "/api/progress?labeller=ann&run_id=hopper-s1")
        call("GET", "/api/progress", "/api/progress?labeller=%00", expect=400)
        call("GET", "/api/progress", "/api/progress?run_id=nope", expect=404)
        call("GET", E, "/api/runs/hopper-s1/events?after=0")
        C = "/clips/{name}"
        call("GET", C, q["clip_a_url"])
        call("GET", C, q["clip_a_url"], headers={"Range": "bytes=0-99"}, expect=206)
        # Labeller quality: a repeat of the labelled query, the statistics, an exclusion and its status page.
        RP, RPP = "/api/runs/{run_id}/repeats", "/api/runs/hopper-s1/repeats"
        repeat = {"query_id": "s4-r0", "session": 4, "repeat_of": q["query_id"]}
        call("POST", RP, RPP, json=repeat, expect=201)
        call("POST", RP, RPP, json=repeat, expect=200)
        call("POST", RP, RPP, json={**repeat, "session": -1}, expect=400)
        call("POST", RP, RPP, json={**repeat, "query_id": "s4-r1", "repeat_of": "nope"}, expect=404)
        call("POST", RP, RPP, json={**repeat, "query_id": "s4-r1", "repeat_of": q2["query_id"]}, expect=409)
        call("POST", "/api/runs/{run_id}/queries", "/api/runs/hopper-s1/queries",
             **clip_form("s4-q0", a, b, labellers="2"), expect=201)  # fmt: skip
        call("GET", "/api/wait", "/api/wait?wait=0.1&labeller=ann")
        call("GET", "/api/labellers", "/api/labellers?run_id=hopper-s1")
        call("GET", "/api/labellers", "/api/labellers?run_id=nope", expect=404)
        X = "/api/labellers/{name}/exclude"
        call("POST", X, "/api/labellers/carl/exclude", json={"excluded": True})
        call("POST", X, "/api/labellers/carl/exclude", json={"excluded": "yes"}, expect=400)
        call("POST", "/api/claim", json={"labeller": "carl"}, expect=403)
        call("GET", "/labellers", "/labellers?run_id=hopper-s1")
        call("GET", "/labellers", "/labellers?run_id=nope", expect=404)
        W = "/api/runs/{run_id}/withdraw"  # last: it removes the run's unanswered queries
        call("POST", W, "/api/runs/hopper-s1/withdraw")
        call("POST", W, "/api/runs/nope/withdraw", expect=404)
        call("GET", C, "/clips/" + "0" * 64 + ".webm", expect=404)
        yield call


def test_every_route_of_the_app_is_documented(tmp_path):
    from feedback_server import create_app

    app = create_app(tmp_path / "d", token=TOKEN)
    try:
        rules = {
            (re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", r.rule), m.lower())
            for r in app.url_map.iter_rules()
            if r.endpoint != "static"
            for m in r.methods - {"HEAD", "OPTIONS"}
        }
    finally:
        app.extensions["feedback_store"].close()
    documented = {(p, m) for p, ops in SPEC["paths"].items() for m in ops if m != "parameters"}
    assert rules == documented


def test_real_answers_match_the_schema_for_every_documented_status(walked):
    documented = {
        (p, m, int(s)) for p, ops in SPEC["paths"].items() for m, op in ops.items() if m != "parameters"
        for s in op["responses"]
    }  # fmt: skip
    assert documented - walked.covered == set()  # every documented answer was seen (and matched its schema)
    assert walked.covered <= documented


def _readme_sections() -> list[tuple[str, str, str]]:
    """(method, path template, text) of each route section of the README's HTTP API."""
    out = []
    parts = re.split(r"^#### `(GET|POST) ([^`?]+)[^`]*`.*$", README, flags=re.M)
    for method, path, text in zip(parts[1::3], parts[2::3], parts[3::3], strict=True):
        template = "/clips/{name}" if path.startswith("/clips/") else re.sub(r"<(\w+)>", r"{\1}", path)
        out.append((method, template, text.split("\n## ")[0].split("\n### ")[0]))
    return out


def _examples(text: str) -> list[tuple[str, Any]]:
    """("request" | "response", JSON) of every JSON example in a section: ```json blocks and inline `{...}`."""
    found = [("response", json.loads(block)) for block in re.findall(r"```json\n(.*?)```", text, re.S)]
    prose = re.sub(r"```.*?```", "", text, flags=re.S)
    for m in re.finditer(r"`(\{.*?\})`", prose, re.S):
        try:
            value = json.loads(m.group(1))
        except ValueError:
            continue  # "{...as above}" and the like
        kind = "request" if re.search(r"Request:?\s*$", prose[: m.start()][-20:]) else "response"
        found.append((kind, value))
    return found


OPTIONAL = {"lease_holder", "lease_expires", "retry_after"}  # present only in some states


def _same_keys(example: Any, real: Any, where: str) -> list[str]:
    """The README's example has the keys of the real answer (all of them unless it says "..."), recursively."""
    if not (isinstance(example, dict) and isinstance(real, dict)):
        return []
    keys = set(example) - {"..."}
    expected = set(real) if "..." not in example else keys
    errors = []
    if not keys <= set(real) or expected - OPTIONAL - keys:
        errors.append(f"{where}: README keys {sorted(keys)} but the server answers {sorted(real)}")
    for k in keys & set(real):
        errors += _same_keys(example[k], real[k], f"{where}.{k}")
    return errors


def test_readme_examples_match_the_schema_and_real_answers(walked):
    sections = _readme_sections()
    assert len(sections) == 21  # every route has its section
    checked = 0
    for method, template, text in sections:
        for kind, example in _examples(text):
            if kind == "request":
                errors = validate(example, request_schema(template, method))
            else:
                status = 201 if method == "POST" and template in ("/api/runs", "/api/runs/{run_id}/queries") else 200
                errors = validate(example, response_schema(template, method, status), partial=True)
                real = walked.bodies.get((template, method.lower(), status))
                assert real, (method, template, "no real answer to compare the README's example with")
                candidates = [_same_keys(example, r, "$") for r in real]
                errors += min(candidates, key=len)  # the real answer most like the example
            assert not errors, (method, template, kind, errors)
            checked += 1
    assert checked >= 15


def test_ready_file_is_written_once_serving_and_removed_on_a_clean_stop(tmp_path):
    ready = tmp_path / "ready.json"
    proc = subprocess.Popen(
        [sys.executable, str(SERVER), "--port", "0", "--data-dir", str(tmp_path / "d"), "--ready-file", str(ready)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        env={"PATH": "/usr/bin:/bin", "FEEDBACK_SERVER_TOKEN": TOKEN},
    )
    try:
        deadline = time.monotonic() + 30
        while not ready.exists():
            assert proc.poll() is None and time.monotonic() < deadline, "no ready file"
            time.sleep(0.02)
        info = json.loads(ready.read_text())
        assert set(info) == {"url", "port", "pid", "data_dir", "api_version"} and info["pid"] == proc.pid
        assert TOKEN not in ready.read_text()  # secrets stay out of files
        # Written once the server answers: the first request after it appears succeeds.
        assert requests.get(info["url"] + "/api/health", headers=AUTH, timeout=5).json()["status"] == "ok"
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    assert not ready.exists()
    bad = subprocess.run(
        [sys.executable, str(SERVER), "--ready-file", str(tmp_path / "no" / "dir" / "r.json")],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert bad.returncode == 2 and "--ready-file" in bad.stderr and bad.stderr.count("\n") == 1
