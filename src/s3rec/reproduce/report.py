"""``s3rec report RUNS_DIR``: Markdown and CSV tables and PNG plots from a reproduction's folder.

RUNS_DIR is an experiment folder (it holds ``grid.json``, written by ``s3rec reproduce``) or a folder
of them (``runs/reproduce``: one report per experiment plus an index). Run statuses are read from the
run folders themselves, so a report can be made while a reproduction is still going:

- a cell (dataset x method [x varied value] x metric) holds the mean and the sample standard deviation
  over the finished fine-tuning seeds, ``[k/n]`` when only k of the n planned seeds finished;
- a cell with no finished run says ``not run`` (``not run (unsupported)`` for a method the grid lists
  but s3rec cannot run yet, ``failed`` when its runs failed): never a number;
- the paper's value and the relative difference ``(ours - paper) / paper`` where the paper published
  one (Table 2 and the full-ranking table; the 100 % point of the limited-data figure is Table 2);
- tables: a paired t-test over users' test reciprocal ranks (each user's 1/rank averaged over the
  seeds) between the method marked ``ours`` and the best baseline by the primary metric (a method
  without pre-training when ``ours`` is pre-trained);
- plots (matplotlib, headless): grouped bars (Figs. 2, 3), lines against the varied setting
  (Figs. 4, 5), validation curves per fine-tuning epoch (Fig. 6).
"""

from __future__ import annotations

import csv
import dataclasses
import datetime
import io
import json
import math
import statistics
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..errors import S3RecError
from ..fileio import atomic_path, atomic_write_text
from .experiment import Experiment, Method, experiment_names, load_experiment
from .paper import paper_value
from .stats import paired_ttest


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
        """Each user's 1-based test rank: the run's ``test_ranks.npy``, else the compact copy a report
        keeps beside its records (``test_ranks.npz``, see :func:`save_compact_ranks`); None if neither."""
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


def _values(exp: Experiment) -> tuple:
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
            for v in _values(exp):
                mine = [r for r in runs if r.dataset == d and r.method.id == m.id and r.value == v]
                for metric in exp.metrics:
                    cells.append(Cell(d, m, v, metric, [r.test[metric] for r in mine if r.status == "done"],
                                      len(mine), [r.status for r in mine], _paper(exp, d, m, v, metric)))
    return cells


def fmt_cell(c: Cell, with_paper: bool = True) -> str:
    if c.mean is None:
        text = c.status
    else:
        text = f"{c.mean:.4f}" + (f" ± {c.std:.4f}" if c.std is not None else "")
        if len(c.values) < c.planned:
            text += f" [{len(c.values)}/{c.planned}]"
    if with_paper and c.paper is not None:
        diff = f", {c.rel_diff * 100:+.1f}%" if c.rel_diff is not None else ""
        text += f" (paper {c.paper:.4f}{diff})"
    return text


def _fmt_value(exp: Experiment, v) -> str:
    if exp.vary_setting == "train_fraction":
        return f"{float(v) * 100:g}%"
    return f"{v:g}" if isinstance(v, float) else str(v)


def _md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def _csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def _num(x, digits: int = 6) -> str:
    return "" if x is None else f"{x:.{digits}g}" if isinstance(x, float) else str(x)


def _reciprocal_ranks(done: list[RunResult], method_id: str) -> np.ndarray | None:
    """Each user's test 1/rank averaged over the method's finished seeds (None when ranks are missing)."""
    ranks = [r.ranks() for r in done if r.method.id == method_id]
    if not ranks or any(x is None for x in ranks) or len({x.shape for x in ranks}) != 1:
        return None
    return np.mean([1.0 / x.astype(np.float64) for x in ranks], axis=0)


def _pair_row(row: dict, done: list[RunResult], a_id: str, b_id: str) -> dict:
    a, b = _reciprocal_ranks(done, a_id), _reciprocal_ranks(done, b_id)
    if a is None or b is None or a.shape != b.shape:
        return {**row, "note": RANKS_MISSING}
    t = paired_ttest(a, b)
    return {**row, "mrr_ours": t.mean_a, "mrr_baseline": t.mean_b, "t": t.t, "p": t.p, "users": t.n,
            "seeds_ours": len([r for r in done if r.method.id == a_id]),
            "seeds_baseline": len([r for r in done if r.method.id == b_id]), "note": ""}


def has_significance(exp: Experiment) -> bool:
    """Whether the report of ``exp`` has paired t-tests (a table with an ``ours`` method or pairs)."""
    return exp.kind == "table" and (any(m.ours for m in exp.methods) or bool(exp.pairs))


def _is_baseline(ours, m) -> bool:
    """Whether method ``m`` is a baseline of ``ours``: another method, without pre-training when ``ours``
    is pre-trained (another pre-trained method is a variant of ours: a preset, another loss)."""
    return m.id != ours.id and (ours.pretrain is None or m.pretrain is None)


def significance(exp: Experiment, runs: list[RunResult]) -> list[dict]:
    """Per dataset: the paired t-test over users' reciprocal ranks (averaged over seeds) between the
    ``ours`` method and the baseline with the best mean primary metric, then one per listed pair
    (``exp.pairs``; ``ours`` is then the pair's first method, ``baseline`` its second). When ``ours``
    is pre-trained, its baselines are the methods without pre-training: another pre-trained method
    is a variant of ours (a preset, another loss), not a baseline."""
    ours = next((m for m in exp.methods if m.ours), None)
    label = {m.id: m.label for m in exp.methods}
    out = []
    for d in dict.fromkeys(r.dataset for r in runs):
        done = [r for r in runs if r.dataset == d and r.status == "done"]
        finished = {r.method.id for r in done}
        if ours is not None:
            row = {"dataset": d, "ours": ours.label, "baseline": "", "metric": exp.primary_metric, "best": True}
            means = {}
            for m in exp.methods:
                vals = [r.test[exp.primary_metric] for r in done if r.method.id == m.id]
                if vals and _is_baseline(ours, m):
                    means[m.id] = statistics.fmean(vals)
            if ours.id not in finished or not means:
                out.append({**row, "note": "not run" if ours.id not in finished else "no baseline finished"})
            else:
                best = max(means, key=means.get)
                out.append(_pair_row({**row, "baseline": label[best]}, done, ours.id, best))
        applies = {m.id: m.applies(d) for m in exp.methods}
        for a, b in exp.pairs:
            if not (applies.get(a) and applies.get(b)):  # not on this dataset (or a grid.json of another version)
                continue
            row = {"dataset": d, "ours": label[a], "baseline": label[b], "metric": exp.primary_metric, "best": False}
            missing = [label[x] for x in (a, b) if x not in finished]
            out.append({**row, "note": f"not run: {', '.join(missing)}"} if missing else _pair_row(row, done, a, b))
    return out


RANKS_MISSING = "per-user ranks missing (test_ranks.npy / test_ranks.npz)"


