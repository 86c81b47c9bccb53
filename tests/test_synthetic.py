"""The synthetic log generator: exact sizes, minimum lengths, time order, the planted pattern."""

from __future__ import annotations

import numpy as np
import pytest

from s3rec.data.synthetic import synthetic_log, write_csv


def test_sizes_order_and_min_length():
    log = synthetic_log(n_users=200, n_items=50, n_interactions=3000, seed=1)
    assert {k: len(v) for k, v in log.items()} == {"user": 3000, "item": 3000, "timestamp": 3000}
    assert np.all(np.diff(log["timestamp"]) >= 0)  # global time order
    users, counts = np.unique(log["user"], return_counts=True)
    assert len(users) == 200 and counts.min() >= 5 and counts.sum() == 3000
    assert len(np.unique(log["item"])) <= 50
    assert log["user"].min() >= 1_000_000 and log["item"].min() >= 10_000  # ids are not 1..n


def test_planted_successor_pattern_and_determinism():
    a = synthetic_log(n_users=300, n_items=40, n_interactions=6000, seed=3, follow_p=0.5)
    b = synthetic_log(n_users=300, n_items=40, n_interactions=6000, seed=3, follow_p=0.5)
    assert all(np.array_equal(a[k], b[k]) for k in a)
    # per user (stable order by time), the most common successor of each item covers far more than chance
    order = np.lexsort((a["timestamp"], a["user"]))
    u, it = a["user"][order], a["item"][order]
    same = u[1:] == u[:-1]
    prev, nxt = it[:-1][same], it[1:][same]
    top_share = []
    for i in np.unique(prev):
        _, c = np.unique(nxt[prev == i], return_counts=True)
        top_share.append(c.max() / c.sum())
    assert np.mean(top_share) > 0.4  # chance would be well under 0.2 for 40 Zipf items


def test_rejects_impossible_sizes():
    with pytest.raises(ValueError, match="cannot give"):
        synthetic_log(n_users=10, n_items=5, n_interactions=20)


def test_write_csv(tmp_path):
    log = synthetic_log(n_users=20, n_items=10, n_interactions=200, seed=0)
    path = tmp_path / "log.csv"
    write_csv(log, path)
    lines = path.read_text().splitlines()
    assert lines[0].replace('"', "") == "user,item,timestamp" and len(lines) == 201
