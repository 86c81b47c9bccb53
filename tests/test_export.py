"""``s3rec data export``: RecBole atomic files, and the round trip export -> import (filtering and
de-duplication off) that must give back the same sequences and attributes, through the original ids."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from conftest import shared_data_dir, write_dataset
from s3rec.cli import main
from s3rec.data import writing
from s3rec.data.idmaps import load_id_maps
from s3rec.data.pipeline import build_attributes, build_sequences
from s3rec.data.readers import read_attributes, read_interactions
from s3rec.data.export import export_recbole
from s3rec.data.registry import DATASETS
from s3rec.data.store import load_files
from s3rec.errors import S3RecError
from test_import import read_back


def small_dataset(tmp_path: Path):
    seqs = {1: [3, 1, 2, 1], 2: [2, 4, 5], 3: [5, 4, 3, 2, 1, 5]}  # repeats in users 1 and 3
    attrs = {1: [2, 1, 2], 3: [3], 5: [1, 4]}  # items 2 and 4 have none
    folder = write_dataset(tmp_path / "data", "Small", seqs, attrs)
    return load_files("Small", folder / "Small.txt", folder / "Small_item2attributes.json"), folder


def test_files(tmp_path):
    ds, _ = small_dataset(tmp_path)
    paths = export_recbole(ds, tmp_path / "rb")
    assert paths["inter"].read_text().split("\n")[:6] == [
        "user_id:token\titem_id:token\ttimestamp:float", "1\t3\t1", "1\t1\t2", "1\t2\t3", "1\t1\t4", "2\t2\t1"]
    assert paths["item"].read_text() == "item_id:token\tcategories:token_seq\n1\t2 1 2\n2\t\n3\t3\n4\t\n5\t1 4\n"
    with pytest.raises(S3RecError, match="Small.inter exists; use --force"):
        export_recbole(ds, tmp_path / "rb")
    export_recbole(ds, tmp_path / "rb", "Other", force=True)
    assert (tmp_path / "rb" / "Other.item").is_file()


def assert_round_trip(ds, folder: Path, name: str) -> None:
    """Export ``ds`` and import it back (no filtering, no de-duplication); compare via original ids."""
    paths = export_recbole(ds, folder / "rb", name)
    seqs = build_sequences(read_interactions(paths["inter"]), dedup=False, k=0)
    attrs = build_attributes(seqs, read_attributes(paths["item"]))
    users = np.array(seqs.user_names.to_pylist(), dtype=np.int64)
    items = np.array(seqs.item_names.to_pylist(), dtype=np.int64)
    assert np.array_equal(users, ds.user_ids)
    assert np.array_equal(seqs.offsets, ds.offsets)
    assert np.array_equal(items[seqs.items - 1], ds.items)  # repeats included
    names = np.array(attrs.names.to_pylist(), dtype=np.int64)
    lo = attrs.offsets
    got = {int(items[i - 1]): names[attrs.attributes[lo[k] : lo[k + 1]] - 1].tolist() for k, i in enumerate(attrs.items)}
    want = {i: ds.attributes[ds.attr_offsets[i] : ds.attr_offsets[i + 1]].tolist() for i in range(1, ds.n_items + 1)}
    assert got == {i: a for i, a in want.items() if a}
    # and written out, the imported dataset loads and says the same through its id maps
    writing.write_dataset(folder / "back", name, seqs, attrs)
    maps = load_id_maps(folder / "back", name)
    back = load_files(name, folder / "back" / f"{name}.txt", folder / "back" / f"{name}_item2attributes.json")
    maps.check(back)
    assert [int(maps.items[i]) for i in back.items.tolist()] == ds.items.tolist()


def test_round_trip_small(tmp_path):
    ds, _ = small_dataset(tmp_path)
    assert_round_trip(ds, tmp_path, "Small")


@pytest.mark.parametrize("name", list(DATASETS))
def test_round_trip_benchmarks(tmp_path, name):
    info = DATASETS[name]
    folder = shared_data_dir()
    if not (folder / f"{info.stem}.txt").is_file():
        pytest.skip(f"{info.stem}.txt not in {folder}")
    ds = load_files(name, folder / f"{info.stem}.txt", folder / f"{info.stem}_item2attributes.json")
    assert_round_trip(ds, tmp_path, info.stem)


def test_cli_export(tmp_path, capsys):
    _, folder = small_dataset(tmp_path)
    out = tmp_path / "rb"
    assert main(["data", "export", "Small", "--data-dir", str(folder), "--out", str(out)]) == 0
    assert capsys.readouterr().out.split() == [str(out / "Small.inter"), str(out / "Small.item")]
    assert main(["data", "export", "Small", "--data-dir", str(folder), "--out", str(out)]) == 2
    assert "--force" in capsys.readouterr().err
    # and back in through the command line
    assert main(["data", "import", str(out / "Small.inter"), "--attributes", str(out / "Small.item"),
                 "--out", str(tmp_path / "back"), "--k-core", "0", "--no-dedup"]) == 0
    seqs, attrs = read_back(tmp_path / "back", "Small")
    assert seqs == {"1": ["3", "1", "2", "1"], "2": ["2", "4", "5"], "3": ["5", "4", "3", "2", "1", "5"]}
    assert attrs == {"1": ["2", "1", "2"], "3": ["3"], "5": ["1", "4"]}