def keep_significance(exp: Experiment, runs: list[RunResult], sig: list[dict], earlier_csv: Path) -> list[dict]:
    """``sig`` with each row whose per-user ranks are missing replaced by the same row of an earlier
    report's ``NAME_significance.csv`` (a report made again in place from a fresh checkout: ranks of
    reports made before 2026-12-02 were never committed), marked ``kept``, but only where that row's
    two MRR means equal the means of the finished runs' test MRR now (to 1e-4 relative): the same runs
    made it. Anything else stays missing."""
    if not earlier_csv.is_file() or not any(s.get("note") == RANKS_MISSING for s in sig):
        return sig
    with open(earlier_csv, newline="") as f:
        earlier = {(r["dataset"], r["ours"], r["baseline"], r["best_baseline"]): r for r in csv.DictReader(f)}
    ids = {m.label: m.id for m in exp.methods}

    def mrr(dataset: str, label: str) -> float | None:
        vals = [r.test.get("MRR") for r in runs
                if r.dataset == dataset and r.status == "done" and r.method.id == ids.get(label)]
        return statistics.fmean(vals) if vals and None not in vals else None

    out = []
    for s in sig:
        e = earlier.get((s["dataset"], s["ours"], s["baseline"], str(s["best"]).lower()))
        if s.get("note") != RANKS_MISSING or e is None or not e.get("t"):
            out.append(s)
            continue
        a, b = mrr(s["dataset"], s["ours"]), mrr(s["dataset"], s["baseline"])
        same = a is not None and b is not None and math.isclose(a, float(e["mrr_ours"]), rel_tol=1e-4) \
            and math.isclose(b, float(e["mrr_baseline"]), rel_tol=1e-4)
        out.append({**s, "mrr_ours": float(e["mrr_ours"]), "mrr_baseline": float(e["mrr_baseline"]), "t": float(e["t"]),
                    "p": float(e["p"]), "users": int(e["users"]), "note": "kept", "kept": True} if same else s)
    return out


def _fmt_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 1e-300" if p < 1e-300 else f"{p:.2g}"


# ---- plots -------------------------------------------------------------------------------------


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        fig.savefig(f, format="png", dpi=120, bbox_inches="tight")


def _empty(ax) -> None:
    """A panel without a finished run says so instead of showing meaningless axes."""
    ax.text(0.5, 0.5, "not run", transform=ax.transAxes, ha="center", va="center", fontsize=12, color="0.4")
    ax.set_yticks([])


def _dataset_title(exp: Experiment, dataset: str) -> str:
    """The dataset's name, saying so when the paper's figure does not use it (e.g. Fig. 4 on Beauty
    where the paper has Sports and Yelp)."""
    if exp.name not in experiment_names():
        return dataset
    paper = load_experiment(exp.name).datasets
    if dataset in paper:
        return dataset
    return f"{dataset}\n(the paper's figure: {', '.join(paper)})"


def _figure_title(exp: Experiment, note: str = "") -> str:
    """The figure's title, with ``note`` (settings changed from the definition) on a second line."""
    title = f"{exp.figure}: {exp.title.split(': ', 1)[-1]}"
    return f"{title}\n{note}" if note else title


def plot_bars(exp: Experiment, cells: list[Cell], path: Path, note: str = "") -> None:
    """Grouped bars: one group per dataset, one bar per method, the primary metric; error bars are
    the standard deviation over seeds; a method without a finished run is written as 'not run'."""
    plt = _pyplot()
    from matplotlib.patches import Patch

    metric = exp.primary_metric
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    methods = list(exp.methods)
    n = len(methods)
    width = 0.8 / n
    fig, ax = plt.subplots(figsize=(max(6.0, 1.0 + len(datasets) * (0.45 * n + 0.6)), 4.2))
    colors = plt.get_cmap("tab20" if n > 10 else "tab10").colors
    top = max([c.mean + (c.std or 0.0) for c in cells if c.metric == metric and c.mean is not None] or [1.0])
    handles = []
    for j, m in enumerate(methods):
        xs, ys, es = [], [], []
        for i, d in enumerate(datasets):
            c = next(c for c in cells if c.dataset == d and c.method.id == m.id and c.metric == metric)
            x = i + (j - (n - 1) / 2) * width
            if c.mean is None:
                ax.text(x, top * 0.02, c.status.replace(" (", "\n("), rotation=90, ha="center", va="bottom",
                        fontsize=7, color="0.35")
            else:
                xs.append(x), ys.append(c.mean), es.append(c.std or 0.0)
        color = colors[j % len(colors)]
        if xs:
            ax.bar(xs, ys, width * 0.92, yerr=es, capsize=2, color=color, error_kw={"elinewidth": 0.8})
            handles.append(Patch(facecolor=color, label=m.label))
        else:  # a legend entry that says so
            handles.append(Patch(facecolor="white", edgecolor="0.6", hatch="///", label=f"{m.label} (not run)"))
    ax.set_xticks(range(len(datasets)), [_dataset_title(exp, d) for d in datasets])
    ax.set_ylabel(f"test {metric}")
    ax.set_ylim(0, top * 1.08)
    ax.set_title(_figure_title(exp, note), fontsize=10)
    ax.legend(handles=handles, fontsize=8, ncol=1 if n <= 6 else 2, bbox_to_anchor=(1.01, 1), loc="upper left",
              frameon=False)
    ax.grid(axis="y", alpha=0.3)
    _save(fig, path)
    plt.close(fig)


def _tick_labels(exp: Experiment, values: list, xs: list[float]) -> list[str]:
    """Tick labels, leaving out one that would touch the label before it (uneven values: 0, 10, 30, 50, 150)."""
    span = (max(xs) - min(xs)) or 1.0
    gap = 0.08 if len(values) <= 8 else 0.0  # (more values: the labels are turned 45 degrees and fit)
    labels, last = [], None
    for v, x in zip(values, xs):
        crowded = last is not None and x - last < gap * span
        labels.append("" if crowded else _fmt_value(exp, v))
        last = last if crowded else x
    return labels


def log_axis(values: list) -> bool:
    """Whether a varied setting's values read better on a logarithmic axis: all positive and spanning
    at least a factor of 16 (negatives 4 ... 256), not the epoch or fraction grids that start at 0."""
    xs = [float(v) for v in values]
    return len(xs) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 16


