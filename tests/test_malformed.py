"""Malformed dataset files, through the command line: one-line error naming file, line and problem; exit 2.

Every case starts from a valid synthetic dataset ``Bad`` (20 users, 130 items, one attribute-file key per
line so that item ``i`` sits on line ``i + 1``) and breaks exactly one thing in one file. The error must be
a single ``s3rec: error: PATH[:LINE]: problem`` line, and the command must leave every file under
``tmp_path`` (data folder, cache) exactly as it was: no run directory, no ``_sample.txt``, no temp files.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import synthetic_sequences, write_dataset
from s3rec.cli import main
from s3rec.data import registry
from s3rec.data.negatives import load_with_negatives
from s3rec.errors import DataError

NAME = "Bad"
N_USERS, N_ITEMS = 20, 130  # enough items that every user has 99 negatives to sample
SEQS = synthetic_sequences(n_users=N_USERS, n_items=N_ITEMS, min_len=4, max_len=8, seed=3)
ATTRS = {i: [1 + i % 7, 8 + i % 3] for i in range(1, N_ITEMS + 1)}
FILES = {"seq": f"{NAME}.txt", "attr": f"{NAME}_item2attributes.json", "sample": f"{NAME}_sample.txt"}


# --- building the cases: each ``make`` maps the valid file's lines to the broken file (lines or bytes) -------


def replace(k: int, new: str):
    """Line k (1-based) becomes ``new``."""
    return lambda lines: lines[: k - 1] + [new] + lines[k:]


def insert(k: int, new: str):
    """``new`` is inserted so that it becomes line k."""
    return lambda lines: lines[: k - 1] + [new] + lines[k - 1 :]


def edit_tokens(k: int, fn):
    """Line k's space-separated tokens go through ``fn`` (which edits the list in place)."""

    def make(lines):
        tokens = lines[k - 1].split()
        fn(tokens)
        return replace(k, " ".join(tokens))(lines)

    return make


def setitem(index: int, value):
    return lambda tokens: tokens.__setitem__(index, str(value))


def non_utf8(k: int):
    """Line k gets the bytes 0xFF 0xFE (never valid UTF-8)."""
    return lambda lines: ("\n".join(lines[: k - 1] + [lines[k - 1] + " \xff\xfe"] + lines[k:]) + "\n").encode(
        "latin-1"
    )


def attr_line(item: int, value: str) -> str:
    return f'"{item}": {value}' + ("," if item < N_ITEMS else "")


def case(file, make, line, *words, id):
    return pytest.param(file, make, line, words, id=id)


SEQ_CASES = [
    case("seq", edit_tokens(5, setitem(2, "abc")), 5, "'abc'", "not a non-negative integer", id="non-integer-token"),
    case("seq", edit_tokens(13, setitem(1, "3.0")), 13, "'3.0'", "not a non-negative integer", id="float-token"),
    case("seq", edit_tokens(4, lambda t: t.append("0")), 4, "item id 0", "out of range", id="item-id-zero"),
    case("seq", edit_tokens(2, setitem(3, -3)), 2, "item id -3", "out of range", id="item-id-negative"),
    case("seq", edit_tokens(10, setitem(0, 0)), 10, "user id 0", "below 1", id="user-id-zero"),
    case("seq", edit_tokens(20, lambda t: t.append(str(N_ITEMS + 5))), 20, "not contiguous", "first: 131",
         id="item-ids-not-contiguous"),
    case("seq", edit_tokens(7, lambda t: t.append(str(10**12))), 7, "not contiguous", str(10**12),
         id="huge-item-id"),
    case("seq", edit_tokens(9, lambda t: t.append(str(2**64))), 9, "out of range", "64 bits",
         id="item-id-beyond-int64"),
    case("seq", edit_tokens(11, lambda t: t.append("7" * 5000)), 11, "out of range", "5000 digits",
         id="item-id-5000-digits"),
    case("seq", lambda lines: insert(8, lines[2])(lines), 8, "user 3", "already appears on line 3",
         id="duplicated-user"),
    case("seq", edit_tokens(6, lambda t: t.__delitem__(slice(3, None))), 6, "user 6 has 2 items", "at least 3",
         id="fewer-than-3-items"),
    case("seq", edit_tokens(12, lambda t: t.__delitem__(slice(1, None))), 12, "user 12 has 0 items", "at least 3",
         id="user-without-items"),
    case("seq", insert(8, ""), 8, "empty line", id="empty-line"),
    case("seq", insert(12, "  \t "), 12, "empty line", id="blank-line"),
    case("seq", lambda lines: lines + [""], N_USERS + 1, "empty line", id="blank-line-at-end"),
    case("seq", non_utf8(9), None, "not UTF-8", id="seq-non-utf8"),
    case("seq", lambda lines: [], None, "empty", id="seq-empty-file"),
]

