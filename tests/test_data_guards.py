"""Data files and data commands that used to crash or silently do the wrong thing (issue 29): each is a
one-line ``s3rec: error:`` naming the file (and line) or the flag, exit status 2, nothing written.

Huge attribute ids, JSON/TOML nested 100,000 deep, non-UTF-8 presets and users files, dataset files
that are not regular files, bad ``--delimiter`` / ``--url``, ``data import --force`` failing halfway,
stale temporary files, ``--data-dir`` without ``--dataset``, a dataset with nothing to fine-tune on, a
catalogue too small for the sampled protocol, and ``evaluate RUN`` finding the run's own data folder.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import snapshot, synthetic_sequences, write_dataset
from s3rec import fileio
from s3rec.cli import main
from s3rec.data import registry
from s3rec.data.idmaps import known_ids, read_id_list
from s3rec.data.importing import import_dataset
from s3rec.errors import DataError

N_ITEMS = 150
SEQS = synthetic_sequences(n_users=30, n_items=N_ITEMS, min_len=4, max_len=8, seed=7)
ATTRS = {i: [1 + i % 5] for i in range(1, N_ITEMS + 1)}
TINY = ["--epochs", "1", "--quiet", "--set", "hidden_size=8", "--set", "n_layers=1", "--set", "n_heads=1",
        "--set", "max_len=10"]


@pytest.fixture
def data(tmp_path, monkeypatch) -> Path:
    """A folder holding the valid dataset ``Good`` and nothing else on the search path."""
    monkeypatch.delenv("S3REC_DATA_DIR", raising=False)
    monkeypatch.delenv("S3REC_DATA_URL", raising=False)
    monkeypatch.setenv("S3REC_CACHE_DIR", str(tmp_path / "cache"))
    return write_dataset(tmp_path / "data", "Good", SEQS, ATTRS)


def run_error(argv: list[str], root: Path, capsys, *words: str) -> str:
    """Run the CLI: exit 2, one ``s3rec: error:`` line holding ``words``, nothing under root changed."""
    before = snapshot(root)
    capsys.readouterr()
    rc = main(argv)
    err = capsys.readouterr().err
    assert rc == 2, err
    assert err.count("\n") == 1 and err.startswith("s3rec: error: ") and "Traceback" not in err, err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    assert snapshot(root) == before
    return err


def stats(folder: Path, name: str = "Good") -> list[str]:
    return ["data", "stats", name, "--data-dir", str(folder)]


def train(folder: Path, out: Path, *extra: str) -> list[str]:
    return ["train", "--data-dir", str(folder), "--out", str(out), *TINY, *extra]


def nested(depth: int) -> str:
    return "[" * depth + "]" * depth


# --- 1. huge ids: an error naming file:line, no array sized by the largest id -------------------------------


@pytest.mark.parametrize("big", [10**11, 10**15])
def test_huge_attribute_id(big, data, tmp_path, capsys):
    attrs = {str(i): [1 + i % 5] for i in range(1, N_ITEMS + 1)}
    attrs["3"] = [2, big]
    (data / "Good_item2attributes.json").write_text("{\n" + ",\n".join(f'"{k}": {v}' for k, v in attrs.items()) + "\n}")
    for argv in (stats(data), train(data, tmp_path / "run", "--dataset", "Good")):
        run_error(argv, tmp_path, capsys, "Good_item2attributes.json:4:", "not contiguous", str(big), "item 3")


def test_huge_item_id_in_the_sequences(data, tmp_path, capsys):
    lines = (data / "Good.txt").read_text().splitlines()
    lines[4] += f" {10**15}"
    (data / "Good.txt").write_text("\n".join(lines) + "\n")
    run_error(stats(data), tmp_path, capsys, "Good.txt:5:", "not contiguous", str(10**15))


# --- 2. nested 100,000 deep ---------------------------------------------------------------------------------


def test_deep_json_attributes(data, tmp_path, capsys):
    (data / "Good_item2attributes.json").write_text('{"1": ' + nested(100_000) + "}")
    run_error(stats(data), tmp_path, capsys, "Good_item2attributes.json", "nested too deeply")


def test_deep_json_in_import_attributes(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u in range(1, 8) for t, i in enumerate(range(7))))
    attrs = tmp_path / "attrs.json"
    attrs.write_text('{"1": ' + nested(100_000) + "}")
    run_error(["data", "import", str(log), "--attributes", str(attrs), "--k-core", "0", "--out", str(tmp_path / "out")],
              tmp_path, capsys, "attrs.json", "nested too deeply")


@pytest.mark.parametrize("which", ["reviews", "meta"])
def test_deep_json_lines_in_prepare(which, tmp_path, capsys):
    reviews = [json.dumps({"reviewerID": f"u{u}", "asin": f"i{i}", "unixReviewTime": u * 10 + i})
               for u in range(8) for i in range(6)]
    meta = [json.dumps({"asin": f"i{i}", "categories": [["A", "b"]]}) for i in range(6)]
    (reviews if which == "reviews" else meta)[2] = '{"asin": "i2", "x": ' + nested(100_000) + "}"
    (tmp_path / "rev.json").write_text("\n".join(reviews) + "\n")
    (tmp_path / "meta.json").write_text("\n".join(meta) + "\n")
    name = "rev.json" if which == "reviews" else "meta.json"
    argv = ["data", "prepare", "amazon", "--reviews", str(tmp_path / "rev.json"), "--meta", str(tmp_path / "meta.json"),
            "--k-core", "0", "--out", str(tmp_path / "out")]
    run_error(argv, tmp_path, capsys, f"{name}:3:", "nested too deeply")


@pytest.mark.parametrize("value", ["[" * 100_000 + "]" * 100_000, "{a = " * 100_000 + "}" * 100_000])
def test_deep_toml_preset(value, data, tmp_path, capsys):
    preset = tmp_path / "deep.toml"
    preset.write_text(f'description = "deep"\n[finetune]\nlr = 0.001\n[source]\nx = {value}\n')
    run_error(train(data, tmp_path / "run", "--dataset", "Good", "--preset", str(preset)), tmp_path, capsys,
              "deep.toml", "nested too deeply")


@pytest.mark.parametrize("kind", ["space", "experiment"])
@pytest.mark.parametrize("bad", ["deep", "utf8"])
def test_deep_or_non_utf8_space_and_experiment_files(kind, bad, data, tmp_path):
    from s3rec.errors import ConfigError
    from s3rec.reproduce.experiment import load_experiment
    from s3rec.tune.space import load_space

    path = tmp_path / f"{kind}.toml"
    if bad == "deep":
        path.write_text('description = "deep"\nx = ' + "[" * 100_000 + "]" * 100_000 + "\n")
    else:
        path.write_bytes(b'description = "x" # \xff\xfe\n')
    with pytest.raises(ConfigError, match="nested too deeply" if bad == "deep" else "not UTF-8") as e:
        (load_space if kind == "space" else load_experiment)(str(path))
    assert str(path) in str(e.value) and "\n" not in str(e.value)


# --- 3. non-UTF-8 presets and users files --------------------------------------------------------------------


def test_non_utf8_preset(data, tmp_path, capsys):
    preset = tmp_path / "p.toml"
    preset.write_bytes(b'description = "x"\n[finetune]\nlr = 0.001 # \xff\xfe\n')
    run_error(train(data, tmp_path / "run", "--dataset", "Good", "--preset", str(preset)), tmp_path, capsys,
              "p.toml", "not UTF-8")


def test_users_file_reader(tmp_path):
    path = tmp_path / "users.txt"
    path.write_text(" 1 \n\n7\n2\n")
    listed = read_id_list(path)
    assert listed == [(1, "1"), (3, "7"), (4, "2")]
    assert known_ids(path, listed[::2], {"1", "2"}) == ["1", "2"]
    with pytest.raises(DataError, match=r"users.txt:3: unknown user id '7'"):
        known_ids(path, listed, {"1", "2"})
    path.write_bytes(b"1\n\xff\xfe\n")
    with pytest.raises(DataError, match="users.txt: not UTF-8"):
        read_id_list(path)
    with pytest.raises(DataError, match="not a regular file but a folder"):
        read_id_list(tmp_path)


def test_recommend_users_file_errors(data, tmp_path, capsys):
    assert main(train(data, tmp_path / "run", "--dataset", "Good")) == 0
    users = tmp_path / "users.txt"
    ckpt = str(tmp_path / "run" / "best.pt")
    users.write_bytes(b"1\n\xff\xfe\n")
    run_error(["recommend", ckpt, "--data-dir", str(data), "--users-file", str(users)], tmp_path, capsys,
              "users.txt", "not UTF-8")
    users.write_text("1\n\n777\n")
    argv = ["recommend", ckpt, "--data-dir", str(data), "--users-file", str(users), "--out", str(tmp_path / "r.csv")]
    run_error(argv, tmp_path, capsys, "users.txt:3:", "'777'")


# --- 4. dataset files that are not regular files -------------------------------------------------------------


def make_fifo(path: Path) -> None:
    os.mkfifo(path)


KINDS = {
    "folder": (lambda p: p.mkdir(), "a folder"),
    "symlink-loop": (lambda p: os.symlink(p, p), "a broken or looping link"),
    "dangling-link": (lambda p: os.symlink(p.parent / "nowhere", p), "a broken or looping link"),
    "dev-zero": (lambda p: os.symlink("/dev/zero", p), "a device"),
    "fifo": (make_fifo, "a FIFO"),
}


@pytest.mark.parametrize("kind", list(KINDS))
@pytest.mark.parametrize("file", ["Good_item2attributes.json", "Good.txt", "Good_sample.txt"])
def test_dataset_file_that_is_not_a_regular_file(kind, file, data, tmp_path, capsys):
    make, words = KINDS[kind]
    path = data / file
    if path.exists():
        path.unlink()
    make(path)
    argv = train(data, tmp_path / "run", "--dataset", "Good") if file.endswith("_sample.txt") else stats(data)
    run_error(argv, tmp_path, capsys, str(path), "not a regular file", words)


def test_only_a_missing_attributes_file_means_no_attributes(data):
    (data / "Good_item2attributes.json").unlink()
    ds = registry.load("Good", data)
    assert ds.n_attributes == 0 and "attributes" not in ds.paths


# --- 5. --delimiter and --url --------------------------------------------------------------------------------


@pytest.mark.parametrize("delimiter, words", [(";;", "exactly one character"), ("", "exactly one character"),
                                              ("\n", "line break"), ('"', "quote character"), ("é", "ASCII")])
def test_import_delimiter(delimiter, words, tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user;item;timestamp\n1;2;3\n")
    run_error(["data", "import", str(log), "--delimiter", delimiter, "--out", str(tmp_path / "out")], tmp_path, capsys,
              f"--delimiter {delimiter!r}", words)


def test_import_with_a_one_character_delimiter(tmp_path, capsys):
    log = tmp_path / "log.csv"
    log.write_text("user;item;timestamp\n" + "".join(f"{u};{i};{t}\n" for u in range(1, 5) for t, i in enumerate(range(4))))
    assert main(["data", "import", str(log), "--delimiter", ";", "--k-core", "0", "--out", str(tmp_path / "out")]) == 0
    assert registry.load("log", tmp_path / "out").n_users == 4


@pytest.mark.parametrize("url", ["notaurl", "ftp://example.org/data/", "http://", "http://[::1", "/some/folder/"])
def test_fetch_url_is_checked_first(url, data, tmp_path, capsys):
    run_error(["data", "fetch", "LastFM", "--url", url, "--dest", str(tmp_path / "dest")], tmp_path, capsys,
              f"--url {url!r}", "not a URL")


def test_fetch_url_from_the_environment_is_checked(data, tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("S3REC_DATA_URL", "notaurl")
    run_error(["data", "fetch", "LastFM", "--dest", str(tmp_path / "dest")], tmp_path, capsys,
              "$S3REC_DATA_URL 'notaurl'", "not a URL")


def test_fetch_from_a_closed_port_is_one_line(data, tmp_path, capsys, monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    before = snapshot(tmp_path)
    capsys.readouterr()
    dest = tmp_path / "dest" / "sub"
    assert main(["data", "fetch", "LastFM", "--url", "http://127.0.0.1:1/", "--dest", str(dest)]) == 2
    lines = capsys.readouterr().err.splitlines()  # the progress line, then the error
    assert lines == ["downloading http://127.0.0.1:1/LastFM.txt", lines[-1]]
    assert lines[-1].startswith("s3rec: error: could not download http://127.0.0.1:1/LastFM.txt: ")
    assert snapshot(tmp_path) == before  # no file, and not the folders it made for them


# --- 6. all or nothing, fsync, stale temporary files ---------------------------------------------------------


def log_csv(path: Path, users: str, items: str = "abcd") -> Path:
    path.write_text("user,item,timestamp\n" + "".join(f"{u},{i},{t}\n" for u in users for t, i in enumerate(items)))
    return path


@pytest.mark.parametrize("fail_at", [1, 3, 5])
def test_import_force_is_all_or_nothing(fail_at, tmp_path, monkeypatch, capsys):
    out = tmp_path / "out"
    import_dataset(log_csv(tmp_path / "a.csv", "uv"), out, "F", k=0)
    before = snapshot(out)
    real, calls = os.replace, []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == fail_at:  # the fail_at-th of the five renames into place
            raise OSError(28, "No space left on device")
        return real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", failing)
    err = run_error(["data", "import", str(log_csv(tmp_path / "b.csv", "xyz")), "--name", "F", "--k-core", "0",
                     "--out", str(out), "--force"], out, capsys, "No space left on device")
    assert err and snapshot(out) == before  # every old file back, no temporary file or backup left
    monkeypatch.setattr(fileio.os, "replace", real)
    import_dataset(log_csv(tmp_path / "b.csv", "xyz"), out, "F", k=0, force=True)
    assert registry.load("F", out).n_users == 3
    assert not [p for p in out.iterdir() if p.name.startswith(".")]


def test_a_new_dataset_that_fails_to_land_leaves_nothing(tmp_path, monkeypatch):
    real, calls = os.replace, []

    def failing(src, dst):
        calls.append(dst)
        if len(calls) == 4:
            raise OSError(5, "Input/output error")
        return real(src, dst)

    monkeypatch.setattr(fileio.os, "replace", failing)
    with pytest.raises(OSError):
        import_dataset(log_csv(tmp_path / "a.csv", "uv"), tmp_path / "out", "F", k=0)
    assert list((tmp_path / "out").iterdir()) == []


def test_atomic_write_fsyncs_the_folder(tmp_path, monkeypatch):
    synced = []
    monkeypatch.setattr(fileio, "fsync_folder", lambda folder: synced.append(Path(folder)))
    fileio.atomic_write_text(tmp_path / "sub" / "a.txt", "x")
    assert synced == [tmp_path / "sub"]
    assert (tmp_path / "sub" / "a.txt").read_text() == "x"


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def test_stale_temporary_files_of_the_target_are_removed(tmp_path):
    target = tmp_path / "best.pt"
    old = time.time() - 2 * fileio.STALE_AFTER
    dead, alive = dead_pid(), os.getppid()
    files = {
        f".best.pt.{dead}.abcdefgh.tmp": (old, False),  # an interrupted writer, long gone
        ".best.pt.q1w2e3r4.tmp": (old, False),  # from a version without process ids in the names
        f".best.pt.{dead}.zyxwvuts.bak": (old, False),  # a backup of an interrupted swap
        f".best.pt.{dead}.abcdefgi.tmp": (time.time(), True),  # written just now (maybe from another machine)
        f".best.pt.{alive}.abcdefgj.tmp": (old, True),  # its writer still runs
        f".best.pt.json.{dead}.abcdefgh.tmp": (old, True),  # another file's
        f".other.{dead}.abcdefgh.tmp": (old, True),
        "best.pt.notes": (old, True),
    }
    for name, (mtime, _) in files.items():
        (tmp_path / name).write_text("half")
        os.utime(tmp_path / name, (mtime, mtime))
    fileio.atomic_write_text(target, "new")
    assert target.read_text() == "new"
    assert {p.name for p in tmp_path.iterdir()} == {"best.pt", *(n for n, (_, kept) in files.items() if kept)}


def test_an_interrupted_write_leaves_a_temp_that_the_next_write_removes(tmp_path, monkeypatch):
    target = tmp_path / "F.txt"
    code = ("import os, sys; from s3rec.fileio import atomic_path\n"
            "with atomic_path(sys.argv[1]) as tmp:\n    tmp.write_text('half'); os._exit(9)\n")
    assert subprocess.run([sys.executable, "-c", code, str(target)]).returncode == 9
    (left,) = [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]
    assert left.name.startswith(".F.txt.")
    os.utime(left, (time.time() - 2 * fileio.STALE_AFTER,) * 2)
    fileio.atomic_write_text(target, "whole")
    assert [p.name for p in tmp_path.iterdir()] == ["F.txt"]


# --- 7. --data-dir without --dataset ---------------------------------------------------------------------------


def test_data_dir_without_dataset_uses_its_only_dataset(data, tmp_path, capsys):
    capsys.readouterr()
    assert main(train(data, tmp_path / "run")) == 0
    err = capsys.readouterr().err
    assert f"--data-dir {data}: using its only dataset, Good" in err
    assert json.loads((tmp_path / "run" / "results.json").read_text())["dataset"] == "Good"


@pytest.mark.parametrize("verb", ["train", "pretrain", "run"])
def test_data_dir_with_several_or_no_datasets_needs_dataset(verb, data, tmp_path, capsys):
    write_dataset(data, "Other", SEQS)
    argv = [verb, "--data-dir", str(data), "--out", str(tmp_path / "run"), "--quiet"]
    run_error(argv, tmp_path, capsys, f"--data-dir {data} without --dataset", "2 datasets (Good, Other)", "--dataset")
    empty = tmp_path / "empty"
    empty.mkdir()
    argv = [verb, "--data-dir", str(empty), "--out", str(tmp_path / "run"), "--quiet"]
    run_error(argv, tmp_path, capsys, "no dataset", "--dataset")


def test_datasets_in_a_folder(tmp_path):
    write_dataset(tmp_path, "Good", SEQS)
    write_dataset(tmp_path, "Sports_and_Outdoors", SEQS)
    (tmp_path / "Good_sample.txt").write_text("")
    assert registry.datasets_in(tmp_path) == ["Good", "Sports"]


# --- 8. nothing to fine-tune on ----------------------------------------------------------------------------------


@pytest.mark.parametrize("protocol", ["sampled", "full"])
def test_every_user_with_three_items_is_refused(protocol, data, tmp_path, capsys):
    write_dataset(data, "Three", {u: [3 * u - 2, 3 * u - 1, 3 * u] for u in range(1, 61)})
    run_error(train(data, tmp_path / "run", "--dataset", "Three", "--protocol", protocol), tmp_path, capsys,
              f"{data / 'Three.txt'}: no user has more than 3 items", "nothing to fine-tune on")
    assert main(["data", "stats", "Three", "--data-dir", str(data)]) == 0  # readable all the same


def test_run_refuses_three_item_data_before_it_pre_trains(data, tmp_path, capsys):
    write_dataset(data, "Three", {u: [3 * u - 2, 3 * u - 1, 3 * u] for u in range(1, 61)})
    out = tmp_path / "run"
    assert main(["run", "--dataset", "Three", "--data-dir", str(data), "--pretrain-epochs", "1", "--out", str(out),
                 "--quiet"]) == 2
    assert "nothing to fine-tune on" in capsys.readouterr().err
    assert not (out / "pretrain" / "checkpoint.pt").exists()


def test_every_user_with_three_items_is_refused_by_the_api(data, tmp_path):
    import s3rec

    write_dataset(data, "Three", {u: [3 * u - 2, 3 * u - 1, 3 * u] for u in range(1, 61)})
    with pytest.raises(DataError, match="nothing to fine-tune on"):
        s3rec.finetune("Three", data_dir=data, protocol="full", out=tmp_path / "run", epochs=1)
    assert not (tmp_path / "run").exists()


# --- 9. a catalogue too small for the sampled protocol ---------------------------------------------------------


def test_small_catalogue_names_the_original_user_and_suggests_full(tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("S3REC_DATA_DIR", raising=False)
    seqs = synthetic_sequences(n_users=20, n_items=35, min_len=5, max_len=9, seed=1)
    log = tmp_path / "log.csv"
    log.write_text("user,item,timestamp\n" + "".join(f"alice{u},item{i},{t}\n" for u, s in seqs.items()
                                                      for t, i in enumerate(s)))
    out = tmp_path / "data"
    import_dataset(log, out, "Small", k=0)
    err = run_error(train(out, tmp_path / "run", "--dataset", "Small"), tmp_path, capsys,
                    f"{out / 'Small.txt'}:1: user 1 (original id 'alice1')", "of 35 items", "--protocol full")
    assert "internal" not in err
    assert main(train(out, tmp_path / "run", "--dataset", "Small", "--protocol", "full")) == 0


# --- 10. evaluate RUN reads the run's own data folder ----------------------------------------------------------


def test_evaluate_finds_the_data_folder_of_the_run(data, tmp_path, capsys, monkeypatch):
    run = tmp_path / "run"
    assert main(train(data, run, "--dataset", "Good")) == 0
    assert json.loads((run / "results.json").read_text())["data_dir"] == str(data.resolve())
    monkeypatch.chdir(tmp_path / "cache" if (tmp_path / "cache").is_dir() else tmp_path)
    for target in (run, run / "best.pt"):
        capsys.readouterr()
        assert main(["evaluate", str(target), "--json"]) == 0
        assert json.loads(capsys.readouterr().out)["users"] == len(SEQS)
    # the recorded folder is gone: say so and search as usual ($S3REC_DATA_DIR here)
    moved = data.rename(tmp_path / "moved")
    monkeypatch.setenv("S3REC_DATA_DIR", str(moved))
    capsys.readouterr()
    assert main(["evaluate", str(run), "--json"]) == 0
    captured = capsys.readouterr()
    assert f"its data folder {data.resolve()} no longer exists" in captured.err
    assert json.loads(captured.out)["users"] == len(SEQS)