def plot_lines(exp: Experiment, cells: list[Cell], path: Path, note: str = "") -> None:
    """One panel per (metric, dataset): the metric against the varied setting, one line per method."""
    plt = _pyplot()
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    metrics = list(exp.metrics)
    fig, axes = plt.subplots(len(metrics), len(datasets), figsize=(4.6 * len(datasets), 3.4 * len(metrics)),
                             squeeze=False)
    values = list(exp.vary_values)
    xs_all = [float(v) * (100 if exp.vary_setting == "train_fraction" else 1) for v in values]
    markers = "osD^v<>p*h"
    for r, metric in enumerate(metrics):
        for k, d in enumerate(datasets):
            ax = axes[r][k]
            for j, m in enumerate(exp.methods):
                pts = {x: (c.mean, c.std or 0.0) for x, v in zip(xs_all, values)
                       for c in cells if c.dataset == d and c.method.id == m.id and c.metric == metric and c.value == v
                       and c.mean is not None}
                label = m.label if pts else f"{m.label} (not run)"
                if pts:
                    # a point not run is a gap in the line (NaN), never bridged by a straight segment
                    y, e = zip(*(pts.get(x, (math.nan, math.nan)) for x in xs_all))
                    ax.errorbar(xs_all, y, yerr=e, marker=markers[j % len(markers)], ms=4, capsize=2, label=label,
                                lw=1.3)
                else:
                    ax.plot([], [], marker=markers[j % len(markers)], ls="none", label=label, color="0.6")
            if log_axis(values):
                ax.set_xscale("log", base=2)
                ax.minorticks_off()
                ax.set_xticks(xs_all, [_fmt_value(exp, v) for v in values], fontsize=8)
            else:
                ax.set_xticks(xs_all, _tick_labels(exp, values, xs_all), rotation=45 if len(values) > 8 else 0,
                              fontsize=8)
            if not any(len(line.get_xdata()) for line in ax.lines):
                _empty(ax)
            ax.set_xlabel(exp.vary_label)
            ax.set_ylabel(f"test {metric}")
            ax.set_title(_dataset_title(exp, d), fontsize=10)
            ax.grid(alpha=0.3)
            if r == 0 and k == len(datasets) - 1:
                ax.legend(fontsize=8, frameon=False, bbox_to_anchor=(1.02, 1), loc="upper left")
    fig.suptitle(_figure_title(exp, note), fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


def curves(exp: Experiment, runs: list[RunResult]) -> dict[tuple[str, str], list[tuple[int, float, float, int]]]:
    """(dataset, method id) -> [(epoch, mean, std, seeds)] of the validation primary metric, over the
    seeds that reached the epoch."""
    out = {}
    for d in dict.fromkeys(r.dataset for r in runs):
        for m in exp.methods:
            series = [r.curve(exp.primary_metric) for r in runs if r.dataset == d and r.method.id == m.id]
            series = [s for s in series if s]
            rows = []
            for e in range(max((len(s) for s in series), default=0)):
                vals = [s[e] for s in series if len(s) > e]
                rows.append((e + 1, statistics.fmean(vals), statistics.stdev(vals) if len(vals) > 1 else 0.0, len(vals)))
            out[(d, m.id)] = rows
    return out


def plot_convergence(exp: Experiment, curve: dict, path: Path, note: str = "") -> None:
    plt = _pyplot()
    datasets = list(dict.fromkeys(d for d, _ in curve))
    fig, axes = plt.subplots(1, len(datasets), figsize=(4.8 * len(datasets), 3.6), squeeze=False)
    for k, d in enumerate(datasets):
        ax = axes[0][k]
        for m in exp.methods:
            rows = curve[(d, m.id)]
            if not rows:
                ax.plot([], [], label=f"{m.label} (not run)", color="0.6")
                continue
            e, mean, std, _ = map(np.array, zip(*rows))
            (line,) = ax.plot(e, mean, label=m.label, lw=1.4)
            ax.fill_between(e, mean - std, mean + std, color=line.get_color(), alpha=0.2, lw=0)
        if not any(curve[(d, m.id)] for m in exp.methods):
            _empty(ax)
            ax.set_xticks([])
        ax.set_xlabel("fine-tuning epoch")
        ax.set_ylabel(f"validation {exp.primary_metric}")
        ax.set_title(_dataset_title(exp, d), fontsize=10)
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8, frameon=False, loc="lower right")
    fig.suptitle(_figure_title(exp, note), fontsize=11)
    fig.tight_layout()
    _save(fig, path)
    plt.close(fig)


# ---- the report --------------------------------------------------------------------------------


def _override_text(o: dict) -> str:
    parts = [f"--set {k}={v}" for k, v in (o.get("set") or {}).items()]
    parts += [f"--pretrain-set {k}={v}" for k, v in (o.get("pretrain_set") or {}).items()]
    if o.get("pretrain_epochs") is not None:
        parts.append(f"--pretrain-epochs {o['pretrain_epochs']}")
    return " ".join(parts)


def _overrides_seen(grid: dict) -> tuple[list[str], list[str]]:
    """``(seen, changed)``: the overrides of each reproduction into the grid's folder, as option text,
    and the distinct non-empty ones."""
    seen = [_override_text(o) for o in grid.get("overrides_seen", [grid.get("overrides") or {}])]
    return seen, [t for t in dict.fromkeys(seen) if t]


def settings_note(grid: dict) -> str:
    """A plot's line on the settings its runs changed from the definition ('' when none)."""
    seen, changed = _overrides_seen(grid)
    if not changed:
        return ""
    if len(set(seen)) > 1:
        return "runs made with different settings changed from the definition (see report.md)"
    return f"settings changed from the definition: {changed[0]}"


def _settings_lines(grid: dict) -> list[str]:
    seen, changed = _overrides_seen(grid)
    if not changed:
        return ["Settings: the experiment's definition, unchanged (each model's paper settings)."]
    if len(set(seen)) > 1:
        listing = "; ".join(f"`{t}`" if t else "none" for t in dict.fromkeys(seen))
        return [f"**The runs in this folder were made by several reproductions with different changes to the "
                f"definition: {listing}** (each run's config.json has its settings). Numbers made with other "
                "settings than the paper's are not comparable with its numbers."]
    return [f"**Settings changed from the definition for these runs: `{changed[0]}`.** Numbers made with "
            "other settings than the paper's are not comparable with its numbers."]


def _table_sections(exp: Experiment, cells: list[Cell]) -> list[str]:
    out = []
    datasets = list(dict.fromkeys(c.dataset for c in cells))
    if exp.kind == "table" or (exp.kind in ("bars", "convergence") and not exp.vary_setting):
        for d in datasets:
            rows = []
            for m in exp.methods:
                if not m.applies(d):
                    continue
                rows.append([m.label] + [fmt_cell(next(c for c in cells if c.dataset == d and c.method.id == m.id
                                                        and c.metric == k)) for k in exp.metrics])
            out += [f"### {d}", "", _md_table(["method", *exp.metrics], rows), ""]
    else:
        for metric in exp.metrics:
            for d in datasets:
                rows = []
                for m in exp.methods:
                    rows.append([m.label] + [fmt_cell(next(c for c in cells if c.dataset == d and c.method.id == m.id
                                                            and c.metric == metric and c.value == v))
                                             for v in exp.vary_values])
                header = [f"method \\ {exp.vary_label}", *[_fmt_value(exp, v) for v in exp.vary_values]]
                out += [f"### {d}, test {metric}", "", _md_table(header, rows), ""]
    return out


RUN_RECORDS = ("results.json", "config.json", "metrics.jsonl")  # small; checkpoints stay behind
COMPACT_RANKS = "test_ranks.npz"


