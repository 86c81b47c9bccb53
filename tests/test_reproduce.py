"""`s3rec reproduce` and `s3rec report`: grids, dry runs, resumption after a kill, failures, reports,
the paired t-test, and the limited-training-data setting."""

from __future__ import annotations

import dataclasses
import json
import math
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from s3rec.cli import main
from s3rec.config import PretrainConfig, TrainConfig, with_overrides
from s3rec.errors import ConfigError
from s3rec.reproduce import runner as runner_mod
from s3rec.reproduce.experiment import experiment_names, load_experiment, narrowed
from s3rec.reproduce.plan import make_plan
from s3rec.reproduce.report import write_report
from s3rec.reproduce.runner import write_grid
from s3rec.reproduce.stats import paired_ttest, t_two_sided_p
from s3rec.loop import kept_users
from s3rec.train import train_users

SMALL = ["--datasets", "Tiny", "--quiet", "--set", "hidden_size=16", "--set", "batch_size=8",
         "--pretrain-set", "batch_size=50"]
PAPER_EXPERIMENTS = ["table2", "full_ranking", "ablation", "pretrain_others", "limited_data", "pretrain_epochs",
                     "convergence"]
OTHER_EXPERIMENTS = ["strong_finetuning", "strong_negatives", "strong_negatives_sampled", "strong_pretrain_epochs",
                     "strong_sampled"]


def _reproduce(tmp_path, name, *extra) -> int:
    return main(["reproduce", name, *SMALL, "--out", str(tmp_path / "runs" / name), *extra])


def _grid(tmp_path, name) -> dict:
    return json.loads((tmp_path / "runs" / name / "grid.json").read_text())


# ---- definitions, plans, dry runs --------------------------------------------------------------


def test_help_lists_every_experiment(capsys):
    with pytest.raises(SystemExit) as e:
        main(["reproduce", "--help"])
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in PAPER_EXPERIMENTS + OTHER_EXPERIMENTS)
    assert experiment_names() == PAPER_EXPERIMENTS + OTHER_EXPERIMENTS


@pytest.mark.parametrize("name", PAPER_EXPERIMENTS + OTHER_EXPERIMENTS)
def test_dry_run_shows_grid_and_cost_and_writes_nothing(name, tmp_path, capsys):
    out = tmp_path / "runs" / name
    assert main(["reproduce", name, "--dry-run", "--out", str(out)]) == 0
    text = capsys.readouterr().out
    exp = load_experiment(name)
    per_dataset = {d: sum(m.applies(d) for m in exp.methods) * len(exp.seeds) * max(len(exp.vary_values), 1)
                   for d in exp.datasets}
    assert f"= {sum(per_dataset.values())} fine-tuning runs" in text
    assert re.search(r"estimated time to finish: [0-9.]+ (s|min|h) on one", text)
    for d, n in per_dataset.items():
        assert sum(line.startswith(d + "-") for line in text.splitlines()) == n
    assert not out.exists() and not (tmp_path / "runs" / "pretrain").exists()


def test_plans_share_pretraining_between_experiments(tmp_path):
    out = tmp_path / "runs"

    def plan(name, **kw):
        return make_plan(narrowed(load_experiment(name), **kw), out / name, out / "pretrain")

    t2, fig5, abl = plan("table2"), plan("pretrain_epochs", datasets=["Beauty"]), plan("ablation", datasets=["Beauty"])
    beauty = {p.id: p for p in t2.pretrains}["Beauty-default-seed42"]
    assert beauty.checkpoints == (150,) and beauty.cfg.epochs == 150
    # Fig. 5 uses the same pre-training run, with checkpoints every 10 epochs; epoch 0 is SASRec from scratch
    [shared] = fig5.pretrains
    assert shared.dir == beauty.dir and shared.checkpoints == tuple(range(10, 151, 10)) and shared.cfg.save_every == 10
    zero = [r for r in fig5.runs if r.pretrain_epoch == 0]
    assert len(zero) == 3 and all(r.cfg.init == "" and r.pretrain is None for r in zero)
    assert {r.cfg.init for r in fig5.runs if r.pretrain_epoch == 10} == {str((beauty.dir / "pretrain-epoch-10.pt").resolve())}
    # every fine-tuning seed of a method starts from the one pre-training run; ablations get their own
    assert len(abl.pretrains) == 5 and "Beauty-default-seed42" in {p.id for p in abl.pretrains}
    assert "Beauty-seed42" not in {p.id for p in abl.pretrains}
    assert {p.id for p in abl.pretrains} >= {"Beauty-sp_weight=0-seed42", "Beauty-aap_weight=0-seed42"}
    # Fig. 3: SASRec pre-trains causally (its own run); GRU4Rec, GRU4Rec_F and SASRec_F pre-train
    # themselves (a backbone each, with the fine-tuning model's shape); Caser and AutoInt share the default one
    others = plan("pretrain_others")
    kinds = ("default", "causal=True", "backbone=sasrec_f", "attn_dropout=0,backbone=gru4rec,n_layers=1",
             "attn_dropout=0,backbone=gru4rec_f,n_layers=1")
    assert {p.id for p in others.pretrains} == {f"{d}-{k}-seed42" for d in ("Beauty", "Toys") for k in kinds}
    assert all(p.cfg.causal == ("causal" in p.id) for p in others.pretrains)
    assert not any(r.unsupported for r in others.runs)
    for r in others.runs:
        if r.pretrain is not None and r.pretrain.cfg.backbone != "s3rec":
            assert r.pretrain.cfg.backbone == r.cfg.model
            assert all(getattr(r.pretrain.cfg, k) == getattr(r.cfg, k) for k in ("n_layers", "n_heads", "hidden_size",
                                                                                   "hidden_dropout", "attn_dropout"))
    # limited data: one pre-training per (dataset, fraction); 100% is the default one
    ld = plan("limited_data")
    assert len(ld.pretrains) == 10 and "Sports-default-seed42" in {p.id for p in ld.pretrains}
    run = next(r for r in ld.runs if r.id == "Yelp-S3-Rec-train_fraction=0.2-seed43")
    assert run.cfg.train_fraction == 0.2 and run.pretrain.cfg.train_fraction == 0.2 and run.cfg.seed == 43


def test_bad_overrides_are_one_line_errors(tmp_path, capsys):
    assert main(["reproduce", "nope", "--dry-run"]) == 2
    assert "table2" in capsys.readouterr().err
    assert main(["reproduce", "table2", "--dry-run", "--set", "seed=3"]) == 2
    assert "--seeds" in capsys.readouterr().err
    assert main(["reproduce", "table2", "--dry-run", "--set", "hiden_size=3"]) == 2
    assert "hiden_size" in capsys.readouterr().err
    assert main(["reproduce", "pretrain_epochs", "--dry-run", "--pretrain-epochs", "5"]) == 2
    assert "--values" in capsys.readouterr().err
    assert main(["reproduce", "ablation", "--dry-run", "--methods", "w/o"]) == 2


# ---- running -----------------------------------------------------------------------------------


def test_report_option_writes_the_report_after_each_finished_run(tiny_data, tmp_path, capsys, monkeypatch):
    import s3rec.reproduce.report as report

    written = []
    real = report.write_experiment_report

    def spy(exp_dir, out_dir):  # the report as it stood after each run
        path = real(exp_dir, out_dir)
        written.append(sorted(json.loads((Path(out_dir) / "runs.json").read_text())["runs"]))
        return path

    monkeypatch.setattr(report, "write_experiment_report", spy)
    out = tmp_path / "kept" / "table2"
    assert _reproduce(tmp_path, "table2", "--methods", "PopRec", "SASRec", "--seeds", "1", "--set", "epochs=1",
                      "--report", str(out)) == 0
    assert written == [["Tiny-PopRec-seed1"], ["Tiny-PopRec-seed1", "Tiny-SASRec-seed1"]]
    text = (out / "report.md").read_text()
    assert "SASRec" in text and "not run" not in text.split("## Test results")[1].split("##")[0]
    assert "report updated: " in capsys.readouterr().err
    # a report that cannot be written is a warning; the grid still finishes
    bad = tmp_path / "a-file"
    bad.write_text("x")
    assert _reproduce(tmp_path, "table2", "--methods", "PopRec", "--seeds", "2", "--set", "epochs=1",
                      "--report", str(bad)) == 0
    assert "warning: the report in" in capsys.readouterr().err
    assert (tmp_path / "runs" / "table2" / "Tiny-PopRec-seed2" / "results.json").is_file()


