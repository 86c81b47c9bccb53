"""``s3rec report RUN_DIR``: one run's curves as ``curves.png``, from its ``metrics.jsonl``.

A run folder is one of ``s3rec train`` (per epoch: the training loss, the validation metrics), of
``s3rec pretrain`` (per epoch: the loss terms and their weighted total) or of ``s3rec run`` (its
``pretrain/`` and ``finetune/`` folders, one row of panels each). Distinct from the report of
``s3rec reproduce`` folders (:mod:`.report`), which are recognised by their ``grid.json``.
"""

from __future__ import annotations

import json
from pathlib import Path

from ..errors import DataError, S3RecError
from .plots import pyplot, save_png

STAGES = ("pretrain", "finetune")  # the folders of an `s3rec run`
CURVES = "curves.png"


def is_run_folder(path: Path) -> bool:
    """Whether ``path`` is a training run's folder (or an ``s3rec run`` folder), not an experiment's."""
    path = Path(path)
    if (path / "grid.json").is_file():
        return False
    return (path / "config.json").is_file() or any((path / s / "config.json").is_file() for s in STAGES)


def read_history(run_dir: Path) -> list[dict]:
    """The per-epoch records of ``run_dir/metrics.jsonl`` (at least one epoch)."""
    path = Path(run_dir) / "metrics.jsonl"
    if not path.is_file():
        raise S3RecError(f"{run_dir}: no finished epoch yet (no metrics.jsonl)")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        try:
            row = json.loads(line)
        except ValueError:
            row = None
        if not isinstance(row, dict) or not isinstance(row.get("epoch"), int):
            raise DataError(path, n, "not a per-epoch record (a JSON object with an epoch)")
        rows.append(row)
    if not rows:
        raise S3RecError(f"{run_dir}: no finished epoch yet (metrics.jsonl is empty)")
    return rows


def _stages(run_dir: Path) -> list[tuple[str, Path]]:
    """(title, folder) of each part of the run that has a config.json."""
    if (run_dir / "config.json").is_file():
        return [(run_dir.name or str(run_dir), run_dir)]
    return [(f"{run_dir.name}/{s}", run_dir / s) for s in STAGES if (run_dir / s / "config.json").is_file()]


def _numbers(rows: list[dict], key) -> tuple[list[int], list[float]]:
    pts = [(r["epoch"], v) for r in rows if isinstance(v := key(r), (int, float))]
    return [e for e, _ in pts], [float(v) for _, v in pts]


def _best_epoch(run_dir: Path) -> int | None:
    try:
        return json.loads((run_dir / "results.json").read_text(encoding="utf-8")).get("best_epoch")
    except (OSError, ValueError, AttributeError):
        return None


def _plot_pretrain(axes, title: str, rows: list[dict]) -> None:
    from ..models.heads import OBJECTIVES

    terms, total = axes
    for k in OBJECTIVES:
        xs, ys = _numbers(rows, lambda r: r.get(k))
        if xs:
            terms.plot(xs, ys, marker=".", label=k.upper())
    terms.set_title(f"{title}: loss terms (per instance)", fontsize=10)
    terms.legend(fontsize=8, frameon=False)
    xs, ys = _numbers(rows, lambda r: r.get("loss"))
    total.plot(xs, ys, marker=".", color="black")
    total.set_title(f"{title}: weighted total loss", fontsize=10)


def _plot_finetune(axes, title: str, rows: list[dict], best: int | None) -> None:
    loss, valid = axes
    xs, ys = _numbers(rows, lambda r: r.get("loss"))
    loss.plot(xs, ys, marker=".", color="black")
    loss.set_title(f"{title}: training loss", fontsize=10)
    names = list(dict.fromkeys(k for r in rows if isinstance(r.get("valid"), dict) for k in r["valid"]))
    for k in names:
        xs, ys = _numbers(rows, lambda r: (r.get("valid") or {}).get(k))
        valid.plot(xs, ys, marker=".", label=k)
    if best:
        valid.axvline(best, color="0.5", ls="--", lw=1, label=f"best epoch {best}")
    valid.set_title(f"{title}: validation metrics", fontsize=10)
    valid.legend(fontsize=8, frameon=False, ncol=2)


def plot_run(run_dir: Path, out: Path | None = None) -> Path:
    """Draw the curves of the run in ``run_dir`` into ``out`` (default ``run_dir/curves.png``)."""
    run_dir = Path(run_dir)
    stages = [(title, d, read_history(d)) for title, d in _stages(run_dir)]
    if not stages:
        raise S3RecError(f"{run_dir}: not a run folder (no config.json here or in pretrain/ or finetune/)")
    plt = pyplot()
    from matplotlib.ticker import MaxNLocator

    fig, axes = plt.subplots(len(stages), 2, figsize=(11, 3.6 * len(stages)), squeeze=False)
    for row, (title, d, rows) in zip(axes, stages):
        if "valid" in rows[0]:
            _plot_finetune(row, title, rows, _best_epoch(d))
        else:
            _plot_pretrain(row, title, rows)
        for ax in row:
            ax.set_xlabel("epoch")
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
            ax.grid(alpha=0.3)
    fig.tight_layout()
    out = Path(out) if out else run_dir / CURVES
    out.parent.mkdir(parents=True, exist_ok=True)
    save_png(fig, out)
    plt.close(fig)
    return out
