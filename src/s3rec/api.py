"""The public Python API: what ``import s3rec`` offers (lazily: see ``s3rec/__init__.py``).

``load_dataset`` -> ``pretrain`` -> ``finetune`` -> ``evaluate``, and ``Recommender`` for serving,
``register_model`` for a model of your own. Settings are the command line's (``--set KEY=VALUE``):
the same names, types and one-line errors (:func:`s3rec.config.with_overrides`). The ``s3rec`` verbs
``train``, ``pretrain`` and ``evaluate`` run the same functions underneath, so a script and a command
with the same settings and seed compute the same numbers. Documented in ``docs/api.md``.
"""

from __future__ import annotations

import dataclasses
import json
from dataclasses import dataclass, field
from pathlib import Path

from .config import PretrainConfig, TrainConfig, config_from_json, with_overrides
from .data import registry
from .data.negatives import attach_negatives, load_with_negatives, needs_negatives
from .data.store import Dataset, check_trainable
from .errors import ConfigError, S3RecError
from .shared_pretrain import PretrainResult, ensure_pretrained, pretrain_id

__all__ = ["Dataset", "PretrainResult", "Run", "evaluate", "finetune", "load_dataset", "pretrain", "register_model"]

PRETRAIN_ROOT = Path("runs") / "pretrain"  # shared pre-trainings (the default of `s3rec train --pretrain-dir`)


def _quiet(msg: str) -> None:
    pass


def _located(name_or_folder, data_dir) -> tuple[str, str | Path | None]:
    """``(name, data_dir)``: a folder holding one dataset stands for that dataset."""
    path = Path(name_or_folder)
    if data_dir is None and path.is_dir():
        names = registry.datasets_in(path)
        if len(names) != 1:
            raise S3RecError(f"{path}: expected one dataset (NAME.txt), found {', '.join(names) or 'none'}: "
                             "give its name and data_dir=FOLDER")
        return names[0], path
    return str(name_or_folder), data_dir


def load_dataset(name_or_folder: str | Path, data_dir: str | Path | None = None) -> Dataset:
    """A dataset by registered name or file stem (searched in ``data_dir``, ``$S3REC_DATA_DIR``, the
    cache), or the folder holding one dataset (``NAME.txt`` and its companions)."""
    return registry.load(*_located(name_or_folder, data_dir))


def _dataset(dataset, data_dir=None, negatives: bool = False) -> Dataset:
    """``dataset`` (a Dataset or what :func:`load_dataset` takes), with the sampled protocol's
    negatives when ``negatives`` (the 99-negatives file beside the data, made when missing)."""
    if not isinstance(dataset, Dataset):
        located = _located(dataset, data_dir)
        return load_with_negatives(*located, quiet=True) if negatives else registry.load(*located)
    if negatives and dataset.negatives is None:
        return attach_negatives(dataset, quiet=True)
    return dataset


# -- pre-training ------------------------------------------------------------------------------------


def pretrain(dataset, out: str | Path | None = None, *, progress: bool = False, log=_quiet, data_dir=None,
             **settings) -> PretrainResult:
    """S3-Rec pre-training (any ``s3rec pretrain --set`` setting as a keyword, e.g. ``epochs=1``).
    ``out``: the run folder (default: the shared ``runs/pretrain/DATASET-TAG-seedSEED``, where
    ``s3rec train --preset`` and others find it too). A finished run there is reused, an interrupted
    one resumed (:func:`s3rec.shared_pretrain.ensure_pretrained`)."""
    from .pretraining import default_epochs

    ds = _dataset(dataset, data_dir)
    cfg = with_overrides(PretrainConfig(), {**settings, "dataset": ds.name})
    cfg = dataclasses.replace(cfg, epochs=cfg.epochs or default_epochs(ds.name)).validate()
    if cfg.init:
        raise ConfigError("pretrain(init=...): continue a pre-training from a checkpoint with `s3rec pretrain --init`")
    run_dir = Path(out) if out is not None else PRETRAIN_ROOT / pretrain_id(cfg)
    return ensure_pretrained(cfg, ds, run_dir, progress=progress, log=log)


# -- fine-tuning -------------------------------------------------------------------------------------


