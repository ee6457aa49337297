"""--capture-video in human mode keeps the queried clips in the run directory, as in synthetic mode: each queried
pair as two H.264 mp4 files under videos/queries/ with a line of index.jsonl (session, query, step, clips, label),
besides the WebM clips the labelling server shows (issue 13, item 4). The feedback loop records the clips of every
answered session whoever the teacher is (rlhf.feedback_loop.FeedbackLoop.learn); this pins it for people."""

from __future__ import annotations

import json
import subprocess
import sys
import threading

import pytest
from conftest import REPO_ROOT
from script_runs import argv
from test_human_teacher import HUMAN_RUN, free_port, label_everything

from rlhf.checkpoint import load_state


@pytest.mark.slow  # whole-script runs: in .ci/run's second pytest step, not the default suite
# one human-mode run with clips: 243 s measured with other jobs on the 2 cores, over 540 s at load 15
@pytest.mark.timeout(900)
def test_human_mode_with_capture_video_keeps_the_queried_mp4s_and_their_index(tmp_path):
    """A real autostarted server, answered by a scripted labeller through the page's routes (A, B, equal, skip in
    turn). Fails if human mode writes no clips, or an index that disagrees with the labels the trainer learned."""
    url = f"http://127.0.0.1:{free_port()}"
    given: dict = {}
    stop = threading.Event()
    labeller = threading.Thread(target=label_everything, args=(url, given, stop, False), daemon=True)
    labeller.start()
    try:
        out = subprocess.run(
            [sys.executable, "framework/sac_rlhf.py", *argv(HUMAN_RUN, tmp_path / "runs"), "--capture-video",
             "--teacher-feedback-mode", "human", "--feedback-server-autostart", "--feedback-server-url", url],
            cwd=REPO_ROOT, capture_output=True, text=True, timeout=840,
        )  # fmt: skip
    finally:
        stop.set()
        labeller.join(timeout=15)
    assert out.returncode == 0, out.stderr[-3000:]
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert "label queries at" in (run_dir / "log.log").read_text()  # --log-file (default on): the run's log, kept
    queries = run_dir / "videos" / "queries"
    index = [json.loads(line) for line in (queries / "index.jsonl").read_text().splitlines()]
    assert [(e["session"], e["query"]) for e in index] == [(0, 0), (0, 1), (0, 2), (0, 3), (1, 0), (1, 1), (1, 2),
                                                            (1, 3)]  # fmt: skip
    # the label of each line is the labeller's answer to that query (None: skipped), as the trainer stored it
    assert [e["label"] for e in index] == [given[f"s{e['session']:04d}-q{e['query']:03d}"] for e in index]
    learned = load_state(run_dir / "checkpoints" / "final")["feedback"]["preferences"]["labels"].tolist()
    assert [e["label"] for e in index if e["label"] is not None] == learned
    clips = sorted(c for e in index for c in (e["clip_a"], e["clip_b"]))
    assert sorted(p.relative_to(queries).as_posix() for p in queries.rglob("*.mp4")) == clips
    for clip in clips:
        assert (queries / clip).read_bytes()[4:8] == b"ftyp", clip  # an mp4 file, not the server's WebM
