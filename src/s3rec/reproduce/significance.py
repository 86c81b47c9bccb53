"""A table's paired t-tests: the method marked ``ours`` against its best baseline, and each listed pair,
over the users' test reciprocal ranks (each user's 1/rank averaged over the finished seeds)."""

from __future__ import annotations

import math
import statistics

import numpy as np

from .collect import RunResult
from .experiment import Experiment
from .stats import paired_ttest
from .tables import csv_text, fmt_p, md_table, num

RANKS_MISSING = "per-user ranks missing (test_ranks.npy / test_ranks.npz)"


def has_significance(exp: Experiment) -> bool:
    """Whether the report of ``exp`` has paired t-tests (a table with an ``ours`` method or pairs)."""
    return exp.kind == "table" and (any(m.ours for m in exp.methods) or bool(exp.pairs))


def is_baseline(ours, m) -> bool:
    """Whether method ``m`` is a baseline of ``ours``: another method, without pre-training when ``ours``
    is pre-trained (another pre-trained method is a variant of ours: a preset, another loss)."""
    return m.id != ours.id and (ours.pretrain is None or m.pretrain is None)


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
                if vals and is_baseline(ours, m):
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


def with_recorded(exp: Experiment, runs: list[RunResult], sig: list[dict], recorded: list[dict]) -> list[dict]:
    """``sig`` with each row whose per-user ranks are missing taken from the same row of the report's
    record (``recorded``: its ``runs.json``'s ``significance``: some t-tests were made before ranks were
    recorded), marked ``kept``, but only where that row's two MRR means equal the finished runs' test
    MRR now (to 1e-4 relative): the same runs made it. Anything else stays missing."""
    if not recorded or not any(s.get("note") == RANKS_MISSING for s in sig):
        return sig
    earlier = {(r["dataset"], r["ours"], r["baseline"], r["best"]): r for r in recorded if "t" in r}
    ids = {m.label: m.id for m in exp.methods}

    def mrr(dataset: str, label: str) -> float | None:
        vals = [r.test.get("MRR") for r in runs
                if r.dataset == dataset and r.status == "done" and r.method.id == ids.get(label)]
        return statistics.fmean(vals) if vals and None not in vals else None

    out = []
    for s in sig:
        e = earlier.get((s["dataset"], s["ours"], s["baseline"], s["best"]))
        if s.get("note") != RANKS_MISSING or e is None:
            out.append(s)
            continue
        a, b = mrr(s["dataset"], s["ours"]), mrr(s["dataset"], s["baseline"])
        same = a is not None and b is not None and math.isclose(a, e["mrr_ours"], rel_tol=1e-4) \
            and math.isclose(b, e["mrr_baseline"], rel_tol=1e-4)
        keys = ("mrr_ours", "mrr_baseline", "t", "p", "users")
        out.append({**s, **{k: e[k] for k in keys}, "note": "kept", "kept": True} if same else s)
    return out


def recordable(sig: list[dict]) -> list[dict]:
    """The rows as the record keeps them: the numbers at the precision the CSV shows."""
    keys = ("mrr_ours", "mrr_baseline", "t", "p")
    return [{k: (float(num(v)) if k in keys and v is not None else v) for k, v in s.items() if k != "kept"}
            for s in sig]


def significance_csv(sig: list[dict]) -> str:
    return csv_text(
        ["dataset", "ours", "baseline", "metric", "mrr_ours", "mrr_baseline", "t", "p", "users", "note", "best_baseline"],
        [[s["dataset"], s["ours"], s["baseline"], s["metric"], num(s.get("mrr_ours")), num(s.get("mrr_baseline")),
          num(s.get("t")), num(s.get("p")), num(s.get("users")), s.get("note", ""), str(s["best"]).lower()]
         for s in sig])


def significance_section(exp: Experiment, sig: list[dict]) -> list[str]:
    """Markdown lines: the report's significance table."""
    rows = [[s["dataset"], s["ours"] + (" (kept)" if s.get("kept") else ""),
             (s["baseline"] or "-") + (" (best baseline)" if s["best"] else ""),
             *([f"{s['mrr_ours']:.4f}", f"{s['mrr_baseline']:.4f}", f"{s['t']:.2f}", fmt_p(s["p"]), str(s["users"])]
               if "t" in s else [s["note"], "", "", "", ""])] for s in sig]
    ours_m = next((m for m in exp.methods if m.ours), None)
    ours = ours_m.label if ours_m else ""
    among = (" among the methods without pre-training"
             if ours_m and any(m.id != ours_m.id and not is_baseline(ours_m, m) for m in exp.methods) else "")
    what = ([f"{ours} against the baseline with the best mean {exp.primary_metric}{among}"] if ours else []) + (
        ["each listed pair"] if exp.pairs else [])
    return ["## Significance", "",
            f"Paired t-test (two-sided, Student's t) over the users' test reciprocal ranks, each user's 1/rank "
            f"averaged over the finished seeds: {'; '.join(what)}."
            + (" Marked (kept): the runs' per-user ranks were never recorded, so the row is the t-test this "
               "report's record holds, kept because its MRR means equal the finished runs' test MRR now."
               if any(s.get("kept") for s in sig) else ""), "",
            md_table(["dataset", "method", "against", "MRR", "MRR against", "t", "p", "users"], rows), ""]