ATTR_CASES = [
    case("attr", replace(21, '"20": [7 10],'), 21, "malformed JSON", "delimiter", id="malformed-json"),
    case("attr", replace(51, "'50': [2, 10],"), 51, "malformed JSON", "double quotes", id="json-single-quotes"),
    case("attr", lambda lines: "\n".join(lines[:50]).encode(), 50, "malformed JSON", id="json-truncated"),
    case("attr", lambda lines: ["[[1, 2], [3]]"], 1, "expected a JSON object", "got list", id="json-is-a-list"),
    case("attr", replace(41, attr_line(40, "[0, 3]")), 41, "item 40", "attribute id 0 is below 1",
         id="attribute-id-zero"),
    case("attr", replace(42, attr_line(41, "[2, -4]")), 42, "item 41", "attribute id -4 is below 1",
         id="attribute-id-negative"),
    case("attr", replace(61, '"131": [1, 2],'), 61, "item id 131", "out of range 1..130", id="key-item-out-of-range"),
    case("attr", replace(2, '"0": [1, 2],'), 2, "item id 0", "out of range", id="key-item-zero"),
    case("attr", replace(3, '"abc": [1],'), 3, "'abc'", "not an item id", id="key-not-an-item-id"),
    case("attr", replace(31, attr_line(30, "5")), 31, "item 30", "expected a list", id="value-not-a-list"),
    case("attr", replace(32, attr_line(31, "[true]")), 32, "item 31", "expected a list", id="value-bool"),
    case("attr", replace(33, attr_line(32, f"[{2**64}]")), 33, "item 32", "out of range", "64 bits",
         id="attribute-id-beyond-int64"),
    case("attr", replace(34, attr_line(33, "[" + "9" * 5000 + "]")), None, "malformed JSON", "too many digits",
         id="attribute-id-5000-digits"),
    case("attr", non_utf8(5), None, "not UTF-8", id="json-non-utf8"),
]

SAMPLE_CASES = [
    case("sample", edit_tokens(4, setitem(0, 999)), 4, "user 999", "does not appear", id="sample-unknown-user"),
    case("sample", edit_tokens(6, lambda t: t.pop()), 6, "98 negatives", "expected 99", id="sample-98-negatives"),
    case("sample", edit_tokens(7, lambda t: t.append(t[1])), 7, "100 negatives", "expected 99",
         id="sample-100-negatives"),
    case("sample", edit_tokens(3, setitem(1, SEQS[3][-1])), 3, f"negative item {SEQS[3][-1]}", "own items",
         id="sample-own-item"),
    case("sample", edit_tokens(8, setitem(5, N_ITEMS + 1)), 8, "negative item 131", "out of range",
         id="sample-negative-out-of-range"),
    case("sample", edit_tokens(9, setitem(2, 0)), 9, "negative item 0", "out of range", id="sample-negative-zero"),
    case("sample", lambda lines: lines[:-1], None, "1 user(s) have no negatives row", "user 20",
         id="sample-missing-user"),
    case("sample", lambda lines: replace(5, lines[1])(lines), 5, "user 2 appears twice", id="sample-duplicate-user"),
    case("sample", edit_tokens(10, setitem(4, "n/a")), 10, "'n/a'", "not a non-negative integer",
         id="sample-non-integer-token"),
    case("sample", insert(11, ""), 11, "empty line", id="sample-empty-line"),
    case("sample", non_utf8(12), None, "not UTF-8", id="sample-non-utf8"),
    case("sample", lambda lines: [], None, f"{N_USERS} user(s) have no negatives row", id="sample-empty-file"),
]


