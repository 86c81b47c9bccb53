"""A report's PNG plots (matplotlib, headless, imported when a plot is drawn): grouped bars (Figs. 2,
3), lines against the varied setting (Figs. 4, 5), validation curves per fine-tuning epoch (Fig. 6)."""

from __future__ import annotations

import math
import statistics
from pathlib import Path

import numpy as np

from ..fileio import atomic_path
from .collect import Cell, RunResult
from .experiment import Experiment, experiment_names, load_experiment
from .tables import fmt_value


def pyplot():
    """matplotlib's pyplot, headless (the [report] extra: a one-line error naming it when missing)."""
    from ..extras import require

    matplotlib = require("matplotlib", "report", "s3rec report's plots")
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_png(fig, path: Path) -> None:
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
    plt = pyplot()
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
    save_png(fig, path)
    plt.close(fig)


def _tick_labels(exp: Experiment, values: list, xs: list[float]) -> list[str]:
    """Tick labels, leaving out one that would touch the label before it (uneven values: 0, 10, 30, 50, 150)."""
    span = (max(xs) - min(xs)) or 1.0
    gap = 0.08 if len(values) <= 8 else 0.0  # (more values: the labels are turned 45 degrees and fit)
    labels, last = [], None
    for v, x in zip(values, xs):
        crowded = last is not None and x - last < gap * span
        labels.append("" if crowded else fmt_value(exp, v))
        last = last if crowded else x
    return labels


def log_axis(values: list) -> bool:
    """Whether a varied setting's values read better on a logarithmic axis: all positive and spanning
    at least a factor of 16 (negatives 4 ... 256), not the epoch or fraction grids that start at 0."""
    xs = [float(v) for v in values]
    return len(xs) > 2 and min(xs) > 0 and max(xs) / min(xs) >= 16


def plot_lines(exp: Experiment, cells: list[Cell], path: Path, note: str = "") -> None:
    """One panel per (metric, dataset): the metric against the varied setting, one line per method."""
    plt = pyplot()
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
                ax.set_xticks(xs_all, [fmt_value(exp, v) for v in values], fontsize=8)
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
    save_png(fig, path)
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
    plt = pyplot()
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
    save_png(fig, path)
    plt.close(fig)

