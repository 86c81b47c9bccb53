"""The package's copy of the paper's SASRec / S3-Rec numbers equals the reference tables."""

import csv

import pytest

from conftest import shared_reference_dir
from s3rec.paper import PAPER, comparison_table


@pytest.mark.parametrize("protocol,file", [("sampled", "paper_sampled99.csv"), ("full", "paper_full_ranking.csv")])
def test_embedded_numbers_match_the_reference(protocol, file):
    rows = list(csv.DictReader(open(shared_reference_dir() / file)))
    checked = 0
    for r in rows:
        if r["method"] in PAPER[protocol] and r["dataset"] in PAPER[protocol][r["method"]]:
            assert PAPER[protocol][r["method"]][r["dataset"]][r["metric"]] == float(r["value"])
            checked += 1
    assert checked == 2 * 5 * 6


def test_comparison_table_marks_missing_numbers():
    table = comparison_table({"HR@20": 0.5, "MRR": 0.25}, "sampled", "sasrec", "Beauty")
    assert "0.2852" in table and "-" in table.splitlines()[1]
