"""Shared test set-up: the library on sys.path, one torch thread (tests run two at a time on two cores), a
temporary working directory so nothing depends on the CWD, and a seeded numpy generator."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
FRAMEWORK = REPO_ROOT / "framework"
if str(FRAMEWORK) not in sys.path:
    sys.path.insert(0, str(FRAMEWORK))

os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


@pytest.fixture(autouse=True)
def _one_thread_and_tmp_cwd(tmp_path, monkeypatch):
    import torch

    torch.set_num_threads(1)
    monkeypatch.chdir(tmp_path)
    yield


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)