# --- running them ----------------------------------------------------------------------------------------------


def argv(command: str, folder: Path, out: Path) -> list[str]:
    if command == "stats":
        return ["data", "stats", NAME, "--data-dir", str(folder)]
    if command == "negatives":
        return ["data", "negatives", NAME, "--data-dir", str(folder)]
    assert command == "train"
    return ["train", "--dataset", NAME, "--data-dir", str(folder), "--out", str(out), "--epochs", "1", "--quiet"]


def snapshot(root: Path) -> dict[str, bytes]:
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def write_lines(path: Path, content) -> None:
    if isinstance(content, bytes):
        path.write_bytes(content)
    else:
        path.write_text("".join(line + "\n" for line in content))


@pytest.fixture
def folder(tmp_path, monkeypatch) -> Path:
    """The valid dataset ``Bad`` (no negatives file yet), in its own folder; nothing else on the search path."""
    monkeypatch.delenv("S3REC_DATA_DIR", raising=False)
    monkeypatch.setenv("S3REC_CACHE_DIR", str(tmp_path / "cache"))
    folder = write_dataset(tmp_path / "data", NAME, SEQS)
    attr_lines = ["{"] + [attr_line(i, str(v)) for i, v in ATTRS.items()] + ["}"]
    write_lines(folder / FILES["attr"], attr_lines)
    assert registry.load(NAME, folder).n_items == N_ITEMS  # the starting point is valid
    return folder


@pytest.fixture
def with_sample(folder, capsys) -> Path:
    """``folder`` plus a valid ``Bad_sample.txt``, written by ``s3rec data negatives``."""
    assert main(["data", "negatives", NAME, "--data-dir", str(folder)]) == 0
    assert capsys.readouterr().out.strip() == str(folder / FILES["sample"])
    ds = load_with_negatives(NAME, folder)  # valid as written
    assert ds.negatives.shape == (N_USERS, 99)
    return folder


def break_file(folder: Path, file: str, make) -> Path:
    path = folder / FILES[file]
    write_lines(path, make(path.read_text().splitlines()))
    return path


def assert_one_line_error(err: str, path: Path, line: int | None, words) -> str:
    assert err.endswith("\n") and err.count("\n") == 1, f"expected exactly one line on stderr, got:\n{err}"
    assert "Traceback" not in err
    prefix = f"s3rec: error: {path}:{line}: " if line is not None else f"s3rec: error: {path}: "
    assert err.startswith(prefix), f"expected {prefix!r}...\ngot {err!r}"
    assert path.name in err
    for word in words:
        assert word in err, f"{word!r} not in {err!r}"
    return err


def run_and_check(command, tmp_path, folder, path, line, words, capsys):
    capsys.readouterr()
    out_dir = tmp_path / "run"
    before = snapshot(tmp_path)
    had_sample = (folder / FILES["sample"]).exists()
    rc = main(argv(command, folder, out_dir))
    captured = capsys.readouterr()
    assert rc == 2
    assert captured.out == ""
    assert_one_line_error(captured.err, path, line, words)
    # Nothing half-written: no run directory, no negatives file (beside the data or in the cache), no temp file.
    assert not out_dir.exists()
    assert snapshot(tmp_path) == before
    if not had_sample:
        assert not (folder / FILES["sample"]).exists()
        assert not registry.negatives_cache_path(NAME).exists()


@pytest.mark.parametrize("command", ["stats", "train", "negatives"])
@pytest.mark.parametrize("file, make, line, words", SEQ_CASES + ATTR_CASES)
def test_malformed_dataset(command, file, make, line, words, tmp_path, folder, capsys):
    path = break_file(folder, file, make)
    run_and_check(command, tmp_path, folder, path, line, words, capsys)