def save_compact_ranks(path: Path, ranks: np.ndarray) -> None:
    """Write per-user ranks as a compressed ``.npz`` in the smallest unsigned type that holds them
    (uint8 under the sampled protocol's 100 candidates): for Beauty's 22,363 users 16 KB (sampled)
    to 42 KB (full ranking, at most) instead of 89 KB, small enough to commit beside a report so its paired t-tests can be rebuilt."""
    ranks = np.asarray(ranks)
    if not np.issubdtype(ranks.dtype, np.integer) or (ranks.size and ranks.min() < 1):
        raise S3RecError(f"{path}: ranks must be positive integers")
    top = int(ranks.max()) if ranks.size else 0
    if top > np.iinfo(np.int32).max:  # they are read back as int32, as test_ranks.npy holds them
        raise S3RecError(f"{path}: a rank of {top} does not fit in int32")
    dtype = next(t for t in (np.uint8, np.uint16, np.uint32) if top <= np.iinfo(t).max)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, ranks=ranks.astype(dtype))


def load_compact_ranks(path: Path) -> np.ndarray:
    """The ranks :func:`save_compact_ranks` wrote, as int32 (as ``test_ranks.npy`` holds them)."""
    with np.load(path, allow_pickle=False) as z:
        return z["ranks"].astype(np.int32)


def copy_run_records(exp_dir: Path, runs: list[RunResult], out_dir: Path, with_ranks: bool = False) -> None:
    """Copy ``grid.json`` and each finished run's records (:data:`RUN_RECORDS`) into
    ``out_dir/runs/RUN_ID/``, so that every number of the report traces to a file beside it; with
    ``with_ranks`` (an experiment with paired tests) also its per-user test ranks, compact
    (:data:`COMPACT_RANKS`), so the report's significance tests can be made again from the records
    alone (``scripts/restore_runs.py``)."""
    atomic_write_text(out_dir / "grid.json", (exp_dir / "grid.json").read_text(encoding="utf-8"))
    for r in runs:
        if r.status == "done":
            _copy_records(r.dir, out_dir / "runs" / r.id, RUN_RECORDS)
            kept = out_dir / "runs" / r.id / COMPACT_RANKS
            ranks = r.ranks() if with_ranks else None
            if ranks is not None:
                save_compact_ranks(kept, ranks)
            elif kept.parent.resolve() != r.dir.resolve():
                kept.unlink(missing_ok=True)  # not the run's ranks (any more): never a stale copy


def _copy_records(src: Path, dst: Path, names: tuple[str, ...], drop_missing: bool = False) -> None:
    """Copy the text files ``names`` that exist in ``src`` into ``dst`` (atomically, one by one);
    ``drop_missing``: remove from ``dst`` those ``src`` lacks (never another run's records left beside)."""
    for f in names:
        if (src / f).is_file():
            atomic_write_text(dst / f, (src / f).read_text(encoding="utf-8"))
        elif drop_missing:
            (dst / f).unlink(missing_ok=True)


def _epochs_in(records: Path, planned) -> int:
    """Lines of a ``metrics.jsonl`` (one per epoch) counted up to ``planned`` epochs (all when not an int);
    0 when unreadable."""
    try:
        n = sum(1 for x in records.read_text(encoding="utf-8").splitlines() if x)
    except (OSError, UnicodeDecodeError):
        return 0
    return min(n, planned) if isinstance(planned, int) else n


def _first_start(environment: Path) -> datetime.datetime | None:
    """When a pre-training record's first epoch began: its ``environment.jsonl``'s first line, if that
    line is the start of epoch 1 (a run begun before the file was kept starts it at a later epoch)."""
    try:
        first = json.loads(environment.read_text(encoding="utf-8").splitlines()[0])
        return datetime.datetime.fromisoformat(first["time"]) if first.get("from_epoch") == 1 else None
    except (OSError, UnicodeDecodeError, IndexError, ValueError, KeyError, TypeError, AttributeError):
        return None


