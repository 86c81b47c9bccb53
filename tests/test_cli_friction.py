"""Everyday frictions: the optional extras (a missing one is a one-line error naming it), the run
folder's log.txt and TensorBoard files, `s3rec report RUN_DIR`, --quiet, --debug after the
subcommand, an example in every --help."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import one_error_line
from s3rec.cli import build_parser, main, subcommand_parsers
from s3rec.errors import S3RecError

ROOT = Path(__file__).resolve().parents[1]
SMALL = ["--quiet", "--set", "hidden_size=16", "--set", "batch_size=8"]
TRAIN = ["train", "--dataset", "Tiny", *SMALL]
PRE = ["pretrain", "--dataset", "Tiny", *SMALL]
TB_MODULES = ("tensorboard", "torch.utils.tensorboard")


def _snapshot(root: Path) -> dict[str, bytes | None]:
    return {str(p.relative_to(root)): p.read_bytes() if p.is_file() else None for p in sorted(root.rglob("*"))}


def _one_error(capsys) -> str:
    return one_error_line(capsys.readouterr().err)


def _hide(monkeypatch, *modules: str) -> None:
    """Make ``import MODULE`` fail as if it were not installed."""
    for name in modules:
        monkeypatch.setitem(sys.modules, name, None)


def _log_lines(run: Path) -> list[str]:
    """log.txt without its time stamps."""
    stamp = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d ")
    lines = (run / "log.txt").read_text(encoding="utf-8").splitlines()
    return [stamp.sub("", line) for line in lines]


# --- the extras ------------------------------------------------------------------------------------


def _extras() -> dict[str, list[str]]:
    import tomllib

    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {"": project["dependencies"], **project["optional-dependencies"]}


def test_heavy_dependencies_are_extras_and_the_tests_install_them_all():
    extras = _extras()
    core = " ".join(extras[""])
    for package in ("pyarrow", "optuna", "matplotlib", "tensorboard"):
        assert package not in core
    assert set(extras) >= {"data", "tune", "report", "tensorboard", "all", "test"}
    [everything] = extras["all"]
    assert set(everything.removeprefix("s3rec[").removesuffix("]").split(",")) == set(extras) - {"", "all", "test"}
    assert "s3rec[all]" in extras["test"]
    # every extra a command names when it is missing exists
    named = {m for p in (ROOT / "src" / "s3rec").rglob("*.py")
             for m in re.findall(r"require\(\"[\w.]+\", \"(\w+)\"", p.read_text(encoding="utf-8"))}
    assert named >= {"data", "tune", "report", "tensorboard"} and named <= set(extras)
    # CI installs the test extra (the README's test command)
    assert "'.[test]'" in (ROOT / ".ci" / "run").read_text() and "'.[test]'" in (ROOT / "README.md").read_text()


@pytest.mark.parametrize("argv, module, extra", [
    (["tune", "--dataset", "Tiny", "--trials", "1", "--study-dir", "study"], "optuna", "tune"),
    (["data", "import", "in.csv", "--out", "out"], "pyarrow", "data"),
    (["data", "prepare", "lastfm", "--tags", "tags.dat", "--out", "out"], "pyarrow", "data"),
    (["data", "export", "Tiny", "--out", "out"], "pyarrow", "data"),
    (["data", "synth", "--out", "log.csv", "--users", "10", "--items", "10", "--interactions", "60"], "pyarrow", "data"),
    ([*TRAIN, "--epochs", "1", "--tensorboard", "--out", "run"], "tensorboard", "tensorboard"),
    ([*PRE, "--epochs", "1", "--tensorboard", "--out", "run"], "tensorboard", "tensorboard"),
])
def test_a_missing_extra_is_one_line_naming_it(tiny_data, tmp_path, monkeypatch, capsys, argv, module, extra):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "in.csv").write_text("user,item,timestamp\n1,1,1\n")
    _hide(monkeypatch, module, *(TB_MODULES if module == "tensorboard" else ()))
    before = _snapshot(tmp_path)
    assert main(argv) == 2
    line = _one_error(capsys)
    assert line.endswith(f"needs {module}: pip install 's3rec[{extra}]'"), line
    assert line.startswith(f"s3rec: error: s3rec {argv[0]}") or "--tensorboard" in line
    assert _snapshot(tmp_path) == before  # nothing written: no study folder, no run folder, no negatives


def test_report_of_a_run_without_matplotlib_is_one_line(tiny_data, tmp_path, monkeypatch, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "1", "--out", str(run)]) == 0
    capsys.readouterr()
    _hide(monkeypatch, "matplotlib")
    assert main(["report", str(run)]) == 2
    assert _one_error(capsys) == "s3rec: error: s3rec report's plots needs matplotlib: pip install 's3rec[report]'"
    assert not (run / "curves.png").exists()


def test_report_of_an_experiment_without_matplotlib_writes_its_tables(tmp_path, monkeypatch, capsys):
    from s3rec.reproduce.experiment import load_experiment, narrowed
    from s3rec.reproduce.plan import make_plan
    from s3rec.reproduce.runner import write_grid

    plan = make_plan(narrowed(load_experiment("ablation"), ["Beauty"], [1]), tmp_path / "runs" / "ablation",
                     tmp_path / "runs" / "pretrain")
    write_grid(plan)
    metrics = dict.fromkeys(("HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR"), 0.1)
    plan.runs[0].dir.mkdir(parents=True)
    (plan.runs[0].dir / "results.json").write_text(json.dumps({"test": metrics, "valid": metrics, "best_epoch": 1,
                                                               "epochs": 1, "seconds": 1.0}))
    _hide(monkeypatch, "matplotlib")
    assert main(["report", str(tmp_path / "runs" / "ablation"), "--out", str(tmp_path / "report")]) == 0
    assert "warning: no plots: matplotlib is not installed (pip install 's3rec[report]')" in capsys.readouterr().err
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Not drawn: matplotlib is not installed" in text and "0.1000" in text
    assert (tmp_path / "report" / "ablation.csv").is_file() and not (tmp_path / "report" / "ablation.png").exists()


BLOCK = """
import sys
BLOCKED = {"pyarrow", "optuna", "matplotlib", "tensorboard"}
class Block:
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"No module named {name!r} (blocked)")
sys.meta_path.insert(0, Block())
from s3rec.cli import main
for argv in ARGVS:
    rc = main(argv)
    assert rc == 0, (argv, rc)