@pytest.mark.parametrize("file, make, line, words", SAMPLE_CASES)
def test_malformed_negatives_file(file, make, line, words, tmp_path, with_sample, capsys):
    """The sampled protocol (train's default) reads NAME_sample.txt from the data folder and rejects it."""
    path = break_file(with_sample, file, make)
    run_and_check("train", tmp_path, with_sample, path, line, words, capsys)


def test_bad_data_keeps_an_existing_run_on_overwrite(tmp_path, folder, capsys):
    """``--overwrite`` must not remove the old run before the new data has been validated."""
    out_dir = tmp_path / "run"
    out_dir.mkdir()
    (out_dir / "config.json").write_text('{"dataset": "Bad"}')  # a fine-tuning run's folder (see test_overwrite.py)
    (out_dir / "results.json").write_text("{}")
    path = break_file(folder, "seq", insert(8, ""))
    rc = main(argv("train", folder, out_dir) + ["--overwrite"])
    assert rc == 2
    assert_one_line_error(capsys.readouterr().err, path, 8, ["empty line"])
    assert (out_dir / "results.json").read_text() == "{}"


@pytest.mark.parametrize(
    "command, file, make, line",
    [
        ("stats", "seq", insert(8, ""), 8),
        ("negatives", "attr", replace(41, attr_line(40, "[0, 3]")), 41),
        ("train", "sample", edit_tokens(4, setitem(0, 999)), 4),
    ],
    ids=["stats", "negatives", "train"],
)
def test_debug_raises_instead_of_exit_2(command, file, make, line, tmp_path, with_sample, capsys):
    path = break_file(with_sample, file, make)
    capsys.readouterr()
    with pytest.raises(DataError) as excinfo:
        main(["--debug"] + argv(command, with_sample, tmp_path / "run"))
    assert excinfo.value.path == str(path) and excinfo.value.line == line
    assert "s3rec: error" not in capsys.readouterr().err
    assert not (tmp_path / "run").exists()



# --- the two readers of a sequences file: numpy's for the plain form, line by line for anything else ------


@pytest.mark.parametrize("text", [
    "1 5 2 3\n2 1 4 6 2\n",
    "7 1 2 3\n3 3 2 1\n9 4 1 2 3 4",  # no final newline, users out of order
    "1  2 3 4   \n  2 4 3 2 1\n",  # runs of spaces at either end
    "000012 00003 2 1\n5 1 2 3\n",  # leading zeros
    "1 3 2 1\n2 1 2\n",  # a user with too few items: line by line, which names it
    "1 3 2 1\n\n2 1 2 3\n",  # an empty line
    "1 2 3 4\n1 1 2 3\n",  # a user twice
    "1 2 3 4\r\n2 1 2 3\r\n",  # Windows line ends
    "1\t2 3 4\n2 1 2 3\n",  # a tab
    "1 2 3 4\n0 1 2 3\n",  # user 0
    "1 2 0 4\n2 1 2 3\n",  # item 0 (padding)
    "1 2 3 4\n2 1 2 12345678901234567890\n",  # a number beyond 64 bits
])
def test_the_plain_reader_agrees_with_the_line_reader(tmp_path, text):
    from s3rec.data import formats

    path = tmp_path / "S.txt"
    path.write_bytes(text.encode())
    plain = formats._plain_sequences(path.read_bytes())
    try:
        by_line = formats._sequences_by_line(path, text)
    except DataError:
        assert plain is None  # only the line reader names the problem
        return
    if plain is not None:
        for a, b in zip(plain, by_line):
            assert a.dtype == b.dtype == "int64" and a.tolist() == b.tolist()
    else:
        assert "\r" in text or "\t" in text  # well formed, but not in the plain form


def test_the_plain_reader_takes_a_plain_file(tmp_path):
    from s3rec.data import formats

    text = "".join(f"{u} " + " ".join(map(str, s)) + "\n" for u, s in SEQS.items())
    got = formats._plain_sequences(text.encode())
    assert got is not None
    assert got[0].tolist() == list(SEQS) and got[2].tolist() == [i for s in SEQS.values() for i in s]
