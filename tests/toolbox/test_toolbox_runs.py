"""toolbox_runs on hand-made inputs: a resumed run's event files, labels joined to steps, run manifests."""

from __future__ import annotations

import time


def test_a_resumed_run_keeps_the_value_written_last_and_cache_follows_changes(tmp_path):
    from toolbox_runs import ScalarCache
    from torch.utils.tensorboard import SummaryWriter

    first = SummaryWriter(str(tmp_path), filename_suffix=".a")
    for step in (100, 200, 300):
        first.add_scalar("charts/episodic_return", float(step), step)
    first.close()
    time.sleep(1.1)  # event file names carry the creation time in seconds
    resumed = SummaryWriter(str(tmp_path), filename_suffix=".b")  # resumed from a checkpoint at step 200
    for step in (300, 400):
        resumed.add_scalar("charts/episodic_return", -float(step), step)
    resumed.flush()
    cache = ScalarCache()
    assert cache.scalars(tmp_path)["charts/episodic_return"] == [
        (100, 100.0),
        (200, 200.0),
        (300, -300.0),
        (400, -400.0),
    ]
    resumed.add_scalar("charts/episodic_return", -500.0, 500)
    resumed.close()
    assert cache.scalars(tmp_path)["charts/episodic_return"][-1] == (500, -500.0)


def test_curve_joins_each_step_to_the_labels_given_so_far():
    from toolbox_runs import curve

    scalars = {
        "charts/episodic_return": [(50, 1.0), (100, 2.0), (150, 3.0), (300, 4.0)],
        "feedback/total_labels": [(100, 20.0), (200, 40.0)],
    }
    assert curve(scalars, "charts/episodic_return") == [[50, 0, 1.0], [100, 20, 2.0], [150, 20, 3.0], [300, 40, 4.0]]
    assert curve({"charts/episodic_return": [(5, 1.0)]}, "charts/episodic_return") == [[5, None, 1.0]]
    assert curve(scalars, "eval/mean_return") == []


def test_what_a_run_is_comes_from_its_manifest_and_a_bad_one_is_skipped(tmp_path):
    from toolbox_runs import manifest

    from rlhf.manifest import write_manifest

    assert manifest(tmp_path) == {}  # a run from before run.json
    write_manifest(tmp_path, algorithm="pref_ppo", env_id="Hopper-v5", seed=2, status="finished", step=10)
    assert (manifest(tmp_path)["algorithm"], manifest(tmp_path)["step"]) == ("pref_ppo", 10)
    for bad in ("{not json", '{"format_version": 1}', "[]", '{"format_version": 1, "algorithm": "sac", "env_id": '
                '"Hopper-v5", "seed": 1, "status": "running", "step": "ten"}'):  # fmt: skip
        (tmp_path / "run.json").write_text(bad)
        assert manifest(tmp_path) == {}, bad
