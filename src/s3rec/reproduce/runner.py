"""Run an experiment's grid: resumable, one run at a time, failures recorded and the rest carried on.

State lives in the run directories, so an interrupted reproduction continues where it stopped:

- a fine-tuning run is **done** when its ``results.json`` exists (``s3rec train`` writes it last);
  a pre-training run when every checkpoint its users start from exists;
- a run that raised has ``error.txt`` (the error, then the traceback) and is **failed**: skipped on a
  restart and reported, retried with ``retry_failed`` (it resumes from its last checkpoint);
- a fine-tuning run whose pre-training failed fails too ("blocked");
- anything else is run with resume semantics: from its ``checkpoint.pt`` when there is one;
- a finished run whose ``config.json`` differs from what the grid asks now is a **conflict** (an
  earlier reproduction with other settings in the same folder): reported, never overwritten;
- a run not started yet whose exact settings (dataset, model, seed, every setting, the same
  pre-training checkpoint) a finished run of another experiment beside this one already has is not
  computed again: its records are copied (``best.pt`` hard-linked where possible) and its
  ``results.json`` says ``same_run_as`` (Table 2's S3-Rec and SASRec are also Fig. 5's 150- and
  0-epoch points, the ablation's references, the 100 % points of Fig. 4...). ``reuse=False`` turns
  this off.

``grid.json`` in the experiment folder records the definition, the command-line overrides and every
run's status; it is rewritten after each run. The report (:mod:`s3rec.reproduce.report`) reads it.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import os
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..config import config_from_json
from ..errors import S3RecError
from ..fileio import atomic_write_text, exclusive_lock, try_lock
from . import cost
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


def _duration(seconds: float | None) -> str:
    if seconds is None:
        return "?"
    if seconds < 90:
        return f"{seconds:.0f} s"
    if seconds < 5400:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


def dry_run_text(plan: Plan, data_dir=None, reuse: bool = True) -> str:
    """The grid, each run's status and estimated time left, and the total: what a run would do."""
    exp = plan.experiment
    sizes = {d: cost.dataset_size(d, data_dir) for d in {r.dataset for r in plan.runs}}
    measured = cost.measured_finetune_speeds(plan.runs, plan.out.parent)
    lengths = cost.measured_finetune_lengths(plan.runs, plan.out.parent)
    pretrain_speeds = cost.measured_pretrain_speeds(plan.pretrain_dir)
    lines = [f"{exp.name}: {exp.title}",
             f"grid: {len(exp.datasets)} datasets x {len(exp.methods)} methods"
             + (f" x {len(exp.vary_values)} values of {exp.vary_setting}" if exp.vary_setting else "")
             + f" x {len(exp.seeds)} seeds = {len(plan.runs)} fine-tuning runs"
             + (" (some methods on some datasets only)" if any(m.datasets for m in exp.methods) else "")
             + f"; {len(plan.pretrains)} pre-training runs",
             f"folders: {plan.out} (runs), {plan.pretrain_dir} (pre-training, shared)", ""]
    total, unknown = 0.0, 0
    width = max([len(r.id) for r in plan.runs] + [len(p.id) + 9 for p in plan.pretrains] + [10])
    lines.append(f"{'run':<{width}}  {'status':<11}  {'estimate':>9}  basis")
    statuses = {r.id: finetune_status(r) for r in plan.runs}
    copied = {r.id: same for r in plan.runs
              if reuse and statuses[r.id] == "pending" and (same := identical_finished_run(r, plan.out.parent))}
    needed = {r.pretrain.id for r in plan.runs if pretrain_wanted(r, statuses[r.id], r.id in copied)}
    for p in plan.pretrains:
        status = pretrain_status(p)
        if status != "done" and p.id not in needed:  # the runner only pre-trains for a run that needs it
            lines.append(f"{'pretrain/' + p.id:<{width}}  {'not needed':<11}  {'-':>9}  every run that starts "
                         f"from it is finished or copied; {p.cfg.epochs} epochs")
            continue
        est, basis = (0.0, "-") if status == "done" else cost.estimate_pretrain(p, sizes.get(p.cfg.dataset), pretrain_speeds)
        ks = ",".join(map(str, p.checkpoints)) if len(p.checkpoints) <= 6 else f"{p.checkpoints[0]},...,{p.checkpoints[-1]}"
        shown = "-" if status == "done" else _duration(est)
        lines.append(f"{'pretrain/' + p.id:<{width}}  {status:<11}  {shown:>9}  {basis}; {p.cfg.epochs} epochs, "
                     f"checkpoints {ks}")
        total, unknown = total + (est or 0.0), unknown + (est is None)
    for r in plan.runs:
        status = statuses[r.id]
        if status in ("done", "unsupported", "conflict", "failed"):
            est, basis = 0.0, "-" if status != "unsupported" else "not run: " + r.unsupported
            if status != "done":
                est = None
        elif r.id in copied:
            est, basis = 0.0, f"the same run as {_rel(copied[r.id], plan.out.parent)}: its records are copied"
        else:
            est, basis = cost.estimate_finetune(r, sizes.get(r.dataset), measured, lengths)
            if r.cfg is not None and r.cfg.model != "poprec" and not r.method.checkpoint_from:
                basis += f"; <= {r.cfg.epochs} epochs"
            if pretrain_wanted(r, status, copied=False):
                basis += f"; from pretrain/{r.pretrain.id} epoch {r.pretrain_epoch}"
        shown = _duration(est) if status in ("pending", "partial") else "-"
        lines.append(f"{r.id:<{width}}  {status:<11}  {shown:>9}  {basis}")
        total, unknown = total + (est or 0.0), unknown + (est is None and status in ("pending", "partial"))
    counts = status_counts(plan)
    lines += ["", "status: " + ", ".join(f"{v} {k}" for k, v in counts.items() if v),
              f"estimated time to finish: {_duration(total)}" + (f" (+ {unknown} runs of unknown cost)" if unknown else "")
              + " on one 2-core CPU machine like this project's; an estimate (seconds per epoch measured where runs "
              "exist, else assumed from the README's measurements; an early-stopped fine-tuning lasts as long as the "
              "finished runs like it, else an assumed 50 epochs, 110 with a softmax-type loss)"]
    return "\n".join(lines)


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


