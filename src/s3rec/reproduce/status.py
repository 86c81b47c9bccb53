"""The state of an experiment's runs, read from their folders, and ``grid.json`` (what the runner and
the dry run both read; :mod:`s3rec.reproduce.runner` has the rules).
"""

from __future__ import annotations

import datetime
import json
import os
from pathlib import Path

from ..config import config_from_json
from ..errors import S3RecError
from ..fileio import atomic_write_text
from .plan import FinetuneRun, Plan, PretrainRun

ERROR_FILE = "error.txt"


def pretrain_status(run: PretrainRun) -> str:
    if all(run.checkpoint(k).is_file() for k in run.checkpoints):
        return "done"
    if (run.dir / ERROR_FILE).is_file():
        return "failed"
    return "partial" if (run.dir / "checkpoint.pt").is_file() else "pending"


def _comparable(cfg: dict) -> dict:
    out = {k: v for k, v in cfg.items() if k not in ("device", "dataset")}
    if out.get("init"):  # the same checkpoint, wherever the folders were when it ran
        out["init"] = "/".join(Path(out["init"]).parts[-2:])
    return out


def _saved_settings(run_dir: Path) -> dict | None:
    """A run's ``config.json`` as comparable settings, or None when unreadable. Read as a config, so
    settings added to s3rec since the run compare as their defaults; the device never counts (a run
    made on another machine's device compares the same)."""
    try:
        data = json.loads((run_dir / "config.json").read_text(encoding="utf-8"))
        data.pop("device", None)
        return _comparable(config_from_json(json.dumps(data)).to_dict())
    except (OSError, ValueError, AttributeError, S3RecError):
        return None


def conflicts(run: FinetuneRun) -> list[str]:
    """Settings in which a finished run's ``config.json`` differs from the grid's."""
    if run.cfg is None or not (run.dir / "config.json").is_file():
        return []
    saved = _saved_settings(run.dir)
    if saved is None:
        return ["config.json (unreadable or with settings s3rec no longer has)"]
    planned = _comparable(run.cfg.resolved().to_dict())
    return sorted(k for k in set(saved) | set(planned) if saved.get(k) != planned.get(k))


REUSED_FILES = ("config.json", "metrics.jsonl", "test_ranks.npy", "test_ranks.npz")


