"""How far each labeller can be trusted, from what the store holds (issue 12, item 4).

- **agreement**: on queries answered by two labellers (doubled queries, ``wanted = 2``), the fraction of the other
  labeller's labels that equal this labeller's, overall and per other labeller;
- **self-consistency**: on repeats (a labelled query asked again of its labeller, its clips swapped), the fraction
  of repeat labels that match the labeller's first label (``A`` then ``B`` on the swapped pair, ``equal`` twice);
- **flip rate**: the probability ε of a flipped answer that explains the self-consistency c when every answer flips
  independently with the same ε: c = (1 - ε)² + ε², so ε = (1 - √(2c - 1)) / 2 (two-choice answers; c below 1/2 is
  worse than chance and reads as 0.5);
- **answers** (labels and skips), **median answer time** (from being handed the pair to answering it).

Skips take part in no comparison. Retracted (undone) answers count nowhere. Excluded labellers are still listed,
with their numbers, since those are what an exclusion is decided on. Each rate comes with its binomial standard
error √(r(1 - r)/n), so the page can say how much it means (n = 20 repeats at r = 0.8: ± 0.09).
"""

from __future__ import annotations

import math
import sqlite3
import statistics
from collections import defaultdict
from typing import Any


def flip_rate(consistency: float) -> float:
    """The independent flip probability ε with (1 - ε)² + ε² = ``consistency`` (0.5 below chance)."""
    return 0.5 if consistency <= 0.5 else (1.0 - math.sqrt(2.0 * consistency - 1.0)) / 2.0


def _rate(n: int, hits: int) -> dict[str, Any]:
    if not n:
        return {"n": 0, "agreed": hits, "rate": None, "se": None}
    rate = hits / n
    return {"n": n, "agreed": hits, "rate": rate, "se": math.sqrt(rate * (1 - rate) / n)}


def labeller_stats(db: sqlite3.Connection, run_id: str | None = None) -> list[dict[str, Any]]:
    """Statistics of every labeller (who answered in ``run_id``, or anywhere), sorted by name. ``db`` rows must be
    ``sqlite3.Row`` (the store's connection, used under its lock)."""
    where, args = ("AND run_id = ?", (run_id,)) if run_id is not None else ("", ())
    answers = db.execute(
        f"SELECT run_id, query_id, kind, label, labeller, seconds FROM labels WHERE retracted_at IS NULL {where}",
        args,
    ).fetchall()
    repeat_of = {
        (r["run_id"], r["query_id"]): r["repeat_of"]
        for r in db.execute(f"SELECT run_id, query_id, repeat_of FROM queries WHERE 1 {where}", args)
    }
    people = db.execute("SELECT name, first_seen, last_seen, excluded FROM labellers").fetchall()

    count: dict[str, dict[str, int]] = defaultdict(lambda: {"label": 0, "skip": 0})
    seconds: dict[str, list[float]] = defaultdict(list)
    first: dict[tuple[str, str], dict[str, float]] = defaultdict(dict)  # original query -> labeller -> label
    repeats: list[tuple[str, str, str, float]] = []  # (run, original, labeller, label on the swapped pair)
    for a in answers:
        who = a["labeller"]
        count[who][a["kind"]] += 1
        if a["seconds"] is not None:
            seconds[who].append(a["seconds"])
        if a["kind"] != "label":
            continue
        original = repeat_of.get((a["run_id"], a["query_id"]))
        if original is None:
            first[(a["run_id"], a["query_id"])][who] = a["label"]
        else:
            repeats.append((a["run_id"], original, who, a["label"]))

    pair_n: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    pair_hits: dict[str, dict[str, int]] = defaultdict(lambda: defaultdict(int))
    for labels in first.values():
        for who, label in labels.items():
            for other, other_label in labels.items():
                if other != who:
                    pair_n[who][other] += 1
                    pair_hits[who][other] += label == other_label
    self_n: dict[str, int] = defaultdict(int)
    self_hits: dict[str, int] = defaultdict(int)
    for run, original, who, label in repeats:
        before = first.get((run, original), {}).get(who)
        if before is not None:  # the swapped pair: the same judgement is 1 - label
            self_n[who] += 1
            self_hits[who] += label == 1.0 - before

    out = []
    for p in sorted(people, key=lambda r: r["name"]):
        who = p["name"]
        if run_id is not None and who not in count:
            continue
        agreement = _rate(sum(pair_n[who].values()), sum(pair_hits[who].values()))
        agreement["with"] = {o: _rate(n, pair_hits[who][o]) for o, n in sorted(pair_n[who].items())}
        consistency = _rate(self_n[who], self_hits[who])
        consistency["flip_rate"] = None if consistency["rate"] is None else flip_rate(consistency["rate"])
        out.append(
            {
                "labeller": who,
                "excluded": bool(p["excluded"]),
                "answers": count[who]["label"] + count[who]["skip"],
                "labels": count[who]["label"],
                "skips": count[who]["skip"],
                "median_seconds": statistics.median(seconds[who]) if seconds[who] else None,
                "agreement": agreement,
                "self_consistency": consistency,
                "first_seen": p["first_seen"],
                "last_seen": p["last_seen"],
            }
        )
    return out