LOCKS = ".locks"  # beside the run folders: one lock file per run another process may be running


class _Busy(Exception):
    """A run (or the pre-training it needs) is being run by another process."""


@dataclass
class Summary:
    ran: list[str] = field(default_factory=list)
    reused: list[str] = field(default_factory=list)  # finished elsewhere with identical settings: copied
    busy: list[str] = field(default_factory=list)  # being run by another process: left to it
    failed: dict[str, str] = field(default_factory=dict)  # run id -> first line of its error
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return not self.failed


def _record_error(run_dir: Path, exc: BaseException | str) -> str:
    if isinstance(exc, str):
        text = exc + "\n"
    else:
        text = f"{type(exc).__name__}: {exc}\n\n" + "".join(traceback.format_exception(exc))
    atomic_write_text(run_dir / ERROR_FILE, text)
    return text.splitlines()[0]


class Runner:
    """Runs a plan in this process with the library's ``pretrain`` and ``finetune`` (what
    ``s3rec pretrain`` and ``s3rec train`` call), datasets loaded once."""

    def __init__(self, plan: Plan, data_dir=None, progress: bool = True, log=lambda m: print(m, file=sys.stderr, flush=True),
                 reuse: bool = True, report_dir: Path | None = None):
        self.plan = plan
        self.reuse = reuse
        self.report_dir = Path(report_dir) if report_dir else None
        self.data_dir = data_dir
        self.progress = progress
        self.log = log
        self._data: dict[tuple[str, bool], object] = {}
        self._failed_at_start: set[str] = set()  # run ids failed when run() started (the rest failed elsewhere)

    def update_report(self) -> None:
        """``s3rec reproduce --report DIR``: make the experiment's report again in DIR (in place: kept
        records stay) after each run that finished, so the results are written where they are kept as
        soon as they exist. One process at a time (a lock beside the run locks); a report that cannot
        be written is a warning, never a failed grid."""
        if self.report_dir is None:
            return
        from .report import write_experiment_report

        try:
            with exclusive_lock(self.plan.out / LOCKS / "report.lock"):
                write_experiment_report(self.plan.out, self.report_dir)
        except Exception as e:  # noqa: BLE001 - the runs matter more than their report
            self.log(f"warning: the report in {self.report_dir} was not updated: {type(e).__name__}: {e}")
        else:
            self.log(f"report updated: {self.report_dir}")

    def _dataset(self, name: str, negatives: bool):
        from ..data import registry

        key = (name, negatives)
        if key not in self._data:
            self._data[key] = registry.load(name, self.data_dir, negatives=negatives, quiet=not self.progress)
        return self._data[key]

    def _prefixed(self, run_id: str):
        return lambda msg: self.log(f"  {run_id}: {msg}")

    def run_pretrain(self, run: PretrainRun) -> None:
        from ..pretrain import pretrain

        ds = self._dataset(run.cfg.dataset, False)
        cfg = dataclasses.replace(run.cfg, dataset=ds.name)
        pretrain(cfg, ds, run.dir, resume=True, progress=self.progress, log=self._prefixed("pretrain/" + run.id))

    def run_finetune(self, run: FinetuneRun) -> dict:
        from ..pretrain import init_for_finetuning
        from ..train import finetune

        if run.method.checkpoint_from:
            return self.test_checkpoint_from(run)

        ds = self._dataset(run.dataset, run.cfg.protocol == "sampled")
        cfg = dataclasses.replace(run.cfg, dataset=ds.name)
        init_state = None
        if cfg.init and not (run.dir / "checkpoint.pt").is_file():
            init_state = init_for_finetuning(cfg.init, ds, cfg)
        return finetune(cfg, ds, run.dir, resume=True, progress=self.progress, log=self._prefixed(run.id),
                        init_state=init_state)

    def test_checkpoint_from(self, run: FinetuneRun) -> dict:
        """Test, under this run's protocol, the best checkpoint of the run with the same id in the
        experiment folder ``run.method.checkpoint_from`` (beside this one); nothing is trained and
        the model stays the one selected there. Its validation metrics under this protocol (every user)
        are recorded too (for choosing between such models on validation, never on test). Writes config.json,
        test_ranks.npy, results.json."""
        from ..evaluate import SELECTION_METRIC, evaluate_ranks
        from ..metrics import metrics_from_ranks
        from ..train import model_from_checkpoint, save_ranks

        source = self.plan.out.parent / run.method.checkpoint_from / run.id
        if not (source / "results.json").is_file():
            raise RuntimeError(f"{source} has not finished; run `s3rec reproduce {run.method.checkpoint_from}` "
                               f"for it first")
        done = json.loads((source / "results.json").read_text(encoding="utf-8"))
        model, src_cfg, _ = model_from_checkpoint(source / "best.pt", run.cfg.device)
        ds = self._dataset(run.dataset, run.cfg.protocol == "sampled")
        t0 = time.time()
        valid_ranks, _ = evaluate_ranks(model, ds, "valid", run.cfg.protocol, run.cfg.device)
        ranks, info = evaluate_ranks(model, ds, "test", run.cfg.protocol, run.cfg.device)
        run.dir.mkdir(parents=True, exist_ok=True)
        atomic_write_text(run.dir / "config.json", run.cfg.to_json() + "\n")
        save_ranks(run.dir / "test_ranks.npy", ranks)
        results = {
            "valid": metrics_from_ranks(valid_ranks), "test": metrics_from_ranks(ranks), "best_epoch": done.get("best_epoch"),
            "epochs": done.get("epochs"), "seconds": round(time.time() - t0, 3), "dataset": ds.name,
            "model": src_cfg.model, "protocol": run.cfg.protocol, "test_info": info,
            "checkpoint_from": _rel(source, self.plan.out.parent),
            "selected_on": f"{src_cfg.protocol} validation {SELECTION_METRIC[src_cfg.protocol]}",
        }
        atomic_write_text(run.dir / "results.json", json.dumps(results, indent=2) + "\n")
        return results

    def _ensure_pretrain(self, p: PretrainRun, retry: dict, summary: Summary) -> str:
        """'' when its checkpoints are there (running it if needed), else why not; raises :class:`_Busy`
        when another process is running it."""
        if pretrain_status(p) == "done":
            return ""
        with try_lock(p.dir.parent / LOCKS / f"{p.id}.lock") as held:
            if not held:
                raise _Busy(f"pre-training {p.id} is running in another process")
            return self._pretrain_locked(p, retry, summary)

    def _pretrain_locked(self, p: PretrainRun, retry: dict, summary: Summary) -> str:
        status = pretrain_status(p)  # again: another process may have finished it meanwhile
        if status == "done":
            return ""
        known = retry.get("pretrain/" + p.id)
        if status == "failed" and (known is None or known != _identity(p.dir / ERROR_FILE)):
            return f"pre-training {p.id} failed earlier: {error_line(p.dir)}"
        retry.pop("pretrain/" + p.id, None)  # retried once: failing again, it stays failed
        (p.dir / ERROR_FILE).unlink(missing_ok=True)
        self.log(f"pre-training {p.id}: {p.cfg.epochs} epochs ({p.dir})")
        t0 = time.time()
        try:
            self.run_pretrain(p)
            missing = [k for k in p.checkpoints if not p.checkpoint(k).is_file()]
            if missing:
                raise RuntimeError(f"pre-training finished without the checkpoints of epochs {missing} "
                                   f"(kept every {p.cfg.save_every} epochs)")
        except Exception as e:  # recorded; the grid goes on
            line = _record_error(p.dir, e)
            summary.failed["pretrain/" + p.id] = line
            self.log(f"pre-training {p.id} FAILED: {line}")
            return f"pre-training {p.id} failed: {line}"
        summary.ran.append("pretrain/" + p.id)
        self.log(f"pre-training {p.id} done in {_duration(time.time() - t0)}")
        return ""

    def _one(self, run: FinetuneRun, tag: str, retry: dict, summary: Summary) -> None:
        """Run (or reuse, or record why not) one fine-tuning run of the grid, holding its lock."""
        plan = self.plan
        status = finetune_status(run)  # after taking the lock: another process may have finished it
        if status in ("done", "unsupported"):
            return
        if status == "conflict":
            summary.failed[run.id] = f"finished with other settings ({', '.join(conflicts(run))}); use another --out"
            self.log(f"{tag}: CONFLICT: {summary.failed[run.id]}")
            return
        known = retry.get(run.id)
        if status == "failed" and (known is None or known != _identity(run.dir / ERROR_FILE)):
            if run.id not in self._failed_at_start:  # another process failed it meanwhile: its to report
                self.log(f"{tag}: failed in another process meanwhile (its error.txt): {error_line(run.dir)}")
                return
            summary.failed[run.id] = error_line(run.dir)
            self.log(f"{tag}: failed earlier (--retry-failed retries it): {summary.failed[run.id]}")
            return
        retry.pop(run.id, None)
        (run.dir / ERROR_FILE).unlink(missing_ok=True)
        same = identical_finished_run(run, plan.out.parent) if self.reuse and status == "pending" else None
        if same is not None:
            label = _rel(same, plan.out.parent)
            res = copy_finished_run(same, run.dir, label)
            summary.reused.append(run.id)
            m = plan.experiment.primary_metric
            self.log(f"{tag}: the same run as {label} (identical settings): its records, not run again; "
                     f"test {m} {res['test'][m]:.4f}")
            write_grid(plan)
            self.update_report()
            return
        if pretrain_wanted(run, status, copied=False):
            why = self._ensure_pretrain(run.pretrain, retry, summary)
            if why:
                run.dir.mkdir(parents=True, exist_ok=True)
                summary.failed[run.id] = _record_error(run.dir, f"blocked: {why}")
                self.log(f"{tag}: not run: {why}")
                write_grid(plan)
                return
        start = f"from pretrain/{run.pretrain.id} epoch {run.pretrain_epoch}" if run.cfg.init else "from scratch"
        if run.method.checkpoint_from:
            start = f"testing the model of {run.method.checkpoint_from}/{run.id}, nothing trained"
        self.log(f"{tag}: {run.method.label} ({run.cfg.model}, {start}, seed {run.seed})"
                 + (" resuming" if status == "partial" else ""))
        t0 = time.time()
        try:
            res = self.run_finetune(run)
        except Exception as e:  # recorded; the grid goes on
            summary.failed[run.id] = _record_error(run.dir, e)
            self.log(f"{tag}: FAILED: {summary.failed[run.id]}")
        else:
            summary.ran.append(run.id)
            m = plan.experiment.primary_metric
            self.log(f"{tag}: done in {_duration(time.time() - t0)}; test {m} {res['test'][m]:.4f}")
        write_grid(plan)
        if run.id in summary.ran:
            self.update_report()

    def run(self, retry_failed: bool = False, wait: bool = False) -> Summary:
        """Run every run of the grid that is not finished. ``retry_failed``: run again, once each, the
        runs and pre-trainings that had failed when this call started (not those another process
        fails meanwhile). A run another process holds (or whose pre-training another process is
        running) is left to it, or with ``wait`` tried again every :data:`WAIT_POLL_SECONDS` until it
        is finished, failed or free (``s3rec reproduce --wait``, ``--jobs``)."""
        plan, summary = self.plan, Summary()
        plan.out.mkdir(parents=True, exist_ok=True)
        write_grid(plan)
        failed = failed_error_files(plan)
        self._failed_at_start = set(failed)
        retry = {key: _identity(path) for key, path in failed.items()} if retry_failed else {}
        todo = [r for r in plan.runs if finetune_status(r) not in ("done", "unsupported")]
        n = len(todo)
        self.log(f"{plan.experiment.name}: {len(plan.runs)} runs, {len(plan.runs) - n} finished or unsupported, {n} to go "
                 f"({plan.out})")
        number = {run.id: i for i, run in enumerate(todo, 1)}
        told: set[str] = set()
        last_note = None
        while True:
            busy = []
            for run in todo:
                tag = f"[{number[run.id]}/{n}] {run.id}"
                with try_lock(plan.out / LOCKS / f"{run.id}.lock") as held:
                    try:
                        if not held:
                            raise _Busy("another process is running it")
                        self._one(run, tag, retry, summary)
                    except _Busy as e:
                        busy.append(run)
                        if run.id not in told:
                            told.add(run.id)
                            then = "waiting for it" if wait else "run this command again once it is done"
                            self.log(f"{tag}: skipped: {e} ({then})")
            todo = busy
            if not (wait and todo):
                break
            if last_note is None:
                last_note = time.time()
            elif time.time() - last_note >= WAIT_NOTE_SECONDS:
                last_note = time.time()
                self.log(f"{plan.experiment.name}: still waiting for {len(todo)} runs (or their pre-trainings) "
                         "that other processes hold: " + ", ".join(r.id for r in todo))
            _sleep(WAIT_POLL_SECONDS)
            # a run another process finished or failed meanwhile is that process's to report
            todo = [r for r in todo if finetune_status(r) in ("pending", "partial")]
        summary.busy = [r.id for r in todo]
        write_grid(plan)
        summary.counts = status_counts(plan)
        return summary


WAIT_POLL_SECONDS = 20.0  # how often a waiting runner looks again at the runs other processes hold
WAIT_NOTE_SECONDS = 600.0  # how often it says which runs it is still waiting for


def _sleep(seconds: float) -> None:  # the waiting runner's pause (tests replace it)
    time.sleep(seconds)
