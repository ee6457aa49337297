"""Labeller quality on the trainer's side (issue 12, item 4): which queries of a session are doubled or repeated,
how the answers of several labellers make one training label, and the server's per-labeller statistics as
TensorBoard scalars. The statistics themselves are computed by the server (humanFeedback/labeller_stats.py).

How the answers enter training:

- a **repeat** (an earlier labelled pair asked again of its labeller) never trains: its pair is already in the
  preference data, and training on it twice would weight that pair double. It measures self-consistency only, and
  the trainer does not wait for it.
- a **doubled** query (asked of two labellers) trains on the majority of its labels: both labellers agreeing give
  that label; a disagreement has no majority and the query is dropped (like a skip). A tie is the one case where
  majority voting (Sheng, Provost & Ipeirotis 2008, "Get another label?", KDD) has no answer, and the alternative,
  training on 0.5, would teach "equally good", which neither labeller said. A skip is an abstention: the other
  labeller's label stands.
- the labels of an **excluded** labeller count nowhere: not towards answering a query, not in a majority.
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterable, Mapping

import numpy as np


def combine(answers: Mapping[str, float | None], excluded: Iterable[str] = ()) -> float | None:
    """One training label from the answers of several labellers (``labeller -> P(B > A)``, None for a skip): the
    strict majority of the labels of labellers not ``excluded``; None when there is none (no label, or a tie)."""
    drop = set(excluded)
    labels = [v for who, v in answers.items() if who not in drop and v is not None]
    if not labels:
        return None
    value, n = Counter(labels).most_common(1)[0]
    return value if 2 * n > len(labels) else None


def answer_count(answers: Mapping[str, float | None], excluded: Iterable[str] = ()) -> int:
    """How many labellers who are not ``excluded`` answered (a label or a skip)."""
    drop = set(excluded)
    return sum(who not in drop for who in answers)


def choose_doubled(n: int, fraction: float, rng: np.random.Generator) -> np.ndarray:
    """(n,) bool: which of a session's ``n`` queries are asked of two labellers, round(n · fraction) of them."""
    doubled = np.zeros(n, bool)
    doubled[rng.permutation(n)[: int(round(n * fraction))]] = True
    return doubled


def choose_repeats(n: int, fraction: float, candidates: list[str], rng: np.random.Generator) -> list[str]:
    """round(n · fraction) earlier labelled queries to ask again (each at most once; fewer if there are fewer)."""
    k = min(int(round(n * fraction)), len(candidates))
    return [candidates[i] for i in sorted(rng.choice(len(candidates), size=k, replace=False))] if k else []


def _tag(name: str) -> str:
    """A labeller's name as a TensorBoard tag component (letters, digits, ``._-``)."""
    return re.sub(r"[^\w.-]+", "_", name)


def quality_scalars(stats: list[dict]) -> dict[str, float]:
    """The server's ``GET /api/labellers`` entries as ``feedback/labeller/<name>/<stat>`` scalars (rates only where
    measured), plus ``feedback/labellers`` (how many) and ``feedback/labellers_excluded``."""
    out = {
        "feedback/labellers": float(len(stats)),
        "feedback/labellers_excluded": float(sum(s["excluded"] for s in stats)),
    }
    for s in stats:
        base = f"feedback/labeller/{_tag(s['labeller'])}"
        out[f"{base}/answers"] = float(s["answers"])
        if s["median_seconds"] is not None:
            out[f"{base}/median_answer_seconds"] = float(s["median_seconds"])
        for key in ("agreement", "self_consistency"):
            if s[key]["rate"] is not None:
                out[f"{base}/{key}"] = float(s[key]["rate"])
                out[f"{base}/{key}_n"] = float(s[key]["n"])
        if s["self_consistency"]["flip_rate"] is not None:
            out[f"{base}/flip_rate"] = float(s["self_consistency"]["flip_rate"])
    return out
