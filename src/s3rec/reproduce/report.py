"""``s3rec report RUNS_DIR``: an experiment's report from its runs folder, and the record of its runs.

RUNS_DIR is an experiment folder (it holds ``grid.json``, written by ``s3rec reproduce``) or a folder
of them (``runs/reproduce``: one report per experiment plus an index, :mod:`.index`). Each report:

- ``report.md``: a cell (dataset x method [x varied value] x metric) holds the mean and the sample
  standard deviation over the finished fine-tuning seeds, ``[k/n]`` when only k of the n planned seeds
  finished; a cell with no finished run says ``not run`` (``not run (unsupported)``, ``failed``), never
  a number; the paper's value and ``(ours - paper) / paper`` where the paper published one;
- ``NAME.csv`` (cells), ``NAME_runs.csv`` (runs), ``NAME_significance.csv`` (:mod:`.significance`),
  ``NAME_curves.csv`` and ``NAME.png`` (:mod:`.plots`) where they apply;
- ``runs.json`` and ``test_ranks.npz``: the record every number of the report traces to
  (:mod:`.records`; ``scripts/restore_runs.py`` turns it back into a runs folder).

Reading the runs folder: :mod:`.collect`; Markdown and CSV text: :mod:`.tables`.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from ..extras import available
from ..fileio import atomic_write_text
from .collect import collect, experiment_dirs, load_grid, make_cells
from .index import index_lines
from .plots import curves, plot_bars, plot_convergence, plot_lines
from .records import RANKS, RECORD, pretrain_history, read_record, write_record
from .significance import (has_significance, recordable, significance, significance_csv, significance_section,
                           with_recorded)
from .tables import csv_text, md_table, num, settings_lines, settings_note, table_sections


NO_PLOTS = "matplotlib is not installed (pip install 's3rec[report]')"


def _pretrain_row(label: str, history: list[dict], planned) -> list[str]:
    from ..models.heads import OBJECTIVES
    from ..pretraining import sp_chance_spans

    spans = sp_chance_spans(history)
    last = history[-1] if history else {}
    losses = " ".join(f"{k} {last[k]:.4f}" for k in OBJECTIVES if isinstance(last.get(k), (int, float)))
    chance = ", ".join(f"{a}-{b}" if a != b else str(a) for a, b in spans) if spans else (
        "never" if "sp" in last else "no SP")
    return [label, f"{len(history)} / {planned if planned is not None else '?'}", losses or "-", chance]


def pretrain_section(exp_dir: Path, grid: dict, record: dict) -> tuple[list[str], dict]:
    """Markdown lines on the grid's pre-training runs (epochs done, last losses, the epochs SP sat at
    chance), and their records for ``runs.json`` (:func:`~.records.pretrain_history`: from each run's
    folder, else from the report's previous ``record``)."""
    rows, kept = [], {}
    for p in grid.get("pretrains", []):
        planned = p.get("epochs")
        try:
            got = pretrain_history(exp_dir, p, record)
        except (OSError, ValueError, KeyError, TypeError) as e:
            rows.append([p["id"], f"? / {p.get('epochs', '?')}", f"unreadable metrics.jsonl ({e})", ""])
            continue
        if got is None:
            why = f"failed: {p.get('error') or '?'}" if p.get("status") == "failed" else "not run"
            rows.append([p["id"], f"0 / {p.get('epochs', '?')}", why, ""])
            continue
        kept[p["id"]] = got
        rows.append(_pretrain_row(p["id"], got["metrics"], planned))
    if not rows:
        return [], kept
    return ["## Pre-training runs", "",
            "Each pre-training this grid fine-tunes from (its per-epoch records in `runs.json`, no checkpoints): "
            "epochs done of those planned, the last epoch's loss terms (sums per instance), and the epochs whose "
            "SP term was ln 2 within 1e-4, its value at chance: over a long span, a sign that its positive and "
            "negative scores saturated and SP did not train (`scripts/sp_saturation.py` checks a run's logits).", "",
            md_table(["pre-training", "epochs", "last epoch's losses", "SP at chance (epochs)"], rows), ""], kept


def _convergence_section(exp, runs, out_dir: Path, png: Path, note: str, draw: bool) -> list[str]:
    name = exp.name
    curve = curves(exp, runs)
    atomic_write_text(out_dir / f"{name}_curves.csv", csv_text(
        ["dataset", "method", "epoch", f"valid_{exp.primary_metric}_mean", "std", "seeds"],
        [[d, m, *row[:1], num(row[1]), num(row[2]), row[3]] for (d, m), rows in curve.items() for row in rows]))
    if draw:
        plot_convergence(exp, curve, png, note)
    rows = []
    for (d, mid), rs in curve.items():
        label = next(m.label for m in exp.methods if m.id == mid)
        if not rs:
            rows.append([d, label, "not run", "", ""])
            continue
        best = max(rs, key=lambda x: x[1])
        at = lambda e: f"{rs[e - 1][1]:.4f}" if len(rs) >= e else "-"  # noqa: E731
        rows.append([d, label, f"{best[1]:.4f} @ {best[0]}", " / ".join(at(e) for e in (1, 5, 10, 20, 50)), str(len(rs))])
    return ["## Validation curves", "",
            f"Mean validation {exp.primary_metric} over the seeds at each fine-tuning epoch "
            f"(`{name}_curves.csv` has every epoch).", "",
            md_table(["dataset", "method", "best (epoch)", "epoch 1 / 5 / 10 / 20 / 50", "epochs"], rows), ""]


def _method_notes(exp) -> list[str]:
    lines = []
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
    return lines


def write_experiment_report(exp_dir: Path, out_dir: Path) -> Path:
    """The report of one experiment folder into ``out_dir``: ``report.md``, ``NAME.csv`` (cells),
    ``NAME_runs.csv``, and where they apply ``NAME_significance.csv``, ``NAME_curves.csv``, ``NAME.png``;
    ``runs.json`` and ``test_ranks.npz``, the record of its runs (:mod:`.records`)."""
    exp_dir, out_dir = Path(exp_dir), Path(out_dir)
    exp, grid = load_grid(exp_dir)
    runs = collect(exp_dir, exp, grid)
    cells = make_cells(exp, runs)
    name = exp.name
    previous = read_record(out_dir)
    counts = {s: sum(r.status == s for r in runs) for s in ("done", "failed", "conflict", "unsupported", "not run")}

    atomic_write_text(out_dir / f"{name}.csv", csv_text(
        ["experiment", "dataset", "method", "label", "setting", "value", "metric", "seeds_done", "seeds_planned",
         "mean", "std", "paper", "rel_diff", "status"],
        [[name, c.dataset, c.method.id, c.method.label, exp.vary_setting, "" if c.value is None else c.value, c.metric,
          len(c.values), c.planned, num(c.mean), num(c.std), num(c.paper), num(c.rel_diff), c.status]
         for c in cells]))
    atomic_write_text(out_dir / f"{name}_runs.csv", csv_text(
        ["run", "dataset", "method", "seed", "value", "status", *exp.metrics, "best_epoch", "epochs", "seconds", "error"],
        [[r.id, r.dataset, r.method.id, r.seed, "" if r.value is None else r.value, r.status,
          *[num(r.test[k]) if r.test else "" for k in exp.metrics], num(r.best_epoch), num(r.epochs),
          num(r.seconds), r.error] for r in runs]))

    lines = [f"# {exp.figure}: {exp.title.split(': ', 1)[-1]}" if exp.figure else f"# {exp.title}", "",
             f"Experiment `{name}`, {exp.protocol} protocol. Generated by `s3rec report` on "
             f"{datetime.date.today().isoformat()} from `{exp_dir}` (grid updated {grid.get('updated', '?')}).",
             f"Runs: {len(runs)} planned; " + ", ".join(f"{v} {k}" for k, v in counts.items() if v) + ".",
             f"Fine-tuning seeds {', '.join(map(str, exp.seeds))}; pre-training seed {exp.pretrain_seed}. "
             "Cells: mean ± sample standard deviation over the finished seeds ([k/n]: only k of n seeds finished); "
             "\"not run\" where no run finished (never filled in); the paper's value and our relative difference "
             "in brackets where the paper published one.", "", *settings_lines(grid), ""]
    if exp.notes:
        lines += [exp.notes, ""]
    lines += _method_notes(exp)
    lines += ["## Test results", "", *table_sections(exp, cells)]

    sig = None
    if has_significance(exp):
        sig = with_recorded(exp, runs, significance(exp, runs), previous.get("significance", []))
        atomic_write_text(out_dir / f"{name}_significance.csv", significance_csv(sig))
        lines += significance_section(exp, sig)
    png = out_dir / f"{name}.png"
    note = settings_note(grid)
    draw = available("matplotlib")  # without it (the [report] extra) the tables are written, the plot is not
    if exp.kind == "bars" and draw:
        plot_bars(exp, cells, png, note)
    elif exp.kind == "lines" and draw:
        plot_lines(exp, cells, png, note)
    elif exp.kind == "convergence":
        lines += _convergence_section(exp, runs, out_dir, png, note, draw)
    if exp.kind != "table" and not draw:
        lines += ["## Plot", "", f"Not drawn: {NO_PLOTS}.", ""]
    elif png.is_file() and exp.kind != "table":
        lines += ["## Plot", "", f"![{exp.figure}]({png.name})", ""]
    section, pretrains = pretrain_section(exp_dir, grid, previous)
    lines += section
    problems = [r for r in runs if r.status in ("failed", "conflict")]
    unsupported = {r.method.label: r.error for r in runs if r.status == "unsupported"}
    if problems or unsupported:
        lines += ["## Not run", ""]
        lines += [f"- {label}: not run (unsupported): {why}" for label, why in unsupported.items()]
        lines += [f"- `{r.id}`: {r.status}: {r.error}" for r in problems]
        lines.append("")
    written = write_record(out_dir, grid, runs, pretrains, None if sig is None else recordable(sig),
                           with_ranks=sig is not None)
    files = sorted(p.name for p in out_dir.glob(f"{name}*") if p.is_file()) + [p.name for p in written]
    lines += ["Files: " + ", ".join(f"`{f}`" for f in files) + f" (`{RECORD}`: every run's settings, metrics and "
              "per-epoch records" + (f"; `{RANKS}`: the per-user test ranks" if RANKS in files else "") + ").", ""]
    path = out_dir / "report.md"
    atomic_write_text(path, "\n".join(lines))
    return path


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
    paths = [write_experiment_report(d, out_dir / d.name) for d in dirs]
    atomic_write_text(out_dir / "report.md", "\n".join(index_lines(runs_dir, dirs)))
    return [out_dir / "report.md", *paths]