def identical_finished_run(run: FinetuneRun, root: Path) -> Path | None:
    """A finished run with exactly ``run``'s settings in another experiment folder under ``root``
    (trained by ``s3rec train``, not a ``checkpoint_from`` test or a reused copy), or None."""
    if run.cfg is None or run.method.checkpoint_from:
        return None
    wanted = _comparable(run.cfg.resolved().to_dict())
    for results in sorted(Path(root).glob("*/*/results.json")):
        cand = results.parent
        if cand.resolve() == run.dir.resolve() or not (cand / "config.json").is_file():
            continue
        try:
            done = json.loads(results.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        if done.get("checkpoint_from") or done.get("same_run_as") or done.get("dataset") != run.dataset:
            continue
        if _saved_settings(cand) == wanted:
            return cand
    return None


def copy_finished_run(source: Path, dest: Path, label: str) -> dict:
    """``dest`` becomes a record of the finished run ``source``: its files copied (``best.pt``
    hard-linked, or copied across file systems), ``results.json`` last, with ``same_run_as = label``."""
    import shutil

    dest.mkdir(parents=True, exist_ok=True)
    for name in REUSED_FILES:
        if (source / name).is_file():
            shutil.copyfile(source / name, dest / name)
    if (source / "best.pt").is_file() and not (dest / "best.pt").exists():
        try:
            os.link(source / "best.pt", dest / "best.pt")
        except OSError:
            shutil.copyfile(source / "best.pt", dest / "best.pt")
    results = json.loads((source / "results.json").read_text(encoding="utf-8"))
    results["same_run_as"] = label
    atomic_write_text(dest / "results.json", json.dumps(results, indent=2) + "\n")
    return results


def _needs_pretrain(run: FinetuneRun) -> bool:
    """Whether running ``run`` needs its pre-training's checkpoint: not for a run that tests another
    experiment's finished model (``checkpoint_from``), which was fine-tuned from it already, nor for
    a run that resumes from its own ``checkpoint.pt`` (interrupted, or failed after an epoch)."""
    return (run.pretrain is not None and bool(run.pretrain_epoch) and not run.method.checkpoint_from
            and not (run.dir / "checkpoint.pt").is_file())


def pretrain_wanted(run: FinetuneRun, status: str, copied: bool) -> bool:
    """Whether the runner, reaching ``run`` in state ``status``, pre-trains for it: only to start or
    resume (or retry) a fine-tuning that is not copied from an identical finished run and needs the
    pre-training's checkpoint (:func:`_needs_pretrain`). The runner and the dry run both ask this."""
    return status in ("pending", "partial", "failed") and not copied and _needs_pretrain(run)


def finetune_status(run: FinetuneRun) -> str:
    if run.unsupported:
        return "unsupported"
    if (run.dir / "results.json").is_file():
        return "conflict" if conflicts(run) else "done"
    if (run.dir / ERROR_FILE).is_file():
        return "failed"
    return "partial" if (run.dir / "checkpoint.pt").is_file() else "pending"


def error_line(run_dir: Path) -> str:
    path = run_dir / ERROR_FILE
    return path.read_text(encoding="utf-8").splitlines()[0] if path.is_file() else ""


def _seconds(run_dir: Path) -> float | None:
    try:
        return float(json.loads((run_dir / "results.json").read_text(encoding="utf-8"))["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return None


def _rel(path: Path, start: Path) -> str:
    return os.path.relpath(path, start)


def grid_record(plan: Plan) -> dict:
    """The JSON record of the plan and every run's status now (what ``grid.json`` holds)."""
    out = plan.out
    pres = [{"id": p.id, "dir": _rel(p.dir, out), "epochs": p.cfg.epochs, "checkpoints": list(p.checkpoints),
             "status": pretrain_status(p), "error": error_line(p.dir), "settings": p.cfg.to_dict()}
            for p in plan.pretrains]
    runs = []
    for r in plan.runs:
        status = finetune_status(r)
        error = error_line(r.dir) if status == "failed" else ""
        if status == "conflict":
            error = "finished with other settings: " + ", ".join(conflicts(r))
        runs.append({"id": r.id, "dir": _rel(r.dir, out), "dataset": r.dataset, "method": r.method.id,
                     "label": r.method.label, "model": r.method.model, "seed": r.seed, "value": r.value,
                     "pretrain": r.pretrain.id if r.pretrain else None, "pretrain_epoch": r.pretrain_epoch,
                     "status": status, "error": error, "unsupported": r.unsupported,
                     "seconds": _seconds(r.dir) if status == "done" else None})
    return {"experiment": plan.experiment.to_dict(), "pretrain_dir": _rel(plan.pretrain_dir, out),
            "overrides": plan.overrides, "updated": datetime.datetime.now().isoformat(timespec="seconds"),
            "pretrains": pres, "runs": runs}


def _union(a: list, b: list, key=lambda x: json.dumps(x, sort_keys=True)) -> list:
    seen = {key(x) for x in a}
    return list(a) + [x for x in b if key(x) not in seen]


def _value_key(v):
    """One key for the numbers 1 and 1.0 (``--values 1`` parses to an int, a definition may say 1.0)."""
    return float(v) if isinstance(v, (int, float)) and not isinstance(v, bool) else json.dumps(v, sort_keys=True)


def merge_records(old: dict, new: dict) -> dict:
    """``new`` plus what an earlier, differently narrowed reproduction into the same folder recorded:
    its runs and pre-training runs not in ``new`` (their statuses as then; the report reads the run
    folders), the union of datasets, seeds, methods, values and pairs, and every distinct set of overrides."""
    if old.get("experiment", {}).get("name") != new["experiment"]["name"]:
        return new
    exp, oexp = dict(new["experiment"]), old["experiment"]
    for k in ("datasets", "seeds"):
        exp[k] = _union(oexp.get(k, []), exp[k])
    exp["vary_values"] = sorted(_union(oexp.get("vary_values", []), exp["vary_values"], key=_value_key))
    # a method both recorded: this reproduction's definition (labels and notes may have changed since)
    exp["methods"] = _union(exp["methods"], oexp.get("methods", []), key=lambda m: m["id"])
    order = [m["id"] for m in new["experiment"]["methods"]]
    exp["methods"].sort(key=lambda m: order.index(m["id"]) if m["id"] in order else len(order))
    exp["pairs"] = _union(oexp.get("pairs", []), exp.get("pairs", []))
    ids = {r["id"] for r in new["runs"]}
    pre_ids = {p["id"] for p in new["pretrains"]}
    return {**new, "experiment": exp,
            "runs": [r for r in old.get("runs", []) if r["id"] not in ids] + new["runs"],
            "pretrains": [p for p in old.get("pretrains", []) if p["id"] not in pre_ids] + new["pretrains"],
            "overrides_seen": _union(old.get("overrides_seen", [old.get("overrides", {})]), [new["overrides"]])}


def write_grid(plan: Plan) -> Path:
    """Write ``grid.json``, merged with the record of earlier reproductions into the same folder."""
    path = plan.out / "grid.json"
    record = grid_record(plan)
    record["overrides_seen"] = [record["overrides"]]
    if path.is_file():
        try:
            record = merge_records(json.loads(path.read_text(encoding="utf-8")), record)
        except (OSError, ValueError, KeyError, TypeError):
            pass  # an unreadable record is replaced
    atomic_write_text(path, json.dumps(record, indent=1) + "\n")
    return path


def duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"



def status_counts(plan: Plan) -> dict[str, int]:
    """How many of the grid's fine-tuning runs are done, partial, pending, failed, conflicting, unsupported."""
    counts = dict.fromkeys(("done", "partial", "pending", "failed", "conflict", "unsupported"), 0)
    for r in plan.runs:
        counts[finetune_status(r)] += 1
    return counts


def failed_error_files(plan: Plan) -> dict[str, Path]:
    """The grid's failed pre-trainings (``pretrain/ID``) and fine-tuning runs -> their ``error.txt``."""
    return ({f"pretrain/{p.id}": p.dir / ERROR_FILE for p in plan.pretrains if pretrain_status(p) == "failed"}
            | {r.id: r.dir / ERROR_FILE for r in plan.runs if finetune_status(r) == "failed"})


def _identity(path: Path) -> tuple[int, int] | None:
    """(inode, mtime) of a recorded failure: one recorded again later (by any process) is another one."""
    try:
        st = path.stat()
    except OSError:
        return None
    return st.st_ino, st.st_mtime_ns


def clear_failures(plan: Plan) -> list[str]:
    """Forget the recorded failures of the grid's runs and pre-trainings (their ``error.txt``), so that
    they run again (resuming from their last checkpoint); their ids. What ``--retry-failed`` does
    before ``--jobs`` workers start, so that a run failing again is not retried by each worker."""
    files = failed_error_files(plan)
    for path in files.values():
        path.unlink(missing_ok=True)
    return list(files)
