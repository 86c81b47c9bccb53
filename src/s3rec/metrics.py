"""Ranking metrics from the rank of the target among the candidates (pure functions).

r is the 1-based rank of the target. HR@k = 1[r <= k]; NDCG@k = 1[r <= k] / log2(r + 1) (one relevant
item, so the ideal DCG is 1); MRR = 1 / r, untruncated. Each is averaged over users.

Tie rule: ties count against the target. r = 1 + #(candidates scoring strictly higher) +
#(other candidates scoring exactly the same), so a model that scores everything equally ranks the
target last, and a removed target (score -inf) is a certain miss.
"""

from __future__ import annotations

import torch

HR_KS = (1, 5, 10, 20)
NDCG_KS = (5, 10, 20)
METRIC_NAMES = [f"HR@{k}" for k in HR_KS] + [f"NDCG@{k}" for k in NDCG_KS] + ["MRR"]


def target_ranks(scores: torch.Tensor, target_col: torch.Tensor) -> torch.Tensor:
    """``scores [U, C]``, ``target_col [U]`` -> 1-based ranks ``[U]`` (int64) under the tie rule."""
    t = scores.gather(1, target_col.view(-1, 1))  # [U, 1]
    # 1 + #(higher) + #(ties other than the target) = #(candidates scoring >= the target, itself included);
    # one comparison and an int32 count (4x faster on a CPU than two int64 sums; exact below 2^31 candidates)
    return (scores >= t).sum(1, dtype=torch.int32).to(torch.int64)


def metrics_from_ranks(ranks: torch.Tensor) -> dict[str, float]:
    """Average HR@{1,5,10,20}, NDCG@{5,10,20} and MRR over the given ranks."""
    r = ranks.to(torch.float64)
    out = {f"HR@{k}": float((r <= k).double().mean()) for k in HR_KS}
    gain = 1.0 / torch.log2(r + 1.0)
    out.update({f"NDCG@{k}": float(torch.where(r <= k, gain, 0.0).mean()) for k in NDCG_KS})
    out["MRR"] = float((1.0 / r).mean())
    return {name: out[name] for name in METRIC_NAMES}
