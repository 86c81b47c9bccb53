"""Reading an experiment's runs folder into records: each run's status and results, and the cells
(dataset x method [x varied value] x metric) a report's tables, plots and tests are made from.

A run's status is read from its folder, so a report can be made while a reproduction is still going:
``done`` once its ``results.json`` exists, ``failed`` with an ``error.txt``, ``unsupported`` for a
method s3rec cannot run yet, ``conflict`` as ``grid.json`` says, else ``not run``.
"""

from __future__ import annotations

import dataclasses
import json
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import S3RecError
from ..paper import paper_value
from .experiment import Experiment, Method, experiment_names, load_experiment
from .records import COMPACT_RANKS, load_compact_ranks


@dataclass
class RunResult:
    """One fine-tuning run of the grid, as found on disk."""

    id: str
    dir: Path
    dataset: str
    method: Method
    seed: int
    value: object
    status: str  # done | failed | unsupported | conflict | not run
    error: str = ""
    test: dict | None = None
    valid: dict | None = None
    best_epoch: int | None = None
    epochs: int | None = None
    seconds: float | None = None

    def ranks(self) -> np.ndarray | None:
        """Each user's 1-based test rank: the run's ``test_ranks.npy``, else its compact copy
        (``test_ranks.npz``, written by ``scripts/restore_runs.py``); None if neither."""
        if self.status != "done":
            return None
        if (self.dir / "test_ranks.npy").is_file():
            return np.load(self.dir / "test_ranks.npy")
        try:
            return load_compact_ranks(self.dir / COMPACT_RANKS) if (self.dir / COMPACT_RANKS).is_file() else None
        except (OSError, ValueError, KeyError):  # unreadable: reported as missing, the report goes on
            return None

    def curve(self, metric: str) -> list[float]:
        """The validation metric after each fine-tuning epoch (``metrics.jsonl``)."""
        path = self.dir / "metrics.jsonl"
        if self.status != "done" or not path.is_file():
            return []
        return [float(json.loads(line)["valid"][metric]) for line in path.read_text(encoding="utf-8").splitlines() if line]


@dataclass
class Cell:
    dataset: str
    method: Method
    value: object
    metric: str
    values: list[float] = field(default_factory=list)
    planned: int = 0
    statuses: list[str] = field(default_factory=list)
    paper: float | None = None

    @property
    def mean(self) -> float | None:
        return statistics.fmean(self.values) if self.values else None

    @property
    def std(self) -> float | None:
        return statistics.stdev(self.values) if len(self.values) > 1 else None

    @property
    def rel_diff(self) -> float | None:
        if self.mean is None or not self.paper:
            return None
        return (self.mean - self.paper) / self.paper

    @property
    def status(self) -> str:
        if self.values:
            return "done" if len(self.values) == self.planned else f"partial ({len(self.values)}/{self.planned} seeds)"
        if "unsupported" in self.statuses:
            return "not run (unsupported)"
        if "failed" in self.statuses or "conflict" in self.statuses:
            return "failed"
        return "not run"


def load_grid(exp_dir: Path) -> tuple[Experiment, dict]:
    path = exp_dir / "grid.json"
    if not path.is_file():
        raise S3RecError(f"{exp_dir}: no grid.json (not a folder written by `s3rec reproduce`)")
    try:
        grid = json.loads(path.read_text(encoding="utf-8"))
        exp = Experiment.from_dict(grid["experiment"])
    except (ValueError, KeyError, TypeError) as e:
        raise S3RecError(f"{path}: not a valid grid record ({e})") from None
    return _completed_from_definition(exp), grid