def other_weights(exp_dir: Path, grid: dict, pretrain_id: str, history: list[dict],
                  environment: Path) -> list[tuple[str, str]]:
    """``(run id, why)`` of the grid's finished fine-tunings from ``pretrain_id`` that did not start from
    the weights its records (``history``, ``environment``) describe; why we know: the digest of the weights
    the fine-tuning started from differs from the one the pre-training recorded for that epoch; or,
    for records from before digests were kept, the fine-tuning started before this pre-training's first
    epoch began (an earlier run of it, lost with its folder, then made again). A fine-tuning whose
    ``results.json`` has neither a digest nor a start time (the oldest records) cannot be checked, nor
    one without a digest that (re)started after this record began: its start time is its last resume's."""
    began = _first_start(environment)
    out = []
    for r in grid.get("runs", []):
        epoch = r.get("pretrain_epoch")
        if r.get("pretrain") != pretrain_id or not isinstance(epoch, int) or not 1 <= epoch <= len(history):
            continue
        try:
            res = json.loads((exp_dir / r["dir"] / "results.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            continue
        if not isinstance(res, dict) or res.get("checkpoint_from"):
            continue  # not run, or a test of another run's model (which says where it came from)
        mine, recorded = res.get("init_weights_sha256"), history[epoch - 1].get("weights_sha256")
        if mine and recorded:
            if mine != recorded:
                out.append((r["id"], "the weights' digest differs"))
            continue
        try:
            started = datetime.datetime.fromisoformat(res["environment"]["time"])
            earlier = began is not None and started < began
        except (KeyError, TypeError, ValueError):  # (TypeError: a naive time against an aware one)
            continue
        if earlier:
            out.append((r["id"], f"started {started:%Y-%m-%d %H:%M}, before this record's first epoch"))
    return out


EARLIER = "earlier"  # pretrain/ID/earlier/: another run's records that some of the grid's fine-tunings used


def all_from(exp_dir: Path, grid: dict, pretrain_id: str, history: list[dict]) -> bool:
    """Whether every finished fine-tuning of the grid from ``pretrain_id`` recorded the digest of the
    weights ``history`` gives for its epoch (then no other run of the pre-training needs its records)."""
    for r in grid.get("runs", []):
        if r.get("pretrain") != pretrain_id or not isinstance(r.get("pretrain_epoch"), int):
            continue
        try:
            res = json.loads((exp_dir / r["dir"] / "results.json").read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, ValueError, KeyError, TypeError):
            continue
        if not isinstance(res, dict) or res.get("checkpoint_from"):
            continue
        epoch = r["pretrain_epoch"]
        recorded = history[epoch - 1].get("weights_sha256") if 1 <= epoch <= len(history) else None
        if not recorded or res.get("init_weights_sha256") != recorded:
            return False
    return True


def _history(records: Path, planned) -> tuple[list[str], list[dict]]:
    """A pre-training's ``metrics.jsonl`` lines, and rows, up to the ``planned`` epochs (a shared run
    extended since by a longer grid: the epochs this grid fine-tuned from, not the later ones)."""
    lines = [x for x in records.read_text(encoding="utf-8").splitlines() if x]
    if isinstance(planned, int):
        lines = lines[:planned]
    return lines, [json.loads(x) for x in lines]


def _pretrain_row(label: str, history: list[dict], planned) -> list[str]:
    from ..models.s3rec import OBJECTIVES
    from ..pretrain import sp_chance_spans

    spans = sp_chance_spans(history)
    last = history[-1] if history else {}
    losses = " ".join(f"{k} {last[k]:.4f}" for k in OBJECTIVES if isinstance(last.get(k), (int, float)))
    chance = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans) if spans else (
        "never" if "sp" in last else "no SP")
    return [label, f"{len(history)} / {planned if planned is not None else '?'}", losses or "-", chance]


def pretrain_section(exp_dir: Path, grid: dict, out_dir: Path) -> list[str]:
    """Markdown lines on the grid's pre-training runs (epochs done, last losses, the epochs SP sat at
    chance); copies each one's ``config.json``, ``environment.jsonl`` and ``metrics.jsonl`` (up to the epochs this grid
    planned; no checkpoints) into ``out_dir/pretrain/ID/``. A pre-training whose folder has no records
    (a fresh checkout restored with ``scripts/restore_runs.py``, which leaves pre-trainings out) keeps the
    records an earlier report wrote into ``out_dir`` (regenerating a report in place), said so in its row;
    so does one whose folder holds fewer of the grid's epochs than those records hold, when they hold them
    all (the folder was lost and a shorter grid ran the same pre-training again).

    When the folder holds another complete run than those records, and not every finished fine-tuning
    of the grid is known by digest to have started from the folder's run (:func:`all_from`), the
    recorded run's records move to ``pretrain/ID/earlier/`` and get a row of their own: no finished
    fine-tuning loses the record of the pre-training it may have used. The fine-tunings known not to
    have started from a first row's run (:func:`other_weights`) are listed below the table."""
    rows, elsewhere = [], []
    kept_any = False
    for p in grid.get("pretrains", []):
        src = (exp_dir / p["dir"]).resolve()
        records = src / "metrics.jsonl"
        kept = out_dir / "pretrain" / p["id"]
        planned = p.get("epochs")
        kept_n = _epochs_in(kept / "metrics.jsonl", planned)  # 0 when there are none
        # the kept records win over a missing folder, and over a re-run that has fewer of the grid's epochs
        # than they do when they are complete (a complete pre-training is what the reported runs used)
        from_report = kept_n > 0 and (not records.is_file() or (
            isinstance(planned, int) and kept_n == planned and _epochs_in(records, planned) < kept_n))
        if from_report:
            src, records = kept, kept / "metrics.jsonl"
            kept_any = True
        if not records.is_file():
            why = f"failed: {p.get('error') or '?'}" if p.get("status") == "failed" else "not run"
            rows.append([p["id"], f"0 / {p.get('epochs', '?')}", why, ""])
            continue
        try:
            lines, history = _history(records, planned)
            others = other_weights(exp_dir, grid, p["id"], history, src / "environment.jsonl")
            if (not from_report and kept_n == planned and _history(kept / "metrics.jsonl", planned)[0] != lines
                    and not all_from(exp_dir, grid, p["id"], history)):
                # the folder holds another run than the one recorded here, and some finished fine-tunings
                # may have used the recorded one: keep its records beside
                _copy_records(kept, kept / EARLIER, ("config.json", "environment.jsonl", "metrics.jsonl"),
                              drop_missing=True)
            row = _pretrain_row(p["id"] + (" (kept)" if from_report else ""), history, planned)
        except (OSError, ValueError, KeyError, TypeError) as e:
            rows.append([p["id"], f"? / {p.get('epochs', '?')}", f"unreadable {records.name} ({e})", ""])
            continue
        if not from_report:
            _copy_records(src, kept, ("config.json", "environment.jsonl"), drop_missing=True)
            atomic_write_text(kept / "metrics.jsonl", "".join(x + "\n" for x in lines))
        rows.append(row)
        earlier = kept / EARLIER
        fits_earlier: set[str] = set()
        if (earlier / "metrics.jsonl").is_file():
            try:
                _, earlier_history = _history(earlier / "metrics.jsonl", planned)
                rows.append(_pretrain_row(f"{p['id']}, an earlier run (`{EARLIER}/`)", earlier_history, planned))
                fits_earlier = {r for r, _ in others} - {r for r, _ in other_weights(
                    exp_dir, grid, p["id"], earlier_history, earlier / "environment.jsonl")}
            except (OSError, ValueError, KeyError, TypeError):
                pass
        if others:
            elsewhere.append(f"- `{p['id']}`: " + ", ".join(
                f"`{r}` ({why}" + ("; it started from the earlier run" if r in fits_earlier else "") + ")"
                for r, why in others))
    if not rows:
        return []
    note = (" Marked (kept): the run's folder has no records, or fewer of the grid's epochs than the complete ones "
            "the earlier report here wrote (a fresh checkout: checkpoints and pre-training records are not "
            "committed; a shorter grid may have run the same pre-training again since), so this report keeps "
            "those.") if kept_any else ""
    return ["## Pre-training runs", "",
            "Each pre-training this grid fine-tunes from (records in `pretrain/ID/`, no checkpoints): epochs "
            "done of those planned, the last epoch's loss terms (sums per instance), and the epochs whose SP term "
            "was ln 2 within 1e-4, its value at chance: over a long span, a sign that its positive and negative "
            "scores saturated and SP did not train (README, pre-training; `scripts/sp_saturation.py` checks a "
            "run's logits)." + note + (
                f" A second row (`{EARLIER}/`): the pre-training was lost with its folder and made again (same "
                "settings and seed); the first row is the run in the folder now, the second the earlier one, "
                "kept because finished fine-tunings may have started from it." if any(
                    f"(`{EARLIER}/`)" in r[0] for r in rows) else ""), "",
            _md_table(["pre-training", "epochs", "last epoch's losses", "SP at chance (epochs)"], rows), ""] + (
        ["Fine-tunings known (by the weights' digest or their start time) not to have started from the run a "
         "pre-training's first row describes:", "", *elsewhere, ""] if elsewhere else [])


def write_experiment_report(exp_dir: Path, out_dir: Path) -> Path:
    """The report of one experiment folder into ``out_dir``: ``report.md``, ``NAME.csv`` (cells),
    ``NAME_runs.csv``, and where they apply ``NAME_significance.csv``, ``NAME_curves.csv``, ``NAME.png``;
    ``grid.json`` and ``runs/RUN_ID/`` with each finished run's results, config and per-epoch log."""
    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    exp, grid = load_grid(exp_dir)
    runs = collect(exp_dir, exp, grid)
    cells = make_cells(exp, runs)
    name = exp.name
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "failed", "conflict", "unsupported", "not run")}
    copy_run_records(exp_dir, runs, out_dir, with_ranks=has_significance(exp))

    atomic_write_text(out_dir / f"{name}.csv", _csv_text(
        ["experiment", "dataset", "method", "label", "setting", "value", "metric", "seeds_done", "seeds_planned",
         "mean", "std", "paper", "rel_diff", "status"],
        [[name, c.dataset, c.method.id, c.method.label, exp.vary_setting, "" if c.value is None else c.value, c.metric,
          len(c.values), c.planned, _num(c.mean), _num(c.std), _num(c.paper), _num(c.rel_diff), c.status]
         for c in cells]))
    atomic_write_text(out_dir / f"{name}_runs.csv", _csv_text(
        ["run", "dataset", "method", "seed", "value", "status", *exp.metrics, "best_epoch", "epochs", "seconds", "error"],
        [[r.id, r.dataset, r.method.id, r.seed, "" if r.value is None else r.value, r.status,
          *[_num(r.test[k]) if r.test else "" for k in exp.metrics], _num(r.best_epoch), _num(r.epochs),
          _num(r.seconds), r.error] for r in runs]))

    lines = [f"# {exp.figure}: {exp.title.split(': ', 1)[-1]}" if exp.figure else f"# {exp.title}", "",
             f"Experiment `{name}`, {exp.protocol} protocol. Generated by `s3rec report` on "
             f"{datetime.date.today().isoformat()} from `{exp_dir}` (grid updated {grid.get('updated', '?')}).",
             f"Runs: {len(runs)} planned; " + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + ".",
             f"Fine-tuning seeds {', '.join(map(str, exp.seeds))}; pre-training seed {exp.pretrain_seed}. "
             "Cells: mean ± sample standard deviation over the finished seeds ([k/n]: only k of n seeds finished); "
             "\"not run\" where no run finished (never filled in); the paper's value and our relative difference "
             "in brackets where the paper published one.", "", *_settings_lines(grid), ""]
    if exp.notes:
        lines += [exp.notes, ""]
    for m in exp.methods:
        said = ([f"the settings of preset `{m.preset}` (`s3rec presets {m.preset}`)"] if m.preset else []) + (
            [f"beside it, the paper's numbers for {m.paper_as}"] if m.paper_as and m.paper_as != m.label else [])
        if said:
            lines += [f"{m.label}: {'; '.join(said)}.", ""]
    borrowed = [m for m in exp.methods if m.checkpoint_from]
    if borrowed:
        lines += [f"Tested, not trained, under this protocol: {', '.join(m.label for m in borrowed)}: each is the best "
                  f"checkpoint of the same run in `{'`, `'.join(dict.fromkeys(m.checkpoint_from for m in borrowed))}`, "
                  "selected there on that experiment's validation metric (training them with this protocol's "
                  "validation costs too much here).", ""]
    lines += ["## Test results", "", *_table_sections(exp, cells)]

    if has_significance(exp):
        sig = keep_significance(exp, runs, significance(exp, runs), out_dir / f"{name}_significance.csv")
        atomic_write_text(out_dir / f"{name}_significance.csv", _csv_text(
            ["dataset", "ours", "baseline", "metric", "mrr_ours", "mrr_baseline", "t", "p", "users", "note", "best_baseline"],
            [[s["dataset"], s["ours"], s["baseline"], s["metric"], _num(s.get("mrr_ours")), _num(s.get("mrr_baseline")),
              _num(s.get("t")), _num(s.get("p")), _num(s.get("users")), s.get("note", ""), str(s["best"]).lower()]
             for s in sig]))
        rows = [[s["dataset"], s["ours"] + (" (kept)" if s.get("kept") else ""),
                 (s["baseline"] or "-") + (" (best baseline)" if s["best"] else ""),
                 *([f"{s['mrr_ours']:.4f}", f"{s['mrr_baseline']:.4f}", f"{s['t']:.2f}", _fmt_p(s["p"]), str(s["users"])]
                   if "t" in s else [s["note"], "", "", "", ""])] for s in sig]
        ours_m = next((m for m in exp.methods if m.ours), None)
        ours = ours_m.label if ours_m else ""
        among = (" among the methods without pre-training"
                 if ours_m and any(m.id != ours_m.id and not _is_baseline(ours_m, m) for m in exp.methods)
                 else "")
        what = ([f"{ours} against the baseline with the best mean {exp.primary_metric}{among}"] if ours else []) + (
            ["each listed pair"] if exp.pairs else [])
        lines += ["## Significance", "",
                  f"Paired t-test (two-sided, Student's t) over the users' test reciprocal ranks, each user's 1/rank "
                  f"averaged over the finished seeds: {'; '.join(what)}."
                  + (" Marked (kept): the runs' per-user ranks are not in their folders (a fresh checkout; "
                     "ranks of reports made before 2026-12-02 were never committed), so the row is the earlier "
                     "report's, kept because its MRR means equal the finished runs' test MRR now."
                     if any(s.get("kept") for s in sig) else ""), "",
                  _md_table(["dataset", "method", "against", "MRR", "MRR against", "t", "p", "users"], rows), ""]
    png = out_dir / f"{name}.png"
    if exp.kind == "bars":
        plot_bars(exp, cells, png, settings_note(grid))
    elif exp.kind == "lines":
        plot_lines(exp, cells, png, settings_note(grid))
    elif exp.kind == "convergence":
        curve = curves(exp, runs)
        atomic_write_text(out_dir / f"{name}_curves.csv", _csv_text(
            ["dataset", "method", "epoch", f"valid_{exp.primary_metric}_mean", "std", "seeds"],
            [[d, m, *row[:1], _num(row[1]), _num(row[2]), row[3]] for (d, m), rows in curve.items() for row in rows]))
        plot_convergence(exp, curve, png, settings_note(grid))
        rows = []
        for (d, mid), rs in curve.items():
            label = next(m.label for m in exp.methods if m.id == mid)
            if not rs:
                rows.append([d, label, "not run", "", ""])
                continue
            best = max(rs, key=lambda x: x[1])
            at = lambda e: f"{rs[e - 1][1]:.4f}" if len(rs) >= e else "-"  # noqa: E731
            rows.append([d, label, f"{best[1]:.4f} @ {best[0]}", " / ".join(at(e) for e in (1, 5, 10, 20, 50)), str(len(rs))])
        lines += ["## Validation curves", "",
                  f"Mean validation {exp.primary_metric} over the seeds at each fine-tuning epoch "
                  f"(`{name}_curves.csv` has every epoch).", "",
                  _md_table(["dataset", "method", "best (epoch)", "epoch 1 / 5 / 10 / 20 / 50", "epochs"], rows), ""]
    if png.is_file() and exp.kind != "table":
        lines += ["## Plot", "", f"![{exp.figure}]({png.name})", ""]
    lines += pretrain_section(exp_dir, grid, out_dir)
    problems = [r for r in runs if r.status in ("failed", "conflict")]
    unsupported = {r.method.label: r.error for r in runs if r.status == "unsupported"}
    if problems or unsupported:
        lines += ["## Not run", ""]
        lines += [f"- {label}: not run (unsupported): {why}" for label, why in unsupported.items()]
        lines += [f"- `{r.id}`: {r.status}: {r.error}" for r in problems]
        lines.append("")
    lines += ["Files: " + ", ".join(f"`{p.name}`" for p in sorted(out_dir.glob(f"{name}*")) if p.is_file()), ""]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


