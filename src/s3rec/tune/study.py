"""The search: optuna trials that each fine-tune with sampled settings, selected on validation only.

A study folder holds:

- ``journal.log``: optuna's journal (a local append-only file: no database server), the study's
  whole state; running the same command again continues the study. ``--trials N`` is the total
  target: finished trials count towards it.
- ``study.json``: what the search holds fixed (dataset, base settings, space); the study's name is
  ``DATASET-MODEL-PROTOCOL-SPACE-HASH`` of it, so a folder holds one search: other settings in the
  same folder are an error naming what differs.
- ``trials/NNNN/``: each trial's fine-tuning run (an ordinary run directory, resumable; trained with
  ``evaluate_test=False``, so test is never evaluated during a search).
- ``pretrain/DATASET-TAG-seedSEED/``: one pre-training run per distinct pre-training setting (the
  shared folders of :mod:`s3rec.shared_pretrain`), when the search pre-trains (``--pretrain`` or a
  space with ``[pretrain]``), shared by every trial that samples it.
- ``best.json``: the best trial so far (its settings, validation score and run), rewritten atomically
  after every trial.

A trial's objective is the selection metric of the protocol (MRR sampled, NDCG@20 full) on the
validation split, at the best epoch of its run (``results["valid"]``). A trial that raised is
recorded as failed (it counts as finished; its error is in the trial's user attributes). A trial
cut short (killed, Ctrl-C) is marked failed and its settings are queued again: the retry resumes the
same run folder from its last checkpoint and does not count twice. One process per study folder (a
lock file enforces it). Sampling is deterministic: trial number k's sampler is seeded with
``(sampler_seed, k)``, so a search run in several invocations (``--trials 10``, later ``--trials
20``) samples what one invocation would (an interrupted trial, one more number, shifts the rest).
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import math
import shutil
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from ..config import PretrainConfig, TrainConfig, with_overrides
from ..errors import ConfigError, S3RecError
from ..fileio import atomic_write_text, try_lock
from ..models.encoder import ENCODER_SHAPE  # when a search pre-trains, fine-tuning takes it from there
from ..shared_pretrain import ensure_pretrained, pretrain_id
from .space import SECTIONS, Space

JOURNAL = "journal.log"
STUDY_FILE = "study.json"
BEST_FILE = "best.json"
LOCK_FILE = ".lock"


@dataclass
class TuneSetup:
    """What a search holds fixed."""

    finetune: TrainConfig  # the base fine-tuning settings (validated; ``init``: a fixed checkpoint or "")
    pretrain: PretrainConfig | None  # the base pre-training settings when the search pre-trains, else None
    space: Space
    study_dir: Path
    data_dir: str | None = None
    sampler_seed: int = 0
    init_digest: str = ""  # SHA-256 (16 hex) of the fixed checkpoint's bytes: its identity, wherever it lies

    def record(self) -> dict:
        """The search's identity (``study.json``): everything that changes what a trial computes."""
        ft = self.finetune.to_dict()
        ft.pop("device")
        ft["init"] = {"file": Path(ft["init"]).name, "sha256": self.init_digest} if ft["init"] else ""
        pre = None
        if self.pretrain is not None:
            pre = self.pretrain.to_dict()
            pre.pop("device")
        return {"dataset": self.finetune.dataset, "model": self.finetune.model, "protocol": self.finetune.protocol,
                "space": {"name": self.space.name, "definition": self.space.to_dict()}, "finetune": ft, "pretrain": pre}

    def study_name(self) -> str:
        digest = hashlib.sha1(json.dumps(self.record(), sort_keys=True).encode()).hexdigest()[:8]
        ft = self.finetune
        return f"{ft.dataset}-{ft.model}-{ft.protocol}-{self.space.name}-{digest}"


