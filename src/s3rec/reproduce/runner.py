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
import json
import sys
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from ..fileio import atomic_write_text, exclusive_lock, try_lock
from ..shared_pretrain import ensure_pretrained, pretraining_lock
from . import cost
from .plan import FinetuneRun, Plan, PretrainRun
from .status import (ERROR_FILE, _identity, _rel, conflicts, copy_finished_run, error_line, failed_error_files,
                     finetune_status, identical_finished_run, pretrain_status, pretrain_wanted,
                     status_counts, write_grid)
from .status import duration as _duration


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
              "exist, else assumed from the measurements in docs/results.md; an early-stopped fine-tuning lasts as long as the "
              "finished runs like it, else an assumed 50 epochs, 110 with a softmax-type loss)"]
    return "\n".join(lines)



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
        from ..data.negatives import load_with_negatives

        key = (name, negatives)
        if key not in self._data:
            self._data[key] = (load_with_negatives(name, self.data_dir, quiet=not self.progress) if negatives
                               else registry.load(name, self.data_dir))
        return self._data[key]

    def _prefixed(self, run_id: str):
        """A run's log: its lines prefixed on stderr (the per-epoch ones not with --quiet), all in its log.txt."""
        from ..loop import RunLog

        return RunLog(lambda msg: self.log(f"  {run_id}: {msg}"), quiet=not self.progress)

    def run_pretrain(self, run: PretrainRun) -> None:
        """Resume or run the pre-training to its checkpoints (the caller holds its lock)."""
        ds = self._dataset(run.cfg.dataset, False)
        cfg = dataclasses.replace(run.cfg, dataset=ds.name)
        ensure_pretrained(cfg, ds, run.dir, run.checkpoints, lock=False, progress=self.progress,
                          log=self._prefixed("pretrain/" + run.id))

    def run_finetune(self, run: FinetuneRun) -> dict:
        from ..transfer import read_init
        from ..train import finetune

        if run.method.checkpoint_from:
            return self.test_checkpoint_from(run)

        ds = self._dataset(run.dataset, run.cfg.protocol == "sampled")
        cfg = dataclasses.replace(run.cfg, dataset=ds.name)
        init = None
        if cfg.init and not (run.dir / "checkpoint.pt").is_file():
            init = read_init(cfg.init, ds, cfg)
        return finetune(cfg, ds, run.dir, resume=True, progress=self.progress, log=self._prefixed(run.id),
                        init=init)

    def test_checkpoint_from(self, run: FinetuneRun) -> dict:
        """Test, under this run's protocol, the best checkpoint of the run with the same id in the
        experiment folder ``run.method.checkpoint_from`` (beside this one); nothing is trained and
        the model stays the one selected there. Its validation metrics under this protocol (every user)
        are recorded too (for choosing between such models on validation, never on test). Writes config.json,
        test_ranks.npy, results.json."""
        from ..evaluation import SELECTION_METRIC, evaluate_ranks
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
        when another process is running it (the shared pre-training's lock, :mod:`s3rec.shared_pretrain`)."""
        if pretrain_status(p) == "done":
            return ""
        with pretraining_lock(p.dir, wait=False) as held:
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