# the summary's columns: (experiment, metric)
SUMMARY_COLUMNS = (("table2", "HR@10"), ("table2", "NDCG@10"), ("full_ranking", "HR@10"), ("full_ranking", "NDCG@10"))


def _summary_cell(c: Cell | None) -> str:
    if c is None or c.mean is None:
        text = "not run" if c is None else c.status
    else:
        text = f"{c.mean:.4f}" + (f" ± {c.std:.4f}" if c.std is not None else "")
    paper = "-" if c is None or c.paper is None else f"{c.paper:.4f}"
    return f"{text} ({paper})"


def paper_tables_summary(dirs: list[Path]) -> list[str]:
    """Markdown lines: per dataset, every method of Table 2 and the full-ranking table side by side
    (test HR@10 and NDCG@10, mean ± standard deviation over seeds, the paper's value in brackets,
    and ours / paper for the sampled NDCG@10). Empty when neither experiment is among ``dirs``."""
    cells: dict[tuple, Cell] = {}
    methods: list[tuple[str, str]] = []  # (id, label), Table 2's order first
    seeds: dict[str, set] = {}
    for d in dirs:
        exp, grid = load_grid(d)
        if exp.name not in ("table2", "full_ranking"):
            continue
        runs = collect(d, exp, grid)
        for r in runs:
            if r.status == "done":
                seeds.setdefault((exp.name, r.dataset, r.method.id), set()).add(r.seed)
        for c in make_cells(exp, runs):
            cells[(exp.name, c.dataset, c.method.id, c.metric)] = c
            if (c.method.id, c.method.label) not in methods:
                methods.append((c.method.id, c.method.label))
    if not cells:
        return []
    datasets = list(dict.fromkeys(k[1] for k in cells))
    lines = ["## The paper's two tables, side by side", "",
             "Test HR@10 and NDCG@10, ours (mean ± standard deviation over the finished seeds) and the paper's in "
             "brackets; `seeds`: the fine-tuning seeds that finished (sampled / full); `ratio`: our sampled NDCG@10 over the paper's. "
             "Each cell's runs are in the experiment's report above.", ""]
    header = ["method", "seeds", "sampled HR@10", "sampled NDCG@10", "ratio", "full HR@10", "full NDCG@10"]
    for dataset in datasets:
        rows = []
        for mid, label in methods:
            got = [cells.get((e, dataset, mid, m)) for e, m in SUMMARY_COLUMNS]
            if all(c is None for c in got):
                continue
            nd = got[1]
            ratio = f"{nd.mean / nd.paper:.2f}" if nd is not None and nd.mean is not None and nd.paper else "-"
            n = " / ".join(",".join(str(x) for x in sorted(seeds.get((e, dataset, mid), ()))) or "-"
                           for e in ("table2", "full_ranking"))
            rows.append([label, n, _summary_cell(got[0]), _summary_cell(got[1]), ratio, _summary_cell(got[2]),
                         _summary_cell(got[3])])
        lines += [f"### {dataset}", "", _md_table(header, rows), ""]
    return lines


