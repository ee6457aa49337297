import numpy as np
import torch

from rlhf.exploration import RunningStd, knn_distance, state_entropy_reward


def test_knn_distance_on_a_line():
    states = torch.arange(10.0).view(-1, 1)  # 0, 1, ..., 9
    queries = torch.tensor([[0.0], [4.5]])
    # from 0: neighbours 0,1,2,3 -> the 3rd nearest (itself counts) is at distance 2
    np.testing.assert_allclose(knn_distance(queries, states, k=3).numpy(), [2.0, 1.5])


def test_chunked_equals_unchunked(rng):
    states = torch.as_tensor(rng.normal(size=(1000, 5)), dtype=torch.float32)
    queries = torch.as_tensor(rng.normal(size=(64, 5)), dtype=torch.float32)
    full = torch.cdist(queries, states).sort(dim=1).values[:, 4]
    np.testing.assert_allclose(knn_distance(queries, states, 5, chunk_size=37).numpy(), full.numpy(), rtol=1e-5)


def test_running_std_matches_numpy(rng):
    data = rng.normal(3.0, 2.0, size=1000)
    rs = RunningStd()
    for chunk in np.array_split(data, 13):
        rs.update(chunk)
    assert abs(rs.mean - data.mean()) < 1e-3 and abs(rs.std - data.std()) < 1e-3


def test_isolated_states_get_more_reward():
    visited = torch.cat([torch.zeros(50, 2), torch.tensor([[10.0, 10.0]])])
    r = state_entropy_reward(torch.tensor([[0.0, 0.0], [10.0, 10.0]]), visited, RunningStd(), k=5)
    assert r[1] > r[0]
