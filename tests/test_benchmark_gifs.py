"""benchmarks/gifs.py: the gif of each task shows its median seed, made by evaluation.py from that seed's own
checkpoint where suite.py ran it, and report.py captions it in the README from the record gifs.py keeps."""

from __future__ import annotations

import json

import gifs
import pytest
import report
import suite
from PIL import Image
from test_evaluation import fake_sac_checkpoint


def test_the_median_seed_is_the_middle_one_and_the_lower_middle_for_an_even_count():
    runs = [{"seed": 1, "final_eval_return": 3081.4}, {"seed": 2, "final_eval_return": 1000.0},
            {"seed": 3, "final_eval_return": 2200.0}]  # fmt: skip
    assert gifs.median_seed(runs)["seed"] == 3
    assert gifs.median_seed(runs[:2])["seed"] == 2
    assert gifs.median_seed(runs + [{"seed": 4, "final_eval_return": 5000.0}])["seed"] == 3
    assert gifs.median_seed(runs[:1])["seed"] == 1


@pytest.fixture
def tiny_tier(monkeypatch):
    tier = suite.Tier("tiny", (suite.Task("Hopper-v5", 600, 300),), {"Hopper-v5": (10,)}, (1, 2, 3))
    monkeypatch.setitem(suite.TIERS, "tiny", tier)
    return tier


def test_the_gif_is_the_median_seeds_checkpoint_filmed_and_captioned(tmp_path, tiny_tier):
    published, results, media = tmp_path / "published", tmp_path / "results", tmp_path / "media"
    pebble = [c for c in suite.cells(tiny_tier) if c.method == "pebble"]
    for c, final in zip(pebble, (900.0, 120.0, 400.0), strict=True):  # the median is seed 3's
        (published / "tiny").mkdir(parents=True, exist_ok=True)
        (published / "tiny" / f"{c.name}.csv").write_text("step,eval_return,labels,wall_seconds\n")
        (published / "tiny" / f"{c.name}.json").write_text(json.dumps({"seed": c.seed, "final_eval_return": final}))
    common = ["--tier", "tiny", "--results-dir", str(results), "--published", str(published), "--media-dir",
              str(media), "--episodes", "2", "--seconds", "0.4", "--size", "64"]  # fmt: skip

    # seed 3's run is not on this machine: a clear error naming the cell and how to run it again
    fake_sac_checkpoint(results / "tiny" / "runs" / pebble[0].name / "run")  # seed 1's is, but it is not the median
    assert gifs.main(common) == 2
    assert not media.exists() and not (published / "tiny" / gifs.GIFS_FILE).exists()

    fake_sac_checkpoint(results / "tiny" / "runs" / pebble[2].name / "run")
    assert gifs.main(common) == 0
    gif = Image.open(media / "tiny_Hopper-v5_pebble10.gif")
    assert gif.size == (64, 64) and gif.n_frames >= 2
    record = json.loads((published / "tiny" / gifs.GIFS_FILE).read_text())
    entry = record[pebble[2].name]
    assert (entry["seed"], entry["median_of_seeds"], entry["checkpoint_step"]) == (3, [1, 2, 3], 600)
    assert entry["campaign_final_return"] == 400.0 and entry["evaluation"]["episodes"] == 2
    assert entry["gif"] == "media/tiny_Hopper-v5_pebble10.gif"

    caption = report.gifs_markdown(published / "tiny")
    assert "![Hopper-v5](media/tiny_Hopper-v5_pebble10.gif)" in caption
    assert "seed 3 (the median of seeds 1, 2, 3 by final return); at step 600:" in caption
    lengths = entry["evaluation"]["lengths"]
    assert len(lengths) == 2 and all(1 <= n <= 1000 for n in lengths)
    span = f"{min(lengths)}" if min(lengths) == max(lengths) else f"{min(lengths)}–{max(lengths)}"
    assert (
        f"{entry['evaluation']['mean']:.1f} ± {entry['evaluation']['std']:.1f} over 2 evaluation episodes of"
        f" {span} steps (the filmed one: {lengths[0]})" in caption
    )
    assert report.gifs_markdown(tmp_path) == ""  # a tier without gifs has no gif block


def test_a_gif_of_the_only_seed_so_far_says_so_and_equal_lengths_are_one_number(tmp_path):
    entry = {
        "env_id": "Walker2d-v5", "labels_budget": 500, "seed": 1, "median_of_seeds": [1], "checkpoint_step": 200,
        "evaluation": {"mean": 1.0, "std": 0.5, "episodes": 2, "lengths": [12, 12]}, "gif": "media/w.gif",
    }  # fmt: skip
    (tmp_path / gifs.GIFS_FILE).write_text(json.dumps({"Walker2d-v5__pebble500__seed1": entry}))
    caption = report.gifs_markdown(tmp_path)
    assert "seed 1 (the only seed so far); at step 200:" in caption and "median" not in caption.split("|")[-2]
    assert "over 2 evaluation episodes of 12 steps (the filmed one: 12)" in caption  # equal lengths: one number