# the paper-faithful S3-Rec of the experiments that try presets: what a preset's validation gain is measured against
REFERENCE_METHOD = "S3-Rec"


@dataclass
class PresetScore:
    """A preset's validation record on one dataset: per experiment that tries it (one protocol each),
    its mean validation selection metric and the paper-faithful S3-Rec's over the experiment's seeds."""

    preset: str
    dataset: str
    parts: dict = field(default_factory=dict)  # experiment -> (protocol, metric, preset mean, reference mean, seeds)
    missing: dict = field(default_factory=dict)  # experiment -> why it does not count yet

    @property
    def gain(self) -> float | None:
        """Mean over the experiments of (preset / reference - 1); None while any is missing."""
        if self.missing or not self.parts:
            return None
        return statistics.fmean(mine / ref - 1 for _, _, mine, ref, _ in self.parts.values())


def preset_scores(dirs: list[Path]) -> dict[tuple[str, str], PresetScore]:
    """Validation scores of every shipped preset (a method with ``preset``) in the table experiments
    among ``dirs`` (those without a varied setting), keyed by (preset, dataset). Validation only: the
    test split never enters a preset's choice. Each experiment counts once every seed of the experiment
    has finished, with validation metrics, for both the preset and the paper-faithful S3-Rec there; an
    experiment that tries presets but not on this dataset counts as not run."""
    from ..evaluate import SELECTION_METRIC

    scores: dict[tuple[str, str], PresetScore] = {}
    tried: list[str] = []  # the experiments that try presets
    for d in dirs:
        exp, grid = load_grid(d)
        if exp.kind != "table" or exp.vary_setting or not any(m.preset for m in exp.methods):
            continue
        metric = SELECTION_METRIC[exp.protocol]
        runs = collect(d, exp, grid)
        tried.append(exp.name)
        for preset_id, preset, dataset in dict.fromkeys((r.method.id, r.method.preset, r.dataset) for r in runs
                                                         if r.method.preset):
            score = scores.setdefault((preset, dataset), PresetScore(preset, dataset))

            def valid(mid: str) -> dict:
                return {x.seed: x.valid[metric] for x in runs if x.method.id == mid and x.dataset == dataset
                        and x.status == "done" and x.valid and metric in x.valid}

            mine, ref = valid(preset_id), valid(REFERENCE_METHOD)
            if not any(x.method.id == REFERENCE_METHOD and x.dataset == dataset for x in runs):
                score.missing[exp.name] = f"no {REFERENCE_METHOD} run in `{exp.name}` to compare with"
            elif set(mine) != set(exp.seeds) or set(ref) != set(exp.seeds):
                score.missing[exp.name] = (f"{exp.protocol}: seeds {len(mine)}/{len(exp.seeds)} finished "
                                           f"({REFERENCE_METHOD}: {len(ref)}/{len(exp.seeds)})")
            elif statistics.fmean(ref.values()) <= 0:
                score.missing[exp.name] = f"{exp.protocol}: {REFERENCE_METHOD}'s validation {metric} is 0"
            else:
                score.parts[exp.name] = (exp.protocol, metric, statistics.fmean(mine.values()),
                                         statistics.fmean(ref.values()), sorted(mine))
    for score in scores.values():  # an experiment that tries presets, not yet on this dataset
        for name in tried:
            if name not in score.parts and name not in score.missing:
                score.missing[name] = f"`{name}`: not run on {score.dataset}"
    return scores