print("loaded:", sorted(m for m in BLOCKED if m in sys.modules))
"""


def test_the_main_job_needs_no_extra(tiny_data, tmp_path):
    """What `pip install -e .` alone runs: pre-training, fine-tuning, evaluation, recommendations."""
    run = tmp_path / "run"
    argvs = [["run", "--dataset", "Tiny", "--pretrain-epochs", "1", "--quiet", "--pretrain-set", "hidden_size=16",
              "--set", "epochs=1", "--set", "batch_size=8", "--out", str(run)],
             ["evaluate", str(run / "finetune")],
             ["recommend", str(run / "finetune"), "-k", "3", "--out", str(tmp_path / "recs.csv")],
             ["data", "stats", "Tiny"]]
    res = subprocess.run([sys.executable, "-c", f"ARGVS = {argvs!r}\n" + BLOCK], capture_output=True, text=True,
                         timeout=300, cwd=tmp_path)
    assert res.returncode == 0, res.stderr[-3000:]
    assert "loaded: []" in res.stdout
    assert (run / "finetune" / "log.txt").is_file() and not list(run.rglob("events.out.tfevents.*"))
    assert (tmp_path / "recs.csv").read_text().count("\n") > 1


# --- the run folder's log.txt ----------------------------------------------------------------------


def test_train_logs_what_it_prints_into_the_run_folder(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    log = _log_lines(run)
    assert log[0].startswith("Tiny: 40 users, 150 items; sasrec from scratch; protocol sampled")
    assert [x.split()[:2] for x in log if x.startswith("epoch")] == [["epoch", "1"], ["epoch", "2"]]
    assert any(x.startswith("test metrics, Tiny") for x in log) and "MRR" in log[-1]
    # --quiet: the per-epoch lines are in log.txt only; the rest is on stderr too
    assert "epoch   1" not in err and log[0] in err and "test metrics, Tiny" in err


def test_without_quiet_the_epoch_lines_are_on_stderr(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    argv = [a for a in TRAIN if a != "--quiet"]
    assert main([*argv, "--epochs", "1", "--out", str(run)]) == 0
    err = capsys.readouterr().err
    assert "epoch   1 loss" in err and any(x.startswith("epoch   1 loss") for x in _log_lines(run))


def test_resume_appends_to_the_log_and_overwrite_begins_it_anew(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--out", str(run)]) == 0
    (run / "results.json").unlink()  # as if it had been stopped after its last epoch
    assert main([*TRAIN, "--epochs", "2", "--out", str(run), "--resume"]) == 0
    log = _log_lines(run)
    assert sum(x.startswith("epoch") for x in log) == 2 and f"resuming {run} after epoch 2" in log
    assert sum(x.startswith("test metrics") for x in log) == 2
    assert main([*TRAIN, "--epochs", "1", "--out", str(run), "--overwrite"]) == 0
    log = _log_lines(run)
    assert sum(x.startswith("epoch") for x in log) == 1 and not any(x.startswith("resuming") for x in log)


def test_pretrain_and_run_log_into_each_run_folder(tiny_data, tmp_path):
    pre = tmp_path / "pre"
    assert main([*PRE, "--epochs", "2", "--out", str(pre)]) == 0
    log = _log_lines(pre)
    assert "pre-training instances per epoch, 2 epochs" in log[0]
    assert [x.split()[:2] for x in log[1:]] == [["pretrain", "1/2"], ["pretrain", "2/2"]]
    run = tmp_path / "run"
    assert main(["run", "--dataset", "Tiny", "--pretrain-epochs", "1", "--quiet", "--pretrain-set", "hidden_size=16",
                 "--set", "epochs=1", "--set", "batch_size=8", "--out", str(run)]) == 0
    assert any(x.startswith("pretrain   1/1") for x in _log_lines(run / "pretrain"))
    assert any(x.startswith("epoch   1") for x in _log_lines(run / "finetune"))


def test_an_error_that_ends_a_run_is_in_its_log(tiny_data, tmp_path, monkeypatch, capsys):
    from s3rec import train

    real = train.train_epoch

    def failing(model, optimizer, st, users, cfg, gen, progress=False, desc="", world=None):
        if desc == "epoch 2":
            raise S3RecError("the disk is on fire")
        return real(model, optimizer, st, users, cfg, gen, progress, desc, world)

    monkeypatch.setattr(train, "train_epoch", failing)
    run = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "3", "--out", str(run)]) == 2
    assert capsys.readouterr().err.strip().splitlines()[-1] == "s3rec: error: the disk is on fire"
    assert _log_lines(run)[-1] == "s3rec: error: the disk is on fire"

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(train, "train_epoch", interrupted)
    assert main([*TRAIN, "--epochs", "3", "--out", str(run), "--resume"]) == 130
    assert _log_lines(run)[-1] == "s3rec: interrupted (a run continues with --resume)"


def test_a_run_that_failed_at_its_start_with_its_log_does_not_block(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "1", "--out", str(run)]) == 0
    for path in run.iterdir():
        if path.name not in ("config.json", "log.txt"):
            path.unlink()
    assert main([*TRAIN, "--epochs", "1", "--out", str(run)]) == 0
    assert sum(x.startswith("epoch") for x in _log_lines(run)) == 1  # begun anew


def test_a_log_txt_of_yours_is_never_taken_for_a_runs(tiny_data, tmp_path, capsys):
    mine = tmp_path / "mine"
    mine.mkdir()
    (mine / "log.txt").write_text("my notes\n")
    assert main([*TRAIN, "--epochs", "1", "--out", str(mine)]) == 2
    assert "not empty" in _one_error(capsys)
    assert (mine / "log.txt").read_text() == "my notes\n" and sorted(p.name for p in mine.iterdir()) == ["log.txt"]


def test_the_api_writes_the_log_too(tiny_data, tmp_path):
    import s3rec

    run = s3rec.finetune("Tiny", protocol="full", out=tmp_path / "api", epochs=1, hidden_size=16, batch_size=8)
    assert any(x.startswith("epoch   1") for x in _log_lines(run.dir))


# --- TensorBoard -----------------------------------------------------------------------------------


def _scalars(run: Path) -> dict[str, list[int]]:
    """tag -> the steps recorded, from the run folder's event files (read with tensorboard itself)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(run))
    acc.Reload()
    return {tag: [e.step for e in acc.Scalars(tag)] for tag in acc.Tags()["scalars"]}


