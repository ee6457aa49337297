"""Long-polls do not starve the rest of the server (issue 9, item 6): with 40 long-polls open, /api/health (and a
claim, an upload) answer within 0.5 s, every held long-poll is still woken by the change it waits for, and beyond
the long-poll slots a long-poll is answered at once with ``retry_after`` instead of taking the last worker."""

from __future__ import annotations

import threading
import time

import requests

from rlhf.feedback_client import FeedbackClient

from .feedback_testutil import TOKEN, serve

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def open_long_polls(url: str, paths: list[str]) -> tuple[list[threading.Thread], list]:
    """One thread (and connection) per path, each holding a GET; results are (path, seconds, status, json)."""
    results: list = []
    guard = threading.Lock()

    def poll(path: str) -> None:
        t0 = time.monotonic()
        r = requests.get(url + path, headers=AUTH, timeout=60)
        with guard:
            results.append((path, time.monotonic() - t0, r.status_code, r.json(), r.headers.get("Retry-After")))

    threads = [threading.Thread(target=poll, args=(p,), daemon=True) for p in paths]
    for t in threads:
        t.start()
    return threads, results


def latency(fn) -> float:
    t0 = time.monotonic()
    fn()
    return time.monotonic() - t0


def test_health_answers_promptly_with_40_long_polls_open(tmp_path, webm_clips):
    with serve(tmp_path / "d") as url:  # the default thread count
        trainer = FeedbackClient(url, "r", token=TOKEN)
        trainer.register_run("hop", "Hopper-v5")
        paths = ["/api/wait?wait=20"] * 30 + ["/api/runs/r/events?after=0&wait=20"] * 10
        threads, results = open_long_polls(url, paths)
        time.sleep(1.5)  # all 40 are held by the server now
        assert results == []  # none answered early: each is a real long-poll
        health = [latency(lambda: requests.get(url + "/api/health", headers=AUTH, timeout=30)) for _ in range(5)]
        print(f"/api/health with 40 long-polls open: max {max(health) * 1000:.0f} ms")
        assert max(health) < 0.5, health
        # The rest of the API too: an upload wakes the 30 waiting labellers, a label the 10 waiting trainers.
        assert latency(lambda: trainer.upload_query("q0", 1, webm_clips[0], webm_clips[1])) < 0.5
        deadline = time.monotonic() + 10
        while len(results) < 30 and time.monotonic() < deadline:  # every waiting page sees the new pair
            time.sleep(0.05)
        assert len(results) == 30 and all(body == {"claimable": 1} for _, _, _, body, _ in results)
        claim = requests.post(url + "/api/claim", json={"labeller": "ann"}, headers=AUTH, timeout=30)
        assert claim.status_code == 200 and claim.json()["query"]["query_id"] == "q0"
        answer = {"labeller": "ann", "run_id": "r", "query_id": "q0", "choice": "A"}
        assert requests.post(url + "/api/answer", json=answer, headers=AUTH, timeout=30).status_code == 200
        for t in threads:
            t.join(30)
        assert len(results) == 40 and all(status == 200 for _, _, status, _, _ in results)
        assert all(secs < 10 for _, secs, _, _, _ in results)  # woken by the change, not by the 20 s timeout
        woken = [body for path, _, _, body, _ in results if "events" in path]
        assert all(body["events"][0]["label"] == 0.0 for body in woken) and len(woken) == 10


def test_long_polls_beyond_the_slots_are_answered_at_once(tmp_path):
    """--threads 8 keeps 2 workers for everything else: of 12 long-polls 6 are held and 6 told to retry."""
    with serve(tmp_path / "d", "--threads", "8") as url:
        requests.post(
            url + "/api/runs", json={"run_id": "r", "instruction": "hop", "env_id": "Hopper-v5"}, headers=AUTH
        ).raise_for_status()
        threads, results = open_long_polls(url, ["/api/wait?wait=4"] * 6 + ["/api/runs/r/events?wait=4"] * 6)
        time.sleep(1.5)
        early = list(results)
        assert len(early) == 6, early
        for _path, secs, status, body, retry in early:
            assert status == 200 and secs < 1.5 and body["retry_after"] >= 1 and retry == str(body["retry_after"])
        health = [latency(lambda: requests.get(url + "/api/health", headers=AUTH, timeout=30)) for _ in range(5)]
        assert max(health) < 0.5, health
        for t in threads:
            t.join(30)
        held = [r for r in results if r not in early]
        assert len(held) == 6 and all(secs > 3.5 and "retry_after" not in body for _, secs, _, body, _ in held)