def file_digest(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()[:16]


def default_study_dir(ft: TrainConfig, space: Space) -> Path:
    return Path("runs") / "tune" / f"{ft.dataset}-{ft.model}-{ft.protocol}-{space.name}"


def make_setup(
    dataset: str,
    space: Space,
    finetune_sets: dict | None = None,
    pretrain_sets: dict | None = None,
    preset=None,
    pretrain: bool = False,
    study_dir: str | Path | None = None,
    data_dir: str | None = None,
    sampler_seed: int = 0,
) -> TuneSetup:
    """The search's fixed settings: defaults < ``preset`` < ``finetune_sets`` (which may hold ``init``:
    a fixed pre-trained checkpoint) / ``pretrain_sets``. The search pre-trains when ``pretrain`` is
    set, the space has ``[pretrain]`` parameters or ``pretrain_sets`` is not empty; then fine-tuning
    takes the encoder's shape from pre-training (shape settings in ``finetune_sets`` apply to both)."""
    from ..data.registry import registered
    from ..presets import apply_finetune, apply_pretrain

    info = registered(dataset)
    dataset = info.name if info else dataset
    ft_sets, pre_sets = dict(finetune_sets or {}), dict(pretrain_sets or {})
    for section, given in (("finetune", ft_sets), ("pretrain", pre_sets)):
        both = [p.name for p in space.section(section) if p.name in given]
        if both:
            flag = "--set" if section == "finetune" else "--pretrain-set"
            raise ConfigError(f"{both[0]} is both searched (space {space.where}, [{section}]) and fixed ({flag} or a flag)")
    ft = with_overrides(apply_finetune(TrainConfig(dataset=dataset), preset), ft_sets).validate()
    pretraining = pretrain or bool(space.section("pretrain")) or bool(pre_sets)
    pre = None
    if pretraining:
        if ft.init:
            raise ConfigError("--init and pre-training (--pretrain, --pretrain-set or a space with [pretrain]) exclude each other")
        shared = {k: ft_sets[k] for k in ("seed", "device", *ENCODER_SHAPE) if k in ft_sets}
        pre = with_overrides(apply_pretrain(PretrainConfig(dataset=dataset), preset), {**shared, **pre_sets}).validate()
        shaped = [p.name for p in space.section("finetune") if p.name in ENCODER_SHAPE]
        if shaped:
            raise ConfigError(f"{shaped[0]} is the encoder's shape, fixed by pre-training: search it under [pretrain]")
        ft = dataclasses.replace(ft, **{k: getattr(pre, k) for k in ENCODER_SHAPE}).validate()
    space.check(ft, pre or PretrainConfig(dataset=dataset))
    init_digest = ""
    if ft.init:
        if not Path(ft.init).is_file():
            raise ConfigError(f"--init {ft.init}: file not found")
        init_digest = file_digest(ft.init)
    out = Path(study_dir) if study_dir else default_study_dir(ft, space)
    return TuneSetup(ft, pre, space, out, data_dir, sampler_seed, init_digest)


@contextlib.contextmanager
def _study_lock(study_dir: Path):
    """One search process per study folder (a lock that goes with its process)."""
    with try_lock(study_dir / LOCK_FILE) as held:
        if not held:
            raise ConfigError(f"{study_dir} is in use by another s3rec tune")
        yield


def _storage(study_dir: Path):
    from optuna.storages import JournalStorage
    from optuna.storages.journal import JournalFileBackend  # optuna >= 4.0

    return JournalStorage(JournalFileBackend(str(study_dir / JOURNAL)))


def _differences(old: dict, new: dict, prefix: str = "") -> list[str]:
    keys = sorted(set(old) | set(new))
    out = []
    for k in keys:
        a, b = old.get(k), new.get(k)
        if isinstance(a, dict) and isinstance(b, dict):
            out += _differences(a, b, f"{prefix}{k}.")
        elif a != b:
            out.append(f"{prefix}{k}")
    return out


def split_params(params: dict) -> dict[str, dict]:
    """optuna's ``SECTION.NAME`` parameters as ``{"finetune": {...}, "pretrain": {...}}``."""
    out: dict[str, dict] = {s: {} for s in SECTIONS}
    for key, value in params.items():
        section, name = key.split(".", 1)
        out[section][name] = value
    return out


def _fmt_params(sampled: dict[str, dict]) -> str:
    parts = []
    for section in SECTIONS:
        for k, v in sampled.get(section, {}).items():
            shown = f"{v:.4g}" if isinstance(v, float) else str(v)
            parts.append(f"{'pretrain.' if section == 'pretrain' else ''}{k}={shown}")
    return " ".join(parts)


@dataclass
class Counts:
    complete: int = 0
    failed: int = 0
    interrupted: int = 0  # failed because cut short, and queued again: not finished

    @property
    def finished(self) -> int:
        return self.complete + self.failed


def trial_counts(study) -> Counts:
    from optuna.trial import TrialState

    trials = study.get_trials(deepcopy=False)
    retried = {t.user_attrs["retry_of"] for t in trials if "retry_of" in t.user_attrs}
    c = Counts()
    for t in trials:
        if t.state == TrialState.COMPLETE:
            c.complete += 1
        elif t.state == TrialState.FAIL:
            if t.number in retried:
                c.interrupted += 1
            else:
                c.failed += 1
    return c


def best_trial(study):
    """The complete trial with the highest validation score (the earliest on ties), or None."""
    from optuna.trial import TrialState

    done = [t for t in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE,))]
    return max(done, key=lambda t: (t.value, -t.number)) if done else None


