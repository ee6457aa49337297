"""Every route of the toolbox app through Flask's test client, including traversal attempts and bad input."""

from __future__ import annotations

import json

import pytest

PEBBLE, PEBBLE2, ORACLE = (
    "Hopper-v5__sac_rlhf__1__1760000000",
    "Hopper-v5__sac_rlhf__2__1760000500",
    "Hopper-v5__sac__1__1760001000",
)
BROKEN = "Walker2d-v5__ppo__3__1760002000"


@pytest.fixture(scope="module")
def client(runs_root):
    from toolbox_app import create_app

    app = create_app(runs_root)
    app.testing = True
    return app.test_client()


def test_page_and_static_files(client):
    page = client.get("/")
    assert page.status_code == 200 and page.mimetype == "text/html"
    assert b'src="/static/toolbox.js"' in page.data and b"http" not in page.data.replace(b"http://www.w3.org", b"")
    assert "default-src 'self'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Content-Type-Options"] == "nosniff"
    assert client.get("/static/toolbox.js").mimetype in ("text/javascript", "application/javascript")
    assert client.get("/static/toolbox.css").mimetype == "text/css"
    for bad in ("/static/index.html", "/static/../toolbox.py", "/static/%2e%2e%2ftoolbox.py", "/nope"):
        r = client.get(bad)
        assert r.status_code == 404 and "error" in r.get_json(), bad


def test_runs_are_listed_with_their_summary(client, runs_root):
    data = client.get("/api/runs").get_json()
    assert data["runs_dir"] == str(runs_root.resolve())
    runs = {r["id"]: r for r in data["runs"]}
    assert set(runs) == {PEBBLE, PEBBLE2, ORACLE, BROKEN}  # not 'notes', not the link leading out of the runs dir
    assert [r["id"] for r in data["runs"]][0] == BROKEN  # newest first
    p = runs[PEBBLE]
    assert (p["env_id"], p["exp_name"], p["seed"], p["algorithm"], p["steps"]) == (
        "Hopper-v5",
        "sac_rlhf",
        1,
        "sac_rlhf",
        100_000,
    )
    assert p["labels"] == 6 and p["date"] == "2025-10-09 08:53 UTC" and p["eval_videos"] == 3
    assert p["last_eval_return"] > 1000 and p["has_queries"] and p["evaluation_mean_return"] == 10.0
    assert p["status"] == "finished"
    o = runs[ORACLE]
    assert o["algorithm"] == "sac" and o["labels"] is None and not o["has_queries"] and o["eval_videos"] == 2
    b = runs[BROKEN]  # killed mid-run: run.json says running, its process is gone; a truncated events file
    assert b["algorithm"] == "ppo" and b["status"] == "stopped" and b["steps"] == 4096
    assert not b["has_checkpoint"] and b["last_train_return"] is not None


def test_run_detail(client):
    data = client.get(f"/api/runs/{PEBBLE}").get_json()
    assert data["id"] == PEBBLE and data["args"]["teacher_feedback_mode"] == "simulated"


def test_scalars(client):
    tags = client.get(f"/api/runs/{PEBBLE}/scalars").get_json()["tags"]
    assert {"charts/episodic_return", "eval/mean_return", "feedback/total_labels"} <= set(tags)
    data = client.get(f"/api/runs/{PEBBLE}/scalars?tag=feedback/total_labels&tag=missing").get_json()["scalars"]
    assert data["missing"] == [] and [v for _, v in data["feedback/total_labels"]] == [2, 4, 6]
    many = "&".join(f"tag=t{i}" for i in range(40))
    assert client.get(f"/api/runs/{PEBBLE}/scalars?{many}").status_code == 400


def test_curves_against_steps_and_labels(client):
    data = client.get(f"/api/runs/{PEBBLE}/curves").get_json()
    assert data["metric"] == "charts/episodic_return" and data["has_labels"]
    labels = dict(
        client.get(f"/api/runs/{PEBBLE}/scalars?tag=feedback/total_labels").get_json()["scalars"][
            "feedback/total_labels"
        ]
    )
    for step, n_labels, _ in data["points"]:  # the labels given up to each step
        assert n_labels == max([v for s, v in labels.items() if s <= step], default=0)
    steps = [p[0] for p in data["points"]]
    assert steps == sorted(steps) and len(steps) == 20
    assert [p[1] for p in data["points"]][-1] == 6
    oracle = client.get(f"/api/runs/{ORACLE}/curves?metric=eval/mean_return").get_json()
    assert not oracle["has_labels"] and all(p[1] is None for p in oracle["points"]) and len(oracle["points"]) == 2
    assert client.get(f"/api/runs/{PEBBLE}/curves?metric=losses/qf1_loss").status_code == 400


def test_videos(client):
    data = client.get(f"/api/runs/{PEBBLE}/videos").get_json()
    assert [v["step"] for v in data["eval"]] == [33333, 66666, 100000]
    assert all(v["return"] is not None for v in data["eval"])
    ev = data["evaluation"]
    assert ev["mean"] == 10.0 and ev["videos"] == ["evaluation/episode_000.mp4"]  # not the path leading outside
    assert ev["plot"] == "evaluation/returns.png"
    oracle = client.get(f"/api/runs/{ORACLE}/videos").get_json()
    assert [v["step"] for v in oracle["eval"]] == [50000, 100000] and oracle["evaluation"] is None  # no link out
    for v in data["eval"]:
        r = client.get(f"/files/{PEBBLE}/{v['path']}")
        assert r.status_code == 200 and r.mimetype == "video/mp4" and r.data[4:8] == b"ftyp"


