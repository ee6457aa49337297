"""One damaged or hostile file in one run must not break the toolbox for every run (issue 9's classes, found in
the toolbox): JSON nested past the parser's recursion limit, NaN and infinities (which Python writes into JSON
files and the page's JSON.parse refuses), lone surrogates, NUL, bytes that are not UTF-8 in a file or a name."""

from __future__ import annotations

import json
import os

from toolbox_app import create_app


def strict_json(data: bytes):
    """What the page's JSON.parse accepts: no NaN/Infinity."""

    def refuse(name: str):
        raise AssertionError(f"{name} is not JSON")

    return json.loads(data.decode("utf-8"), parse_constant=refuse)


def test_damaged_run_files_do_not_break_any_listing(tmp_path):
    root = tmp_path / "runs"
    odd = root / "Hopper-v5__odd__1__1760000000"
    (odd / "videos" / "queries").mkdir(parents=True)
    (odd / "args.json").write_text(
        '{"env_id": "\\ud800", "exp_name": "a\\u0000b", "seed": 1, "total_timesteps": 1e999, "beta": NaN}'
    )
    (odd / "videos" / "queries" / "index.jsonl").write_text(
        '{"session": 0, "query": 0, "step": 1, "clip_a": "\\ud800.mp4", "clip_b": "b.mp4", "label": NaN}\n'
    )
    (odd / "evaluation").mkdir()
    summary = {"algorithm": "sac", "env_id": "Hopper-v5", "step": 1, "episodes": 0, "returns": []}
    (odd / "evaluation" / "summary.json").write_text(
        json.dumps({**summary, "mean": float("nan"), "std": float("inf"), "ci95_low": float("-inf")})
    )
    deep = root / "Hopper-v5__deep__1__1760000001"
    deep.mkdir()
    (deep / "args.json").write_text("[" * 100_000 + "]" * 100_000)
    os.makedirs(os.fsencode(root) + b"/Hopper-v5__\xff__1__1760000002")
    (root / "Hopper-v5__bytes__1__1760000003").mkdir()
    (root / "Hopper-v5__bytes__1__1760000003" / "args.json").write_bytes(b'{"env_id": "Hop\xffper"}')

    c = create_app(root).test_client()
    listing = c.get("/api/runs")
    assert listing.status_code == 200, listing.data[:300]
    runs = {r["id"]: r for r in strict_json(listing.data)["runs"]}
    assert {"Hopper-v5__odd__1__1760000000", "Hopper-v5__deep__1__1760000001"} <= set(runs)
    for run_id in [
        "Hopper-v5__odd__1__1760000000",
        "Hopper-v5__deep__1__1760000001",
        "Hopper-v5__bytes__1__1760000003",
    ]:
        for route in ("", "/scalars", "/curves", "/videos", "/queries"):
            r = c.get(f"/api/runs/{run_id}{route}")
            assert r.status_code == 200, (run_id, route, r.status_code, r.data[:300])
            strict_json(r.data)
    detail = strict_json(c.get("/api/runs/Hopper-v5__odd__1__1760000000").data)
    assert detail["args"]["total_timesteps"] is None and detail["args"]["beta"] is None
    evaluation = strict_json(c.get("/api/runs/Hopper-v5__odd__1__1760000000/videos").data)["evaluation"]
    assert evaluation is None or evaluation["mean"] is None