def test_tiny_grid_runs_end_to_end_and_reports(tiny_data, tmp_path, capsys):
    assert _reproduce(tmp_path, "ablation", "--methods", "S3-Rec", "no-SP", "SASRec", "--seeds", "1", "2",
                      "--pretrain-epochs", "1", "--set", "epochs=1") == 0
    grid = _grid(tmp_path, "ablation")
    assert [r["status"] for r in grid["runs"]] == ["done"] * 6
    assert {p["id"] for p in grid["pretrains"]} == {"Tiny-batch_size=50,hidden_size=16-seed42",
                                                    "Tiny-batch_size=50,hidden_size=16,sp_weight=0-seed42"}
    run = tmp_path / "runs" / "ablation" / "Tiny-S3-Rec-seed2"
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["seed"] == 2 and cfg["hidden_size"] == 16 and cfg["init"].endswith("pretrain-epoch-1.pt")
    ranks = np.load(run / "test_ranks.npy")
    assert ranks.shape == (40,) and ranks.min() >= 1 and ranks.max() <= 100
    res = json.loads((run / "results.json").read_text())
    assert res["test"]["MRR"] == pytest.approx(float(np.mean(1.0 / ranks)), abs=1e-12)
    # the dry run now says everything is done
    capsys.readouterr()
    assert _reproduce(tmp_path, "ablation", "--methods", "S3-Rec", "no-SP", "SASRec", "--seeds", "1", "2",
                      "--pretrain-epochs", "1", "--set", "epochs=1", "--dry-run") == 0
    assert "status: 6 done" in capsys.readouterr().out
    # a pre-training whose runs are all finished is not counted as work left, even when its checkpoint is gone
    sp_pre = tmp_path / "runs" / "pretrain" / "Tiny-batch_size=50,hidden_size=16,sp_weight=0-seed42"
    (sp_pre / "pretrain-epoch-1.pt").rename(tmp_path / "kept.pt")
    assert _reproduce(tmp_path, "ablation", "--methods", "S3-Rec", "no-SP", "SASRec", "--seeds", "1", "2",
                      "--pretrain-epochs", "1", "--set", "epochs=1", "--dry-run") == 0
    text = capsys.readouterr().out
    [line] = [line for line in text.splitlines() if line.startswith("pretrain/" + sp_pre.name)]
    assert "not needed" in line and "estimated time to finish: 0 s" in text
    (tmp_path / "kept.pt").rename(sp_pre / "pretrain-epoch-1.pt")
    assert main(["report", str(tmp_path / "runs" / "ablation"), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "w/o SP" in text and "--set epochs=1" in text
    # the methods no invocation named are listed as not run (the figure is incomplete), never dropped
    not_run = [line.split("|")[1].strip() for line in text.splitlines() if "| not run" in line]
    assert not_run == ["w/o AAP", "w/o MIP", "w/o MAP"]
    assert (tmp_path / "report" / "ablation.png").stat().st_size > 10_000
    # the pre-trainings: their records beside the report, one row each
    pre_rows = [line for line in text.split("## Pre-training runs")[1].splitlines() if line.startswith("| Tiny-")]
    assert len(pre_rows) == 2 and all("| 1 / 1 |" in line for line in pre_rows)
    assert next(line for line in pre_rows if "sp_weight=0" in line).endswith("| no SP |")
    recorded = json.loads((tmp_path / "report" / "runs.json").read_text())["pretrains"]
    for p in grid["pretrains"]:
        assert sorted(recorded[p["id"]]) == ["config", "environment", "metrics"]
        assert len(recorded[p["id"]]["metrics"]) == 1 and recorded[p["id"]]["config"]["epochs"] == 1
    assert (tmp_path / "report" / "ablation.csv").is_file()
    # asking for other settings in the same folder is a conflict, never a silent reuse; the record keeps
    # the earlier, wider grid
    assert _reproduce(tmp_path, "ablation", "--methods", "SASRec", "--seeds", "1", "--set", "epochs=2") == 1
    assert "finished with other settings (epochs)" in capsys.readouterr().err
    statuses = {r["id"]: r["status"] for r in _grid(tmp_path, "ablation")["runs"]}
    assert len(statuses) == 6 and statuses["Tiny-SASRec-seed1"] == "conflict"


def test_killed_reproduction_finishes_without_redoing_finished_runs(tiny_data, tmp_path, capsys):
    args = ["reproduce", "table2", *SMALL, "--methods", "SASRec", "--seeds", "1", "2", "3", "4",
            "--set", "epochs=20", "--set", "patience=20", "--out", str(tmp_path / "runs" / "table2")]
    proc = subprocess.Popen([sys.executable, "-m", "s3rec.cli", *args], env={**os.environ, "OMP_NUM_THREADS": "1"},
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    out = tmp_path / "runs" / "table2"
    deadline = time.time() + 120
    while time.time() < deadline and proc.poll() is None and not list(out.glob("*/results.json")):
        time.sleep(0.01)
    assert proc.poll() is None, "the reproduction finished before it could be killed"
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    finished = {p.parent.name: p.stat().st_mtime_ns for p in out.glob("*/results.json")}
    assert 1 <= len(finished) < 4
    capsys.readouterr()
    assert main(args) == 0
    err = capsys.readouterr().err
    assert f"{len(finished)} finished or unsupported, {4 - len(finished)} to go" in err
    assert all((out / run / "results.json").stat().st_mtime_ns == m for run, m in finished.items())
    assert [r["status"] for r in json.loads((out / "grid.json").read_text())["runs"]] == ["done"] * 4
    # the run killed mid-way resumed and ended as an uninterrupted one would
    reference = tmp_path / "reference"
    assert main(["train", "--dataset", "Tiny", "--quiet", "--set", "hidden_size=16", "--set", "batch_size=8",
                 "--set", "epochs=20", "--set", "patience=20", "--seed", "4", "--out", str(reference)]) == 0
    assert json.loads((out / "Tiny-SASRec-seed4" / "results.json").read_text())["test"] == \
        json.loads((reference / "results.json").read_text())["test"]


def test_failures_are_recorded_and_retried_on_request(tiny_data, tmp_path, monkeypatch, capsys):
    real_finetune, real_pretrain = runner_mod.Runner.run_finetune, runner_mod.Runner.run_pretrain
    calls = []

    def flaky_finetune(self, run):
        calls.append(run.id)
        if run.seed == 2:
            raise RuntimeError("boom")
        return real_finetune(self, run)

    def broken_pretrain(self, run):
        raise ValueError("no pre-training today")

    monkeypatch.setattr(runner_mod.Runner, "run_finetune", flaky_finetune)
    monkeypatch.setattr(runner_mod.Runner, "run_pretrain", broken_pretrain)
    grid = ["--methods", "SASRec", "S3-Rec", "--seeds", "1", "2", "--pretrain-epochs", "1", "--set", "epochs=1"]
    assert _reproduce(tmp_path, "table2", *grid) == 1
    err = capsys.readouterr().err
    out = tmp_path / "runs" / "table2"
    assert "Tiny-SASRec-seed2: RuntimeError: boom" in err
    assert (out / "Tiny-SASRec-seed1" / "results.json").is_file()
    assert (out / "Tiny-SASRec-seed2" / "error.txt").read_text().startswith("RuntimeError: boom")
    assert "blocked: pre-training" in (out / "Tiny-S3-Rec-seed1" / "error.txt").read_text()
    statuses = {r["id"]: r["status"] for r in _grid(tmp_path, "table2")["runs"]}
    assert statuses == {"Tiny-SASRec-seed1": "done", "Tiny-SASRec-seed2": "failed",
                        "Tiny-S3-Rec-seed1": "failed", "Tiny-S3-Rec-seed2": "failed"}
    # a restart reports the failures and does not run them again
    calls.clear()
    assert _reproduce(tmp_path, "table2", *grid) == 1
    assert calls == []
    # --retry-failed runs them again (and the pre-training they need)
    monkeypatch.setattr(runner_mod.Runner, "run_finetune", real_finetune)
    monkeypatch.setattr(runner_mod.Runner, "run_pretrain", real_pretrain)
    assert _reproduce(tmp_path, "table2", *grid, "--retry-failed") == 0
    assert {r["status"] for r in _grid(tmp_path, "table2")["runs"]} == {"done"}
    assert not list(out.glob("*/error.txt"))


def test_a_failing_pre_training_is_retried_once_not_once_per_run_that_needs_it(tiny_data, tmp_path, monkeypatch,
                                                                              capsys):
    attempts = []

    def broken_pretrain(self, run):
        attempts.append(run.id)
        raise ValueError("disk full")

    monkeypatch.setattr(runner_mod.Runner, "run_pretrain", broken_pretrain)
    grid = ["--methods", "S3-Rec", "--seeds", "1", "2", "3", "--pretrain-epochs", "1", "--set", "epochs=1"]
    assert _reproduce(tmp_path, "table2", *grid) == 1
    assert len(attempts) == 1  # the three runs that need it: one attempt, then "failed earlier"
    out = tmp_path / "runs" / "table2"
    for seed in (1, 2, 3):
        assert "blocked: pre-training" in (out / f"Tiny-S3-Rec-seed{seed}" / "error.txt").read_text()
    attempts.clear()
    assert _reproduce(tmp_path, "table2", *grid, "--retry-failed") == 1  # fails again: once, not three times
    assert len(attempts) == 1
    assert "disk full" in capsys.readouterr().err
    [pre] = _grid(tmp_path, "table2")["pretrains"]
    assert pre["status"] == "failed" and "disk full" in pre["error"]


def test_waiting_says_now_and_then_which_runs_it_still_waits_for(tiny_data, tmp_path, monkeypatch, capsys):
    """--wait polls every WAIT_POLL_SECONDS; every WAIT_NOTE_SECONDS of waiting it names the runs held."""
    from s3rec.fileio import try_lock

    out = tmp_path / "runs" / "table2"
    clock = [1000.0]
    monkeypatch.setattr(runner_mod.time, "time", lambda: clock[0])
    polls = []

    def sleep(seconds):
        polls.append(seconds)
        clock[0] += seconds
        if len(polls) == 80:  # ~27 minutes of waiting: the other process lets go
            held.__exit__(None, None, None)

    monkeypatch.setattr(runner_mod, "_sleep", sleep)
    held = try_lock(out / ".locks" / "Tiny-SASRec-seed1.lock")
    assert held.__enter__()
    assert _reproduce(tmp_path, "table2", "--methods", "SASRec", "--seeds", "1", "--set", "epochs=1", "--wait") == 0
    err = capsys.readouterr().err
    assert set(polls) == {runner_mod.WAIT_POLL_SECONDS}
    notes = [line for line in err.splitlines() if "still waiting for 1 runs" in line]
    assert len(notes) == int(80 * runner_mod.WAIT_POLL_SECONDS // runner_mod.WAIT_NOTE_SECONDS) and "Tiny-SASRec-seed1" in notes[0]
    assert (out / "Tiny-SASRec-seed1" / "results.json").is_file()


# ---- reports on fabricated results --------------------------------------------------------------


def _fabricate(run_dir: Path, metrics: dict, ranks=None, curve=None) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    full = {k: metrics.get(k, 0.1) for k in ("HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR")}
    (run_dir / "results.json").write_text(json.dumps({"test": full, "valid": full, "best_epoch": 3, "epochs": 5,
                                                      "seconds": 1.0}))
    if ranks is not None:
        np.save(run_dir / "test_ranks.npy", np.asarray(ranks, dtype=np.int32))
    if curve is not None:
        (run_dir / "metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e + 1, "loss": 1.0, "valid": {"NDCG@10": v, "MRR": v}, "seconds": 0.1}) + "\n"
            for e, v in enumerate(curve)))


def _fabricated_plan(tmp_path, name, **kw):
    plan = make_plan(narrowed(load_experiment(name), **kw), tmp_path / "runs" / name, tmp_path / "runs" / "pretrain")
    write_grid(plan)
    return plan


@pytest.fixture
def reference(monkeypatch):
    """The paper's tables are read from the shared reference folder (never copied into the repo)."""
    from conftest import shared_reference_dir

    folder = shared_reference_dir()
    if not (folder / "paper_sampled99.csv").is_file():
        pytest.skip(f"no reference files in {folder}")
    monkeypatch.setenv("S3REC_REFERENCE_DIR", str(folder))
    return folder


def test_report_without_reference_files_has_no_paper_values(tmp_path, monkeypatch):
    from s3rec.paper import paper_value

    monkeypatch.setenv("S3REC_REFERENCE_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("S3REC_DATA_DIR", str(tmp_path / "no-data"))
    assert paper_value("sampled", "Beauty", "S3-Rec", "MRR") is None


def test_s3rec_report_warns_when_the_paper_tables_are_not_found(tmp_path, monkeypatch, capsys):
    _fabricated_plan(tmp_path, "table2", datasets=["Beauty"], seeds=[1], methods=["SASRec"])
    args = ["report", str(tmp_path / "runs" / "table2"), "--out", str(tmp_path / "report")]
    monkeypatch.setenv("S3REC_REFERENCE_DIR", str(tmp_path / "nowhere"))
    monkeypatch.setenv("S3REC_DATA_DIR", str(tmp_path / "no-data"))
    assert main(args) == 0
    err = capsys.readouterr().err
    assert "warning: the paper's tables" in err and str(tmp_path / "nowhere") in err
    ref = tmp_path / "ref"
    ref.mkdir()
    (ref / "paper_sampled99.csv").write_text("dataset,metric,method,value\nBeauty,HR@1,SASRec,0.1\n")
    monkeypatch.setenv("S3REC_REFERENCE_DIR", str(ref))
    assert main(args) == 0
    assert "warning" not in capsys.readouterr().err


def test_report_tables_mark_what_did_not_run(tmp_path, reference):
    plan = _fabricated_plan(tmp_path, "table2", datasets=["Beauty"], seeds=[1, 2])
    runs = {r.id: r for r in plan.runs}
    rng = np.random.default_rng(0)
    ours_ranks = [rng.integers(1, 20, 50), rng.integers(1, 20, 50)]
    base_ranks = [rng.integers(1, 40, 50), rng.integers(1, 40, 50)]
    for seed, mrr in ((1, 0.33), (2, 0.35)):
        _fabricate(runs[f"Beauty-S3-Rec-seed{seed}"].dir, {"MRR": mrr, "NDCG@10": 0.37}, ours_ranks[seed - 1])
        _fabricate(runs[f"Beauty-SASRec-seed{seed}"].dir, {"MRR": 0.28}, base_ranks[seed - 1])
    _fabricate(runs["Beauty-FDSA-seed1"].dir, {"MRR": 0.25}, base_ranks[0])
    runs["Beauty-HGN-seed1"].dir.mkdir(parents=True)
    (runs["Beauty-HGN-seed1"].dir / "error.txt").write_text("RuntimeError: out of memory\n")
    [path] = write_report(tmp_path / "runs" / "table2", tmp_path / "report")
    text = path.read_text()
    s3 = next(line for line in text.splitlines() if line.startswith("| S3-Rec |"))
    assert "0.3400 ± 0.0141 (paper 0.3340, +1.8%)" in s3  # MRR: mean, std over seeds, paper, relative difference
    assert "| FDSA | " in text and "[1/2]" in next(line for line in text.splitlines() if line.startswith("| FDSA |"))
    assert "| PopRec | not run (paper 0.0678) |" in text
    assert "| HGN | failed" in text and "out of memory" in text
    # the paired t-test against the best baseline by MRR (SASRec), reciprocal ranks averaged over seeds
    expected = paired_ttest(np.mean([1 / r for r in ours_ranks], 0), np.mean([1 / r for r in base_ranks], 0))
    sig = (tmp_path / "report" / "table2_significance.csv").read_text().splitlines()
    assert sig[1].startswith("Beauty,S3-Rec,SASRec,MRR,") and f"{expected.p:.6g}" in sig[1]
    cells = (tmp_path / "report" / "table2.csv").read_text().splitlines()
    assert any(",PopRec,PopRec,,,MRR,0,2,,,0.1558,,not run" in c for c in cells)
    # every finished run's records are in the report's record (not the failed one's, no checkpoints)
    record = json.loads((tmp_path / "report" / "runs.json").read_text())
    assert sorted(record["runs"]) == ["Beauty-FDSA-seed1", "Beauty-S3-Rec-seed1", "Beauty-S3-Rec-seed2",
                                      "Beauty-SASRec-seed1", "Beauty-SASRec-seed2"]
    assert record["runs"]["Beauty-S3-Rec-seed2"]["results"]["test"]["MRR"] == 0.35
    assert record["grid"] == json.loads((tmp_path / "runs" / "table2" / "grid.json").read_text())
    assert sorted(p.name for p in (tmp_path / "report").iterdir() if p.is_dir()) == []  # no per-run folders


def test_a_report_rebuilt_from_its_own_records_keeps_its_significance_tests(tmp_path):
    """A fresh checkout has the committed report, not the runs: scripts/restore_runs.py writes the
    record back into a runs folder, and the report made from it has the same p-values, read from
    the compact ranks the first report recorded (uint8 under the sampled protocol)."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "scripts"))
    import restore_runs

    plan = _fabricated_plan(tmp_path, "table2", datasets=["Beauty"], seeds=[1])
    runs = {r.id: r for r in plan.runs}
    rng = np.random.default_rng(1)
    _fabricate(runs["Beauty-S3-Rec-seed1"].dir, {"MRR": 0.33}, rng.integers(1, 101, 300))
    _fabricate(runs["Beauty-SASRec-seed1"].dir, {"MRR": 0.28}, rng.integers(1, 101, 300))
    write_report(tmp_path / "runs" / "table2", tmp_path / "report")
    kept = tmp_path / "report" / "test_ranks.npz"  # one file, an array per run
    with np.load(kept) as z:
        assert sorted(z.files) == ["Beauty-S3-Rec-seed1", "Beauty-SASRec-seed1"]
        assert z["Beauty-S3-Rec-seed1"].dtype == np.uint8
        assert np.array_equal(z["Beauty-S3-Rec-seed1"], np.load(runs["Beauty-S3-Rec-seed1"].dir / "test_ranks.npy"))
    first = (tmp_path / "report" / "table2_significance.csv").read_text()
    assert ",0." in first.splitlines()[1]  # a p-value, not "ranks missing"

    counts = restore_runs.restore(tmp_path / "report", tmp_path / "fresh", log=lambda m: None)
    assert counts == {"report": 2}  # one report folder NAME, restored into fresh/NAME
    [path] = write_report(tmp_path / "fresh" / "report", tmp_path / "again")
    assert (tmp_path / "again" / "table2_significance.csv").read_text() == first
    assert restore_runs.restore(tmp_path / "report", tmp_path / "fresh") == {"report": 0}  # no overwriting
    # a folder of reports is restored report by report, beside what the runs folder holds already
    (tmp_path / "all" / "other").mkdir(parents=True)
    assert restore_runs.restore(tmp_path, tmp_path / "all", log=lambda m: None) == {"again": 2, "report": 2}
    assert sorted(p.name for p in (tmp_path / "all").iterdir()) == ["again", "other", "report"]
    # a run folder already there (failed, partial or running) is left alone, not completed with records
    partial = tmp_path / "partial" / "report" / "Beauty-SASRec-seed1"
    partial.mkdir(parents=True)
    (partial / "error.txt").write_text("RuntimeError: boom\n")
    notes = []
    assert restore_runs.restore(tmp_path / "report", tmp_path / "partial", log=notes.append) == {"report": 1}
    assert sorted(p.name for p in partial.iterdir()) == ["error.txt"]
    assert notes == []  # it had no grid.json: the report's is written
    assert (tmp_path / "partial" / "report" / "grid.json").is_file()
    # a report without kept ranks (made before they were kept) says so instead of testing
    kept.unlink()
    restore_runs.restore(tmp_path / "report", tmp_path / "older", log=lambda m: None)
    write_report(tmp_path / "older" / "report", tmp_path / "older-report")
    assert "per-user ranks missing" in (tmp_path / "older-report" / "table2_significance.csv").read_text()


def test_a_report_made_again_in_place_keeps_significance_rows_whose_ranks_were_never_committed(tmp_path):
    """T-tests made before ranks were recorded: regenerated in place from restored records, a row
    keeps the t-test the report's record holds, marked (kept), only while its MRR means equal the runs' now."""
    from s3rec.reproduce.significance import RANKS_MISSING

    plan = _fabricated_plan(tmp_path, "table2", datasets=["Beauty"], seeds=[1])
    runs = {r.id: r for r in plan.runs}
    rng = np.random.default_rng(3)
    s3, sas = rng.integers(1, 101, 300), rng.integers(1, 101, 300)
    _fabricate(runs["Beauty-S3-Rec-seed1"].dir, {"MRR": float(np.mean(1.0 / s3))}, s3)
    _fabricate(runs["Beauty-SASRec-seed1"].dir, {"MRR": float(np.mean(1.0 / sas))}, sas)
    report = tmp_path / "report"
    write_report(tmp_path / "runs" / "table2", report)
    first = (report / "table2_significance.csv").read_text().splitlines()[1].split(",")
    for r in runs.values():  # the ranks were never committed
        (r.dir / "test_ranks.npy").unlink(missing_ok=True)
    (report / "test_ranks.npz").unlink()
    [path] = write_report(tmp_path / "runs" / "table2", report)
    row = (report / "table2_significance.csv").read_text().splitlines()[1].split(",")
    assert row[:9] == first[:9] and row[9] == "kept"
    assert "(kept)" in path.read_text() and "Marked (kept)" in path.read_text()
    # a run that changed since (another MRR): the earlier row is not its test, so ranks stay missing
    res = runs["Beauty-SASRec-seed1"].dir / "results.json"
    record = json.loads(res.read_text())
    record["test"]["MRR"] += 0.001
    res.write_text(json.dumps(record))
    [path] = write_report(tmp_path / "runs" / "table2", report)
    assert RANKS_MISSING in (report / "table2_significance.csv").read_text()
    assert "(kept)" not in path.read_text()
    # ... and once missing, nothing is left to keep: a report into a new folder has nothing either
    [other] = write_report(tmp_path / "runs" / "table2", tmp_path / "elsewhere")
    assert "(kept)" not in other.read_text()


def test_compact_ranks_take_the_smallest_type_and_refuse_non_ranks(tmp_path):
    from s3rec.errors import S3RecError
    from s3rec.reproduce.records import load_compact_ranks, save_compact_ranks

    for top, dtype in ((100, np.uint8), (12_101, np.uint16), (70_000, np.uint32)):
        ranks = np.array([1, top, 7], dtype=np.int32)
        save_compact_ranks(tmp_path / "r.npz", ranks)
        with np.load(tmp_path / "r.npz") as z:
            assert z["ranks"].dtype == dtype
        assert load_compact_ranks(tmp_path / "r.npz").dtype == np.int32
        assert np.array_equal(load_compact_ranks(tmp_path / "r.npz"), ranks)
    with pytest.raises(S3RecError, match="positive integers"):
        save_compact_ranks(tmp_path / "bad.npz", np.array([0, 3]))
    with pytest.raises(S3RecError, match="positive integers"):
        save_compact_ranks(tmp_path / "bad.npz", np.array([1.0, 3.0]))
    with pytest.raises(S3RecError, match="int32"):
        save_compact_ranks(tmp_path / "bad.npz", np.array([1, 3_000_000_000]))
    assert not (tmp_path / "bad.npz").exists()


def test_report_plots_for_the_figures(tmp_path, reference):
    abl = _fabricated_plan(tmp_path, "ablation", seeds=[1])
    for r in abl.runs[::2]:
        _fabricate(r.dir, {"NDCG@10": 0.3 + 0.01 * len(r.id) % 7 / 100})
    ld = _fabricated_plan(tmp_path, "limited_data", seeds=[1, 2])
    for r in ld.runs:
        if r.method.id != "FDSA":
            _fabricate(r.dir, {"NDCG@10": 0.2 * float(r.value) + 0.01 * r.seed, "HR@10": 0.4 * float(r.value)})
    conv = _fabricated_plan(tmp_path, "convergence", seeds=[1, 2])
    for r in conv.runs:
        if r.dataset == "Beauty":
            _fabricate(r.dir, {"NDCG@10": 0.3}, curve=[0.3 * (1 - math.exp(-e / 5)) + 0.01 * r.seed for e in range(30)])
    paths = write_report(tmp_path / "runs", tmp_path / "report")
    assert paths[0] == tmp_path / "report" / "report.md"
    for name in ("ablation", "limited_data", "convergence"):
        png = tmp_path / "report" / name / f"{name}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 10_000
    ld_text = (tmp_path / "report" / "limited_data" / "report.md").read_text()
    assert "| FDSA | not run | not run |" in ld_text and "(paper 0.3538" in ld_text  # Table 2 is Fig. 4's 100% point
    conv_text = (tmp_path / "report" / "convergence" / "report.md").read_text()
    assert "| Toys | S3-Rec | not run |" in conv_text
    curves = (tmp_path / "report" / "convergence" / "convergence_curves.csv").read_text().splitlines()
    assert len(curves) == 1 + 2 * 30  # Beauty x 2 methods x 30 epochs
    index = (tmp_path / "report" / "report.md").read_text()
    assert "[Figure 2](ablation/report.md)" in index


# ---- statistics and the limited-data setting -----------------------------------------------------


def test_a_plot_says_which_settings_its_runs_changed_from_the_definition():
    from s3rec.reproduce.tables import settings_note

    unchanged = {"set": {}, "pretrain_set": {}, "pretrain_epochs": None, "device": None}
    shorter = {**unchanged, "pretrain_epochs": 10}
    assert settings_note({"overrides_seen": [unchanged]}) == ""
    assert settings_note({"overrides_seen": [shorter, shorter]}) == \
        "settings changed from the definition: --pretrain-epochs 10"
    assert "different settings" in settings_note({"overrides_seen": [unchanged, shorter]})
    assert settings_note({"overrides": shorter}).endswith("--pretrain-epochs 10")  # a grid.json before overrides_seen


def test_a_report_puts_the_settings_note_on_its_plot(tmp_path, monkeypatch):
    from s3rec.reproduce import plots as plots_mod
    from s3rec.reproduce import report as report_mod

    plan = make_plan(narrowed(load_experiment("ablation"), datasets=["Beauty"], seeds=[1], methods=["SASRec"]),
                     tmp_path / "runs" / "ablation", tmp_path / "runs" / "pretrain", pretrain_epochs=10)
    write_grid(plan)
    _fabricate(plan.runs[0].dir, {"NDCG@10": 0.3})
    titles = []
    real = report_mod.plot_bars
    monkeypatch.setattr(report_mod, "plot_bars", lambda exp, cells, path, note="": (
        titles.append(plots_mod._figure_title(exp, note)), real(exp, cells, path, note)))
    write_report(tmp_path / "runs" / "ablation", tmp_path / "report")
    assert titles and titles[0].endswith("\nsettings changed from the definition: --pretrain-epochs 10")
    assert (tmp_path / "report" / "ablation.png").is_file()


def test_t_distribution_p_values_are_exact():
    assert t_two_sided_p(2.228138852, 10) == pytest.approx(0.05, abs=1e-8)  # the table's 97.5% point
    for t in (0.3, 1.5, 7.0):
        assert t_two_sided_p(t, 1) == pytest.approx(1 - 2 / math.pi * math.atan(t), rel=1e-10)  # Cauchy
        assert t_two_sided_p(t, 2) == pytest.approx(1 - t / math.sqrt(2 + t * t), rel=1e-10)
    res = paired_ttest([1, 2, 3, 4, 5], [1.5, 1.5, 2, 2, 3.5])
    # d = (-0.5, 0.5, 1, 2, 1.5): mean 0.9, sd sqrt(0.925), t = 0.9 / sqrt(0.925 / 5); df 4 has a closed form
    t = 0.9 / math.sqrt(0.925 / 5)
    cdf4 = 0.5 + 0.375 * (t / math.sqrt(1 + t * t / 4)) * (1 - t * t / (12 * (1 + t * t / 4)))
    assert res.t == pytest.approx(t, rel=1e-12) and res.df == 4
    assert res.p == pytest.approx(2 * (1 - cdf4), rel=1e-9)
    assert paired_ttest([1, 2], [1, 2]).p == 1.0 and paired_ttest([2, 3], [1, 2]).p == 0.0


def test_train_fraction_keeps_a_seeded_nested_subset_of_users(tiny_data):
    from s3rec.data import registry
    from s3rec.pretraining import Pretrainer

    a = kept_users(1000, 0.2, 0)
    assert len(a) == 200 and np.array_equal(a, np.sort(a)) and np.array_equal(a, kept_users(1000, 0.2, 0))
    assert set(a) <= set(kept_users(1000, 0.4, 0))  # nested
    assert not np.array_equal(a, kept_users(1000, 0.2, 1))
    assert np.array_equal(kept_users(7, 1.0, 3), np.arange(7)) and len(kept_users(7, 0.01, 0)) == 1

    ds = registry.load("Tiny")
    kept = kept_users(ds.n_users, 0.5, 3)
    users = train_users(ds, 0.5, 3).numpy()
    assert set(users) == {u for u in kept if ds.lengths[u] > 3}
    assert np.array_equal(train_users(ds).numpy(), np.nonzero(ds.lengths > 3)[0])  # the default: every user
    cfg = with_overrides(PretrainConfig(), {"dataset": "Tiny", "hidden_size": 16, "train_fraction": 0.5,
                                            "fraction_seed": 3}).validate()
    trainer = Pretrainer(cfg, ds)
    assert len(trainer.instances) == int(sum(min(ds.lengths[u] - 2, 50) for u in kept))
    owners = np.searchsorted(ds.offsets, trainer.instances.start.numpy(), side="right") - 1
    assert set(owners) == set(kept)
    assert len(trainer.pool) == int(sum(ds.lengths[u] - 2 for u in kept))
    with pytest.raises(ConfigError, match="train_fraction"):
        with_overrides(TrainConfig(), {"train_fraction": 0.0}).validate()
    with pytest.raises(ConfigError, match="poprec"):
        with_overrides(TrainConfig(), {"model": "poprec", "train_fraction": 0.5}).validate()


def test_checkpoint_from_tests_another_experiments_model(tiny_data, tmp_path, capsys):
    """full_ranking's AutoInt trains nothing: it tests table2's best checkpoint of the same run under
    the full protocol, and says so; without that run it fails with the command to run first."""
    assert _reproduce(tmp_path, "full_ranking", "--methods", "AutoInt", "--seeds", "1") == 1
    assert "run `s3rec reproduce table2` for it first" in capsys.readouterr().err
    assert _reproduce(tmp_path, "table2", "--methods", "AutoInt", "--seeds", "1", "--set", "epochs=1") == 0
    assert _reproduce(tmp_path, "full_ranking", "--methods", "AutoInt", "--seeds", "1", "--retry-failed") == 0
    run = tmp_path / "runs" / "full_ranking" / "Tiny-AutoInt-seed1"
    res = json.loads((run / "results.json").read_text())
    assert res["checkpoint_from"] == os.path.join("table2", "Tiny-AutoInt-seed1")
    assert res["selected_on"] == "sampled validation MRR" and res["protocol"] == "full"
    assert not (run / "best.pt").exists()  # nothing trained here
    ranks = np.load(run / "test_ranks.npy")
    assert ranks.max() > 100  # ranked against every item, not 100 candidates
    capsys.readouterr()
    source = tmp_path / "runs" / "table2" / "Tiny-AutoInt-seed1" / "best.pt"
    assert main(["evaluate", str(source), "--protocol", "full", "--json"]) == 0
    assert res["test"] == json.loads(capsys.readouterr().out)["metrics"]
    # its validation metrics under this protocol too (to choose between such models on validation)
    assert main(["evaluate", str(source), "--protocol", "full", "--split", "valid", "--json"]) == 0
    assert res["valid"] == json.loads(capsys.readouterr().out)["metrics"] != res["test"]
    assert main(["report", str(tmp_path / "runs" / "full_ranking"), "--out", str(tmp_path / "report")]) == 0
    text = (tmp_path / "report" / "report.md").read_text()
    assert "Tested, not trained, under this protocol: AutoInt" in text and "`table2`" in text


def _lose_pretraining(tmp_path, monkeypatch) -> Path:
    """Delete the one pre-training's checkpoints (a fresh checkout) and make pre-training raise
    "pre-trained again"; returns its folder."""
    [pre] = (tmp_path / "runs" / "pretrain").glob("Tiny-*")
    for f in pre.glob("*.pt"):
        f.unlink()

    def no_pretraining(self, run):
        raise RuntimeError("pre-trained again")

    monkeypatch.setattr(runner_mod.Runner, "run_pretrain", no_pretraining)
    return pre


def test_testing_a_pre_trained_model_elsewhere_does_not_pre_train_again(tiny_data, tmp_path, monkeypatch, capsys):
    """strong_sampled tests strong_finetuning's models: with the pre-training's checkpoints gone (a
    fresh checkout), it neither runs the pre-training again nor counts it in the dry run."""
    common = ["--methods", "S3-Rec-SSM", "--seeds", "1", "--pretrain-epochs", "1", "--set", "epochs=1",
              "--set", "n_negatives=5"]
    assert _reproduce(tmp_path, "strong_finetuning", *common) == 0
    pre = _lose_pretraining(tmp_path, monkeypatch)
    capsys.readouterr()
    assert _reproduce(tmp_path, "strong_sampled", *common, "--dry-run") == 0
    text = capsys.readouterr().out
    assert f"pretrain/{pre.name}" in text and "not needed" in text and "from pretrain/" not in text
    assert _reproduce(tmp_path, "strong_sampled", *common) == 0
    res = json.loads((tmp_path / "runs" / "strong_sampled" / "Tiny-S3-Rec-SSM-seed1" / "results.json").read_text())
    assert res["checkpoint_from"] == os.path.join("strong_finetuning", "Tiny-S3-Rec-SSM-seed1")
    # the fine-tuning itself, run again elsewhere, does need it: it is pre-trained then (and fails here)
    assert _reproduce(tmp_path, "strong_finetuning", *common, "--out", str(tmp_path / "runs" / "other"),
                      "--no-reuse") == 1
    assert "pre-trained again" in capsys.readouterr().err


def test_a_partial_fine_tuning_resumes_without_its_pre_training(tiny_data, tmp_path, monkeypatch, capsys):
    """A fine-tuning interrupted after an epoch resumes from its own checkpoint.pt: with the
    pre-training's checkpoints gone (runs/ lost but that folder kept), it neither pre-trains again
    nor is blocked, in the run and in the dry run."""
    grid = ["--methods", "S3-Rec", "--seeds", "1", "--pretrain-epochs", "1", "--set", "epochs=1"]
    assert _reproduce(tmp_path, "table2", *grid) == 0
    run = tmp_path / "runs" / "table2" / "Tiny-S3-Rec-seed1"
    first = json.loads((run / "results.json").read_text())
    (run / "results.json").unlink()  # as if killed after its last epoch's checkpoint, before the test
    _lose_pretraining(tmp_path, monkeypatch)
    capsys.readouterr()
    assert _reproduce(tmp_path, "table2", *grid, "--dry-run") == 0
    text = capsys.readouterr().out
    assert "not needed" in text and re.search(r"Tiny-S3-Rec-seed1\s+partial", text)
    assert _reproduce(tmp_path, "table2", *grid) == 0
    assert "pre-trained again" not in capsys.readouterr().err
    assert json.loads((run / "results.json").read_text())["test"] == first["test"]


def test_report_lists_methods_in_the_definitions_order(tmp_path):
    """Reproductions narrowed with --methods, in any order, report in the paper's order, with the
    definition's other methods listed as not run."""
    _fabricated_plan(tmp_path, "table2", datasets=["Beauty"], seeds=[1], methods=["S3-Rec", "HGN"])
    _fabricated_plan(tmp_path, "table2", datasets=["Beauty"], seeds=[1], methods=["FM", "PopRec"])
    [path] = write_report(tmp_path / "runs" / "table2", tmp_path / "report")
    table = path.read_text().split("\n\n| ", 1)[1].split("\n\n")[0].splitlines()
    rows = [line.split(" |")[0].lstrip("| ") for line in table[2:]]
    assert rows == ["PopRec", "FM", "AutoInt", "GRU4Rec", "Caser", "SASRec", "BERT4Rec", "HGN", "GRU4Rec_F",
                    "SASRec_F", "FDSA", "S3-Rec"]
    assert all("| not run" in line for line in table[2:])  # fabricated plans: nothing finished


def test_an_unsupported_method_is_listed_never_run_and_reported(tmp_path, reference):
    exp_file = tmp_path / "mine.toml"
    exp_file.write_text('''title = "mine"
kind = "table"
protocol = "sampled"
datasets = ["Beauty"]
seeds = [1]
metrics = ["MRR"]
primary_metric = "MRR"

[[methods]]
id = "SASRec"
model = "sasrec"

[[methods]]
id = "Exotic"
model = "sasrec"
pretrain = {}
unsupported = "needs a model we do not have"
''')
    plan = make_plan(load_experiment(str(exp_file)), tmp_path / "runs" / "mine", tmp_path / "runs" / "pretrain")
    exotic = next(r for r in plan.runs if r.method.id == "Exotic")
    assert exotic.unsupported and exotic.pretrain is None and not plan.pretrains
    assert runner_mod.finetune_status(exotic) == "unsupported"
    write_grid(plan)
    [path] = write_report(tmp_path / "runs" / "mine", tmp_path / "report")
    text = path.read_text()
    assert "| Exotic | not run (unsupported)" in text and "needs a model we do not have" in text


def test_the_index_puts_the_paper_tables_side_by_side(tmp_path, reference):
    t2 = {r.id: r for r in _fabricated_plan(tmp_path, "table2", datasets=["Beauty"], seeds=[1, 2]).runs}
    fr = {r.id: r for r in _fabricated_plan(tmp_path, "full_ranking", datasets=["Beauty"], seeds=[1]).runs}
    _fabricate(t2["Beauty-S3-Rec-seed1"].dir, {"HR@10": 0.56, "NDCG@10": 0.37})
    _fabricate(t2["Beauty-S3-Rec-seed2"].dir, {"HR@10": 0.58, "NDCG@10": 0.39})
    _fabricate(fr["Beauty-S3-Rec-seed1"].dir, {"HR@10": 0.064, "NDCG@10": 0.031})
    _fabricate(t2["Beauty-FM-seed1"].dir, {"HR@10": 0.4, "NDCG@10": 0.25})
    write_report(tmp_path / "runs", tmp_path / "report")
    lines = (tmp_path / "report" / "report.md").read_text().splitlines()
    s3 = next(line for line in lines if line.startswith("| S3-Rec |"))
    # seeds per table; mean ± std (paper); ours / paper for the sampled NDCG@10 (0.38 / 0.3732)
    assert s3 == ("| S3-Rec | 1,2 / 1 | 0.5700 ± 0.0141 (0.5506) | 0.3800 ± 0.0141 (0.3732) | 1.02 | "
                  "0.0640 (0.0647) | 0.0310 (0.0327) |")
    fm = next(line for line in lines if line.startswith("| FM |"))
    assert fm == "| FM | 1 / - | 0.4000 (0.2311) | 0.2500 (0.1207) | 2.07 | not run (-) | not run (-) |"
    assert "| PopRec | - / - | not run (0.3386) |" in "\n".join(lines)


def test_two_folders_of_one_experiment_get_a_report_each(tmp_path):
    """`--out runs/reproduce/ablation_pretrain10` beside `runs/reproduce/ablation`: each folder its own
    report (named by the folder), not one overwriting the other."""
    for folder, value in (("ablation", 0.38), ("ablation_pretrain10", 0.35)):
        plan = make_plan(narrowed(load_experiment("ablation"), datasets=["Beauty"], seeds=[1], methods=["S3-Rec"]),
                         tmp_path / "runs" / folder, tmp_path / "runs" / "pretrain")
        write_grid(plan)
        _fabricate(plan.runs[0].dir, {"NDCG@10": value})
    write_report(tmp_path / "runs", tmp_path / "report")
    assert "0.3800" in (tmp_path / "report" / "ablation" / "report.md").read_text()
    assert "0.3500" in (tmp_path / "report" / "ablation_pretrain10" / "report.md").read_text()
    index = (tmp_path / "report" / "report.md").read_text()
    assert "(ablation/report.md)" in index and "[Figure 2 (`ablation_pretrain10`)](ablation_pretrain10/report.md)" in index


def test_the_index_summaries_read_one_folder_per_experiment(tmp_path, reference):
    """A second table2 folder (other settings) has its own report but does not mix into the index's
    side-by-side tables: the folder named as the experiment is the one summarised."""
    from s3rec.reproduce.collect import one_folder_per_experiment

    for folder, value in (("table2", 0.37), ("table2_short", 0.30)):
        plan = make_plan(narrowed(load_experiment("table2"), datasets=["Beauty"], seeds=[1], methods=["S3-Rec"]),
                         tmp_path / "runs" / folder, tmp_path / "runs" / "pretrain")
        write_grid(plan)
        _fabricate(plan.runs[0].dir, {"NDCG@10": value, "HR@10": 0.5})
    dirs = sorted((tmp_path / "runs").glob("table2*"))
    assert [d.name for d in one_folder_per_experiment(dirs[::-1])] == ["table2"]
    write_report(tmp_path / "runs", tmp_path / "report")
    s3 = next(line for line in (tmp_path / "report" / "report.md").read_text().splitlines()
              if line.startswith("| S3-Rec |"))
    assert "0.3700" in s3 and "0.3000" not in s3
    assert "0.3000" in (tmp_path / "report" / "table2_short" / "report.md").read_text()


def test_cost_model_scales_with_the_data_and_prefers_measured_speeds(tmp_path):
    from s3rec.reproduce import cost

    plan = make_plan(narrowed(load_experiment("limited_data"), datasets=["Sports"], seeds=[42]),
                     tmp_path / "ld", tmp_path / "pretrain")
    runs = {r.id: r for r in plan.runs}
    small, full = runs["Sports-SASRec-train_fraction=0.2-seed42"], runs["Sports-SASRec-train_fraction=1-seed42"]
    n = cost.INTERACTIONS["Sports"]
    assert cost.estimate_finetune(small, n, {})[0] == pytest.approx(0.2 * cost.estimate_finetune(full, n, {})[0])
    pre = {p.cfg.train_fraction: p for p in plan.pretrains}
    assert cost.estimate_pretrain(pre[0.4], n, {})[0] == pytest.approx(0.4 * cost.estimate_pretrain(pre[1.0], n, {})[0])
    # a run under way: its own median epoch time, for its fraction only
    _fabricate(small.dir, {}, curve=[0.1, 0.2])
    measured = cost.measured_finetune_speeds(plan.runs)
    assert measured == {("Sports", "sasrec", "sampled", 0.2, "bce", 50): 0.1}
    seconds, basis = cost.estimate_finetune(small, n, measured)
    assert basis == "measured" and seconds == pytest.approx(0.1 * (cost.EARLY_STOP_EPOCHS - 2))
    assert cost.estimate_finetune(full, n, measured)[1] == "assumed"


def test_a_pretraining_not_begun_is_timed_by_like_pretrainings_with_sp_on_or_off_apart(tmp_path):
    from s3rec.reproduce import cost

    plan = make_plan(narrowed(load_experiment("limited_data"), datasets=["Sports"], seeds=[42], methods=["S3-Rec"]),
                     tmp_path / "ld", tmp_path / "pretrain")
    pre = {p.cfg.train_fraction: p for p in plan.pretrains}
    n = cost.INTERACTIONS["Sports"]

    def begun(folder, cfg, seconds):  # a pre-training's folder as the pre-training writes it
        folder.mkdir(parents=True)
        (folder / "config.json").write_text(json.dumps(dataclasses.asdict(cfg)))
        (folder / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i + 1, "seconds": s}) + "\n"
                                                      for i, s in enumerate(seconds)))

    begun(pre[0.2].dir, pre[0.2].cfg, [10.0, 12.0, 50.0])  # median 12 s at 20%: 60 s at 100%
    no_sp = dataclasses.replace(pre[1.0].cfg, sp_weight=0.0)
    begun(tmp_path / "pretrain" / "Sports-sp_weight=0-seed42", no_sp, [20.0])
    speeds = cost.measured_pretrain_speeds(tmp_path / "pretrain")
    assert speeds[cost.pretrain_speed_key(pre[1.0].cfg)] == pytest.approx(60.0)
    assert speeds[cost.pretrain_speed_key(no_sp)] == pytest.approx(20.0)
    # the begun run keeps its own median; the others borrow the like one's, scaled by their fraction
    assert cost.estimate_pretrain(pre[0.2], n, speeds) == (pytest.approx(12.0 * (pre[0.2].cfg.epochs - 3)), "measured")
    seconds, basis = cost.estimate_pretrain(pre[0.6], n, speeds)
    assert basis == "measured on like pre-trainings" and seconds == pytest.approx(0.6 * 60.0 * pre[0.6].cfg.epochs)
    # nothing like it (another window): the assumed speed
    other = dataclasses.replace(pre[1.0], cfg=dataclasses.replace(pre[1.0].cfg, max_len=100))
    assert cost.estimate_pretrain(other, n, speeds)[1] == "assumed"
    assert cost.measured_pretrain_speeds(tmp_path / "absent") == {}
    (tmp_path / "pretrain" / "broken").mkdir()
    (tmp_path / "pretrain" / "broken" / "config.json").write_text('{"max_len": null}')
    assert cost.measured_pretrain_speeds(tmp_path / "pretrain") == speeds  # skipped, not a crash
    # the dry run uses them
    text = runner_mod.dry_run_text(plan)
    assert re.search(r"pretrain/Sports-train_fraction=0.6-seed42 +pending .*measured on like pre-trainings", text)
    assert re.search(r"pretrain/Sports-train_fraction=0.2-seed42 +\w+ +[0-9]+ min  measured;", text)


def test_a_run_finished_with_identical_settings_elsewhere_is_reused_not_recomputed(tiny_data, tmp_path, monkeypatch,
                                                                                  capsys):
    common = ["--methods", "S3-Rec", "SASRec", "--seeds", "1", "--pretrain-epochs", "1", "--set", "epochs=1"]
    assert _reproduce(tmp_path, "table2", *common) == 0
    calls = []

    def no_training(self, run):
        calls.append(run.id)
        raise RuntimeError("trained again")

    monkeypatch.setattr(runner_mod.Runner, "run_finetune", no_training)
    capsys.readouterr()
    assert _reproduce(tmp_path, "ablation", *common, "--dry-run") == 0
    assert "the same run as table2/Tiny-S3-Rec-seed1" in capsys.readouterr().out
    assert _reproduce(tmp_path, "ablation", *common) == 0
    assert calls == [] and "the same run as table2/Tiny-SASRec-seed1 (identical settings)" in capsys.readouterr().err
    for method in ("S3-Rec", "SASRec"):
        src, dst = (tmp_path / "runs" / e / f"Tiny-{method}-seed1" for e in ("table2", "ablation"))
        copied = json.loads((dst / "results.json").read_text())
        assert copied["same_run_as"] == f"table2/Tiny-{method}-seed1"
        assert copied["test"] == json.loads((src / "results.json").read_text())["test"]
        assert (dst / "config.json").read_text() == (src / "config.json").read_text()
        assert np.array_equal(np.load(dst / "test_ranks.npy"), np.load(src / "test_ranks.npy"))
        assert (dst / "best.pt").stat().st_size == (src / "best.pt").stat().st_size
    assert [r["status"] for r in _grid(tmp_path, "ablation")["runs"]] == ["done", "done"]
    # other settings are not the same run; --no-reuse computes even identical ones
    assert _reproduce(tmp_path, "ablation", "--methods", "SASRec", "--seeds", "1", "--pretrain-epochs", "1",
                      "--set", "epochs=2", "--out", str(tmp_path / "runs" / "other")) == 1
    assert calls == ["Tiny-SASRec-seed1"]
    assert _reproduce(tmp_path, "ablation", *common, "--no-reuse", "--out", str(tmp_path / "runs" / "again")) == 1
    assert calls[1:] == ["Tiny-S3-Rec-seed1", "Tiny-SASRec-seed1"]


def test_a_figure_on_another_dataset_than_the_papers_says_so(tmp_path):
    from s3rec.reproduce.plots import _dataset_title

    exp = load_experiment("limited_data")
    assert _dataset_title(exp, "Sports") == "Sports"
    assert _dataset_title(exp, "Beauty") == "Beauty\n(the paper's figure: Sports, Yelp)"
    ld = _fabricated_plan(tmp_path, "limited_data", datasets=["Beauty"], seeds=[1])
    for r in ld.runs:
        _fabricate(r.dir, {"NDCG@10": 0.2 * float(r.value), "HR@10": 0.4 * float(r.value)})
    write_report(tmp_path / "runs" / "limited_data", tmp_path / "report")
    assert (tmp_path / "report" / "limited_data.png").stat().st_size > 10_000


def test_report_tests_each_listed_pair(tmp_path):
    plan = _fabricated_plan(tmp_path, "strong_finetuning", datasets=["Beauty"], seeds=[1, 2])
    runs = {r.id: r for r in plan.runs}
    rng = np.random.default_rng(1)
    ranks = {m: [rng.integers(1, 30 if m.startswith("S3") else 60, 40) for _ in range(2)]
             for m in ("S3-Rec-SSM", "SASRec-SSM", "S3-Rec-CE")}
    for m, per_seed in ranks.items():
        for seed, r in zip((1, 2), per_seed):
            ndcg = {"S3-Rec-SSM": 0.06, "SASRec-SSM": 0.05, "S3-Rec-CE": 0.07}[m]
            _fabricate(runs[f"Beauty-{m}-seed{seed}"].dir, {"NDCG@10": ndcg, "MRR": float(np.mean(1 / r))}, r)
    write_report(tmp_path / "runs" / "strong_finetuning", tmp_path / "report")
    import csv

    rows = list(csv.DictReader((tmp_path / "report" / "strong_finetuning_significance.csv").open()))
    ssm = next(r for r in rows if (r["ours"], r["baseline"]) == ("S3-Rec + sampled softmax", "SASRec + sampled softmax"))
    a = np.mean([1 / r for r in ranks["S3-Rec-SSM"]], 0)
    b = np.mean([1 / r for r in ranks["SASRec-SSM"]], 0)
    expected = paired_ttest(a, b)  # the pair's first method is "ours": direction matters for t and the MRRs
    assert float(ssm["t"]) == pytest.approx(expected.t, rel=1e-5) and expected.t > 0
    assert float(ssm["mrr_ours"]) == pytest.approx(a.mean(), rel=1e-5)
    assert float(ssm["mrr_baseline"]) == pytest.approx(b.mean(), rel=1e-5)
    assert float(ssm["p"]) == pytest.approx(expected.p, rel=1e-5) and ssm["best_baseline"] == "false"
    # a pair with a method not run says so; the best-baseline row is there too, marked
    assert any((r["ours"], r["baseline"]) == ("S3-Rec + CE", "SASRec + CE") and r["note"] == "not run: SASRec + CE"
               for r in rows)
    # the best baseline is the best method without pre-training: S3-Rec + sampled softmax, better by
    # NDCG@10, is a variant of ours, not a baseline
    best = next(r for r in rows if r["best_baseline"] == "true")
    assert (best["ours"], best["baseline"]) == ("S3-Rec + CE", "SASRec + sampled softmax")
    # narrowed to some methods, the pairs among them only (the report never trips over the others)
    from s3rec.reproduce.experiment import load_experiment, narrowed

    exp = narrowed(load_experiment("strong_finetuning"), methods=["SASRec-SSM", "S3-Rec-SSM"])
    assert exp.pairs == (("S3-Rec-SSM", "SASRec-SSM"),)
    text = (tmp_path / "report" / "report.md").read_text()
    assert "(best baseline)" in text and "each listed pair" in text and "among the methods without pre-training" in text


def test_pairs_must_name_methods():
    from s3rec.reproduce.experiment import parse_experiment

    base = {"kind": "table", "metrics": ["MRR"], "datasets": ["Tiny"], "seeds": [1],
            "methods": [{"id": "A", "model": "sasrec"}, {"id": "B", "model": "sasrec"}]}
    assert parse_experiment({**base, "pairs": [["A", "B"]]}, "x", "x").pairs == (("A", "B"),)
    for bad in ([["A", "C"]], [["A"]], [["A", "A"]], "A,B"):
        with pytest.raises(ConfigError, match="pairs must be"):
            parse_experiment({**base, "pairs": bad}, "x", "x")
    with pytest.raises(ConfigError, match="tables only"):
        parse_experiment({**base, "kind": "bars", "pairs": [["A", "B"]]}, "x", "x")


def test_a_method_can_take_a_preset_and_stand_beside_another_paper_row(tmp_path, reference):
    from s3rec.presets import load_preset
    from s3rec.reproduce.experiment import parse_experiment

    base = {"kind": "table", "metrics": ["NDCG@10"], "datasets": ["Beauty"], "seeds": [1], "protocol": "full"}
    exp = parse_experiment({**base, "methods": [
        {"id": "P", "model": "sasrec", "preset": "s3rec-plus", "paper_as": "S3-Rec", "finetune": {"lr": 0.002}}]}, "x", "x")
    (m,) = exp.methods
    plus = load_preset("s3rec-plus")
    assert m.finetune == {**plus.finetune, "lr": 0.002}  # the method's own settings win
    assert m.pretrain == plus.pretrain and m.preset == "s3rec-plus"  # pretrained preset: fine-tunes from it
    assert parse_experiment({**base, "methods": [{"id": "Q", "model": "sasrec", "preset": "paper"}]}, "x", "x").methods[0].pretrain is None
    with pytest.raises(ConfigError, match="methods\\[0\\]: unknown preset 'nope'"):
        parse_experiment({**base, "methods": [{"id": "Q", "model": "sasrec", "preset": "nope"}]}, "x", "x")
    # the report puts the paper's S3-Rec beside it
    plan = _fabricated_plan(tmp_path, "strong_finetuning", datasets=["Beauty"], seeds=[1])
    run = next(r for r in plan.runs if r.id == "Beauty-S3-Rec-plus-seed1")
    assert run.cfg.loss == plus.finetune["loss"] and run.cfg.init
    _fabricate(run.dir, {"NDCG@10": 0.0600}, np.arange(1, 11))
    write_report(tmp_path / "runs" / "strong_finetuning", tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    row = next(line for line in text.splitlines() if line.startswith("| S3-Rec+ (preset s3rec-plus) |"))
    assert "0.0600 (paper 0.0327, +83.5%)" in row
    assert "preset `s3rec-plus`" in text and "the paper's numbers for S3-Rec" in text


def test_cost_learns_speed_and_length_from_experiments_beside_it(tmp_path):
    from s3rec.reproduce import cost

    plan = _fabricated_plan(tmp_path, "strong_finetuning", datasets=["Beauty"], seeds=[1])
    ssm = next(r for r in plan.runs if r.id == "Beauty-SASRec-SSM-seed1")
    # nothing measured: a softmax-type loss is assumed to train longer than BCE
    bce = next(r for r in plan.runs if r.id == "Beauty-SASRec-seed1")
    assert cost.finetune_epochs(ssm) == cost.SOFTMAX_STOP_EPOCHS and cost.finetune_epochs(bce) == cost.EARLY_STOP_EPOCHS
    # a finished sampled-softmax run in another experiment's folder: its speed and length are used
    other = tmp_path / "runs" / "elsewhere" / "Beauty-X-seed9"
    other.mkdir(parents=True)
    (other / "config.json").write_text(json.dumps({**ssm.cfg.to_dict(), "seed": 9}))
    (other / "metrics.jsonl").write_text("".join(json.dumps({"epoch": i, "seconds": 4.0}) + "\n" for i in range(1, 31)))
    (other / "results.json").write_text(json.dumps({"epochs": 30, "test": {}}))
    others = tmp_path / "runs"
    speeds, lengths = cost.measured_finetune_speeds(plan.runs, others), cost.measured_finetune_lengths(plan.runs, others)
    assert speeds[cost.speed_key(ssm.cfg)] == 4.0 and lengths[cost.speed_key(ssm.cfg)] == 30
    assert cost.estimate_finetune(ssm, 198_502, speeds, lengths) == (120.0, "measured")
    assert cost.speed_key(bce.cfg) not in speeds  # another loss: pooled apart
    # another window: pooled apart too, and assumed dearer in proportion
    wide = dataclasses.replace(ssm, cfg=dataclasses.replace(ssm.cfg, max_len=200))
    assert cost.speed_key(wide.cfg) not in speeds
    assert cost.finetune_epoch_seconds(wide, 198_502) == pytest.approx(4 * cost.finetune_epoch_seconds(ssm, 198_502))


def test_grid_records_of_differently_narrowed_runs_merge_their_pairs(tmp_path):
    from s3rec.reproduce.experiment import load_experiment, narrowed

    out = tmp_path / "runs" / "strong_finetuning"
    full = load_experiment("strong_finetuning")
    for methods in (["SASRec-SSM", "S3-Rec-SSM"], ["SASRec", "S3-Rec"]):
        write_grid(make_plan(narrowed(full, datasets=["Beauty"], seeds=[1], methods=methods), out, tmp_path / "pre"))
    exp = json.loads((out / "grid.json").read_text())["experiment"]
    assert sorted(map(tuple, exp["pairs"])) == [("S3-Rec", "SASRec"), ("S3-Rec-SSM", "SASRec-SSM")]
    assert {m["id"] for m in exp["methods"]} == {"SASRec-SSM", "S3-Rec-SSM", "SASRec", "S3-Rec"}


def test_grid_record_counts_1_and_1_0_as_one_value(tmp_path):
    out = tmp_path / "runs" / "limited_data"
    exp = narrowed(load_experiment("limited_data"), datasets=["Beauty"], seeds=[1], methods=["SASRec"])
    write_grid(make_plan(narrowed(exp, values=["0.4", "0.2"]), out, tmp_path / "pre"))
    write_grid(make_plan(narrowed(exp, values=["1"]), out, tmp_path / "pre"))  # an int
    write_grid(make_plan(narrowed(exp, values=["1.0", "0.6"]), out, tmp_path / "pre"))  # 1.0: a float
    assert json.loads((out / "grid.json").read_text())["experiment"]["vary_values"] == [0.2, 0.4, 0.6, 1]


def test_grid_record_keeps_the_newest_definition_of_a_method(tmp_path):
    out = tmp_path / "runs" / "table2"
    exp = narrowed(load_experiment("table2"), datasets=["Beauty"], seeds=[1], methods=["SASRec", "S3-Rec"])
    old = dataclasses.replace(exp, methods=tuple(dataclasses.replace(m, label=m.label + " (old)") for m in exp.methods))
    write_grid(make_plan(old, out, tmp_path / "pre"))
    write_grid(make_plan(narrowed(exp, methods=["SASRec"]), out, tmp_path / "pre"))
    labels = {m["id"]: m["label"] for m in json.loads((out / "grid.json").read_text())["experiment"]["methods"]}
    assert labels == {"SASRec": "SASRec", "S3-Rec": "S3-Rec (old)"}  # redefined where given, kept where not


def test_index_counts_where_a_preset_beats_the_paper(tmp_path, reference):
    from s3rec.reproduce.preset_report import presets_vs_paper

    plan = _fabricated_plan(tmp_path, "strong_finetuning", datasets=["Beauty"], seeds=[1, 2])
    runs = {r.id: r for r in plan.runs}
    # the paper's Beauty S3-Rec (full ranking): HR@10 0.0647, NDCG@10 0.0327; one seed only so far
    _fabricate(runs["Beauty-S3-Rec-plus-seed1"].dir, {"HR@10": 0.07, "NDCG@10": 0.03, "HR@5": 0.05, "NDCG@5": 0.03,
                                                      "HR@20": 0.1, "NDCG@20": 0.04}, np.arange(1, 11))
    lines = presets_vs_paper([tmp_path / "runs" / "strong_finetuning"])
    (row,) = [line for line in lines if line.startswith("- **s3rec-plus**")]
    assert "the paper's S3-Rec, Beauty: above on 4 of 6" in row
    assert "full HR@10 0.0700 [1/2] vs 0.0647 ✓" in row and "full NDCG@10 0.0300 [1/2] vs 0.0327 ✗" in row
    assert presets_vs_paper([]) == []


def _fabricate_split(run_dir: Path, valid: dict, test: dict) -> None:
    run_dir.mkdir(parents=True, exist_ok=True)
    names = ("HR@1", "HR@5", "HR@10", "HR@20", "NDCG@5", "NDCG@10", "NDCG@20", "MRR")
    valid, test = ({k: d.get(k, 0.1) for k in names} for d in (valid, test))
    (run_dir / "results.json").write_text(json.dumps({"valid": valid, "test": test, "best_epoch": 3}))


def test_preset_is_chosen_on_validation_over_both_protocols(tmp_path, reference):
    """Each preset's mean relative validation gain over the paper-faithful S3-Rec (full: NDCG@20,
    sampled: MRR) picks the dataset's preset; test numbers play no part; a preset with a seed missing
    under one protocol is shown, not chosen, and makes the choice provisional; so does a dataset that
    one experiment did not run."""
    from s3rec.reproduce.preset_report import chosen_presets, preset_choice, preset_scores, presets_vs_paper

    kw = dict(datasets=["Beauty"], seeds=[1, 2], methods=["S3-Rec", "S3-Rec-plus", "S3-Rec-CE"])
    full = {r.id: r for r in _fabricated_plan(tmp_path, "strong_finetuning", **kw).runs}
    sampled = {r.id: r for r in _fabricated_plan(tmp_path, "strong_sampled", **kw).runs}
    # validation: S3-Rec 0.05 / 0.30; plus +60% / +0% (mean +30%); CE +40% / +30% (mean +35%).
    # test says the opposite (plus far ahead), and must not matter.
    for seed in (1, 2):
        for runs, metric, values, tests in ((full, "NDCG@20", (0.05, 0.08, 0.07), (0.01, 0.9, 0.02)),
                                            (sampled, "MRR", (0.30, 0.30, 0.39), (0.1, 0.9, 0.2))):
            for mid, v, t in zip(("S3-Rec", "S3-Rec-plus", "S3-Rec-CE"), values, tests):
                _fabricate_split(runs[f"Beauty-{mid}-seed{seed}"].dir, {metric: v}, {metric: t})
    dirs = [tmp_path / "runs" / "strong_finetuning", tmp_path / "runs" / "strong_sampled"]
    scores = preset_scores(dirs)
    assert scores[("s3rec-plus", "Beauty")].gain == pytest.approx(0.30)
    assert scores[("s3rec-plus-ce", "Beauty")].gain == pytest.approx(0.35)
    assert chosen_presets(scores) == {"Beauty": ("s3rec-plus-ce", True)}
    text = "\n".join(preset_choice(dirs))
    assert "| Beauty | s3rec-plus-ce | full NDCG@20 0.0700 vs 0.0500 (+40.0%, seeds 1,2); sampled MRR 0.3900 vs " \
           "0.3000 (+30.0%, seeds 1,2) | +35.0% | chosen |" in text
    assert any(line.startswith("- **s3rec-plus-ce** (chosen on validation) vs") for line in presets_vs_paper(dirs))
    # CE's second seed under the sampled protocol not finished: CE is not chosen, plus is, provisionally
    (sampled["Beauty-S3-Rec-CE-seed2"].dir / "results.json").unlink()
    scores = preset_scores(dirs)
    assert scores[("s3rec-plus-ce", "Beauty")].gain is None
    assert scores[("s3rec-plus-ce", "Beauty")].missing == {"strong_sampled": "sampled: seeds 1/2 finished (S3-Rec: 2/2)"}
    assert chosen_presets(scores) == {"Beauty": ("s3rec-plus", False)}
    assert "| +30.0% | chosen so far (other presets unfinished) |" in "\n".join(preset_choice(dirs))
    assert any(line.startswith("- **s3rec-plus** (chosen on validation so far; other presets unfinished) vs")
               for line in presets_vs_paper(dirs))
    # a reference of 0 counts as unfinished, not a crash
    for seed in (1, 2):
        _fabricate_split(full[f"Beauty-S3-Rec-seed{seed}"].dir, {"NDCG@20": 0.0}, {})
    assert preset_scores(dirs)[("s3rec-plus", "Beauty")].missing == {
        "strong_finetuning": "full: S3-Rec's validation NDCG@20 is 0"}
    assert preset_choice([]) == []


def test_preset_choice_needs_every_experiment_on_the_dataset(tmp_path, reference):
    """A dataset only one of the experiments ran (or without the paper-faithful S3-Rec to compare with)
    gets no choice, and the table says what is missing."""
    from s3rec.reproduce.preset_report import chosen_presets, preset_scores

    full = {r.id: r for r in _fabricated_plan(tmp_path, "strong_finetuning", datasets=["Beauty", "Toys"], seeds=[1],
                                              methods=["S3-Rec", "S3-Rec-plus"]).runs}
    sampled = {r.id: r for r in _fabricated_plan(tmp_path, "strong_sampled", datasets=["Beauty"], seeds=[1],
                                                 methods=["S3-Rec-plus"]).runs}
    for d in ("Beauty", "Toys"):
        _fabricate_split(full[f"{d}-S3-Rec-seed1"].dir, {"NDCG@20": 0.05}, {})
        _fabricate_split(full[f"{d}-S3-Rec-plus-seed1"].dir, {"NDCG@20": 0.08}, {})
    _fabricate_split(sampled["Beauty-S3-Rec-plus-seed1"].dir, {"MRR": 0.3}, {})
    dirs = [tmp_path / "runs" / "strong_finetuning", tmp_path / "runs" / "strong_sampled"]
    scores = preset_scores(dirs)
    assert scores[("s3rec-plus", "Toys")].missing == {"strong_sampled": "`strong_sampled`: not run on Toys"}
    assert scores[("s3rec-plus", "Beauty")].missing == {
        "strong_sampled": "no S3-Rec run in `strong_sampled` to compare with"}
    assert chosen_presets(scores) == {}


def test_geometric_settings_get_a_log_axis():
    from s3rec.reproduce.plots import log_axis

    assert log_axis(load_experiment("strong_negatives").vary_values)  # 4 ... 256
    assert not log_axis(load_experiment("pretrain_epochs").vary_values)  # starts at 0
    assert not log_axis(load_experiment("limited_data").vary_values)  # 0.2 ... 1: a factor of 5
    assert not log_axis([1, 2])


def test_crowded_tick_labels_are_left_out():
    from s3rec.reproduce.plots import _tick_labels

    exp = load_experiment("strong_pretrain_epochs")
    assert _tick_labels(exp, [0, 10, 30, 50, 150], [0.0, 10.0, 30.0, 50.0, 150.0]) == ["0", "", "30", "50", "150"]
    exp = load_experiment("limited_data")
    assert _tick_labels(exp, [0.2, 0.4, 1.0], [20.0, 40.0, 100.0]) == ["20%", "40%", "100%"]


def test_a_method_can_be_limited_to_some_datasets(tmp_path):
    from s3rec.reproduce.experiment import parse_experiment

    base = {"kind": "table", "metrics": ["NDCG@10"], "datasets": ["Beauty", "LastFM"], "seeds": [1], "protocol": "full",
            "pairs": [["A", "B"]]}
    exp = parse_experiment({**base, "methods": [{"id": "A", "model": "sasrec", "datasets": ["lastfm"]},
                                                {"id": "B", "model": "sasrec"}]}, "x", "x")
    plan = make_plan(exp, tmp_path / "runs" / "x", tmp_path / "pre")
    assert sorted(r.id for r in plan.runs) == ["Beauty-B-seed1", "LastFM-A-seed1", "LastFM-B-seed1"]
    write_grid(plan)
    for r in plan.runs:
        _fabricate(r.dir, {"NDCG@10": 0.05}, np.arange(1, 11))
    write_report(tmp_path / "runs" / "x", tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    beauty = text[text.index("### Beauty"):text.index("### LastFM")]
    assert "| A |" not in beauty and "| B |" in beauty and "| A |" in text[text.index("### LastFM"):]
    sig = (tmp_path / "report" / "x_significance.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in sig[1:]] == ["LastFM"]  # the pair is tested where both ran
    with pytest.raises(ConfigError, match="tables only"):
        parse_experiment({**base, "kind": "bars", "pairs": [], "methods": [{"id": "A", "model": "sasrec", "datasets": ["x"]}]},
                         "x", "x")


def test_a_run_another_process_holds_is_left_to_it(tiny_data, tmp_path, capsys):
    from s3rec.fileio import try_lock
    from s3rec.shared_pretrain import lock_path

    common = ["--methods", "S3-Rec", "SASRec", "--seeds", "1", "--pretrain-epochs", "1", "--set", "epochs=1"]
    out = tmp_path / "runs" / "table2"
    # another process is fine-tuning SASRec and pre-training S3-Rec's encoder: this one skips both
    pre_id = "Tiny-batch_size=50,hidden_size=16-seed42"  # SMALL's pre-training settings
    with try_lock(out / ".locks" / "Tiny-SASRec-seed1.lock") as a, \
            try_lock(lock_path(tmp_path / "runs" / "pretrain" / pre_id)) as b:
        assert a and b
        assert _reproduce(tmp_path, "table2", *common) == 0  # nothing failed: left to the other process
    err = capsys.readouterr().err
    assert "Tiny-SASRec-seed1: skipped: another process is running it" in err
    assert f"pre-training {pre_id} is running in another process" in err
    assert "left to another process running them: Tiny-S3-Rec-seed1, Tiny-SASRec-seed1" in err
    assert not (out / "Tiny-SASRec-seed1" / "results.json").exists()
    assert not (out / "Tiny-S3-Rec-seed1" / "error.txt").exists()  # not recorded as a failure
    # released: the same command finishes them
    assert _reproduce(tmp_path, "table2", *common) == 0
    assert (out / "Tiny-SASRec-seed1" / "results.json").is_file() and (out / "Tiny-S3-Rec-seed1" / "results.json").is_file()


def _held_by_another_process(lock_path, monkeypatch, then=lambda: None):
    """A thread holding ``lock_path`` like another process would, until the runner first waits; then
    it calls ``then()`` (what the other process did with the run) and lets go. Returns the waits."""
    import threading

    from s3rec.fileio import try_lock

    holding, release, waits = threading.Event(), threading.Event(), []

    def other_process():
        with try_lock(lock_path) as held:
            assert held
            holding.set()
            release.wait(60)
            then()

    other = threading.Thread(target=other_process, daemon=True)
    other.start()
    assert holding.wait(10)

    def sleep(seconds):  # the runner waits only after a whole pass: then the other process lets go
        waits.append(seconds)
        release.set()
        other.join()

    monkeypatch.setattr(runner_mod, "_sleep", sleep)
    return waits, release


def test_wait_takes_up_the_runs_another_process_held_once_they_are_free(tiny_data, tmp_path, monkeypatch, capsys):
    out = tmp_path / "runs" / "table2"
    waits, release = _held_by_another_process(out / ".locks" / "Tiny-SASRec-seed1.lock", monkeypatch)
    try:
        code = _reproduce(tmp_path, "table2", "--methods", "SASRec", "GRU4Rec", "--seeds", "1", "--set", "epochs=1", "--wait")
    finally:
        release.set()
    assert code == 0
    assert waits == [runner_mod.WAIT_POLL_SECONDS]  # one wait: the held run was taken up on the next pass
    err = capsys.readouterr().err
    assert "Tiny-SASRec-seed1: skipped: another process is running it (waiting for it)" in err
    assert "left to another process" not in err
    assert [r["status"] for r in _grid(tmp_path, "table2")["runs"]] == ["done", "done"]


def test_a_run_another_process_fails_while_one_waits_is_neither_retried_nor_reported(tiny_data, tmp_path, monkeypatch,
                                                                                      capsys):
    out = tmp_path / "runs" / "table2"
    failed_run = out / "Tiny-SASRec-seed1"

    def fail_it():
        failed_run.mkdir(parents=True, exist_ok=True)
        (failed_run / "error.txt").write_text("RuntimeError: boom in the other process\n")

    waits, release = _held_by_another_process(out / ".locks" / "Tiny-SASRec-seed1.lock", monkeypatch, fail_it)
    trained = []
    original = runner_mod.Runner.run_finetune
    monkeypatch.setattr(runner_mod.Runner, "run_finetune", lambda self, run: trained.append(run.id) or original(self, run))
    try:  # --retry-failed retries what had failed before this command, not what fails meanwhile
        code = _reproduce(tmp_path, "table2", "--methods", "SASRec", "GRU4Rec", "--seeds", "1", "--set", "epochs=1",
                          "--wait", "--retry-failed")
    finally:
        release.set()
    assert code == 0 and waits and trained == ["Tiny-GRU4Rec-seed1"]
    assert "boom" not in capsys.readouterr().err  # the other process reports its own failure
    assert (failed_run / "error.txt").is_file()


def test_jobs_share_a_grid_between_worker_processes(tiny_data, tmp_path):
    out = tmp_path / "runs" / "ablation"
    args = ["reproduce", "ablation", *SMALL, "--methods", "S3-Rec", "no-SP", "SASRec", "--seeds", "1", "2",
            "--pretrain-epochs", "1", "--set", "epochs=1", "--out", str(out), "--jobs", "2"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run([sys.executable, "-m", "s3rec.cli", *args], env=env, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-2000:]
    assert "2 worker processes, 1 thread(s) each" in done.stderr
    assert "workers ended with exit status 0, 0; 6 done" in done.stderr
    assert [r["status"] for r in _grid(tmp_path, "ablation")["runs"]] == ["done"] * 6
    # every run and pre-training ran in exactly one of the workers
    for run_id in (r["id"] for r in _grid(tmp_path, "ablation")["runs"]):
        assert done.stderr.count(f"{run_id}: done in") == 1, run_id
    for pre in ("Tiny-batch_size=50,hidden_size=16-seed42", "Tiny-batch_size=50,hidden_size=16,sp_weight=0-seed42"):
        assert done.stderr.count(f"pre-training {pre} done in") == 1, pre


class _FakeWorker:
    started: list = []

    def __init__(self, argv, env, **options):
        self.argv, self.env, self.options, self.signals = argv, env, options, []
        _FakeWorker.started.append(self)

    def wait(self, timeout=None):
        return 0

    def poll(self):
        return None

    def send_signal(self, sig):
        self.signals.append(sig)


def test_jobs_start_workers_with_wait_and_clear_failures_once(tiny_data, tmp_path, monkeypatch, capsys):
    import subprocess as sp

    assert _reproduce(tmp_path, "table2", "--methods", "SASRec", "--seeds", "1", "2", "--set", "epochs=1") == 0
    out = tmp_path / "runs" / "table2"
    (out / "Tiny-SASRec-seed2" / "results.json").unlink()
    (out / "Tiny-SASRec-seed2" / "error.txt").write_text("RuntimeError: boom\n")
    _FakeWorker.started = []
    monkeypatch.setattr(sp, "Popen", _FakeWorker)
    monkeypatch.delenv("OMP_NUM_THREADS", raising=False)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: {0, 1, 2, 3, 4, 5}, raising=False)
    argv = ["reproduce", "--jobs", "3", "--retry-failed", *SMALL, "--methods", "SASRec", "--seeds", "1", "2",
            "--set", "epochs=1", "--out", str(out), "--", "table2"]
    assert main(argv) == 0
    assert len(_FakeWorker.started) == 3
    for w in _FakeWorker.started:
        assert w.argv[:3] == [sys.executable, "-m", "s3rec.cli"]
        # the worker options go before "--", where argparse still reads them, and win over --jobs 3
        assert w.argv[3:] == argv[:-2] + ["--jobs", "1", "--wait", "--quiet", "--no-retry-failed", "--", "table2"]
        assert w.env["OMP_NUM_THREADS"] == "2"  # 6 cores / 3 workers
        assert w.options == {"start_new_session": True}  # Ctrl-C reaches them once, forwarded by the parent
    err = capsys.readouterr().err
    assert "retrying 1 failed runs: Tiny-SASRec-seed2" in err  # cleared here, once, not by each worker
    assert not (out / "Tiny-SASRec-seed2" / "error.txt").exists()


def test_interrupting_jobs_stops_every_worker(tiny_data, tmp_path, monkeypatch):
    import subprocess as sp

    class Interrupted(_FakeWorker):
        def wait(self, timeout=None):
            if timeout is None and self is _FakeWorker.started[0]:
                raise KeyboardInterrupt
            return 130

    _FakeWorker.started = []
    monkeypatch.setattr(sp, "Popen", Interrupted)
    assert _reproduce(tmp_path, "table2", "--methods", "SASRec", "--seeds", "1", "--jobs", "2") == 130
    assert [w.signals for w in _FakeWorker.started] == [[signal.SIGINT], [signal.SIGINT]]


def test_sigterm_to_jobs_stops_every_worker_and_the_handler_is_put_back(tiny_data, tmp_path, monkeypatch):
    """A `kill` (SIGTERM) of the parent is forwarded like Ctrl-C; afterwards the SIGTERM handler that was
    there before is back (the parent may be a library caller with its own)."""
    import subprocess as sp

    class Terminated(_FakeWorker):
        def wait(self, timeout=None):
            if timeout is None and self is _FakeWorker.started[0]:
                os.kill(os.getpid(), signal.SIGTERM)
            return 143

    def ours(signum, frame):
        raise AssertionError("the caller's handler ran: the parent's own was not in place")

    before = signal.signal(signal.SIGTERM, ours)
    try:
        _FakeWorker.started = []
        monkeypatch.setattr(sp, "Popen", Terminated)
        assert _reproduce(tmp_path, "table2", "--methods", "SASRec", "--seeds", "1", "--jobs", "2") == 130
        assert [w.signals for w in _FakeWorker.started] == [[signal.SIGINT], [signal.SIGINT]]
        assert signal.getsignal(signal.SIGTERM) is ours
    finally:
        signal.signal(signal.SIGTERM, before)


def test_report_shows_a_figures_points_no_invocation_named_as_not_run(tmp_path, reference):
    """A figure reproduced for some of its x values (--values) lists the others as not run."""
    plan = _fabricated_plan(tmp_path, "limited_data", datasets=["Beauty"], seeds=[1], methods=["SASRec"],
                            values=["0.4", "0.1", "1.0"])  # 0.1: not in the definition; 1.0: its 1
    for r in plan.runs:
        _fabricate(r.dir, {"NDCG@10": 0.2 + float(r.value) / 10, "HR@10": 0.3})
    write_report(tmp_path / "runs" / "limited_data", tmp_path / "report")
    text = (tmp_path / "report" / "report.md").read_text()
    table = text.split("### Beauty, test NDCG@10\n\n")[1].split("\n\n")[0].splitlines()
    assert table[0] == "| method \\ share of users with training data | 10% | 20% | 40% | 60% | 80% | 100% |"
    assert table[2].startswith("| S3-Rec | not run | not run | not run | not run | not run | not run (paper ")
    assert table[3].startswith("| SASRec | 0.2100 | not run | 0.2400 | not run | not run | 0.3000 (paper ")


def test_an_experiment_of_ones_own_under_a_shipped_name_is_reported_as_recorded(tmp_path):
    exp_file = tmp_path / "ablation.toml"
    exp_file.write_text('''title = "my ablation"
figure = "mine"
kind = "bars"
protocol = "sampled"
datasets = ["Beauty"]
seeds = [1]
metrics = ["NDCG@10"]
primary_metric = "NDCG@10"

[[methods]]
id = "Mine"
model = "sasrec"
''')
    plan = make_plan(load_experiment(str(exp_file)), tmp_path / "runs" / "ablation", tmp_path / "runs" / "pretrain")
    write_grid(plan)
    [path] = write_report(tmp_path / "runs" / "ablation", tmp_path / "report")
    text = path.read_text()
    assert "| Mine | not run |" in text and "w/o SP" not in text


def test_sp_chance_spans_are_the_epochs_sp_sat_at_ln2():
    from s3rec.pretraining import CHANCE, sp_chance_spans

    sp = [0.69, CHANCE, CHANCE + 5e-5, 0.6, CHANCE, CHANCE, CHANCE - 2e-4, CHANCE]
    history = [{"epoch": e, "sp": v} for e, v in enumerate(sp, 1)]
    assert sp_chance_spans(history) == [(2, 3), (5, 6), (8, 8)]
    assert sp_chance_spans([{"epoch": 1, "mip": 1.0}]) == []


def test_report_pre_training_rows_say_never_not_run_or_unreadable(tmp_path):
    plan = _fabricated_plan(tmp_path, "ablation", datasets=["Beauty"], seeds=[1], methods=["S3-Rec", "no-MIP", "no-SP"])
    by_id = {p.id: p for p in plan.pretrains}
    good, broken = by_id["Beauty-default-seed42"], by_id["Beauty-mip_weight=0-seed42"]
    good.dir.mkdir(parents=True)
    (good.dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "sp": 0.5, "mip": 1.0}) + "\n")
    broken.dir.mkdir(parents=True)
    (broken.dir / "metrics.jsonl").write_text('{"epoch": 1, "sp"\n')
    [path] = write_report(tmp_path / "runs" / "ablation", tmp_path / "report")
    rows = {line.split(" | ")[0][2:]: line for line in path.read_text().split("## Pre-training runs")[1].splitlines()
            if line.startswith("| Beauty-")}
    assert rows["Beauty-default-seed42"].endswith("| 1 / 150 | mip 1.0000 sp 0.5000 | never |")
    assert "| ? / 150 | unreadable metrics.jsonl" in rows["Beauty-mip_weight=0-seed42"]
    assert rows["Beauty-sp_weight=0-seed42"].endswith("| 0 / 150 | not run |  |")


def test_a_pre_training_extended_since_is_reported_as_far_as_this_grid_used_it(tmp_path):
    """Pre-training folders are shared: a 10-epoch grid's report shows (and records) the first 10 epochs
    even after a 150-epoch grid extended the same run."""
    plan = make_plan(narrowed(load_experiment("ablation"), datasets=["Beauty"], seeds=[1], methods=["S3-Rec"]),
                     tmp_path / "runs" / "ablation", tmp_path / "runs" / "pretrain", pretrain_epochs=10)
    write_grid(plan)
    [pre] = plan.pretrains
    pre.dir.mkdir(parents=True)
    (pre.dir / "metrics.jsonl").write_text("".join(
        json.dumps({"epoch": e, "sp": 0.5, "mip": 1.0 / e}) + "\n" for e in range(1, 151)))
    [path] = write_report(tmp_path / "runs" / "ablation", tmp_path / "report")
    row = next(line for line in path.read_text().splitlines() if line.startswith("| Beauty-default-seed42"))
    assert "| 10 / 10 | mip 0.1000 sp 0.5000 |" in row
    copied = json.loads((tmp_path / "report" / "runs.json").read_text())["pretrains"]["Beauty-default-seed42"]["metrics"]
    assert len(copied) == 10 and copied[-1]["epoch"] == 10


def test_a_report_made_again_in_place_takes_pre_training_records_its_runs_folder_lacks_from_its_record(tmp_path):
    """A runs folder restored from a record has no pre-training folders: regenerating a report into the
    folder that holds the record shows the pre-trainings' recorded epochs; a run's own folder wins
    whenever it has records (a re-run, even with fewer epochs so far)."""
    plan = make_plan(narrowed(load_experiment("ablation"), datasets=["Beauty"], seeds=[1], methods=["S3-Rec", "no-SP"]),
                     tmp_path / "runs" / "ablation", tmp_path / "runs" / "pretrain", pretrain_epochs=3)
    write_grid(plan)
    by_id = {p.id: p for p in plan.pretrains}
    for p in plan.pretrains:
        p.dir.mkdir(parents=True)
        (p.dir / "metrics.jsonl").write_text("".join(
            json.dumps({"epoch": e, "sp": 0.5, "mip": 1.0 / e}) + "\n" for e in (1, 2, 3)))
        (p.dir / "config.json").write_text("{}\n")
    report = tmp_path / "report"
    write_report(tmp_path / "runs" / "ablation", report)
    shutil.rmtree(tmp_path / "runs" / "pretrain")  # the fresh checkout
    by_id["Beauty-default-seed42"].dir.mkdir(parents=True)  # re-run since: one epoch so far
    (by_id["Beauty-default-seed42"].dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "sp": 0.4, "mip": 2.0}) + "\n")
    [path] = write_report(tmp_path / "runs" / "ablation", report)
    rows = {line.split(" | ")[0][2:]: line for line in path.read_text().split("## Pre-training runs")[1].splitlines()
            if line.startswith("| Beauty-")}
    assert "| 3 / 3 | mip 0.3333 sp 0.5000 |" in rows["Beauty-sp_weight=0-seed42"]
    assert "| 1 / 3 | mip 2.0000 sp 0.4000 |" in rows["Beauty-default-seed42"]
    recorded = json.loads((report / "runs.json").read_text())["pretrains"]
    assert len(recorded["Beauty-sp_weight=0-seed42"]["metrics"]) == 3 and recorded["Beauty-sp_weight=0-seed42"]["config"] == {}
    assert recorded["Beauty-default-seed42"]["metrics"] == [{"epoch": 1, "sp": 0.4, "mip": 2.0}]
    assert recorded["Beauty-default-seed42"]["config"] is None  # the re-run has none: the earlier run's is not left
    # into a new folder there is no record: not run, never filled in
    [fresh] = write_report(tmp_path / "runs" / "ablation", tmp_path / "elsewhere")
    assert "| 0 / 3 | not run |" in fresh.read_text()


