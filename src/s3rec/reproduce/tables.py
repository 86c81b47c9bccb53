"""Markdown and CSV text for a report: cells (mean ± standard deviation over seeds, the paper's value
and the relative difference), the test-results tables, and the settings a grid's runs changed."""

from __future__ import annotations

import csv
import io
import math

from .collect import Cell
from .experiment import Experiment


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


def fmt_value(exp: Experiment, v) -> str:
    if exp.vary_setting == "train_fraction":
        return f"{float(v) * 100:g}%"
    return f"{v:g}" if isinstance(v, float) else str(v)


def fmt_p(p: float) -> str:
    if math.isnan(p):
        return "n/a"
    return "< 1e-300" if p < 1e-300 else f"{p:.2g}"


def md_table(header: list[str], rows: list[list[str]]) -> str:
    esc = lambda s: str(s).replace("|", "\\|")  # noqa: E731
    lines = ["| " + " | ".join(map(esc, header)) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(map(esc, r)) + " |" for r in rows]
    return "\n".join(lines)


def csv_text(header: list[str], rows: list[list]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
    return buf.getvalue()


def num(x, digits: int = 6) -> str:
    return "" if x is None else f"{x:.{digits}g}" if isinstance(x, float) else str(x)


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


def settings_lines(grid: dict) -> list[str]:
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


def table_sections(exp: Experiment, cells: list[Cell]) -> list[str]:
    """Markdown lines: one test-results table per dataset (per dataset and metric for a figure with a
    varied setting, its values as columns)."""
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
            out += [f"### {d}", "", md_table(["method", *exp.metrics], rows), ""]
    else:
        for metric in exp.metrics:
            for d in datasets:
                rows = []
                for m in exp.methods:
                    rows.append([m.label] + [fmt_cell(next(c for c in cells if c.dataset == d and c.method.id == m.id
                                                           and c.metric == metric and c.value == v))
                                             for v in exp.vary_values])
                header = [f"method \\ {exp.vary_label}", *[fmt_value(exp, v) for v in exp.vary_values]]
                out += [f"### {d}, test {metric}", "", md_table(header, rows), ""]
    return out