class Tuner:
    """Runs a search in this process with the library's ``finetune`` (and ``pretrain``)."""

    def __init__(self, setup: TuneSetup, log=lambda m: print(m, file=sys.stderr, flush=True), verbose: bool = False):
        from ..evaluation import SELECTION_METRIC

        self.setup = setup
        self.log = log
        self.verbose = verbose
        self.metric = SELECTION_METRIC[setup.finetune.protocol]
        self.name = setup.study_name()
        self._ds = None
        self._init_states: dict = {}  # (init, model, encoder shape) -> transfer.InitWeights

    # -- the study ---------------------------------------------------------------------------------

    def open_study(self):
        """Create or load the study (a folder holds one study: other settings are an error)."""
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)  # our own line per trial instead
        d = self.setup.study_dir
        d.mkdir(parents=True, exist_ok=True)
        storage = _storage(d)
        others = [s.study_name for s in storage.get_all_studies() if s.study_name != self.name]
        record = self.setup.record()
        if others:
            why = ""
            with contextlib.suppress(OSError, ValueError):
                diff = _differences(json.loads((d / STUDY_FILE).read_text(encoding="utf-8"))["record"], record)
                why = f" (differing: {', '.join(diff[:6])}{', ...' if len(diff) > 6 else ''})" if diff else ""
            raise ConfigError(f"{d} holds the search {others[0]}; these settings make another{why}: use another --study-dir")
        study = optuna.create_study(storage=storage, study_name=self.name, direction="maximize", load_if_exists=True)
        atomic_write_text(d / STUDY_FILE, json.dumps({"study": self.name, "metric": self.metric, "record": record},
                                                     indent=2) + "\n")
        return study

    def _requeue(self, study, trial_number: int, params: dict, run_dir: str | None) -> None:
        """Mark a trial that was cut short failed and queue its settings again (its run resumes)."""
        from optuna.trial import TrialState

        study.tell(trial_number, state=TrialState.FAIL, skip_if_finished=True)
        attrs = {"retry_of": trial_number, **({"run_dir": run_dir} if run_dir else {})}
        study.enqueue_trial(params, user_attrs=attrs)

    def recover(self, study) -> int:
        """Trials left running by a process that died: failed and queued again. Returns how many."""
        from optuna.trial import TrialState

        stale = study.get_trials(deepcopy=False, states=(TrialState.RUNNING,))
        for t in stale:
            self._requeue(study, t.number, t.params, t.user_attrs.get("run_dir"))
            self.log(f"trial {t.number} was interrupted: queued again (its run resumes)")
        return len(stale)

    # -- one trial ---------------------------------------------------------------------------------

    def dataset(self):
        if self._ds is None:
            from ..data.negatives import load_for_protocol

            ft = self.setup.finetune
            self._ds = load_for_protocol(ft.dataset, self.setup.data_dir, ft.protocol, quiet=True)
        return self._ds

    def _init_state(self, ft):
        from ..transfer import read_init

        # what is taken from a checkpoint (and checked) depends on the model and its encoder settings
        key = (ft.init, ft.model, *(getattr(ft, k) for k in ENCODER_SHAPE))
        if key not in self._init_states:
            self._init_states[key] = read_init(ft.init, self.dataset(), ft)
        return self._init_states[key]

    def pretrained(self, pre: PretrainConfig) -> Path:
        """The final checkpoint of the pre-training with these settings, in its shared folder under
        ``pretrain/`` (:func:`s3rec.shared_pretrain.ensure_pretrained`: reused, resumed or run)."""
        from ..pretraining import default_epochs

        ds = self.dataset()
        pre = dataclasses.replace(pre, dataset=ds.name, epochs=pre.epochs or default_epochs(ds.name))
        run_dir = self.setup.study_dir / "pretrain" / pretrain_id(pre)
        ckpt = run_dir / f"pretrain-epoch-{pre.epochs}.pt"
        if not ckpt.is_file():
            self.log(f"  pre-training {run_dir.name} ({pre.epochs} epochs)")
        log = (lambda m: self.log(f"    {m}")) if self.verbose else (lambda m: None)
        return ensure_pretrained(pre, ds, run_dir, progress=False, log=log).checkpoints[pre.epochs]

    def run_trial(self, trial) -> float:
        """Sample, (pre-train,) fine-tune without test; the best epoch's validation score."""
        from ..train import finetune

        setup = self.setup
        sampled = setup.space.sample(trial)
        ft = with_overrides(setup.finetune, sampled["finetune"])
        pre = None
        if setup.pretrain is not None:
            pre = with_overrides(setup.pretrain, sampled["pretrain"]).validate()
            ft = dataclasses.replace(ft, init=str(self.pretrained(pre)), **{k: getattr(pre, k) for k in ENCODER_SHAPE})
        ft = dataclasses.replace(ft.validate(), dataset=self.dataset().name)
        rel = trial.user_attrs.get("run_dir")
        if rel is None:  # a new trial: a clean folder
            rel = f"trials/{trial.number:04d}"
            shutil.rmtree(setup.study_dir / rel, ignore_errors=True)
            trial.set_user_attr("run_dir", rel)
        run_dir = setup.study_dir / rel
        trial.set_user_attr("finetune", ft.to_dict())
        trial.set_user_attr("pretrain", pre.to_dict() if pre else None)
        init = self._init_state(ft) if ft.init and not (run_dir / "checkpoint.pt").is_file() else None
        log = (lambda m: self.log(f"    {m}")) if self.verbose else (lambda m: None)
        results = finetune(ft, self.dataset(), run_dir, resume=True, progress=False, log=log, init=init,
                           evaluate_test=False)
        value = results["valid"].get(self.metric)  # the best epoch's validation: never test
        if value is None or not math.isfinite(value):
            raise S3RecError(f"no finite validation {self.metric} in {results['epochs']} epochs (diverged?)")
        trial.set_user_attr("valid", results["valid"])
        trial.set_user_attr("best_epoch", results["best_epoch"])
        trial.set_user_attr("epochs", results["epochs"])
        return float(value)

    # -- the search --------------------------------------------------------------------------------

    def run(self, trials: int) -> dict | None:
        """Run trials until ``trials`` have finished in this study (earlier ones count); returns the
        best trial's record (also in ``best.json``), or None when no trial completed."""
        import optuna
        from optuna.trial import TrialState

        self.setup.study_dir.mkdir(parents=True, exist_ok=True)
        with _study_lock(self.setup.study_dir):
            study = self.open_study()
            self.recover(study)
            counts = trial_counts(study)
            todo = max(0, trials - counts.finished)
            self.log(f"study {self.name} in {self.setup.study_dir}: {counts.complete} complete, {counts.failed} failed; "
                     f"{todo} to run (target {trials}); objective: valid {self.metric}")
            while trial_counts(study).finished < trials:
                seed = (self.setup.sampler_seed * 1_000_003 + len(study.get_trials(deepcopy=False))) % 2**32
                study.sampler = optuna.samplers.TPESampler(seed=seed)
                trial = study.ask()
                t0 = time.time()
                try:
                    value = self.run_trial(trial)
                except KeyboardInterrupt:
                    self._requeue(study, trial.number, trial.params, trial.user_attrs.get("run_dir"))
                    raise
                except Exception as e:  # recorded; the search goes on
                    trial.set_user_attr("error", f"{type(e).__name__}: {e}")
                    study.tell(trial, state=TrialState.FAIL)
                    outcome = f"FAILED: {type(e).__name__}: {e}"
                else:
                    study.tell(trial, value)
                    outcome = f"valid {self.metric} {value:.4f} (best epoch {trial.user_attrs['best_epoch']})"
                best = self.write_best(study, trials)
                n = trial_counts(study).finished
                shown = f"; best {best['value']:.4f} (trial {best['trial']})" if best else ""
                self.log(f"trial {n}/{trials} (#{trial.number}) {_fmt_params(split_params(trial.params))}: "
                         f"{outcome}{shown}, {time.time() - t0:.0f} s")
            return self.write_best(study, trials)

    def write_best(self, study, trials: int) -> dict | None:
        """Write ``best.json`` (atomically) for the best complete trial; returns its record."""
        t = best_trial(study)
        if t is None:
            return None
        counts = trial_counts(study)
        run_dir = self.setup.study_dir / t.user_attrs["run_dir"]
        record = {
            "study": self.name,
            "dataset": self.setup.finetune.dataset,
            "model": self.setup.finetune.model,
            "protocol": self.setup.finetune.protocol,
            "metric": self.metric,
            "split": "valid",
            "value": t.value,
            "trial": t.number,
            "params": split_params(t.params),
            "valid": t.user_attrs.get("valid"),
            "best_epoch": t.user_attrs.get("best_epoch"),
            "finetune": t.user_attrs.get("finetune"),
            "pretrain": t.user_attrs.get("pretrain"),
            "run_dir": str(run_dir),
            "checkpoint": str(run_dir / "best.pt"),
            "trials": {"complete": counts.complete, "failed": counts.failed, "target": trials},
        }
        atomic_write_text(self.setup.study_dir / BEST_FILE, json.dumps(record, indent=2) + "\n")
        return record
