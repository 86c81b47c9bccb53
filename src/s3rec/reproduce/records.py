"""The committed record of an experiment's runs, and a runs folder rebuilt from it.

``s3rec report RUNS --out DIR`` writes beside each experiment's report:

- ``runs.json``: the grid (``grid``: the definition, the overrides, each run's status), then for each
  finished fine-tuning (``runs``, keyed by run id) its folder name, ``config`` (its settings), ``results``
  (validation and test metrics, best epoch, the digest of the weights it started from, its environment)
  and ``metrics`` (one row per epoch: the curve a figure needs); for each pre-training (``pretrains``)
  its ``config``, ``environment`` and per-epoch ``metrics`` up to the epochs the grid planned; and the
  report's paired t-tests (``significance``), each number as the report shows it;
- ``test_ranks.npz``: the per-user test ranks of the finished runs, one array per run id, in the
  smallest unsigned type that holds them (experiments with paired t-tests only).

:func:`restore` (``scripts/restore_runs.py``) writes a record back as a runs folder, so that
``s3rec reproduce`` skips the finished runs and ``s3rec report`` makes the report again. Checkpoints
are never recorded: a pre-training must run again before anything new is fine-tuned from it.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from ..errors import S3RecError
from ..fileio import atomic_path, atomic_write_text

RECORD = "runs.json"
RANKS = "test_ranks.npz"  # the experiment's ranks, one array per run id
COMPACT_RANKS = "test_ranks.npz"  # one run's ranks, in its folder (written by restore)


def _compact(ranks: np.ndarray, where: Path) -> np.ndarray:
    """``ranks`` in the smallest unsigned type that holds them (uint8 under the sampled protocol's 100
    candidates): for Beauty's 22,363 users 16 KB (sampled) to 42 KB (full ranking) compressed."""
    ranks = np.asarray(ranks)
    if not np.issubdtype(ranks.dtype, np.integer) or (ranks.size and ranks.min() < 1):
        raise S3RecError(f"{where}: ranks must be positive integers")
    top = int(ranks.max()) if ranks.size else 0
    if top > np.iinfo(np.int32).max:  # they are read back as int32, as test_ranks.npy holds them
        raise S3RecError(f"{where}: a rank of {top} does not fit in int32")
    return ranks.astype(next(t for t in (np.uint8, np.uint16, np.uint32) if top <= np.iinfo(t).max))


def save_compact_ranks(path: Path, ranks: np.ndarray) -> None:
    """One run's per-user ranks as a compressed ``.npz`` (key ``ranks``) in the smallest unsigned type."""
    compact = _compact(ranks, path)
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, ranks=compact)


def load_compact_ranks(path: Path) -> np.ndarray:
    """The ranks :func:`save_compact_ranks` wrote, as int32 (as ``test_ranks.npy`` holds them)."""
    with np.load(path, allow_pickle=False) as z:
        return z["ranks"].astype(np.int32)


def save_ranks(path: Path, ranks: dict[str, np.ndarray]) -> None:
    """An experiment's per-user ranks, one compact array per run id, in one compressed ``.npz``."""
    compact = {run: _compact(r, path) for run, r in ranks.items()}
    with atomic_path(path) as tmp, open(tmp, "wb") as f:
        np.savez_compressed(f, **compact)


def load_ranks(path: Path) -> dict[str, np.ndarray]:
    """The ranks :func:`save_ranks` wrote, as int32 arrays by run id (empty when there is no file)."""
    if not Path(path).is_file():
        return {}
    with np.load(path, allow_pickle=False) as z:
        return {k: z[k].astype(np.int32) for k in z.files}


def _json(path: Path):
    return json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None


def _jsonl(path: Path, limit=None) -> list[dict] | None:
    if not path.is_file():
        return None
    rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]
    return rows[:limit] if isinstance(limit, int) else rows


def read_record(folder: Path) -> dict:
    """The ``runs.json`` in ``folder`` ({} when there is none or it is unreadable)."""
    try:
        record = _json(Path(folder) / RECORD)
    except (OSError, ValueError):
        return {}
    return record if isinstance(record, dict) else {}


