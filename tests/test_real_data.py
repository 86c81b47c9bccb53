"""The public datasets in ../shared/data (or $S3REC_DATA_DIR): statistics match the reference table."""

from __future__ import annotations

import csv
import json

import pytest

from conftest import shared_data_dir, shared_reference_dir
from s3rec.cli import main
from s3rec.data import registry
from s3rec.data.negatives import load_with_negatives

pytestmark = pytest.mark.slow

REFERENCE = list(csv.DictReader(open(shared_reference_dir() / "dataset_stats.csv")))


@pytest.mark.parametrize("row", REFERENCE, ids=[r["dataset"] for r in REFERENCE])
def test_stats_match_the_reference(row, capsys):
    assert main(["data", "stats", row["dataset"], "--data-dir", str(shared_data_dir()), "--json"]) == 0
    got = json.loads(capsys.readouterr().out)
    for key in ("users", "items", "interactions", "attributes", "attribute_id_max", "min_len", "max_len",
                "repeated_user_item_pairs"):
        assert got[key] == int(row[key]), key
    assert got["avg_len"] == pytest.approx(float(row["avg_len"]), abs=0.005)


def test_registered_digests_match_the_reference_sums():
    sums = dict(line.split()[::-1] for line in open(shared_reference_dir() / "SHA256SUMS") if line.strip())
    registered = {f: d for info in registry.DATASETS.values() for f, d in info.sha256.items()}
    assert registered == sums


def test_lastfm_original_negatives_are_valid():
    ds = load_with_negatives("LastFM", shared_data_dir(), quiet=True)
    assert ds.negatives.shape == (1090, 99)
    assert ds.paths["negatives"].name == "LastFM_sample.txt"
