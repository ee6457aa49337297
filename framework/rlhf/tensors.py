"""Numpy -> torch conversion that keeps runs bit-reproducible across processes.

``torch.as_tensor`` shares a numpy array's memory, whose alignment depends on the process's allocation history;
MKL picks GEMM kernels (and so summation orders) by alignment, so the same batch could give different low bits in
a resumed process than in the original one. Copying into torch's allocator (64-byte aligned) makes every update
independent of that history: a run resumed from a checkpoint then ends bit-identical to an uninterrupted one.
The copy costs microseconds for the batch sizes used here.
"""

from __future__ import annotations

import numpy as np
import torch


def to_tensor(x, device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32) -> torch.Tensor:
    return torch.tensor(np.asarray(x), dtype=dtype, device=device)
