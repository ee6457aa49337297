"""Issue 12, item 6: the toolbox tells runs of one env, experiment and seed apart by the flags that differ, and
shows the clips people labelled on the server a human-feedback run autostarted, without --capture-video."""

from __future__ import annotations

import json
from pathlib import Path

WEBM = b"\x1a\x45\xdf\xa3" + b"\x00" * 60  # the EBML magic: enough for a file the toolbox serves as video/webm


def make_run(root: Path, name: str, **flags) -> Path:
    run = root / name
    run.mkdir(parents=True)
    (run / "args.json").write_text(json.dumps({"env_id": "Hopper-v5", "exp_name": "sac_rlhf", "seed": 1, **flags}))
    return run


def test_runs_are_told_apart_by_the_flags_that_differ(tmp_path):
    from toolbox_app import create_app
    from toolbox_runs import flag_differences

    base = {"q_lr": 0.001, "surf": True, "teacher_feedback_mode": "simulated"}
    make_run(tmp_path, "Hopper-v5__sac_rlhf__1__1700000001", **base)
    make_run(tmp_path, "Hopper-v5__sac_rlhf__1__1700000002", **{**base, "q_lr": 0.0003})
    make_run(tmp_path, "Hopper-v5__sac_rlhf__1__1700000003", **{**base, "surf": False})
    make_run(tmp_path, "Hopper-v5__ppo__1__1700000004", exp_name="ppo", num_steps=2048)  # other flags: not listed
    runs = {r["id"]: r["differs"] for r in create_app(tmp_path).test_client().get("/api/runs").get_json()["runs"]}
    assert runs == {
        "Hopper-v5__sac_rlhf__1__1700000001": {},
        "Hopper-v5__sac_rlhf__1__1700000002": {"q_lr": 0.0003},
        "Hopper-v5__sac_rlhf__1__1700000003": {"surf": False},
        "Hopper-v5__ppo__1__1700000004": {},
    }
    # Two runs, one difference: neither value is the usual one, so both show it.
    assert flag_differences({"a": {"lr": 1, "seed": 1}, "b": {"lr": 2, "seed": 2}}) == {"a": {"lr": 1}, "b": {"lr": 2}}


def test_clips_labelled_on_the_autostarted_server_are_shown_without_capture_video(tmp_path):
    from store import Store
    from toolbox_app import create_app

    run = make_run(tmp_path, "Hopper-v5__sac_rlhf__1__1700000005", teacher_feedback_mode="human")
    store = Store(run / "feedback_server")  # as --feedback-server-autostart keeps it: the run's id is its name
    try:
        store.register_run(run.name, "hop forward", "Hopper-v5")
        for i in range(3):
            store.add_query(run.name, f"s0000-q{i:03d}", 0, (WEBM + bytes([i]), "video/webm"), (WEBM, "video/webm"))
        store.add_query(run.name, "s0001-q000", 1, (WEBM + b"\x09", "video/webm"), (WEBM, "video/webm"))
        for choice in ("B", "skip", "equal"):
            q = store.claim("ann", run.name)
            store.answer("ann", run.name, q["query_id"], choice)
        store.undo("ann", run.name)  # the "equal" on s0000-q002 is taken back: unanswered again
        client = create_app(tmp_path).test_client()  # read while the server still holds its store open
        (summary,) = client.get("/api/runs").get_json()["runs"]
        assert summary["has_queries"]
        data = client.get(f"/api/runs/{run.name}/queries").get_json()
    finally:
        store.close()
    assert data["sessions"] == [0, 1] and data["invalid_lines"] == 0
    got = [(q["session"], q["query"], q["label"], q["label_name"]) for q in data["queries"]]
    assert got == [(0, 0, 1.0, "B better"), (0, 1, None, "skipped"), (0, 2, None, "not answered"),
                   (1, 0, None, "not answered")]  # fmt: skip
    q = data["queries"][0]
    assert q["exists_a"] and q["exists_b"] and q["step"] is None
    clip = client.get(f"/files/{run.name}/{q['clip_a']}")
    assert clip.status_code == 200 and clip.mimetype == "video/webm" and clip.data == WEBM + b"\x00"
    one = client.get(f"/api/runs/{run.name}/queries?session=1").get_json()
    assert [q["query"] for q in one["queries"]] == [0] and one["sessions"] == [0, 1]
