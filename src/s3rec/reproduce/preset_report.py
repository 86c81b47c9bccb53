"""The index's sections on the shipped presets: how each dataset's preset is chosen on validation
(its mean gain over the paper-faithful S3-Rec), and each preset's test numbers against the paper's."""

from __future__ import annotations

import statistics
from dataclasses import dataclass, field
from pathlib import Path

from .collect import collect, load_grid, make_cells
from .tables import md_table

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
    from ..evaluation import SELECTION_METRIC

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
    lines += [md_table(["dataset", "preset", "validation, per experiment", "mean gain", "choice"], rows), ""]
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

