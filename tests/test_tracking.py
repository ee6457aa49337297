import re

from rlhf.tracking import run_name


def test_run_names_are_safe_ids():
    name = run_name("dm_control/walker-walk-v0", "my exp: 1/2", 3)
    assert name.startswith("dm_control-walker-walk-v0__my-exp-1-2__3__")
    assert re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]{0,127}", name)  # the labelling server's run-id rule