def test_tensorboard_files_when_tensorboard_is_installed(tiny_data, tmp_path):
    run = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--set", "patience=5", "--out", str(run)]) == 0
    assert len(list(run.glob("events.out.tfevents.*"))) == 1
    tags = _scalars(run)
    assert tags["loss/train"] == [1, 2] and tags["valid/MRR"] == [1, 2] and tags["lr"] == [1, 2]
    assert {"valid/HR@10", "valid/NDCG@10", "seconds/epoch"} <= set(tags)
    pre = tmp_path / "pre"
    assert main([*PRE, "--epochs", "2", "--out", str(pre)]) == 0
    tags = _scalars(pre)
    assert tags["loss/pretrain"] == [1, 2] and {"pretrain/aap", "pretrain/mip", "pretrain/map", "pretrain/sp",
                                                "lr", "instances_per_second"} <= set(tags)
    # --overwrite removes them with the run's other files
    assert main([*TRAIN, "--epochs", "1", "--out", str(run), "--overwrite"]) == 0
    assert len(list(run.glob("events.out.tfevents.*"))) == 1 and _scalars(run)["loss/train"] == [1]


def test_no_tensorboard_files_without_tensorboard_or_with_no_tensorboard(tiny_data, tmp_path, monkeypatch):
    off = tmp_path / "off"
    assert main([*TRAIN, "--epochs", "1", "--no-tensorboard", "--out", str(off)]) == 0
    assert not list(off.glob("events.*")) and (off / "log.txt").is_file()
    _hide(monkeypatch, *TB_MODULES)
    missing = tmp_path / "missing"
    assert main([*TRAIN, "--epochs", "1", "--out", str(missing)]) == 0  # the default: when installed
    assert not list(missing.glob("events.*")) and (missing / "log.txt").is_file()