def _completed_from_definition(exp: Experiment) -> Experiment:
    """``exp`` completed from the shipped definition of the same name: its methods in the definition's
    order (the grid's own record of each method it ran, the settings those runs used; the definition's
    for the methods no invocation has named yet), its x values (a figure's) and its pairs, so what no
    invocation ran is reported as not run (a narrowed ``--methods`` or ``--values`` leaves the figure
    incomplete, and the report says so). A grid with a method or a varied setting the shipped
    definition lacks is an experiment of the user's own under the same name: left as recorded."""
    if exp.name not in experiment_names():
        return exp
    shipped = load_experiment(exp.name)
    shipped_ids = [m.id for m in shipped.methods]
    if exp.vary_setting != shipped.vary_setting or any(m.id not in shipped_ids for m in exp.methods):
        return exp
    recorded = {m.id: m for m in exp.methods}
    methods = tuple(recorded.get(m.id, m) for m in shipped.methods)
    values = tuple(dict.fromkeys((*shipped.vary_values, *exp.vary_values)))  # 1 and 1.0 are one value
    try:
        values = tuple(sorted(values))
    except TypeError:  # values of mixed types: as listed
        pass
    pairs = tuple(dict.fromkeys((*exp.pairs, *shipped.pairs)))
    return dataclasses.replace(exp, methods=methods, vary_values=values, pairs=pairs)


def collect(exp_dir: Path, exp: Experiment, grid: dict) -> list[RunResult]:
    """Every run of the grid with its status and results, read from its folder."""
    methods = {m.id: m for m in exp.methods}
    out = []
    for rec in grid["runs"]:
        run_dir = exp_dir / rec["dir"]
        method = methods[rec["method"]]
        r = RunResult(rec["id"], run_dir, rec["dataset"], method, rec["seed"], rec["value"], "not run")
        results = run_dir / "results.json"
        if method.unsupported:
            r.status, r.error = "unsupported", method.unsupported
        elif rec.get("status") == "conflict":
            r.status, r.error = "conflict", rec.get("error", "")
        elif results.is_file():
            data = json.loads(results.read_text(encoding="utf-8"))
            r.status, r.test, r.valid = "done", data["test"], data.get("valid")
            r.best_epoch, r.epochs, r.seconds = data.get("best_epoch"), data.get("epochs"), data.get("seconds")
        elif (run_dir / "error.txt").is_file():
            r.status = "failed"
            r.error = (run_dir / "error.txt").read_text(encoding="utf-8").splitlines()[0]
        out.append(r)
    return out


def experiment_values(exp: Experiment) -> tuple:
    return exp.vary_values if exp.vary_setting else (None,)


def _paper(exp: Experiment, dataset: str, method: Method, value, metric: str) -> float | None:
    """The paper's number for this cell: its tables only (the full-data point of a figure included)."""
    if exp.vary_setting == "train_fraction" and value != 1:
        return None
    if exp.vary_setting and exp.vary_setting != "train_fraction":
        return None
    return paper_value(exp.protocol, dataset, method.paper_as or method.label, metric)


def make_cells(exp: Experiment, runs: list[RunResult]) -> list[Cell]:
    cells = []
    datasets = list(dict.fromkeys(r.dataset for r in runs))
    for d in datasets:
        for m in exp.methods:
            if not m.applies(d):
                continue
            for v in experiment_values(exp):
                mine = [r for r in runs if r.dataset == d and r.method.id == m.id and r.value == v]
                for metric in exp.metrics:
                    cells.append(Cell(d, m, v, metric, [r.test[metric] for r in mine if r.status == "done"],
                                      len(mine), [r.status for r in mine], _paper(exp, d, m, v, metric)))
    return cells


def experiment_dirs(runs_dir: Path) -> list[Path]:
    """``runs_dir`` itself when it holds ``grid.json``, else its sub-folders that do."""
    runs_dir = Path(runs_dir)
    if (runs_dir / "grid.json").is_file():
        return [runs_dir]
    if not runs_dir.is_dir():
        raise S3RecError(f"{runs_dir}: no such folder")
    found = sorted(p.parent for p in runs_dir.glob("*/grid.json"))
    if not found:
        raise S3RecError(f"{runs_dir}: no grid.json here or in its sub-folders (run `s3rec reproduce` first)")
    return found


def one_folder_per_experiment(dirs: list[Path]) -> list[Path]:
    """The folders the index's summaries read: one per experiment, the one named as the experiment
    when several folders hold it (``ablation`` and ``ablation_pretrain10``), else the first."""
    chosen: dict[str, Path] = {}
    for d in dirs:
        name = load_grid(d)[0].name
        if name not in chosen or (d.name == name and chosen[name].name != name):
            chosen[name] = d
    return [d for d in dirs if d in chosen.values()]