@dataclass
class Run:
    """A fine-tuning run folder: its settings, results (``valid``/``test`` metrics), per-epoch history."""

    dir: Path
    config: TrainConfig | None
    results: dict = field(default_factory=dict)
    history: list[dict] = field(default_factory=list)

    @property
    def valid(self) -> dict[str, float]:
        return self.results.get("valid") or {}

    @property
    def test(self) -> dict[str, float] | None:
        return self.results.get("test")

    @property
    def best_epoch(self) -> int | None:
        return self.results.get("best_epoch")

    @property
    def epochs(self) -> int | None:
        """Epochs trained (early stopping may end a run before its ``epochs`` setting)."""
        return self.results.get("epochs")

    @property
    def checkpoint(self) -> Path:
        """The best epoch's weights (what ``evaluate`` and ``Recommender.load`` read)."""
        return self.dir / "best.pt"

    @classmethod
    def load(cls, run_dir: str | Path) -> Run:
        run_dir = Path(run_dir)
        if not (run_dir / "results.json").is_file():
            raise S3RecError(f"{run_dir}: not a finished fine-tuning run (no results.json)")
        try:
            # where it ran does not matter here (and CUDA may be missing)
            cfg = config_from_json((run_dir / "config.json").read_text(encoding="utf-8"), device="cpu")
        except (OSError, ValueError, ConfigError):
            cfg = None
        metrics = run_dir / "metrics.jsonl"
        history = [json.loads(line) for line in metrics.read_text(encoding="utf-8").splitlines() if line.strip()] \
            if metrics.is_file() else []
        return cls(run_dir, cfg, json.loads((run_dir / "results.json").read_text(encoding="utf-8")), history)


def default_run_dir(cfg: TrainConfig) -> Path:
    """``runs/DATASET-MODEL-PROTOCOL-seedSEED`` (what ``s3rec train`` uses without ``--out``)."""
    return Path("runs") / f"{cfg.dataset}-{cfg.model}-{cfg.protocol}-seed{cfg.seed}"


def check_run_dir(out: Path, resume: bool, overwrite: bool, cls=TrainConfig) -> bool:
    """Check a run folder before training (of a ``cls``: TrainConfig or PretrainConfig); True when the
    run there already finished (with ``resume``). ``overwrite`` is refused on a folder that is not such a run."""
    if resume:
        return (out / "results.json").is_file()
    from .loop import LOG_FILE, run_files

    # a run that failed at its start left only its config.json (and log.txt): nothing to keep, so no flag is needed
    names = {p.name for p in out.iterdir()} if out.exists() else set()
    started = names - ({"config.json", LOG_FILE} if "config.json" in names else set())
    if overwrite or (out / "config.json").exists() and not started:
        run_files(out, cls)  # raises unless ``out`` is a run of this kind
    if started and not overwrite:
        raise S3RecError(f"run directory {out} is not empty: use --resume to continue it, --overwrite to replace it, or --out")
    return False


def run_finetuning(cfg: TrainConfig, ds: Dataset, out: Path, resume: bool = False, overwrite: bool = False,
                   progress: bool = False, log=_quiet, world=None) -> dict:
    """Fine-tune ``cfg`` on ``ds`` in ``out`` (the run folder checked by :func:`check_run_dir`): the
    pre-trained weights of ``cfg.init`` read unless a resumed run has its own checkpoint; the sampled
    protocol's negatives attached (the file made when missing) after every check passed. ``world``:
    this process's rank under torchrun (:class:`s3rec.distributed.World`; None: one process)."""
    from .distributed import World
    from .loop import clear_run_dir
    from .train import finetune as train_finetune
    from .transfer import read_init

    cfg = dataclasses.replace(cfg, dataset=ds.name)
    init = None
    if cfg.init and not (resume and (out / "checkpoint.pt").is_file()):
        init = read_init(cfg.init, ds, cfg)
    if cfg.model_class().trainable:
        check_trainable(ds)  # before --overwrite removes the old run
    world = world or World()
    if needs_negatives(cfg.protocol) and ds.negatives is None:  # made (if missing) once the inputs are known good
        if world.main:
            ds = attach_negatives(ds, quiet=not progress)
        world.barrier()  # rank 0 made the file when it was missing; the others read it
        if not world.main:
            ds = attach_negatives(ds, quiet=True)
    start = f"from {cfg.init}" if cfg.init else "from scratch"  # once the inputs are known good
    if world.main:
        log(f"{ds.name}: {ds.n_users} users, {ds.n_items} items; {cfg.model} {start}; protocol {cfg.protocol}; "
            f"run {out}" + (f"; {world.size} ranks" if world.active else ""))
        if overwrite and not resume:
            clear_run_dir(out, TrainConfig)
    world.barrier()
    return train_finetune(cfg, ds, out, resume=resume, progress=progress, log=log, init=init, world=world)


