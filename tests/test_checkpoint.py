import json

import numpy as np
import pytest
import torch

from rlhf.checkpoint import CheckpointError, load_state, restore_rng_state, rng_state, save_state


def make_state():
    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(3, 4), torch.nn.ReLU(), torch.nn.Linear(4, 1))
    opt = torch.optim.Adam(net.parameters(), lr=1e-3)
    net(torch.randn(5, 3)).sum().backward()
    opt.step()
    gen = np.random.default_rng(7)
    gen.random(3)
    return net, opt, gen


def test_round_trip_is_bit_exact(tmp_path):
    net, opt, gen = make_state()
    arrays = {"obs": np.arange(12, dtype=np.float32).reshape(3, 4), "flags": np.array([True, False])}
    save_state(
        tmp_path / "ckpt",
        {
            "net": net.state_dict(),
            "opt": opt.state_dict(),
            "rng": rng_state({"g": gen}),
            "step": 42,
            "data": arrays,
            "name": "x",
            "none": None,
            "pair": (1, 2.5),
        },
    )
    state = load_state(tmp_path / "ckpt")
    for k, v in net.state_dict().items():
        assert torch.equal(state["net"][k], v)
    opt_state = state["opt"]
    assert set(opt_state["state"]) == {0, 1, 2, 3}  # int keys survive
    assert torch.equal(opt_state["state"][0]["exp_avg"], opt.state_dict()["state"][0]["exp_avg"])
    opt2 = torch.optim.Adam(net.parameters(), lr=1e-3)
    opt2.load_state_dict(opt_state)
    np.testing.assert_array_equal(state["data"]["obs"], arrays["obs"])
    assert state["data"]["flags"].dtype == bool
    assert state["step"] == 42 and state["name"] == "x" and state["none"] is None and state["pair"] == (1, 2.5)
    expected = gen.random(5)
    gen2 = np.random.default_rng(0)
    torch.manual_seed(123)
    restore_rng_state(state["rng"], {"g": gen2})
    np.testing.assert_array_equal(gen2.random(5), expected)


def test_truncated_or_tampered_files_fail_clearly(tmp_path):
    net, opt, _ = make_state()
    save_state(tmp_path / "ckpt", {"net": net.state_dict()})
    blob = (tmp_path / "ckpt.safetensors").read_bytes()
    (tmp_path / "ckpt.safetensors").write_bytes(blob[: len(blob) // 2])
    with pytest.raises(CheckpointError, match="checksum"):
        load_state(tmp_path / "ckpt")
    (tmp_path / "ckpt.safetensors").write_bytes(blob)
    meta = (tmp_path / "ckpt.json").read_text()
    (tmp_path / "ckpt.json").write_text(meta[:-10])
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_state(tmp_path / "ckpt")
    (tmp_path / "ckpt.json").write_text(json.dumps({"format": "other"}))
    with pytest.raises(CheckpointError, match="not a CleanRLHF checkpoint"):
        load_state(tmp_path / "ckpt")
    with pytest.raises(CheckpointError, match="does not exist"):
        load_state(tmp_path / "missing")


def test_unsupported_leaves_are_refused(tmp_path):
    with pytest.raises(TypeError, match="cannot store"):
        save_state(tmp_path / "x", {"obj": object()})
