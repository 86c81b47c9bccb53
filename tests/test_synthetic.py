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


def test_attributes_through_import(tmp_path, capsys):
    from s3rec.cli import main
    from s3rec.data import registry
    from s3rec.data.synthetic import synthetic_attributes

    items = np.array([50, 10, 30])
    a = synthetic_attributes(items, 7, seed=2)
    pairs = list(zip(a["item"].tolist(), a["attribute"].tolist()))
    assert len(set(pairs)) == len(pairs) and set(a["item"].tolist()) == {10, 30, 50}
    assert all(1 <= sum(i == it for i, _ in pairs) <= 4 for it in (10, 30, 50))
    assert set(a["attribute"].tolist()) <= {f"a{k}" for k in range(1, 8)}
    assert pairs == list(zip(*synthetic_attributes(items, 7, seed=2).values()))  # deterministic

    log, attrs = tmp_path / "log.csv", tmp_path / "attrs.csv"
    assert main(["data", "synth", "--out", str(log), "--users", "300", "--items", "80", "--interactions", "3000",
                 "--attributes", str(attrs), "--n-attributes", "40"]) == 0
    assert main(["data", "import", str(log), "--attributes", str(attrs), "--name", "Syn", "--out", str(tmp_path / "d")]) == 0
    ds = registry.load("Syn", tmp_path / "d")
    assert 1 <= ds.n_attributes <= 40 and len(ds.attributes) >= ds.n_items
    assert main(["data", "synth", "--out", str(log), "--attributes", str(log)]) == 2
    assert "name the same file" in capsys.readouterr().err
