"""``s3rec data import``: CSV / Parquet / RecBole input, the pipeline (sort, dedup, k-core, re-index),
the written files (loadable, id maps), and one-line errors that leave nothing behind."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from s3rec.cli import main
from s3rec.data.idmaps import load_id_maps
from s3rec.data.importing import import_dataset
from s3rec.data.pipeline import k_core
from s3rec.data.store import load_files
from s3rec.errors import DataError, S3RecError


def write(path: Path, text: str) -> Path:
    path.write_text(text, encoding="utf-8")
    return path


def csv_rows(rows, header="user,item,timestamp") -> str:
    return header + "\n" + "".join(",".join(map(str, r)) + "\n" for r in rows)


def read_back(out: Path, name: str) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """The written dataset as original ids: {user: [items]} and {item: [attributes]}, via the id maps."""
    maps = load_id_maps(out, name)
    ds = load_files(name, out / f"{name}.txt", out / f"{name}_item2attributes.json")
    maps.check(ds)
    seqs = {maps.users[int(u)]: [maps.items[i] for i in ds.sequence(k).tolist()] for k, u in enumerate(ds.user_ids)}
    attrs = {}
    for i in range(1, ds.n_items + 1):
        a = ds.attributes[ds.attr_offsets[i] : ds.attr_offsets[i + 1]].tolist()
        if a:
            attrs[maps.items[i]] = [maps.attributes[x] for x in a]
    return seqs, attrs


def files_under(folder: Path) -> set[str]:
    return {str(p.relative_to(folder)) for p in folder.rglob("*")} if folder.exists() else set()


# --- the pipeline --------------------------------------------------------------------------------------------


def test_sort_ties_ids_and_maps(tmp_path):
    rows = [("bob", "x", 5), ("alice", "z", 3), ("alice", "y", 1), ("bob", "w", 5), ("alice", "x", 1),
            ("bob", "y", 2), ("alice", "w", 9)]
    src = write(tmp_path / "in.csv", csv_rows(rows))
    out = tmp_path / "out"
    import_dataset(src, out, "Shop", k=0)
    # bob first (first in the file); ties (alice y/x at 1, bob x/w at 5) keep file order
    assert (out / "Shop.txt").read_text() == "1 1 2 3\n2 1 2 4 3\n"
    assert (out / "Shop_user_ids.tsv").read_text() == "id\toriginal_id\n1\tbob\n2\talice\n"
    assert (out / "Shop_item_ids.tsv").read_text() == "id\toriginal_id\n1\ty\n2\tx\n3\tw\n4\tz\n"
    assert (out / "Shop_attribute_ids.tsv").read_text() == "id\toriginal_id\n"
    seqs, attrs = read_back(out, "Shop")
    assert seqs == {"bob": ["y", "x", "w"], "alice": ["y", "x", "z", "w"]}
    assert attrs == {}
    maps = load_id_maps(out, "Shop")
    assert maps.items == ["", "y", "x", "w", "z"]  # first appearance in bob's then alice's sequence
    assert maps.item_index()["z"] == 4 and maps.user_index() == {"bob": 1, "alice": 2}
    assert json.loads((out / "Shop_item2attributes.json").read_text()) == {}


def test_dedup_keeps_the_earliest_and_off_keeps_repeats(tmp_path):
    rows = [("u", "a", 5), ("u", "b", 2), ("u", "a", 1), ("u", "c", 3), ("u", "a", 1), ("u", "d", 4)]
    src = write(tmp_path / "in.csv", csv_rows(rows))
    import_dataset(src, tmp_path / "on", "D", k=0, dedup=True)
    import_dataset(src, tmp_path / "off", "D", k=0, dedup=False)
    assert read_back(tmp_path / "on", "D")[0] == {"u": ["a", "b", "c", "d"]}
    assert read_back(tmp_path / "off", "D")[0] == {"u": ["a", "a", "b", "c", "d", "a"]}


def naive_k_core(pairs: list[tuple[int, int]], k: int) -> list[tuple[int, int]]:
    """Reference iterative k-core (users need max(k, 3)), with Python loops."""
    while True:
        uc, ic = {}, {}
        for u, i in pairs:
            uc[u] = uc.get(u, 0) + 1
            ic[i] = ic.get(i, 0) + 1
        kept = [(u, i) for u, i in pairs if uc[u] >= max(k, 3) and ic[i] >= k]
        if len(kept) == len(pairs):
            return kept
        pairs = kept


@pytest.mark.parametrize("seed", range(5))
def test_k_core_matches_a_naive_reference(seed):
    rng = np.random.default_rng(seed)
    users = rng.integers(0, 60, 700)
    items = rng.zipf(1.6, 700) % 80
    keep, _ = k_core(users, items, 5)
    expected = naive_k_core(list(zip(users.tolist(), items.tolist())), 5)
    assert list(zip(users[keep].tolist(), items[keep].tolist())) == expected


def test_users_below_k_only_after_items_are_filtered(tmp_path):
    # Items a..e are each used by 5 users (u1..u5); u1 also has "rare" (used once). Then u6 has a..d plus
    # "rare2": rare and rare2 go in round 1, u6 drops to 4 < 5 in round 2, and so does nothing else.
    rows, t = [], 0
    for u in ["u1", "u2", "u3", "u4", "u5"]:
        for i in "abcde":
            rows.append((u, i, t := t + 1))
    rows += [("u1", "rare", t + 1)] + [("u6", i, t + 2) for i in ["a", "b", "c", "d", "rare2"]]
    src = write(tmp_path / "in.csv", csv_rows(rows))
    import_dataset(src, tmp_path / "out", "K", k=5)
    seqs, _ = read_back(tmp_path / "out", "K")
    assert sorted(seqs) == ["u1", "u2", "u3", "u4", "u5"]
    assert seqs["u1"] == list("abcde")
    import_dataset(src, tmp_path / "off", "K", k=0)
    assert len(read_back(tmp_path / "off", "K")[0]) == 6


def test_rating_threshold(tmp_path):
    rows = [("u", "a", 1, 5), ("u", "b", 2, 3.5), ("u", "c", 3, 4), ("u", "d", 4, 4.0), ("u", "e", 5, 1)]
    src = write(tmp_path / "in.csv", csv_rows(rows, "user,item,timestamp,rating"))
    import_dataset(src, tmp_path / "out", "R", k=0, rating_threshold=4)
    assert read_back(tmp_path / "out", "R")[0] == {"u": ["a", "c", "d"]}


def test_iso_dates_naive_and_zoned(tmp_path):
    rows = [("u", "a", "2019-01-02"), ("u", "b", "2019-01-01T23:00:00Z"), ("u", "c", "2019-01-02T03:00:00+05:00"),
            ("u", "d", "2019-01-01 12:00:00")]
    src = write(tmp_path / "in.csv", csv_rows(rows))
    import_dataset(src, tmp_path / "out", "T", k=0)
    # c is 2019-01-01 22:00 UTC
    assert read_back(tmp_path / "out", "T")[0] == {"u": ["d", "c", "b", "a"]}


def test_custom_columns_tsv_and_gzip(tmp_path):
    import gzip

    text = "when\tcustomer\tproduct\n3\tp\tx\n1\tp\ty\n2\tp\tz\n"
    src = tmp_path / "in.tsv.gz"
    src.write_bytes(gzip.compress(text.encode()))
    import_dataset(src, tmp_path / "out", "C", k=0, user_col="customer", item_col="product", time_col="when")
    assert read_back(tmp_path / "out", "C")[0] == {"p": ["y", "z", "x"]}


def test_parquet_gives_the_same_dataset_as_csv(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    rng = np.random.default_rng(0)
    n = 400
    users, items, times = rng.integers(0, 30, n), rng.integers(0, 25, n), rng.integers(0, 50, n)
    rows = list(zip([f"u{u}" for u in users], items.tolist(), times.tolist()))
    import_dataset(write(tmp_path / "in.csv", csv_rows(rows)), tmp_path / "a", "P", k=3, dedup=True)
    table = pa.table({"user": [r[0] for r in rows], "item": items, "timestamp": pa.array(times * 10**6, pa.timestamp("us"))})
    pq.write_table(table, tmp_path / "in.parquet")
    import_dataset(tmp_path / "in.parquet", tmp_path / "b", "P", k=3, dedup=True)
    for f in ["P.txt", "P_user_ids.tsv", "P_item_ids.tsv"]:
        assert (tmp_path / "a" / f).read_text() == (tmp_path / "b" / f).read_text()


def test_recbole_atomic_input(tmp_path):
    write(tmp_path / "ml.inter", "user_id:token\titem_id:token\trating:float\ttimestamp:float\n"
          "1\t10\t5\t300\n1\t11\t2\t100\n1\t12\t4\t200\n2\t12\t5\t1\n2\t10\t5\t2\n2\t13\t5\t3\n")
    write(tmp_path / "ml.item", "item_id:token\ttitle:token_seq\tgenre:token_seq\tyear:token\n"
          "10\tThe Film\tdrama war\t1990\n11\tB\t\t1991\n12\tC\tcomedy  drama\t1992\n99\tunused\thorror\t2000\n")
    import_dataset(tmp_path / "ml.inter", tmp_path / "out", None, tmp_path / "ml.item", k=0, attr_col="genre")
    seqs, attrs = read_back(tmp_path / "out", "ml")  # name defaults to the file's stem
    assert seqs == {"1": ["11", "12", "10"], "2": ["12", "10", "13"]}
    assert attrs == {"10": ["drama", "war"], "12": ["comedy", "drama"]}  # 11: empty, 13: no row, 99: unused
    assert load_id_maps(tmp_path / "out", "ml").attributes == ["", "drama", "war", "comedy"]  # file order
    # default attribute column: the first token_seq one; a token column gives one attribute per item
    import_dataset(tmp_path / "ml.inter", tmp_path / "o2", "ml", tmp_path / "ml.item", k=0, rating_threshold=4,
                      attr_col="year")
    seqs, attrs = read_back(tmp_path / "o2", "ml")
    assert seqs == {"2": ["12", "10", "13"]}  # user 1 keeps 2 ratings >= 4: too short for the split
    assert attrs == {"10": ["1990"], "12": ["1992"]}


def test_attributes_csv_and_json(tmp_path):
    rows = [(u, i, t) for u in ["a", "b", "c"] for t, i in enumerate(["x", "y", "z", "w"])]
    src = write(tmp_path / "in.csv", csv_rows(rows))
    write(tmp_path / "attr.csv", "item,attribute\nz,red\ny,big\nq,green\nz,blue\ny,red\nw,\nz,red\n")
    import_dataset(src, tmp_path / "o1", "A", tmp_path / "attr.csv", k=0)
    _, attrs = read_back(tmp_path / "o1", "A")
    assert attrs == {"z": ["red", "blue", "red"], "y": ["big", "red"]}  # repeats kept; x, w: none; q: no item
    assert json.loads((tmp_path / "o1" / "A_item2attributes.json").read_text()) == {"3": [1, 3, 1], "2": [2, 1]}
    write(tmp_path / "attr.json", json.dumps({"w": ["s", 7], "x": [], "q": ["u"], "y": ["s"]}))
    import_dataset(src, tmp_path / "o2", "A", tmp_path / "attr.json", k=0)
    assert read_back(tmp_path / "o2", "A")[1] == {"w": ["s", "7"], "y": ["s"]}
    import_dataset(src, tmp_path / "o3", "A", tmp_path / "attr.csv", k=0, min_attribute_count=2)
    assert read_back(tmp_path / "o3", "A")[1] == {"z": ["red", "red"], "y": ["red"]}


def test_blank_lines_are_skipped_and_lines_still_counted(tmp_path):
    src = write(tmp_path / "in.csv", "user,item,timestamp\nu,a,1\n\nu,b,2\nu,c,3\n\nu,d,x\n")
    with pytest.raises(DataError, match=r"in\.csv:7: unparsable timestamp 'x'"):
        import_dataset(src, tmp_path / "out", "B", k=0)
    src = write(tmp_path / "ok.csv", "user,item,timestamp\nu,a,1\n\nu,b,2\nu,c,3\n\n")
    import_dataset(src, tmp_path / "out", "B", k=0)
    assert read_back(tmp_path / "out", "B")[0] == {"u": ["a", "b", "c"]}


# --- errors: one line, file and line named, nothing written ---------------------------------------------------


ERROR_CASES = [
    ("missing-column", "user,item,time\nu,a,1\n", {}, r"in\.csv:1: no column 'timestamp'.*'time'.*--time-col"),
    ("missing-rating", "user,item,timestamp\nu,a,1\n", {"rating_threshold": 3}, r"in\.csv:1: no column 'rating'"),
    ("bad-timestamp", "user,item,timestamp\nu,a,1\nu,b,2\nu,c,2019-01-01\n", {},
     r"in\.csv:4: unparsable timestamp '2019-01-01': expected a number"),
    ("bad-date", "user,item,timestamp\nu,a,2019-01-01\nu,b,2019-02-30\n", {},
     r"in\.csv:3: unparsable timestamp '2019-02-30': expected an ISO-8601 date"),
    ("nan-timestamp", "user,item,timestamp\nu,a,1\nu,b,nan\n", {}, r"in\.csv:3: timestamp 'nan' is not a finite"),
    ("bad-rating", "user,item,timestamp,rating\nu,a,1,5\nu,b,2,five\n", {"rating_threshold": 3},
     r"in\.csv:3: unparsable rating 'five'"),
    ("empty-user", "user,item,timestamp\nu,a,1\n,b,2\n", {}, r"in\.csv:3: empty user id"),
    ("no-rows", "user,item,timestamp\n", {}, r"in\.csv: no interactions"),
    ("ragged-row", "user,item,timestamp\nu,a,1\nu,b\n", {}, r"in\.csv:3: CSV parse error: Expected 3 columns, got 2"),
    ("empty-after-filtering", "user,item,timestamp\nu,a,1\nu,b,2\nu,c,3\nv,a,1\n", {"k": 2},
     r"in\.csv: no interactions left after filtering \(read in\.csv: 4 interactions \(2 users, 3 items\); "
     r"repeated \(user, item\) pairs dropped: 4 interactions .*; 2-core.*: 0 interactions.*try a smaller --k-core"),
]


@pytest.mark.parametrize("text,kwargs,pattern", [c[1:] for c in ERROR_CASES], ids=[c[0] for c in ERROR_CASES])
def test_errors_name_the_file_and_line_and_write_nothing(tmp_path, text, kwargs, pattern):
    src = write(tmp_path / "in.csv", text)
    with pytest.raises(S3RecError, match=pattern) as e:
        import_dataset(src, tmp_path / "out", "E", **kwargs)
    assert "\n" not in str(e.value)
    assert files_under(tmp_path / "out") == set()


def test_attribute_file_errors(tmp_path):
    src = write(tmp_path / "in.csv", csv_rows([("u", i, t) for t, i in enumerate("abc")]))
    write(tmp_path / "a.json", '{\n"a": ["x"],\n"b": "y"\n}\n')
    with pytest.raises(DataError, match=r"a\.json:3: item 'b': expected a list"):
        import_dataset(src, tmp_path / "out", "E", tmp_path / "a.json", k=0)
    write(tmp_path / "b.json", '{\n"a": ["x"],\n"b": [}\n')
    with pytest.raises(DataError, match=r"b\.json:3: malformed JSON"):
        import_dataset(src, tmp_path / "out", "E", tmp_path / "b.json", k=0)
    write(tmp_path / "c.csv", "item,tag\na,x\n")
    with pytest.raises(DataError, match=r"c\.csv:1: no column 'attribute'.*--attr-col"):
        import_dataset(src, tmp_path / "out", "E", tmp_path / "c.csv", k=0)
    assert files_under(tmp_path / "out") == set()


def test_outputs_are_not_replaced_without_force_and_stale_negatives_go(tmp_path):
    src = write(tmp_path / "in.csv", csv_rows([("u", i, t) for t, i in enumerate("abc")]))
    out = tmp_path / "out"
    import_dataset(src, out, "F", k=0)
    write(out / "F_sample.txt", "stale\n")
    before = {p: p.read_bytes() for p in out.iterdir()}
    with pytest.raises(S3RecError, match="exists; use --force"):
        import_dataset(src, out, "F", k=0)
    bad = write(tmp_path / "bad.csv", "user,item,timestamp\nu,a,1\nu,b,?\n")
    with pytest.raises(DataError):
        import_dataset(bad, out, "F", k=0, force=True)
    assert {p: p.read_bytes() for p in out.iterdir()} == before  # an error changes nothing
    import_dataset(write(tmp_path / "in2.csv", csv_rows([("v", i, t) for t, i in enumerate("abcd")])), out, "F",
                      k=0, force=True)
    assert read_back(out, "F")[0] == {"v": list("abcd")}
    assert not (out / "F_sample.txt").exists()
    assert not [p for p in out.iterdir() if p.name.startswith(".")]  # no temp files left


def test_names_that_cannot_be_datasets(tmp_path):
    src = write(tmp_path / "in.csv", csv_rows([("u", i, t) for t, i in enumerate("abc")]))
    with pytest.raises(S3RecError, match="registered dataset whose files are called Sports_and_Outdoors"):
        import_dataset(src, tmp_path / "out", "Sports", k=0)
    with pytest.raises(S3RecError, match="dataset name"):
        import_dataset(src, tmp_path / "out", "../x", k=0)


# --- id maps ----------------------------------------------------------------------------------------------------


def test_id_maps_keep_odd_original_ids(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    users = ["user one", "tab\there", "ü", "007"]
    table = pa.table({"user": [u for u in users for _ in range(3)], "item": ["a b", "7", " x"] * 4,
                      "timestamp": list(range(12))})
    pq.write_table(table, tmp_path / "in.parquet")
    import_dataset(tmp_path / "in.parquet", tmp_path / "out", "M", k=0)
    maps = load_id_maps(tmp_path / "out", "M")
    assert maps.users == ["", *users] and maps.items == ["", "a b", "7", " x"]
    pq.write_table(pa.table({"user": ["a\nb"] * 3, "item": ["x", "y", "z"], "timestamp": [1, 2, 3]}), tmp_path / "nl.parquet")
    with pytest.raises(DataError, match=r"nl\.parquet: row 1: user id 'a\\nb' contains a line break"):
        import_dataset(tmp_path / "nl.parquet", tmp_path / "out2", "M", k=0)


def test_load_id_maps_absent_partial_and_malformed(tmp_path, monkeypatch):
    from conftest import write_dataset

    folder = write_dataset(tmp_path / "d", "Plain", {1: [1, 2, 3]})
    assert load_id_maps(folder, "Plain") is None  # benchmark data: no maps
    src = write(tmp_path / "in.csv", csv_rows([("u", i, t) for t, i in enumerate("abc")]))
    import_dataset(src, folder, "Mapped", k=0)
    monkeypatch.setenv("S3REC_DATA_DIR", str(folder))
    assert load_id_maps(None, "Mapped").users == ["", "u"]  # found like the dataset
    (folder / "Mapped_item_ids.tsv").write_text("id\toriginal_id\n1\ta\n3\tb\n")
    with pytest.raises(DataError, match=r"Mapped_item_ids\.tsv:3: expected internal id 2"):
        load_id_maps(folder, "Mapped")
    (folder / "Mapped_item_ids.tsv").unlink()
    with pytest.raises(DataError, match="Mapped_item_ids.tsv: missing"):
        load_id_maps(folder, "Mapped")


# --- command line -------------------------------------------------------------------------------------------


def test_cli_import_summary_and_error(tmp_path, capsys):
    rows = [(u, i, t) for u in ["a", "b"] for t, i in enumerate("xyzw")] + [("a", "x", 9)]
    src = write(tmp_path / "in.csv", csv_rows(rows))
    assert main(["data", "import", str(src), "--name", "Cli", "--out", str(tmp_path / "out"),
                 "--k-core", "2"]) == 0  # de-duplication is on by default
    cap = capsys.readouterr()
    assert cap.out.split() == [str(tmp_path / "out" / f) for f in
                               ["Cli.txt", "Cli_item2attributes.json", "Cli_user_ids.tsv", "Cli_item_ids.tsv",
                                "Cli_attribute_ids.tsv"]]
    assert "read in.csv: 9 interactions (2 users, 4 items)" in cap.err
    assert "repeated (user, item) pairs dropped: 8 interactions" in cap.err
    assert main(["data", "stats", "Cli", "--data-dir", str(tmp_path / "out"), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["interactions"] == 8
    assert main(["data", "import", str(src), "--name", "Cli", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("s3rec: error: ") and "--force" in err


@pytest.mark.parametrize("argv", [["data", "import"], ["data", "prepare"], ["data", "prepare", "amazon"],
                                  ["data", "prepare", "yelp"], ["data", "prepare", "lastfm"], ["data", "export"]])
def test_help(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    assert "usage: s3rec" in capsys.readouterr().out
