"""The README's commands and CI stay in step; the CLI explains itself."""

from __future__ import annotations

import pytest

from conftest import REPO
from s3rec.cli import build_parser, main


def test_ci_runs_the_readme_test_command():
    readme = (REPO / "README.md").read_text().splitlines()
    commands = [line for line in readme[:6] if line.startswith("python3 -m venv")]
    assert len(commands) == 2, "the README starts with exactly two commands"
    ci = (REPO / ".ci" / "run").read_text()
    assert commands[1] in ci
    assert "torch==2.13.0" in commands[0] and "torch==2.13.0" in commands[1]


@pytest.mark.parametrize("argv", [[], ["data"], ["train"], ["evaluate"], ["bench", "train"], ["data", "negatives"]])
def test_help_works(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main([*argv, "--help"])
    assert e.value.code == 0
    assert "usage: s3rec" in capsys.readouterr().out


def test_models_lists_sasrec(capsys):
    assert main(["models"]) == 0
    assert "sasrec" in capsys.readouterr().out


def test_unknown_setting_is_a_one_line_error(tiny_data, tmp_path, capsys):
    assert main(["train", "--dataset", "Tiny", "--out", str(tmp_path / "r"), "--set", "hiden_size=3"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "hiden_size" in err[0]
    assert not (tmp_path / "r").exists()


def test_bad_setting_type_is_an_error(tiny_data, tmp_path, capsys):
    assert main(["train", "--dataset", "Tiny", "--out", str(tmp_path / "r"), "--set", "lr=fast"]) == 2
    assert "lr" in capsys.readouterr().err


def test_parser_builds():
    assert build_parser().prog == "s3rec"


def test_every_committed_result_has_its_run_records_beside_it():
    """The committed reports (docs/results/reproduce) trace each number to the record beside them
    (``runs.json``: each finished run's results and config; the t-tests; ``test_ranks.npz``), and those
    records are in the repository (in CI's clean clone this also catches an ignore rule hiding them)."""
    import csv
    import json
    from pathlib import Path

    root = Path(__file__).resolve().parent.parent / "docs" / "results" / "reproduce"
    records = sorted(root.glob("*/runs.json"))
    assert records, "no committed reports"
    assert sorted(p.parent for p in root.glob("*/report.md")) == [p.parent for p in records]
    missing = []
    for path in records:
        record = json.loads(path.read_text())
        for run in record["grid"]["runs"]:
            if run["status"] == "done":
                rec = record["runs"].get(run["id"], {})
                for name in ("results", "config"):
                    if not rec.get(name):
                        missing.append(f"{path.parent.name}/{run['id']}: {name}")
        # every number of the runs table is the record's
        for row in csv.DictReader(open(next(path.parent.glob("*_runs.csv")))):
            if row["status"] == "done":
                test = record["runs"][row["run"]]["results"]["test"]
                for metric, value in row.items():
                    if metric in test and float(value) != float(f"{test[metric]:.6g}"):
                        missing.append(f"{path.parent.name}/{row['run']}: {metric} {value} not recorded")
        # every t-test of the significance table is the record's
        for sig in path.parent.glob("*_significance.csv"):
            recorded = {(s["dataset"], s["ours"], s["baseline"]): s for s in record.get("significance", [])}
            for row in csv.DictReader(open(sig)):
                s = recorded.get((row["dataset"], row["ours"], row["baseline"]))
                if row["t"] and (s is None or float(row["t"]) != s["t"] or float(row["p"]) != s["p"]):
                    missing.append(f"{sig.name}: {row['dataset']} {row['ours']} vs {row['baseline']} not recorded")
    assert not missing, f"{len(missing)} run records missing, e.g. {missing[:3]}"
    repo = root.parent.parent.parent
    if (repo / ".git").exists():  # in a working copy: the records must also be tracked, not only present
        import subprocess

        listed = subprocess.run(["git", "ls-files", "docs/results/reproduce"], cwd=repo, capture_output=True,
                                text=True)
        if listed.returncode == 0:
            tracked = set(listed.stdout.split())
            kept = [*records, *root.glob("*/test_ranks.npz")]
            untracked = [str(p.relative_to(repo)) for p in kept if str(p.relative_to(repo)) not in tracked]
            assert not untracked, f"{len(untracked)} run records not in git, e.g. {untracked[:3]}"


def test_benchmark_records_say_what_when_where_and_how(tmp_path):
    import json

    from s3rec.bench import write_record

    out = tmp_path / "results" / "x.json"
    record = write_record(out, "x", "python benchmarks/x.py --rounds 3", results=[{"speedup": 1.5}])
    assert json.loads(out.read_text()) == record
    assert list(record)[:4] == ["benchmark", "date", "machine", "command"]
    assert record["date"].startswith("20") and "torch" in record["machine"] and record["results"][0]["speedup"] == 1.5
    assert [p.name for p in out.parent.iterdir()] == ["x.json"]  # written atomically, no temporary left