def test_incomplete_kept_pre_training_records_never_win_over_a_re_run(tmp_path):
    """Records an earlier report kept from a pre-training that never finished (lost mid-way) describe no
    reported run: a re-run of it is shown as it is, even with fewer epochs so far."""
    plan = make_plan(narrowed(load_experiment("ablation"), datasets=["Beauty"], seeds=[1], methods=["S3-Rec"]),
                     tmp_path / "runs" / "ablation", tmp_path / "runs" / "pretrain", pretrain_epochs=5)
    write_grid(plan)
    [pre] = plan.pretrains
    pre.dir.mkdir(parents=True)
    (pre.dir / "metrics.jsonl").write_text("".join(json.dumps({"epoch": e, "sp": 0.5, "mip": 1.0}) + "\n" for e in (1, 2, 3)))
    report = tmp_path / "report"
    write_report(tmp_path / "runs" / "ablation", report)  # kept: 3 of 5 epochs
    (pre.dir / "metrics.jsonl").write_text(json.dumps({"epoch": 1, "sp": 0.4, "mip": 2.0}) + "\n")  # lost, re-run
    [path] = write_report(tmp_path / "runs" / "ablation", report)
    row = next(line for line in path.read_text().splitlines() if line.startswith("| Beauty-default-seed42"))
    assert "(kept)" not in row and "| 1 / 5 | mip 2.0000 sp 0.4000 |" in row