# --- s3rec report RUN_DIR --------------------------------------------------------------------------


def test_report_plots_a_runs_curves(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    assert main([*TRAIN, "--epochs", "2", "--out", str(run)]) == 0
    capsys.readouterr()
    assert main(["report", str(run)]) == 0
    assert capsys.readouterr().out.strip() == str(run / "curves.png")
    assert (run / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    both = tmp_path / "both"
    assert main(["run", "--dataset", "Tiny", "--pretrain-epochs", "2", "--quiet", "--pretrain-set", "hidden_size=16",
                 "--set", "epochs=2", "--set", "batch_size=8", "--out", str(both)]) == 0
    assert main(["report", str(both), "--out", str(tmp_path / "plots")]) == 0
    assert (tmp_path / "plots" / "curves.png").stat().st_size > (run / "curves.png").stat().st_size  # two rows


def test_report_of_a_run_without_an_epoch_is_one_line(tiny_data, tmp_path, capsys):
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text("{}")
    assert main(["report", str(run)]) == 2
    assert "no finished epoch yet" in _one_error(capsys)
    (run / "metrics.jsonl").write_text('{"epoch": 1, "loss": 1.0}\nnot json\n')
    assert main(["report", str(run)]) == 2
    assert f"{run / 'metrics.jsonl'}:2:" in _one_error(capsys)
    assert not (run / "curves.png").exists()


# --- --debug, --help examples ----------------------------------------------------------------------


@pytest.mark.parametrize("argv", [["--debug", "data", "stats", "Nope"], ["data", "stats", "Nope", "--debug"],
                                  ["data", "--debug", "stats", "Nope"]])
def test_debug_before_or_after_the_subcommand_shows_the_traceback(tmp_path, argv, capsys):
    with pytest.raises(S3RecError, match="Nope"):
        main([*argv, "--data-dir", str(tmp_path)])
    assert main(["data", "stats", "Nope", "--data-dir", str(tmp_path)]) == 2
    assert "Nope" in _one_error(capsys)


def test_every_help_has_an_example():
    parser = build_parser()
    missing = [p.prog for p in [parser, *subcommand_parsers(parser)] if "examples:" not in p.format_help()]
    assert not missing, f"--help without examples: {missing}"


@pytest.mark.parametrize("argv, prog", [
    (["train", "--dataset", "Tiny", "--bogus"], "s3rec train"),
    (["data", "import", "x.csv", "--out", "d", "--zzz", "1"], "s3rec data import"),
    (["--debug", "pretrain", "--qq"], "s3rec pretrain"),
])
def test_an_unknown_flag_points_to_its_commands_help(argv, prog, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"{prog}: error: unrecognized arguments: ") and err.endswith(f"(see `{prog} --help`)")
    assert len(err.splitlines()) == 1