def pretrain_history(exp_dir: Path, pretrain: dict, record: dict) -> dict | None:
    """A grid's pre-training as a record: ``config``, ``environment``, ``metrics`` (up to the epochs
    the grid planned: a shared run extended since by a longer grid counts as far as this one used it),
    read from its folder; else from ``record`` (the report's previous ``runs.json``: a runs folder
    restored from a record has no pre-training folders); None when neither has it."""
    src = (Path(exp_dir) / pretrain["dir"]).resolve()
    metrics = _jsonl(src / "metrics.jsonl", pretrain.get("epochs"))
    if metrics is None:
        return record.get("pretrains", {}).get(pretrain["id"])
    out = {"config": _json(src / "config.json"), "metrics": metrics}
    env = _jsonl(src / "environment.jsonl")
    return {**out, "environment": env} if env is not None else out


def write_record(out_dir: Path, grid: dict, runs: list, pretrains: dict, significance: list | None,
                 with_ranks: bool) -> list[Path]:
    """Write ``runs.json`` (and, ``with_ranks``, ``test_ranks.npz``) for the finished ``runs``
    (:class:`~s3rec.reproduce.collect.RunResult`) into ``out_dir``; returns the paths written."""
    record = {"grid": grid, "runs": {}, "pretrains": pretrains}
    ranks = {}
    for r in runs:
        if r.status != "done":
            continue
        rec = {"dir": r.dir.name, "config": _json(r.dir / "config.json"), "results": _json(r.dir / "results.json"),
               "metrics": _jsonl(r.dir / "metrics.jsonl") or []}
        record["runs"][r.id] = rec
        got = r.ranks() if with_ranks else None
        if got is not None:
            ranks[r.id] = got
    if significance is not None:
        record["significance"] = significance
    atomic_write_text(out_dir / RECORD, json.dumps(record, indent=1, ensure_ascii=False) + "\n")
    (out_dir / RANKS).unlink(missing_ok=True)  # never another set of runs' ranks left beside
    if ranks:
        save_ranks(out_dir / RANKS, ranks)
        return [out_dir / RECORD, out_dir / RANKS]
    return [out_dir / RECORD]


def record_folders(reports: Path) -> list[Path]:
    """``reports`` itself when it holds a record, else its sub-folders that do."""
    reports = Path(reports)
    if (reports / RECORD).is_file():
        return [reports]
    return sorted(g.parent for g in reports.glob(f"*/{RECORD}"))


def restore(reports: Path, runs_dir: Path, dry_run: bool = False, log=print) -> dict[str, int]:
    """Write the record of each report folder ``reports/NAME`` (or of ``reports`` itself) into
    ``runs_dir/NAME``: each finished run's ``config.json``, ``metrics.jsonl``, ``test_ranks.npz`` and
    ``results.json`` (last: once it is there the run counts as finished), and ``grid.json``. Nothing is
    overwritten: a run folder that exists (finished, failed, partial or running) is left alone, as is an
    existing ``grid.json`` (the next ``s3rec reproduce`` merges the records). Returns the number of runs
    restored per experiment folder."""
    restored: dict[str, int] = {}
    for report in record_folders(reports):
        record = read_record(report)
        if "grid" not in record:
            raise S3RecError(f"{report / RECORD}: not a record written by `s3rec report`")
        ranks = load_ranks(report / RANKS)
        dest = Path(runs_dir) / report.name
        n = 0
        for run_id, rec in record.get("runs", {}).items():
            dst = dest / rec["dir"]
            if dst.exists() and any(dst.iterdir()):
                continue  # a run folder here already (finished, failed or running)
            n += 1
            if dry_run:
                continue
            if rec.get("config") is not None:
                atomic_write_text(dst / "config.json", json.dumps(rec["config"], indent=2) + "\n")
            atomic_write_text(dst / "metrics.jsonl", "".join(json.dumps(x) + "\n" for x in rec.get("metrics", [])))
            if run_id in ranks:
                save_compact_ranks(dst / COMPACT_RANKS, ranks[run_id])
            atomic_write_text(dst / "results.json", json.dumps(rec["results"], indent=2) + "\n")
        if not dry_run:
            if (dest / "grid.json").exists():
                if n:
                    log(f"{dest / 'grid.json'}: kept as it is; the next `s3rec reproduce` into {dest} merges "
                        "the restored runs into it")
            else:
                atomic_write_text(dest / "grid.json", json.dumps(record["grid"], indent=2) + "\n")
        restored[report.name] = n
    return restored
