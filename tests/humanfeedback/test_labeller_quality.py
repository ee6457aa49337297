"""Labeller quality (issue 12, item 4): scripted labellers with known flip rates answer doubled queries and repeats
on the real server over a real socket, and the server's statistics recover those rates.

Tolerance: each rate is a binomial proportion over n comparisons, so it is asserted within 3 standard errors
√(p(1 - p)/n) of its expected value p (a fixed seed makes the test deterministic; 3 SE is what a correct server
misses with probability 0.3 % per rate for a new seed). With the 210 doubled queries and 210 repeats used here,
every labeller pair shares about 70 queries and every labeller answers about 70 repeats: SE ≈ 0.06 at p = 0.58
(30 % flips), so 3 SE (0.18) stays below the gap between the self-consistency of 10 % and of 30 % flips (0.82 vs
0.58). About 1,700 requests: 15 s on the development machine under a load of 8 on its 2 cores.
Checked by breaking the server on purpose (2026-12-03): comparing a repeat with the unswapped label fails it (the
0 % labeller's self-consistency reads 0.0 over its 70 repeats).
"""

from __future__ import annotations

import hashlib
import math
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import requests

from rlhf.feedback_client import FeedbackClient
from rlhf.feedback_server_process import FeedbackServerProcess, start_feedback_server

from .feedback_testutil import TOKEN

FLIPS = {"exact": 0.0, "careful": 0.1, "sloppy": 0.3}
N_QUERIES = 210


@pytest.fixture
def fast_server() -> Iterator[FeedbackServerProcess]:
    """The real server (waitress, a real socket) over a data dir in RAM: it fsyncs every answer (store.py), which
    costs tens of ms each on this machine's disk and would make 2,000 answers take minutes."""
    with tempfile.TemporaryDirectory(dir="/dev/shm" if Path("/dev/shm").is_dir() else None) as d:
        server = start_feedback_server(port=0, data_dir=Path(d) / "data", token=TOKEN)
        yield server
        server.stop()


def consistency(eps: float) -> float:
    """P(the same answer twice) for independent flips with probability eps: (1 - eps)² + eps²."""
    return (1 - eps) ** 2 + eps**2


def within_3_se(measured: float, expected: float, n: int) -> bool:
    return abs(measured - expected) <= 3 * math.sqrt(expected * (1 - expected) / n) + 1e-12


class ScriptedLabeller:
    """Answers what the clips show (the clip with the higher hidden rank is better), flipped with probability eps."""

    def __init__(self, url: str, name: str, eps: float, rank: dict[str, int], seed: int) -> None:
        self.url, self.name, self.eps, self.rank = url, name, eps, rank
        self.rng = np.random.default_rng(seed)
        self.http = requests.Session()
        self.http.headers["Authorization"] = f"Bearer {TOKEN}"
        self.answered = 0

    def answer_one(self) -> bool:
        """Claim and answer one pair; False when there is nothing for this labeller."""
        query = self.http.post(f"{self.url}/api/claim", json={"labeller": self.name}, timeout=10).json()["query"]
        if query is None:
            return False
        b_better = self.rank[query["clip_b"]] > self.rank[query["clip_a"]]
        if self.rng.random() < self.eps:
            b_better = not b_better
        body = {"labeller": self.name, "run_id": query["run_id"], "query_id": query["query_id"]}
        r = self.http.post(f"{self.url}/api/answer", json=dict(body, choice="B" if b_better else "A"), timeout=10)
        r.raise_for_status()
        self.answered += 1
        return True


def answer_everything(labellers: list[ScriptedLabeller]) -> None:
    """In turns, until nobody is handed anything more."""
    while any([lab.answer_one() for lab in labellers]):
        pass


def test_scripted_labellers_flip_rates_are_recovered(fast_server, webm_clips):
    url = fast_server.url
    client = FeedbackClient(url, "study", token=TOKEN)
    client.register_run("which clip is better?", "Hopper-v5")
    clips = webm_clips[:6]
    rank = {hashlib.sha256(c).hexdigest() + ".webm": i for i, c in enumerate(clips)}
    rng = np.random.default_rng(0)
    for q in range(N_QUERIES):
        a, b = rng.choice(len(clips), size=2, replace=False)
        client.upload_query(f"s0000-q{q:03d}", 0, clips[a], clips[b], labellers=2)
    labellers = [ScriptedLabeller(url, name, eps, rank, seed) for seed, (name, eps) in enumerate(FLIPS.items())]
    answer_everything(labellers)
    assert client.status().labelled == N_QUERIES  # every doubled query has its two answers
    for q in range(N_QUERIES):  # each pair asked again of one of its two labellers, sides swapped
        client.repeat_query(f"s0001-r{q:03d}", 1, f"s0000-q{q:03d}")
    answer_everything(labellers)
    assert client.status().labelled == 2 * N_QUERIES

    stats = {s["labeller"]: s for s in client.labeller_stats()}
    assert set(stats) == set(FLIPS)
    for lab in labellers:
        s = stats[lab.name]
        assert s["answers"] == s["labels"] == lab.answered and s["skips"] == 0
        assert s["median_seconds"] is not None and 0 < s["median_seconds"] < 5
        c = s["self_consistency"]
        assert c["n"] >= 50, c  # about a third of the repeats each
        expected = consistency(FLIPS[lab.name])
        assert within_3_se(c["rate"], expected, c["n"]), (lab.name, c, expected)
        # The flip rate from c by the delta method: SE(eps) = SE(c) / (2 sqrt(2c - 1)).
        se_eps = math.sqrt(expected * (1 - expected) / c["n"]) / (2 * math.sqrt(2 * expected - 1))
        assert abs(c["flip_rate"] - FLIPS[lab.name]) <= 3 * se_eps + 1e-12, (lab.name, c)
        for other, pair in s["agreement"]["with"].items():
            e1, e2 = FLIPS[lab.name], FLIPS[other]
            p = (1 - e1) * (1 - e2) + e1 * e2  # both right or both wrong
            assert pair["n"] >= 50 and within_3_se(pair["rate"], p, pair["n"]), (lab.name, other, pair, p)
    assert stats["exact"]["self_consistency"]["rate"] == 1.0 and stats["exact"]["self_consistency"]["flip_rate"] == 0
    assert stats["sloppy"]["self_consistency"]["rate"] < stats["careful"]["self_consistency"]["rate"]

    # The status page (behind the token) shows the same numbers.
    page = requests.get(f"{url}/labellers", timeout=10)
    assert page.status_code == 401
    page = requests.get(f"{url}/labellers", params={"token": TOKEN}, timeout=10)
    assert page.status_code == 200 and all(f'data-labeller="{name}"' in page.text for name in FLIPS)

    # Excluding the sloppy labeller: they get nothing more, and the pairs only they answered (the second answer of
    # their doubled queries, their repeats) are asked of the others again.
    sloppy_originals = stats["sloppy"]["agreement"]["n"]
    sloppy_repeats = stats["sloppy"]["self_consistency"]["n"]
    assert client.exclude_labeller("sloppy") == sloppy_originals + sloppy_repeats
    st = client.status()
    assert st.pending == sloppy_originals + sloppy_repeats
    refused = labellers[2].http.post(f"{url}/api/claim", json={"labeller": "sloppy"}, timeout=10)
    assert refused.status_code == 403 and refused.json()["error"] == "labeller_excluded"
    assert {s["labeller"]: s["excluded"] for s in client.labeller_stats()} == {
        "exact": False,
        "careful": False,
        "sloppy": True,
    }
    answer_everything(labellers[:2])
    assert client.status().pending == 0  # exact and careful could answer all of them
