"""``s3rec data prepare``: the paper's preprocessing of the raw Amazon, Yelp and LastFM files (docs/semantics.md#data,
section 1), on small files written here with the awkward cases: duplicate reviews, ties in time, items
without metadata, users below 5 only after items are filtered, Python-literal metadata, bad lines."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from s3rec.cli import main
from s3rec.data.prepare import prepare
from s3rec.errors import DataError, S3RecError
from test_import import files_under, read_back

USERS = ["U1", "U2", "U3", "U4", "U5", "U6"]
ITEMS = ["A1", "A2", "A3", "A4", "A5"]


def gz_lines(path: Path, lines: list[str]) -> Path:
    path.write_bytes(gzip.compress("".join(line + "\n" for line in lines).encode()))
    return path


# --- Amazon -----------------------------------------------------------------------------------------------------


def amazon_reviews() -> list[dict]:
    rows = []
    for k, u in enumerate(USERS):  # the dense block: 6 users x 5 items, every item 6 reviews
        for j, i in enumerate(ITEMS):
            rows.append({"reviewerID": u, "asin": i, "overall": 5.0, "unixReviewTime": 1000 + 10 * j + k,
                         "helpful": [0, 1], "reviewText": "ok"})
    rows[1]["unixReviewTime"] = rows[2]["unixReviewTime"] = 5  # U1: A2 and A3 tie, file order decides
    rows.append({"reviewerID": "U1", "asin": "A5", "overall": 1.0, "unixReviewTime": 1})  # a duplicate review, kept
    # U7: A1..A4 and B, which nobody else reviewed: B goes, then U7 has 4 < 5 and goes too
    rows += [{"reviewerID": "U7", "asin": i, "overall": 3.0, "unixReviewTime": 7} for i in [*ITEMS[:4], "B"]]
    return rows


AMAZON_META = [
    "{'asin': 'A1', 'categories': [['Beauty', 'Skin Care', 'Face'], ['Beauty', 'Makeup']], 'brand': 'Acme'}",
    '{"asin": "A2", "categories": [["Beauty", "Makeup", "Eyes"]], "title": "strict JSON"}',
    "{'asin': 'B', 'categories': [['Beauty', 'never parsed']] this line is broken",
    "{'asin': 'A3', 'categories': [['Beauty']], 'brand': '', 'price': 3.5}",
    "{'asin': 'A4', 'categories': [['Beauty', 'Face'], ['Tools & Accessories']], 'brand': 'Face', 'salesRank': {'Beauty': 1}}",
    "{'asin': 'A1', 'categories': [['Beauty', 'repeated record: ignored']]}",
    # A5: no metadata
]


def amazon_files(tmp_path: Path, meta=AMAZON_META) -> tuple[Path, Path]:
    reviews = gz_lines(tmp_path / "reviews_Beauty_5.json.gz", [json.dumps(r) for r in amazon_reviews()])
    return reviews, gz_lines(tmp_path / "meta_Beauty.json.gz", meta)


def test_amazon(tmp_path):
    reviews, meta = amazon_files(tmp_path)
    prepare("amazon", tmp_path / "out", reviews=reviews, meta=meta)  # name from the file: Beauty
    seqs, attrs = read_back(tmp_path / "out", "Beauty")
    assert list(seqs) == USERS  # U7 dropped after B (iterative 5-core)
    assert seqs["U1"] == ["A5", "A2", "A3", "A1", "A4", "A5"]  # duplicate kept; the A2/A3 tie in file order
    assert seqs["U2"] == ITEMS
    assert attrs == {
        "A1": ["Acme", "Skin Care", "Face", "Makeup"],  # brand first, then each path without its head
        "A2": ["Makeup", "Eyes"],
        "A4": ["Face", "Face"],  # brand and category share one namespace; repeats kept
    }  # A3: only a top-level category and an empty brand; A5: no metadata
    ids = (tmp_path / "out" / "Beauty_attribute_ids.tsv").read_text().split("\n")[1:-1]
    assert ids == ["1\tAcme", "2\tSkin Care", "3\tFace", "4\tMakeup", "5\tEyes"]  # meta-file order


def test_amazon_bad_lines_are_named(tmp_path):
    reviews, _ = amazon_files(tmp_path)
    meta = gz_lines(tmp_path / "meta_bad.json.gz", [AMAZON_META[0], "{'asin': 'A2', 'categories': [[}"])
    with pytest.raises(DataError, match=r"meta_bad\.json\.gz:2: malformed line: neither JSON"):
        prepare("amazon", tmp_path / "out", reviews=reviews, meta=meta)
    lines = [json.dumps(r) for r in amazon_reviews()]
    lines[3] = lines[3][:-1]
    bad = gz_lines(tmp_path / "reviews_Bad_5.json.gz", lines)
    with pytest.raises(DataError, match=r"reviews_Bad_5\.json\.gz:4: malformed line"):
        prepare("amazon", tmp_path / "out", reviews=bad, meta=meta)
    lines = [json.dumps(r) for r in amazon_reviews()]
    lines[5] = json.dumps({"reviewerID": "U9", "asin": "A1"})
    bad = gz_lines(tmp_path / "reviews_Bad_5.json.gz", lines)
    with pytest.raises(DataError, match=r"reviews_Bad_5\.json\.gz:6: no field 'unixReviewTime'"):
        prepare("amazon", tmp_path / "out", reviews=bad, meta=meta)
    assert files_under(tmp_path / "out") == set()


def test_amazon_python_literal_reviews_and_empty_result(tmp_path):
    rows = amazon_reviews()
    lines = [repr(r) for r in rows]  # single quotes: not JSON
    reviews = gz_lines(tmp_path / "reviews_Lit_5.json.gz", lines)
    prepare("amazon", tmp_path / "out", reviews=reviews, meta=amazon_files(tmp_path)[1])
    assert list(read_back(tmp_path / "out", "Lit")[0]) == USERS
    with pytest.raises(DataError, match=r"no interactions left after filtering .*: 0 interactions"):
        prepare("amazon", tmp_path / "o2", reviews=reviews, meta=amazon_files(tmp_path)[1], k=7)


# --- Yelp -------------------------------------------------------------------------------------------------------


def yelp_files(tmp_path: Path) -> tuple[Path, Path]:
    rows = []
    for k, u in enumerate(USERS):
        for j, b in enumerate(["B1", "B2", "B3", "B4", "B5"]):
            rows.append({"review_id": f"r{k}{j}", "user_id": u, "business_id": b, "stars": 4.0,
                         "date": f"2019-0{j + 1}-1{k} 12:00:00", "text": "fine, \"quoted\""})
    rows.append({"user_id": "U1", "business_id": "B1", "stars": 1.0, "date": "2019-11-01 08:00:00"})  # again
    rows.append({"user_id": "U2", "business_id": "B3", "stars": 2.0, "date": "2019-12-31 10:00:00"})  # last day
    rows.append({"user_id": "U3", "business_id": "B9", "stars": 5.0, "date": "2018-12-31 23:59:59"})  # 2018
    rows.append({"user_id": "U3", "business_id": "B9", "stars": 5.0, "date": "2020-01-01 00:00:00"})  # 2020
    reviews = tmp_path / "yelp_academic_dataset_review.json"
    reviews.write_text("".join(json.dumps(r) + "\n" for r in rows))
    business = tmp_path / "yelp_academic_dataset_business.json"
    business.write_text("".join(json.dumps(b) + "\n" for b in [
        {"business_id": "B1", "categories": "Restaurants, Pizza , Italian", "attributes": {"x": "y"}},
        {"business_id": "B2", "categories": None},
        {"business_id": "B3", "categories": "Bars,, Nightlife"},
        {"business_id": "B9", "categories": "Never Kept"},
        {"business_id": "B4", "categories": ""},
        {"business_id": "B5"},
    ]))
    return reviews, business


def test_yelp(tmp_path):
    reviews, business = yelp_files(tmp_path)
    prepare("yelp", tmp_path / "out", reviews=reviews, business=business)
    seqs, attrs = read_back(tmp_path / "out", "Yelp")
    assert list(seqs) == USERS
    assert seqs["U1"] == ["B1", "B2", "B3", "B4", "B5", "B1"]  # the repeat is kept
    assert seqs["U2"][-1] == "B3"  # 2019-12-31 10:00 is in 2019
    assert attrs == {"B1": ["Restaurants", "Pizza", "Italian"], "B3": ["Bars", "Nightlife"]}
    # the authors' bound '2019-12-31 00:00:00' (a string comparison) drops that review
    prepare("yelp", tmp_path / "o2", reviews=reviews, business=business, date_max="2019-12-31 00:00:00")
    assert read_back(tmp_path / "o2", "Yelp")[0]["U2"] == ["B1", "B2", "B3", "B4", "B5"]
    with pytest.raises(S3RecError, match="date '2019-13-01'"):
        prepare("yelp", tmp_path / "o3", reviews=reviews, business=business, date_min="2019-13-01")


# --- LastFM -----------------------------------------------------------------------------------------------------


def test_lastfm_first_occurrence_in_file_order_and_tags(tmp_path):
    lines = ["userID\tartistID\ttagID\ttimestamp"]
    for u in range(1, 7):
        for a in range(51, 56):
            lines.append(f"{u}\t{a}\t{a % 3}\t{1_000_000 * a + u}")
    lines.append("1\t51\t9\t1")  # (1, 51) again with an earlier time: the first line's time counts
    lines.append("1\t53\t7\t2000000000000")
    lines.append("7\t51\t1\t5")  # user 7: 1 artist, dropped
    (tmp_path / "user_taggedartists-timestamps.dat").write_text("\n".join(lines) + "\n")
    prepare("lastfm", tmp_path / "out", tags=tmp_path / "user_taggedartists-timestamps.dat")
    seqs, attrs = read_back(tmp_path / "out", "LastFM")
    assert list(seqs) == [str(u) for u in range(1, 7)]
    assert seqs["1"] == ["51", "52", "53", "54", "55"]
    # every tagging of the artist, in file order, repeats kept (user 7's tagging included)
    assert attrs["51"] == ["0"] * 6 + ["9", "1"]
    assert attrs["53"] == ["2"] * 6 + ["7"]


def test_lastfm_wrong_header(tmp_path):
    (tmp_path / "t.dat").write_text("user\tartist\ttag\ttime\n1\t2\t3\t4\n")
    with pytest.raises(DataError, match=r"t\.dat:1: no column 'userID'.*hetrec-2011 header"):
        prepare("lastfm", tmp_path / "out", tags=tmp_path / "t.dat")


def test_cli_prepare(tmp_path, capsys):
    reviews, business = yelp_files(tmp_path)
    out = tmp_path / "out"
    argv = ["data", "prepare", "yelp", "--reviews", str(reviews), "--business", str(business), "--out", str(out),
            "--name", "MyYelp"]
    assert main(argv) == 0
    err = capsys.readouterr().err
    assert "dated 2019-01-01 to 2019-12-31 (whole day)" in err and "5-core" in err
    assert main(["data", "stats", "MyYelp", "--data-dir", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["repeated_user_item_pairs"] == 2  # U1-B1 and U2-B3
    assert main(["data", "prepare", "amazon", "--reviews", str(reviews), "--meta", str(tmp_path / "nope.json.gz"),
                 "--out", str(tmp_path / "o2")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "nope.json.gz" in err
