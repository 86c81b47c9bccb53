"""Ranking metrics: hand-computed values, the tie rule, and a plain-loop oracle on random ties."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from s3rec.metrics import HR_KS, METRIC_NAMES, NDCG_KS, metrics_from_ranks, target_ranks

INF = float("inf")


def ranks_of(rows, cols):
    return target_ranks(torch.tensor(rows, dtype=torch.float32), torch.tensor(cols, dtype=torch.long))


# --- (d) names -----------------------------------------------------------------------------------


def test_metric_names_exact():
    assert METRIC_NAMES == ["HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR"]
    assert HR_KS == (1, 5, 10, 20) and NDCG_KS == (5, 10, 20)
    out = metrics_from_ranks(torch.tensor([1, 2, 3]))
    assert list(out) == METRIC_NAMES
    assert all(type(v) is float for v in out.values())


# --- (a) hand-computed values --------------------------------------------------------------------

# rank -> the metrics of that single user, written out by hand (NDCG@k = 1/log2(r+1) when r <= k).
SINGLE = {
    1: {"HR@1": 1, "HR@5": 1, "HR@10": 1, "HR@20": 1, "NDCG@5": 1, "NDCG@10": 1, "NDCG@20": 1, "MRR": 1},
    2: {"HR@1": 0, "HR@5": 1, "HR@10": 1, "HR@20": 1,
        "NDCG@5": 1 / math.log2(3), "NDCG@10": 1 / math.log2(3), "NDCG@20": 1 / math.log2(3), "MRR": 0.5},
    3: {"HR@1": 0, "HR@5": 1, "HR@10": 1, "HR@20": 1, "NDCG@5": 0.5, "NDCG@10": 0.5, "NDCG@20": 0.5, "MRR": 1 / 3},
    5: {"HR@1": 0, "HR@5": 1, "HR@10": 1, "HR@20": 1,
        "NDCG@5": 1 / math.log2(6), "NDCG@10": 1 / math.log2(6), "NDCG@20": 1 / math.log2(6), "MRR": 0.2},
    6: {"HR@1": 0, "HR@5": 0, "HR@10": 1, "HR@20": 1,
        "NDCG@5": 0, "NDCG@10": 1 / math.log2(7), "NDCG@20": 1 / math.log2(7), "MRR": 1 / 6},
    7: {"HR@1": 0, "HR@5": 0, "HR@10": 1, "HR@20": 1, "NDCG@5": 0, "NDCG@10": 1 / 3, "NDCG@20": 1 / 3, "MRR": 1 / 7},
    10: {"HR@1": 0, "HR@5": 0, "HR@10": 1, "HR@20": 1,
         "NDCG@5": 0, "NDCG@10": 1 / math.log2(11), "NDCG@20": 1 / math.log2(11), "MRR": 0.1},
    11: {"HR@1": 0, "HR@5": 0, "HR@10": 0, "HR@20": 1,
         "NDCG@5": 0, "NDCG@10": 0, "NDCG@20": 1 / math.log2(12), "MRR": 1 / 11},
    15: {"HR@1": 0, "HR@5": 0, "HR@10": 0, "HR@20": 1, "NDCG@5": 0, "NDCG@10": 0, "NDCG@20": 0.25, "MRR": 1 / 15},
    20: {"HR@1": 0, "HR@5": 0, "HR@10": 0, "HR@20": 1,
         "NDCG@5": 0, "NDCG@10": 0, "NDCG@20": 1 / math.log2(21), "MRR": 0.05},
    21: {"HR@1": 0, "HR@5": 0, "HR@10": 0, "HR@20": 0, "NDCG@5": 0, "NDCG@10": 0, "NDCG@20": 0, "MRR": 1 / 21},
    100: {"HR@1": 0, "HR@5": 0, "HR@10": 0, "HR@20": 0, "NDCG@5": 0, "NDCG@10": 0, "NDCG@20": 0, "MRR": 0.01},
}


@pytest.mark.parametrize("r", sorted(SINGLE))
def test_single_rank_by_hand(r):
    out = metrics_from_ranks(torch.tensor([r]))
    assert out == pytest.approx(SINGLE[r], abs=1e-12)


def test_explicit_score_rows_by_hand():
    rows = [
        ([0.9, 0.1, 0.5, 0.3], 0),  # the best score: rank 1
        ([0.2, 0.9, 0.4, 0.7, 0.0], 2),  # 0.4 is beaten by 0.9 and 0.7: rank 3
        ([1, 2, 3, 4, 5, 6, -1, 0], 7),  # 0 is beaten by six: rank 7
        ([float(30 - j) for j in range(30)], 24),  # score 6 is beaten by 7..30: rank 25
    ]
    width = max(len(s) for s, _ in rows)
    # pad with very low scores so that the rows fit one matrix (they do not change the ranks)
    mat = [s + [-1e9] * (width - len(s)) for s, _ in rows]
    ranks = ranks_of(mat, [c for _, c in rows])
    assert ranks.dtype == torch.int64
    assert ranks.tolist() == [1, 3, 7, 25]
    out = metrics_from_ranks(ranks)
    expected = {
        "HR@1": 1 / 4,  # only rank 1
        "HR@5": 2 / 4,  # ranks 1, 3
        "HR@10": 3 / 4,  # ranks 1, 3, 7
        "HR@20": 3 / 4,  # 25 > 20
        "NDCG@5": (1 + 0.5) / 4,
        "NDCG@10": (1 + 0.5 + 1 / 3) / 4,  # 11/24
        "NDCG@20": (1 + 0.5 + 1 / 3) / 4,
        "MRR": (1 + 1 / 3 + 1 / 7 + 1 / 25) / 4,  # 199/525
    }
    assert out == pytest.approx(expected, abs=1e-12)
    assert out["NDCG@10"] == pytest.approx(11 / 24, abs=1e-12)
    assert out["MRR"] == pytest.approx(199 / 525, abs=1e-12)


def test_float64_and_single_candidate():
    s = torch.tensor([[0.5, 0.25, 0.75]], dtype=torch.float64)
    assert target_ranks(s, torch.tensor([0])).tolist() == [2]
    assert target_ranks(torch.tensor([[3.0]]), torch.tensor([0])).tolist() == [1]


# --- (b) the tie rule ----------------------------------------------------------------------------


def test_ties_count_against_the_target():
    # r = 1 + #strictly higher + #other candidates with the same score
    assert ranks_of([[3, 3, 1]], [0]).tolist() == [2]
    assert ranks_of([[3, 3, 1]], [1]).tolist() == [2]
    assert ranks_of([[3, 5, 3, 3, 1]], [0]).tolist() == [1 + 1 + 2]
    assert ranks_of([[3, 5, 3, 3, 1]], [4]).tolist() == [5]
    assert ranks_of([[3, 5, 3, 3, 1]], [1]).tolist() == [1]
    assert ranks_of([[2, 7, 7, 9, 7, 0]], [2]).tolist() == [1 + 1 + 2]


@pytest.mark.parametrize("c", [0, 3, 5])
def test_all_equal_scores_put_the_target_last(c):
    assert ranks_of([[2.0] * 6], [c]).tolist() == [6]
    assert ranks_of([[0.0] * 100], [c]).tolist() == [100]


def test_minus_inf_target_is_last():
    assert ranks_of([[-INF, -INF, 1.0, -INF]], [0]).tolist() == [4]
    assert ranks_of([[-INF, -INF, 1.0, -INF]], [3]).tolist() == [4]
    assert ranks_of([[-INF, 1.0, 2.0]], [0]).tolist() == [3]
    assert ranks_of([[-INF] * 5], [2]).tolist() == [5]
    # a finite target is not hurt by -inf candidates, and +inf ties like any value
    assert ranks_of([[0.0, -INF, -INF]], [0]).tolist() == [1]
    assert ranks_of([[INF, INF, 0.0]], [0]).tolist() == [2]


# --- (c) a plain-loop oracle on random scores with many ties -------------------------------------


def loop_rank(row: list[float], target: int) -> int:
    """Sort candidates by descending score with the target after every equal one; 1-based index."""
    order = sorted(range(len(row)), key=lambda j: (-row[j], j == target))
    return order.index(target) + 1


def loop_metrics(ranks: list[int]) -> dict[str, float]:
    n = len(ranks)
    out = {}
    for k in (1, 5, 10, 20):
        out[f"HR@{k}"] = sum(1 for r in ranks if r <= k) / n
    for k in (5, 10, 20):
        out[f"NDCG@{k}"] = sum(1 / math.log2(r + 1) for r in ranks if r <= k) / n
    out["MRR"] = sum(1 / r for r in ranks) / n
    return out


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("levels", [2, 4, 30, None])  # integer scores in [0, levels) or continuous
def test_vectorised_matches_loop_oracle(seed, levels):
    rng = np.random.default_rng(seed)
    U, C = 64, 40
    if levels is None:
        s = rng.standard_normal((U, C))
    else:
        s = rng.integers(0, levels, (U, C)).astype(np.float64)
    s[rng.random((U, C)) < 0.1] = -np.inf  # removed candidates, some of them targets
    s[:3] = 1.0  # a few all-equal rows
    target = rng.integers(0, C, U)
    rows = s.tolist()
    expected = [loop_rank(rows[u], int(target[u])) for u in range(U)]
    for dtype in (torch.float32, torch.float64):
        got = target_ranks(torch.tensor(s, dtype=dtype), torch.from_numpy(target))
        assert got.tolist() == expected
    assert metrics_from_ranks(torch.tensor(expected)) == pytest.approx(loop_metrics(expected), abs=1e-12)
    assert expected[:3] == [C, C, C]


def test_metrics_average_over_users_loop_oracle():
    rng = np.random.default_rng(7)
    ranks = rng.integers(1, 60, 500).tolist()
    assert metrics_from_ranks(torch.tensor(ranks)) == pytest.approx(loop_metrics(ranks), abs=1e-12)
