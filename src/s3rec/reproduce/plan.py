"""An experiment's grid expanded into runs with stable directories (pure: nothing is read or run).

Fine-tuning runs: one per dataset x method x varied value x seed, in ``OUT/RUN_ID`` with
``RUN_ID = DATASET-METHOD[-SETTING=VALUE]-seedSEED``. Pre-training runs: one per dataset and
pre-training settings (the pre-training seed included, the number of epochs not), shared by every
fine-tuning run that starts from it, in ``PRETRAIN_DIR/DATASET-TAG-seedSEED`` where TAG lists the
settings that differ from the defaults (``default`` when none; :func:`s3rec.shared_pretrain.pretrain_id`). A pre-training run is extended to the
most epochs any of its users needs (its epoch k is the same whatever the total), and keeps the
checkpoints they start from (``pretrain-epoch-K.pt``).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field
from pathlib import Path

from ..config import PretrainConfig, TrainConfig, with_overrides
from ..data.registry import registered
from ..errors import ConfigError
from ..shared_pretrain import pretrain_id
from .experiment import PRETRAIN_EPOCH, Experiment, Method

# encoder shape settings: given for fine-tuning with --set, they apply to pre-training too
ENCODER_SHAPE = ("hidden_size", "n_layers", "n_heads", "max_len")


@dataclass
class PretrainRun:
    id: str
    dir: Path
    cfg: PretrainConfig  # epochs: the most any user needs
    checkpoints: tuple[int, ...]  # the epochs whose checkpoints are fine-tuned from

    def checkpoint(self, epoch: int) -> Path:
        return self.dir / f"pretrain-epoch-{epoch}.pt"


@dataclass
class FinetuneRun:
    id: str
    dir: Path
    dataset: str
    method: Method
    seed: int
    value: object = None  # the varied setting's value (None when the experiment varies nothing)
    cfg: TrainConfig | None = None  # None for an unsupported method
    pretrain: PretrainRun | None = None
    pretrain_epoch: int | None = None  # the checkpoint fine-tuned from; None or 0: no pre-training

    @property
    def unsupported(self) -> str:
        return self.method.unsupported


@dataclass
class Plan:
    experiment: Experiment
    out: Path
    pretrain_dir: Path
    runs: list[FinetuneRun] = field(default_factory=list)
    pretrains: list[PretrainRun] = field(default_factory=list)
    overrides: dict = field(default_factory=dict)  # what the command line changed, for the record


def canonical_dataset(name: str) -> str:
    info = registered(name)
    return info.name if info else name


def _fmt(value) -> str:
    return f"{value:g}" if isinstance(value, float) else str(value)


def _check_sets(sets: dict, what: str) -> None:
    bad = [k for k in sets if k in ("dataset", "seed", "model", "init")]
    if bad:
        raise ConfigError(f"{what}: {', '.join(bad)} is chosen by the grid; use --datasets / --seeds / --methods")


def make_plan(
    exp: Experiment,
    out: Path,
    pretrain_dir: Path,
    sets: dict | None = None,
    pretrain_sets: dict | None = None,
    pretrain_epochs: int | None = None,
    device: str | None = None,
) -> Plan:
    """Expand the grid. ``sets`` / ``pretrain_sets``: fine-tuning / pre-training settings from the
    command line (strings or typed values), applied after the experiment's own; ``pretrain_epochs``:
    the length of the pre-training S3-Rec is fine-tuned from (default: the experiment's, else the
    dataset's default). Settings are validated here, so a bad one fails before anything runs."""
    from ..pretraining import default_epochs

    sets, pretrain_sets = dict(sets or {}), dict(pretrain_sets or {})
    _check_sets(sets, "--set")
    _check_sets(pretrain_sets, "--pretrain-set")
    if "epochs" in pretrain_sets:
        raise ConfigError("--pretrain-set epochs: use --pretrain-epochs")
    if exp.vary_setting == PRETRAIN_EPOCH and pretrain_epochs is not None:
        raise ConfigError(f"{exp.name} varies the pre-training epochs: choose them with --values")
    dev = {"device": device} if device else {}
    shape = {k: v for k, v in sets.items() if k in ENCODER_SHAPE}
    plan = Plan(exp, Path(out), Path(pretrain_dir), overrides={
        "set": sets, "pretrain_set": pretrain_sets, "pretrain_epochs": pretrain_epochs, "device": device})
    # pre-training runs by (dataset, settings without save_every): their users' checkpoints
    groups: dict[tuple, dict] = {}
    pending: list[tuple[FinetuneRun, tuple | None]] = []
    values = exp.vary_values if exp.vary_setting else (None,)
    for dataset in map(canonical_dataset, exp.datasets):
        for m in exp.methods:
            if not m.applies(dataset):
                continue
            for value in values:
                vary_ft: dict = {}
                vary_pre: dict = {}
                epoch = None
                if exp.vary_setting == PRETRAIN_EPOCH:
                    epoch = int(value)
                elif exp.vary_setting:
                    vary_ft = {exp.vary_setting: value}
                    if exp.vary_setting in PretrainConfig.__dataclass_fields__:
                        vary_pre = {exp.vary_setting: value}
                group = None
                if m.pretrain is not None:
                    pre = with_overrides(PretrainConfig(), {**exp.pretrain, **m.pretrain, **vary_pre, **shape,
                                                           **pretrain_sets, **dev, "dataset": dataset,
                                                           "seed": exp.pretrain_seed})
                    if epoch is None:
                        epoch = pretrain_epochs or pre.epochs or default_epochs(dataset)
                    if epoch < 0:
                        raise ConfigError(f"pre-training epochs must be >= 0, got {epoch}")
                    if epoch > 0 and not m.unsupported:
                        key = pretrain_id(pre)  # the shared pre-training's identity (s3rec.shared_pretrain)
                        g = groups.setdefault(key, {"cfg": pre, "epochs": set()})
                        g["epochs"].add(epoch)
                        group = key
                for seed in exp.seeds:
                    suffix = f"-{exp.vary_setting}={_fmt(value)}" if exp.vary_setting else ""
                    run_id = f"{dataset}-{m.id}{suffix}-seed{seed}"
                    cfg = None
                    if not m.unsupported:
                        cfg = with_overrides(TrainConfig(), {"model": m.model, "protocol": exp.protocol, **exp.finetune,
                                                            **m.finetune, **vary_ft, **sets, **dev,
                                                            "dataset": dataset, "seed": seed})
                    run = FinetuneRun(run_id, plan.out / run_id, dataset, m, seed, value, cfg,
                                      None, epoch if m.pretrain is not None else None)
                    pending.append((run, group))
    pretrain_of: dict[tuple, PretrainRun] = {}
    for key, g in groups.items():
        epochs = sorted(g["epochs"])
        final = epochs[-1]
        save_every = math.gcd(g["cfg"].save_every, *epochs[:-1]) if len(epochs) > 1 else g["cfg"].save_every
        cfg = dataclasses.replace(g["cfg"], epochs=final, save_every=save_every).validate()
        run_id = pretrain_id(cfg)
        pretrain_of[key] = PretrainRun(run_id, plan.pretrain_dir / run_id, cfg, tuple(epochs))
    plan.pretrains = sorted(pretrain_of.values(), key=lambda p: p.id)
    for run, group in pending:
        if group is not None:
            run.pretrain = pretrain_of[group]
        if run.cfg is not None:
            init = str(run.pretrain.checkpoint(run.pretrain_epoch).resolve()) if run.pretrain else ""
            run.cfg = dataclasses.replace(run.cfg, init=init).validate()
        plan.runs.append(run)
    ids = [r.id for r in plan.runs]
    if len(set(ids)) != len(ids):
        raise ConfigError(f"{exp.name}: two runs share a directory name (repeated datasets, seeds or values?)")
    return plan
