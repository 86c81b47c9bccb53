"""The sampled-protocol negatives: generate_negatives and `s3rec data negatives`."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from conftest import synthetic_sequences, write_dataset
from s3rec.cli import main
from s3rec.data import formats, registry
from s3rec.data.negatives import DEFAULT_SEED, generate_negatives, load_with_negatives
from s3rec.errors import S3RecError

N_USERS, N_ITEMS = 300, 200


@pytest.fixture
def big(tmp_path, monkeypatch) -> Path:
    """A data folder with ``Big`` (300 users, 200 items) and no negatives file; no S3REC_DATA_DIR."""
    monkeypatch.delenv("S3REC_DATA_DIR", raising=False)
    monkeypatch.setenv("S3REC_CACHE_DIR", str(tmp_path / "cache"))
    seqs = synthetic_sequences(n_users=N_USERS, n_items=N_ITEMS, min_len=3, max_len=40, seed=1)
    return write_dataset(tmp_path / "data", "Big", seqs)


@pytest.fixture
def big_ds(big):
    return registry.load("Big", big)


def test_shape_range_exclusion_distinct(big_ds):
    ds = big_ds
    assert (ds.n_users, ds.n_items) == (N_USERS, N_ITEMS)
    neg = generate_negatives(ds, DEFAULT_SEED)
    assert neg.shape == (N_USERS, formats.N_NEGATIVES) == (N_USERS, 99)
    assert neg.min() >= 1 and neg.max() <= N_ITEMS
    for k in range(ds.n_users):
        row = neg[k]
        assert np.unique(row).size == row.size, f"duplicate in row {k}"
        assert not np.isin(row, ds.sequence(k)).any(), f"own item in row {k}"


def test_deterministic_per_seed(big_ds):
    a = generate_negatives(big_ds, 7)
    assert np.array_equal(a, generate_negatives(big_ds, 7))
    b = generate_negatives(big_ds, 8)
    assert not np.array_equal(a, b)
    # Not just a permutation of the same sets: most rows pick a different set of items.
    same_sets = sum(set(a[k]) == set(b[k]) for k in range(len(a)))
    assert same_sets < len(a) // 10
    assert np.array_equal(generate_negatives(big_ds), generate_negatives(big_ds, DEFAULT_SEED))


def _negatives_one_round_at_a_time(ds, seed, n=99):
    """The generator as first written (np.isin and np.unique per round): the oracle that keeps the
    generated files identical across versions."""
    rng = np.random.default_rng(seed)
    out = np.empty((ds.n_users, n), dtype=np.int64)
    for k in range(ds.n_users):
        own = np.unique(ds.sequence(k))
        picked = np.empty(0, dtype=np.int64)
        while picked.size < n:
            draw = rng.integers(1, ds.n_items + 1, size=2 * (n - picked.size) + 8)
            draw = draw[~np.isin(draw, own) & ~np.isin(draw, picked)]
            _, first = np.unique(draw, return_index=True)
            picked = np.concatenate([picked, draw[np.sort(first)]])
        out[k] = picked[:n]
    return out


@pytest.mark.parametrize("n_items", [110, 130, 2000])
def test_the_same_negatives_as_the_first_generator(tmp_path, monkeypatch, n_items):
    """Files generated before stay valid: the same stream, the same picks (users who leave barely 99
    items need many rounds)."""
    monkeypatch.setenv("S3REC_CACHE_DIR", str(tmp_path / "cache"))
    seqs = synthetic_sequences(n_users=120, n_items=n_items, min_len=3, max_len=min(n_items - 99, 60), seed=4)
    ds = registry.load("Same", write_dataset(tmp_path / "data", "Same", seqs))
    for seed in (DEFAULT_SEED, 1):
        assert np.array_equal(generate_negatives(ds, seed), _negatives_one_round_at_a_time(ds, seed))


def test_roughly_uniform(big_ds):
    """Each eligible item is equally likely: item counts over all users match their expectation."""
    ds = big_ds
    neg = generate_negatives(ds, 3)
    observed = np.bincount(neg.ravel(), minlength=ds.n_items + 1)[1:].astype(float)
    expected = np.zeros(ds.n_items)
    for k in range(ds.n_users):
        eligible = np.ones(ds.n_items, dtype=bool)
        eligible[ds.sequence(k) - 1] = False
        expected[eligible] += 99 / eligible.sum()
    assert observed.sum() == pytest.approx(expected.sum())
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    dof = ds.n_items - 1
    # Sampling without replacement makes the statistic smaller than chi-square(dof); the bound is loose.
    assert chi2 < dof + 6 * np.sqrt(2 * dof), chi2
    # A sampler favouring low (or high) ids would fail this: both halves get their share.
    half = ds.n_items // 2
    assert observed[:half].sum() / expected[:half].sum() == pytest.approx(1, abs=0.03)
    # Position in the row is not tied to the id either (e.g. the rows are not sorted).
    assert abs(np.corrcoef(np.tile(np.arange(99), ds.n_users), neg.ravel())[0, 1]) < 0.05


def test_exactly_99_left_takes_all_of_them(tmp_path):
    # 34 users x 3 distinct items over 102 items: every user has exactly 99 candidates left.
    seqs = {u: [3 * (u - 1) + 1, 3 * (u - 1) + 2, 3 * (u - 1) + 3] for u in range(1, 35)}
    ds = registry.load("Edge", write_dataset(tmp_path / "d", "Edge", seqs))
    neg = generate_negatives(ds, 1)
    for k in range(ds.n_users):
        assert set(neg[k]) == set(range(1, 103)) - set(ds.sequence(k).tolist())


def test_too_few_items_left(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("S3REC_DATA_DIR", raising=False)
    # 102 items: user 1 (3 items) leaves 99 candidates, user 2 (4 items) only 98.
    seqs = {1: [1, 2, 3], 2: [4, 5, 6, 7], 3: list(range(8, 103))}
    folder = write_dataset(tmp_path / "d", "Few", seqs)
    ds = registry.load("Few", folder)
    with pytest.raises(S3RecError, match=r"user 2 has interacted with 4 of 102 items"):
        generate_negatives(ds, DEFAULT_SEED)
    assert main(["data", "negatives", "Few", "--data-dir", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("s3rec: error:") and "fewer than 99" in err and "Traceback" not in err
    assert not (folder / "Few_sample.txt").exists()
    assert [p.name for p in folder.iterdir() if p.name.startswith(".")] == []


def _read_back(folder: Path, name: str, path: Path) -> np.ndarray:
    ds = registry.load(name, folder)
    return formats.read_negatives(path, ds.user_ids, ds.offsets, ds.items, ds.n_items)


def test_cli_writes_beside_the_data_and_refuses_to_overwrite(big, capsys):
    target = big / "Big_sample.txt"
    assert main(["data", "negatives", "Big", "--data-dir", str(big)]) == 0
    assert capsys.readouterr().out.strip() == str(target)
    ds = registry.load("Big", big)
    neg = _read_back(big, "Big", target)
    assert np.array_equal(neg, generate_negatives(ds, DEFAULT_SEED))
    assert registry.locate("Big", big).negatives == target
    assert not (Path(os.environ["S3REC_CACHE_DIR"]) / "negatives").exists()

    before = target.read_bytes()
    assert main(["data", "negatives", "Big", "--data-dir", str(big), "--seed", "5"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("s3rec: error:") and "--force" in err and str(target) in err
    assert target.read_bytes() == before

    assert main(["data", "negatives", "Big", "--data-dir", str(big), "--seed", "5", "--force"]) == 0
    assert np.array_equal(_read_back(big, "Big", target), generate_negatives(ds, 5))
    assert [p.name for p in big.iterdir() if p.name.startswith(".") or p.name.endswith(".tmp")] == []


def test_cli_matches_what_load_generates(big, tmp_path):
    """The file `data negatives` writes is the one `load_with_negatives` makes when none exists."""
    ds = load_with_negatives("Big", big, quiet=True)
    auto = (big / "Big_sample.txt").read_bytes()
    assert np.array_equal(ds.negatives, generate_negatives(ds, DEFAULT_SEED))
    out = tmp_path / "elsewhere" / "neg.txt"
    # --out writes a new file even though the data folder already has one (nothing is overwritten) ...
    assert main(["data", "negatives", "Big", "--data-dir", str(big), "--out", str(out)]) == 0
    assert out.read_bytes() == auto
    # ... but refuses to overwrite the --out file itself without --force.
    assert main(["data", "negatives", "Big", "--data-dir", str(big), "--out", str(out), "--seed", "4"]) == 2
    assert out.read_bytes() == auto
    assert main(["data", "negatives", "Big", "--data-dir", str(big), "--out", str(out), "--seed", "4", "--force"]) == 0
    assert out.read_bytes() != auto


def test_cli_refuses_when_the_cache_already_has_a_file(big, capsys):
    """A negatives file in the cache (say from when the folder was read-only) is not silently shadowed."""
    cache_file = Path(os.environ["S3REC_CACHE_DIR"]) / "negatives" / "Big_sample.txt"
    cache_file.parent.mkdir(parents=True)
    ds = registry.load("Big", big)
    cache_file.write_text(formats.format_negatives(ds.user_ids, generate_negatives(ds, 1)))
    assert main(["data", "negatives", "Big", "--data-dir", str(big)]) == 2
    assert str(cache_file) in capsys.readouterr().err
    assert not (big / "Big_sample.txt").exists()
    assert main(["data", "negatives", "Big", "--data-dir", str(big), "--force"]) == 0
    assert (big / "Big_sample.txt").exists()
    assert registry.locate("Big", big).negatives == big / "Big_sample.txt"  # the data folder's copy wins


def test_cli_read_only_data_folder_goes_to_the_cache(big, capsys):
    cache_file = Path(os.environ["S3REC_CACHE_DIR"]) / "negatives" / "Big_sample.txt"
    mode = big.stat().st_mode
    big.chmod(0o555)
    try:
        assert main(["data", "negatives", "Big", "--data-dir", str(big)]) == 0
        assert capsys.readouterr().out.strip() == str(cache_file)
        assert not (big / "Big_sample.txt").exists()
        assert sorted(p.name for p in big.iterdir()) == ["Big.txt"]
        ds = registry.load("Big", big)
        assert np.array_equal(_read_back(big, "Big", cache_file), generate_negatives(ds, DEFAULT_SEED))
        # Found from the cache by everything that needs it.
        assert registry.locate("Big", big).negatives == cache_file
        assert np.array_equal(load_with_negatives("Big", big, quiet=True).negatives,
                              generate_negatives(ds, DEFAULT_SEED))
        # And not overwritten there without --force.
        before = cache_file.read_bytes()
        assert main(["data", "negatives", "Big", "--data-dir", str(big), "--seed", "9"]) == 2
        assert "--force" in capsys.readouterr().err
        assert cache_file.read_bytes() == before
        assert main(["data", "negatives", "Big", "--data-dir", str(big), "--seed", "9", "--force"]) == 0
        assert np.array_equal(_read_back(big, "Big", cache_file), generate_negatives(ds, 9))
    finally:
        big.chmod(mode)