def finetune(dataset, model: str = "sasrec", init=None, protocol: str = "sampled", out: str | Path | None = None, *,
             resume: bool = False, overwrite: bool = False, progress: bool = False, log=_quiet, data_dir=None,
             **settings) -> Run:
    """Fine-tune ``model`` (from ``init``: a pre-training checkpoint path or a :class:`PretrainResult`),
    select the best epoch on validation, test it once. Any ``s3rec train --set`` setting as a keyword.
    ``out``: the run folder (default ``runs/DATASET-MODEL-PROTOCOL-seedSEED``); an occupied one needs
    ``resume=True`` (continue it; a finished run is returned as it is) or ``overwrite=True``."""
    given = {"model": model, "protocol": protocol, **settings}
    if init is not None:
        given["init"] = str(init.checkpoint if isinstance(init, PretrainResult) else init)
    ds = _dataset(dataset, data_dir)
    cfg = with_overrides(TrainConfig(), {**given, "dataset": ds.name}).validate()
    run_dir = Path(out) if out is not None else default_run_dir(cfg)
    if check_run_dir(run_dir, resume, overwrite):
        return Run.load(run_dir)
    run_finetuning(cfg, ds, run_dir, resume, overwrite, progress, log)
    return Run.load(run_dir)


# -- evaluation --------------------------------------------------------------------------------------


def checkpoint_path(checkpoint_or_run) -> Path:
    """A checkpoint file from a path to one, a run folder (its ``best.pt``) or a :class:`Run`."""
    if isinstance(checkpoint_or_run, Run):
        return checkpoint_or_run.checkpoint
    path = Path(checkpoint_or_run)
    return path / "best.pt" if path.is_dir() else path


def run_data_dir(checkpoint: Path, log=_quiet) -> Path | None:
    """The data folder the run holding ``checkpoint`` was trained on (its results.json's ``data_dir``),
    or None: not recorded (an unfinished run, or one from before it was), or gone (said to ``log``)."""
    try:
        recorded = json.loads((Path(checkpoint).parent / "results.json").read_text(encoding="utf-8"))["data_dir"]
    except (OSError, ValueError, KeyError, TypeError):
        return None
    if not isinstance(recorded, str) or not recorded:
        return None
    if Path(recorded).is_dir():
        return Path(recorded)
    log(f"{Path(checkpoint).parent}: its data folder {recorded} no longer exists; looking for the dataset "
        "in $S3REC_DATA_DIR and the cache")
    return None


def evaluate_checkpoint(checkpoint_or_run, dataset=None, protocol: str | None = None, split: str = "test",
                        device: str = "cpu", data_dir=None, log=_quiet) -> tuple[dict, dict, Dataset]:
    """``(metrics, info, dataset)`` of a saved model on ``split`` (what ``s3rec evaluate`` prints). The
    data: ``dataset`` (default: the model's own) in ``data_dir`` (default: for the model's own dataset,
    the folder its run was trained on, :func:`run_data_dir`, then the usual search)."""
    from .config import device_ok
    from .evaluation import evaluate as evaluate_model
    from .checkpoint import read
    from .train import model_from_state

    if not device_ok(device):
        raise S3RecError(f"device {device!r} is not available here")
    path = checkpoint_path(checkpoint_or_run)
    cfg, state = read(path)
    protocol = protocol or cfg.protocol
    if data_dir is None and dataset in (None, state["dataset"]):
        data_dir = run_data_dir(path, log)
    ds = _dataset(dataset if dataset is not None else state["dataset"], data_dir, negatives=needs_negatives(protocol))
    model = model_from_state(cfg, state, path, device, ds)
    metrics, info = evaluate_model(model, ds, split, protocol, device)
    return metrics, {**info, "protocol": protocol}, ds


def evaluate(checkpoint_or_run, dataset=None, protocol: str | None = None, split: str = "test", device: str = "cpu",
             data_dir=None) -> dict[str, float]:
    """The metrics of a saved model (a checkpoint, a run folder or a :class:`Run`) on ``split``, under
    ``protocol`` (default: the one the run was trained with), on ``dataset`` (default: its own)."""
    return evaluate_checkpoint(checkpoint_or_run, dataset, protocol, split, device, data_dir)[0]


def register_model(name: str, cls, description: str = "") -> None:
    """Make ``cls`` (a subclass of :class:`s3rec.models.base.Model` following its contract)
    available as ``model=name`` in this process: ``finetune``, ``evaluate``, ``Recommender.load``."""
    from .models import register_model as register

    register(name, cls, description)
