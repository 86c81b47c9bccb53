"""The paper's published numbers (Zhou et al., CIKM 2020): the one home of them in s3rec.

- :data:`PAPER`: SASRec's and S3-Rec's rows, shipped with the package and printed beside ours by
  ``s3rec train`` / ``s3rec run`` (``PAPER[protocol][method][dataset][metric]``; ``sampled`` is
  Table 2, target + 99 negatives; ``full`` the authors' full-ranking table);
- :func:`paper_table` / :func:`paper_value`: the complete tables (every method) for the reports, read
  from the benchmark reference files, which are not shipped: ``paper_sampled99.csv`` (Table 2, 12
  methods x 6 datasets x {HR@1, HR@5, NDCG@5, HR@10, NDCG@10, MRR}) and ``paper_full_ranking.csv``
  (10 methods x {HR, NDCG}@{5, 10, 20}), rows ``dataset,metric,method,value``, found in
  ``$S3REC_REFERENCE_DIR``, else in a ``reference`` folder beside any data folder (``--data-dir`` /
  ``$S3REC_DATA_DIR``: the benchmark layout ``shared/data`` + ``shared/reference``). Without them a
  report shows no paper values. The figures (2 to 6) were published as plots without numbers.
"""

from __future__ import annotations

import csv
import functools
import os
from pathlib import Path

from .data.registry import data_dirs

_COLS_SAMPLED = ("HR@1", "HR@5", "NDCG@5", "HR@10", "NDCG@10", "MRR")
_COLS_FULL = ("HR@5", "NDCG@5", "HR@10", "NDCG@10", "HR@20", "NDCG@20")

_SAMPLED = {
    "SASRec": {
        "Beauty": (0.1870, 0.3741, 0.2848, 0.4696, 0.3156, 0.2852),
        "Sports": (0.1455, 0.3466, 0.2497, 0.4622, 0.2869, 0.2520),
        "Toys": (0.1878, 0.3682, 0.2820, 0.4663, 0.3136, 0.2842),
        "Yelp": (0.2375, 0.5745, 0.4113, 0.7373, 0.4642, 0.3927),
        "LastFM": (0.1211, 0.3385, 0.2330, 0.4706, 0.2755, 0.2364),
    },
    "S3-Rec": {
        "Beauty": (0.2192, 0.4502, 0.3407, 0.5506, 0.3732, 0.3340),
        "Sports": (0.1841, 0.4267, 0.3104, 0.5614, 0.3538, 0.3071),
        "Toys": (0.2003, 0.4420, 0.3270, 0.5530, 0.3629, 0.3202),
        "Yelp": (0.2591, 0.6085, 0.4401, 0.7725, 0.4934, 0.4190),
        "LastFM": (0.1743, 0.4523, 0.3156, 0.5835, 0.3583, 0.3072),
    },
}
_FULL = {
    "SASRec": {
        "Beauty": (0.0387, 0.0249, 0.0605, 0.0318, 0.0902, 0.0394),
        "Sports": (0.0233, 0.0154, 0.0350, 0.0192, 0.0507, 0.0231),
        "Toys": (0.0463, 0.0306, 0.0675, 0.0374, 0.0941, 0.0441),
        "Yelp": (0.0162, 0.0100, 0.0274, 0.0136, 0.0457, 0.0182),
        "LastFM": (0.0505, 0.0331, 0.0688, 0.0390, 0.0972, 0.0463),
    },
    "S3-Rec": {
        "Beauty": (0.0387, 0.0244, 0.0647, 0.0327, 0.0994, 0.0414),
        "Sports": (0.0251, 0.0161, 0.0385, 0.0204, 0.0607, 0.0260),
        "Toys": (0.0443, 0.0294, 0.0700, 0.0376, 0.1065, 0.0468),
        "Yelp": (0.0201, 0.0123, 0.0341, 0.0168, 0.0573, 0.0226),
        "LastFM": (0.0459, 0.0334, 0.0743, 0.0427, 0.1229, 0.0550),
    },
}

PAPER = {
    "sampled": {m: {d: dict(zip(_COLS_SAMPLED, v)) for d, v in t.items()} for m, t in _SAMPLED.items()},
    "full": {m: {d: dict(zip(_COLS_FULL, v)) for d, v in t.items()} for m, t in _FULL.items()},
}
MODEL_TO_METHOD = {"sasrec": "SASRec", "s3rec": "S3-Rec"}


def paper_numbers(protocol: str, model: str, dataset: str) -> dict[str, float] | None:
    """The paper's numbers for this setting, or None where the paper has none."""
    method = MODEL_TO_METHOD.get(model)
    return PAPER.get(protocol, {}).get(method, {}).get(dataset)


def comparison_table(ours: dict[str, float], protocol: str, model: str, dataset: str) -> str:
    """A small text table of our test metrics beside the paper's."""
    paper = paper_numbers(protocol, model, dataset)
    lines = [f"{'metric':<8} {'ours':>7} {'paper':>7}"]
    for k, v in ours.items():
        p = f"{paper[k]:.4f}" if paper and k in paper else "-"
        lines.append(f"{k:<8} {v:>7.4f} {p:>7}")
    return "\n".join(lines)


FILES = {"sampled": "paper_sampled99.csv", "full": "paper_full_ranking.csv"}


def reference_dirs() -> list[Path]:
    """Where the reference CSVs are looked for, in order."""
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
    """One number of the paper's complete tables (None where it has none or they are not found)."""
    return paper_table(protocol).get((dataset, method, metric))