def chosen_presets(scores: dict[tuple[str, str], PresetScore]) -> dict[str, tuple[str, bool]]:
    """Per dataset, (the preset with the largest validation gain over the paper-faithful S3-Rec among
    those complete in every experiment, whether every preset tried on the dataset is complete: if not,
    the choice is provisional)."""
    best: dict[str, PresetScore] = {}
    for sc in scores.values():
        if sc.gain is not None and (sc.dataset not in best or sc.gain > best[sc.dataset].gain):
            best[sc.dataset] = sc
    return {d: (sc.preset, all(o.gain is not None for o in scores.values() if o.dataset == d))
            for d, sc in best.items()}


def _chosen_text(chosen: dict, dataset: str, preset: str) -> str:
    """'' unless ``preset`` is ``dataset``'s choice; else whether the choice is final or provisional."""
    pick, final = chosen.get(dataset, ("", False))
    if pick != preset:
        return ""
    return "chosen" if final else "chosen so far (other presets unfinished)"


def preset_choice(dirs: list[Path], scores: dict | None = None) -> list[str]:
    """Markdown lines: how each dataset's preset is chosen on validation (see :func:`preset_scores`;
    ``scores``: theirs when already computed)."""
    scores = preset_scores(dirs) if scores is None else scores
    if not scores:
        return []
    chosen = chosen_presets(scores)
    lines = ["## Choosing a preset on validation", "",
             "For each preset, in each experiment that tries presets (one protocol each): its mean validation "
             "selection metric (full ranking: NDCG@20; sampled: MRR) over the experiment's seeds, against the "
             "paper-faithful S3-Rec's on the same seeds; `mean gain`: the mean of those relative gains. A dataset's "
             "preset is the one with the largest mean gain among those finished in every experiment; test numbers "
             "play no part. Caveats: a preset searched on a dataset's own validation split (`s3rec tune`) is "
             "flattered there; every preset's checkpoint was selected on full-ranking NDCG@20, while the paper-faithful "
             "S3-Rec of the sampled protocol was selected on sampled MRR, which favours it in that column; and "
             "full-ranking gains are larger than sampled ones, so they weigh more in the mean.", ""]
    rows = []
    for (preset, dataset), sc in sorted(scores.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        parts = [f"{p} {m} {mine:.4f} vs {ref:.4f} ({mine / ref - 1:+.1%}, seeds {','.join(map(str, seeds))})"
                 for p, m, mine, ref, seeds in sc.parts.values()]
        parts += list(sc.missing.values())
        rows.append([dataset, preset, "; ".join(parts), "-" if sc.gain is None else f"{sc.gain:+.1%}",
                     _chosen_text(chosen, dataset, preset)])
    lines += [_md_table(["dataset", "preset", "validation, per experiment", "mean gain", "choice"], rows), ""]
    return lines


def presets_vs_paper(dirs: list[Path], scores: dict | None = None) -> list[str]:
    """Markdown lines: for every method that runs a shipped preset and stands beside a paper row
    (``preset`` and ``paper_as``), in every table experiment among ``dirs``: per dataset, each metric's
    mean over the finished seeds against the paper's number, and whether it is above it; the preset
    chosen on validation is marked (``scores``: :func:`preset_scores` when already computed). Empty when
    there is no such method."""
    rows: dict[tuple[str, str, str], list] = {}  # (preset, paper row, dataset) -> cells
    protocols: dict[str, str] = {}
    for d in dirs:
        exp, grid = load_grid(d)
        if exp.kind != "table" or not any(m.preset and m.paper_as for m in exp.methods):
            continue
        for c in make_cells(exp, collect(d, exp, grid)):
            m = c.method
            if m.preset and m.paper_as and c.paper is not None:
                rows.setdefault((m.preset, m.paper_as, c.dataset), []).append((exp.protocol, c))
                protocols[exp.protocol] = exp.name
    if not rows:
        return []
    chosen = chosen_presets(preset_scores(dirs) if scores is None else scores)
    lines = ["## Presets against the paper", "",
             "Each preset's test numbers (mean over the finished seeds; [k/n]: k of n seeds finished) against the "
             "paper's row it is meant to beat, in every table it ran in (" + ", ".join(
                 f"`{e}`: {p} protocol" for p, e in protocols.items()) + "); `above`: how many of the paper's "
             "numbers the mean exceeds. Not run: nothing to compare, never filled in.", ""]
    for (preset, paper_as, dataset), cells in rows.items():
        done = [(p, c) for p, c in cells if c.mean is not None]
        above = sum(c.mean > c.paper for _, c in done)
        text = "; ".join(f"{p} {c.metric} {c.mean:.4f}" + (f" [{len(c.values)}/{c.planned}]" if len(c.values) < c.planned
                                                             else "") + f" vs {c.paper:.4f}" + (" ✓" if c.mean > c.paper else " ✗")
                         for p, c in done) or "not run"
        pick, final = chosen.get(dataset, ("", False))
        mark = ("" if pick != preset else " (chosen on validation)" if final
                else " (chosen on validation so far; other presets unfinished)")
        lines += [f"- **{preset}**{mark} vs the paper's {paper_as}, {dataset}: above on {above} of {len(cells)}"
                  + (f" ({len(cells) - len(done)} not run)" if len(done) < len(cells) else "") + f": {text}"]
    return lines + [""]


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


def write_report(runs_dir: Path, out_dir: Path | None = None) -> list[Path]:
    """Reports for one experiment folder (into ``out_dir``, default ``RUNS_DIR/report``) or for every
    experiment folder under ``runs_dir`` (``runs_dir/FOLDER`` into ``out_dir/FOLDER``, with an index
    ``out_dir/report.md``). The folder's name, not the experiment's, names the report: two folders of
    one experiment (``s3rec reproduce ablation --out runs/reproduce/ablation_pretrain10``) get a
    report each."""
    runs_dir = Path(runs_dir)
    dirs = experiment_dirs(runs_dir)
    out_dir = Path(out_dir) if out_dir else runs_dir / "report"
    if dirs == [runs_dir]:
        return [write_experiment_report(runs_dir, out_dir)]
    paths = []
    index = ["# Reproduction of Zhou et al. (CIKM 2020): every experiment", "",
             f"Generated by `s3rec report` on {datetime.date.today().isoformat()} from `{runs_dir}`.", ""]
    rows = []
    for d in dirs:
        exp, grid = load_grid(d)
        path = write_experiment_report(d, out_dir / d.name)
        paths.append(path)
        statuses = [r.status for r in collect(d, exp, grid)]
        done = statuses.count("done")
        label = (exp.figure or exp.name) + ("" if d.name == exp.name else f" (`{d.name}`)")
        rows.append([f"[{label}]({d.name}/report.md)", exp.title.split(": ", 1)[-1],
                     f"{done} / {len(statuses)}", str(statuses.count("unsupported"))])
    index += [_md_table(["experiment", "what", "runs finished", "unsupported"], rows), ""]
    summarised = one_folder_per_experiment(dirs)
    index += paper_tables_summary(summarised)
    scores = preset_scores(summarised)
    index += preset_choice(summarised, scores)
    index += presets_vs_paper(summarised, scores)
    atomic_write_text(out_dir / "report.md", "\n".join(index))
    return [out_dir / "report.md", *paths]