def test_queries(client):
    data = client.get(f"/api/runs/{PEBBLE}/queries").get_json()
    assert data["sessions"] == [0, 1, 2] and data["invalid_lines"] == 0 and len(data["queries"]) == 6
    names = {(q["session"], q["query"]): (q["label"], q["label_name"]) for q in data["queries"]}
    assert names[(0, 0)] == (0.0, "A better") and names[(0, 1)] == (1.0, "B better")
    assert names[(1, 1)] == (0.5, "equally good") and names[(1, 0)] == (1.0, "B better")
    assert names[(2, 1)] == (None, "skipped")
    one = client.get(f"/api/runs/{PEBBLE}/queries?session=1").get_json()["queries"]
    assert {q["session"] for q in one} == {1} and len(one) == 2
    q = one[0]
    assert q["exists_a"] and q["exists_b"] and q["clip_a"].startswith("videos/queries/session_0001/")
    clip = client.get(f"/files/{PEBBLE}/{q['clip_a']}")
    # The trainer writes H.264 mp4 query clips (rlhf.video.QueryClipRecorder), and so does the demo.
    assert q["clip_a"].endswith(".mp4") and q["clip_b"].endswith(".mp4")
    assert clip.status_code == 200 and clip.mimetype == "video/mp4" and clip.data[4:8] == b"ftyp"

    broken = client.get(f"/api/runs/{PEBBLE2}/queries").get_json()
    assert broken["invalid_lines"] == 3 and broken["sessions"] == [0, 1, 2, 7]
    later = [q for q in broken["queries"] if q["session"] == 7][0]
    assert later["label"] is None and later["label_name"] == "skipped" and not later["exists_a"]
    assert client.get(f"/api/runs/{ORACLE}/queries").get_json() == {"sessions": [], "queries": [], "invalid_lines": 0}
    for bad in ("-1", "x", "1e3", "99999999999"):
        assert client.get(f"/api/runs/{PEBBLE}/queries?session={bad}").status_code == 400


def test_range_requests_for_video_seeking(client):
    r = client.get(f"/files/{PEBBLE}/videos/eval/step_00100000.mp4", headers={"Range": "bytes=0-15"})
    assert r.status_code == 206 and len(r.data) == 16 and r.headers["Accept-Ranges"] == "bytes"


@pytest.mark.parametrize(
    "url",
    [
        "/api/runs/nope",
        "/api/runs/nope/curves",
        "/api/runs/..%2Fruns-secret/videos",
        "/api/runs/linked-run",
        "/api/runs/linked-run/queries",
        "/api/runs/.hidden/scalars",
        "/files/linked-run/secret.mp4",
        f"/files/{PEBBLE}/../runs-secret/secret.mp4",
        f"/files/{PEBBLE}/..%2F..%2Fruns-secret%2Fsecret.mp4",
        f"/files/{PEBBLE}/%2e%2e/%2e%2e/runs-secret/secret.mp4",
        f"/files/{PEBBLE}/videos/queries/../../../runs-secret/secret.webm",
        f"/files/{PEBBLE}//etc/passwd",
        f"/files/{PEBBLE}/%2Fetc%2Fpasswd",
        f"/files/{PEBBLE}/videos\\..\\..\\runs-secret\\secret.mp4",
        f"/files/{ORACLE}/videos/eval/step_00000001.mp4",  # a link inside the run pointing outside
        f"/files/{PEBBLE}/args.json",  # not a media file
        f"/files/{PEBBLE}/checkpoints/final.safetensors",
        f"/files/{PEBBLE}/checkpoints/final.json",
        f"/files/{PEBBLE}/videos/eval/step_99999999.mp4",
        f"/files/{PEBBLE}/videos/eval",
        "/files/../runs-secret/secret.mp4",
        "/files/runs-secret/secret.mp4",
        "/files/%2E%2E/runs-secret/secret.mp4",
    ],
)
def test_nothing_outside_the_runs_directory_and_no_non_media_is_served(client, url):
    r = client.get(url)
    assert 400 <= r.status_code < 500, (url, r.status_code)
    assert b"TOP-SECRET-CONTENT" not in r.data and b"root:" not in r.data and r.is_json


def test_direct_path_checks_refuse_sibling_prefixes(runs_root):
    import toolbox_runs

    root = runs_root.resolve()
    for run_id in ("..", ".", "", "runs-secret", "../runs-secret", "linked-run", "a/b", PEBBLE + "/.."):
        with pytest.raises(toolbox_runs.NotFound):
            toolbox_runs.run_path(root, run_id)
    for rel in (
        "../../runs-secret/secret.mp4",
        "/etc/passwd",
        "videos/../../runs-secret/secret.mp4",
        "args.json",
        ".hidden.mp4",
        "videos//eval/step_00100000.mp4",
    ):
        with pytest.raises(toolbox_runs.NotFound):
            toolbox_runs.run_file(root, PEBBLE, rel)
    assert toolbox_runs.run_file(root, PEBBLE, "videos/eval/step_00100000.mp4").is_file()


def test_methods_other_than_get_are_refused(client):
    for method in (client.post, client.put, client.delete):
        r = method("/api/runs")
        assert r.status_code == 405 and json.loads(r.data)["error"]


def test_a_missing_runs_directory_lists_nothing(tmp_path):
    from toolbox_app import create_app

    assert create_app(tmp_path / "absent").test_client().get("/api/runs").get_json()["runs"] == []
