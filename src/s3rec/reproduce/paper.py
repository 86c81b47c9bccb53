"""The paper's published tables (Zhou et al., CIKM 2020), read from the benchmark reference files.

``paper_sampled99.csv``: Table 2 (target + 99 negatives), 12 methods x 6 datasets x {HR@1, HR@5,
NDCG@5, HR@10, NDCG@10, MRR}. ``paper_full_ranking.csv``: the authors' full-ranking table, 10 methods
x {HR, NDCG}@{5, 10, 20}. Rows: ``dataset,metric,method,value``. The figures (2 to 6) were published
as plots without numbers, so they have no entries.

The files are not shipped with the package: they are found in ``$S3REC_REFERENCE_DIR``, else in a
``reference`` folder beside any data folder (``--data-dir`` / ``$S3REC_DATA_DIR``: the benchmark
layout ``shared/data`` + ``shared/reference``). Without them a report shows no paper column values.
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

FILES = {"sampled": "paper_sampled99.csv", "full": "paper_full_ranking.csv"}


def reference_dirs() -> list[Path]:
    """Where the reference CSVs are looked for, in order."""
    from ..data.registry import data_dirs

    dirs = [Path(os.environ["S3REC_REFERENCE_DIR"])] if os.environ.get("S3REC_REFERENCE_DIR") else []
    return dirs + [d.parent / "reference" for d in data_dirs()]


@functools.cache
def _read(path: str) -> dict[tuple[str, str, str], float]:
    with open(path, encoding="utf-8", newline="") as f:
        return {(r["dataset"], r["method"], r["metric"]): float(r["value"]) for r in csv.DictReader(f)}


def paper_table(protocol: str) -> dict[tuple[str, str, str], float]:
    """``{(dataset, method, metric): value}`` of the paper's table for the protocol (empty if the
    protocol has none or the reference files are not found)."""
    name = FILES.get(protocol)
    if name is None:
        return {}
    for folder in reference_dirs():
        if (folder / name).is_file():
            return _read(str(folder / name))
    return {}


def paper_value(protocol: str, dataset: str, method: str, metric: str) -> float | None:
    return paper_table(protocol).get((dataset, method, metric))
