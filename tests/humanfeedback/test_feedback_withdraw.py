"""POST /api/runs/<run_id>/withdraw: a trainer whose run ended takes back its unanswered queries, so labellers are
not handed pairs nobody waits for (issue 9, item 9); what was answered, and the event log, stay."""

from __future__ import annotations

from .test_feedback_api import RUN, answer, assert_json_error, claim, register, upload


def test_withdraw_removes_only_the_runs_unanswered_queries(client, auth, webm_clips):
    register(client, auth)
    register(client, auth, dict(RUN, run_id="other"))
    for i in range(4):
        assert upload(client, auth, f"q{i}", webm_clips[i], webm_clips[i + 1]).status_code == 201
    assert upload(client, auth, "x0", webm_clips[5], webm_clips[6], run_id="other").status_code == 201
    assert answer(client, auth, claim(client, auth)["query_id"], "A").status_code == 200  # q0 labelled
    assert answer(client, auth, claim(client, auth)["query_id"], "skip").status_code == 200  # q1 skipped
    assert answer(client, auth, claim(client, auth)["query_id"], "B").status_code == 200  # q2 labelled, then undone
    assert client.post("/api/undo", json={"labeller": "ann"}, headers=auth).status_code == 200  # q2 leased back
    events_before = client.get("/api/runs/hopper-s1/events", headers=auth).json["events"]

    r = client.post("/api/runs/hopper-s1/withdraw", headers=auth)
    assert r.status_code == 200, r.json
    assert r.json["withdrawn"] == 2  # q2 (leased after the undo) and q3 (pending)
    assert {k: r.json["counts"][k] for k in ("pending", "leased", "labelled", "skipped")} == {
        "pending": 0,
        "leased": 0,
        "labelled": 1,
        "skipped": 1,
    }
    assert client.get("/api/runs/hopper-s1/events", headers=auth).json["events"] == events_before
    assert claim(client, auth)["query_id"] == "x0"  # the other run's query is still asked
    assert_json_error(answer(client, auth, "q2", "A"), 404)  # a withdrawn pair is no longer answerable
    assert client.post("/api/runs/hopper-s1/withdraw", headers=auth).json["withdrawn"] == 0  # idempotent
    # The trainer may upload again (a resumed run asks a withdrawn query anew).
    assert upload(client, auth, "q3", webm_clips[3], webm_clips[4]).status_code == 201


def test_withdraw_needs_the_token_and_a_known_run(client, auth):
    assert_json_error(client.post("/api/runs/hopper-s1/withdraw"), 401)
    assert_json_error(client.post("/api/runs/nope/withdraw", headers=auth), 404)
    assert_json_error(client.post("/api/runs/bad%20id/withdraw", headers=auth), 400)
