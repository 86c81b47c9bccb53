"""What the two training loops share (:mod:`s3rec.pretraining` and :mod:`s3rec.train`).

The run folder (``config.json`` first, ``metrics.jsonl`` rewritten after every epoch, ``log.txt`` and
TensorBoard's event files: :class:`RunLog`), the optimizer, the RNG state kept in ``checkpoint.pt`` and
restored by ``--resume``, the progress bar, and the users whose training parts take part under
limited training data (the paper's Fig. 4).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from dataclasses import fields as dataclass_fields
from pathlib import Path

import numpy as np
import torch

from . import checkpoint
from .config import PretrainConfig
from .errors import ConfigError, S3RecError
from .fileio import atomic_write_text

LOG_FILE = "log.txt"
TENSORBOARD_FILES = "events.out.tfevents.*"


class RunLog:
    """A run's log: each line goes to ``echo`` (the command's stderr) and, from when the run folder
    exists (:meth:`open`), to its ``log.txt``, with the time; the lines logged before it come first.
    With ``quiet`` the per-epoch lines (:meth:`epoch`) go to ``log.txt`` only. The per-epoch numbers
    (:meth:`scalars`) become TensorBoard event files in the run folder when ``tensorboard`` (None: when
    the tensorboard package is installed; True: it must be, the [tensorboard] extra)."""

    def __init__(self, echo=None, quiet: bool = False, tensorboard: bool | None = None):
        if tensorboard:
            from .extras import require

            require("tensorboard", "tensorboard", "--tensorboard")
        self.echo = echo or (lambda msg: None)
        self.quiet = quiet
        self.tensorboard = tensorboard
        self.path: Path | None = None
        self.pending: list[str] = []
        self.writer = None

    @classmethod
    def of(cls, log) -> RunLog:
        """``log`` itself when it is a RunLog, else a RunLog echoing to the callable ``log``."""
        return log if isinstance(log, cls) else cls(log)

    def __call__(self, msg: str) -> None:
        self.echo(msg)
        self._write(msg)

    def epoch(self, msg: str) -> None:
        """A per-epoch line: on ``echo`` unless ``quiet``, in ``log.txt`` always."""
        if not self.quiet:
            self.echo(msg)
        self._write(msg)

    def _write(self, msg: str) -> None:
        line = f"{time.strftime('%Y-%m-%d %H:%M:%S')} {msg}\n"
        if self.path is None:
            self.pending.append(line)
            return
        with open(self.path, "a", encoding="utf-8") as f:
            f.write(line)

    def open(self, out: Path, append: bool) -> None:
        """Log into ``out/log.txt`` from now on: appended to (``append``: a resumed run) or begun anew."""
        self.close()
        self.path = Path(out) / LOG_FILE
        with open(self.path, "a" if append else "w", encoding="utf-8") as f:
            f.write("".join(self.pending))
        self.pending = []

    def scalars(self, step: int, values: dict[str, float]) -> None:
        """The numbers of epoch ``step`` as TensorBoard scalars (when TensorBoard is on)."""
        if self.path is None or self.tensorboard is False:
            return
        if self.writer is None:  # made at the first epoch's end: a run that fails at its start leaves none
            try:
                from torch.utils.tensorboard import SummaryWriter
            except ImportError:
                self.tensorboard = False
                return
            self.writer = SummaryWriter(log_dir=str(self.path.parent))
        for tag, value in values.items():
            self.writer.add_scalar(tag, value, step)
        self.writer.flush()

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            self.writer = None

    @contextlib.contextmanager
    def recording(self):
        """The run: an error that ends it is logged as the command prints it; the event files closed."""
        try:
            yield self
        except KeyboardInterrupt:
            if self.path is not None:
                self._write("s3rec: interrupted (a run continues with --resume)")
            raise
        except Exception as e:
            if self.path is not None:
                self._write(f"s3rec: error: {e}" if isinstance(e, (S3RecError, OSError)) else
                            f"s3rec: error: {type(e).__name__}: {e}")
            raise
        finally:
            self.close()


def progress_bar(iterable, total, desc, enabled):
    """``iterable`` with a tqdm bar on stderr when ``enabled`` (and stderr is a terminal)."""
    if not enabled:
        return iterable
    from tqdm.auto import tqdm

    # disable=None: no bar when stderr is not a terminal (logs stay readable)
    return tqdm(iterable, total=total, desc=desc, leave=False, dynamic_ncols=True, file=sys.stderr, disable=None)


def adam(params, lr: float, weight_decay: float = 0.0, decoupled: bool = False) -> torch.optim.Optimizer:
    """Adam (betas 0.9/0.999), fused where this torch supports it: the same update, ~10x cheaper than
    the default per-tensor loop on CPU. ``weight_decay`` is an L2 term added to the gradients (0 for
    SASRec), or with ``decoupled`` BERT's decoupled weight decay (AdamW) on the matrices only (biases
    and LayerNorm parameters, the 1-D tensors, are not decayed)."""
    params = list(params)
    kind = torch.optim.Adam
    if decoupled:
        kind = torch.optim.AdamW
        params = [{"params": [p for p in params if p.ndim >= 2], "weight_decay": weight_decay},
                  {"params": [p for p in params if p.ndim < 2], "weight_decay": 0.0}]
    try:
        return kind(params, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay, fused=True)
    except (RuntimeError, TypeError):  # older torch without fused CPU Adam
        return kind(params, lr=lr, betas=(0.9, 0.999), weight_decay=weight_decay, foreach=True)


def kept_users(n_users: int, fraction: float = 1.0, seed: int = 0) -> np.ndarray:
    """The user rows that keep their training parts under limited training data, sorted: the first
    ``round(fraction * n_users)`` (at least 1) of a random permutation of all rows drawn with numpy's
    PCG64 ``seed``. Deterministic, and nested: a smaller fraction keeps a subset of a larger one's
    users (same seed). ``fraction = 1``: every row."""
    if fraction >= 1:
        return np.arange(n_users)
    n_keep = max(1, round(fraction * n_users))
    return np.sort(np.random.default_rng(seed).permutation(n_users)[:n_keep])


def rng_state(gen: torch.Generator) -> dict:
    """The RNG states a checkpoint keeps: torch's default generator, the data generator ``gen`` and CUDA's."""
    state = {"torch": torch.get_rng_state(), "data": gen.get_state()}
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def set_rng_state(gen: torch.Generator, state: dict) -> None:
    """Restore what :func:`rng_state` kept."""
    torch.set_rng_state(state["torch"])
    gen.set_state(state["data"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


def restore_training_state(path: Path, cfg, model, optimizer, gen: torch.Generator, may_differ=("device",)) -> dict:
    """Load a run's latest checkpoint into the model, optimizer and RNGs (for ``--resume``); the
    run's settings must equal ``cfg`` except for ``may_differ``. Returns the checkpoint dict."""
    kind = "pretrain" if isinstance(cfg, PretrainConfig) else "finetune"
    saved, state = checkpoint.read(path, (kind,), extra=("optimizer", "rng"))
    saved = saved.to_dict()
    diff = sorted(k for k, v in cfg.to_dict().items() if saved[k] != v and k not in may_differ)
    if diff:
        raise ConfigError(f"--resume: settings differ from the run in {path.parent}: {', '.join(diff)}")
    checkpoint.load_model_state(model, state["model"], str(path))
    optimizer.load_state_dict(state["optimizer"])
    set_rng_state(gen, state["rng"])
    return state


def write_config(out: Path, cfg) -> None:
    """Create the run folder ``out`` and write its ``config.json`` (every setting of the run)."""
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out / "config.json", cfg.to_json() + "\n")


def write_metrics(out: Path, history: list[dict]) -> None:
    """Rewrite ``metrics.jsonl``: one JSON line per finished epoch."""
    atomic_write_text(out / "metrics.jsonl", "".join(json.dumps(h) + "\n" for h in history))


# what a training run writes in its folder (the temporary files of atomic writes too; and the plot of
# its curves, `s3rec report RUN`): all that --overwrite removes
RUN_FILES = ("config.json", "metrics.jsonl", "checkpoint.pt", "best.pt", "results.json", "test_ranks.npy",
             "environment.jsonl", "data.json", "error.txt", LOG_FILE, "curves.png")
RUN_PATTERNS = ("pretrain-epoch-*.pt", ".*.tmp", TENSORBOARD_FILES)


def run_files(out: Path, cls) -> list[Path]:
    """The files ``--overwrite`` removes from ``out``: a run's own, when ``out`` is recognisably a run of
    this kind (its ``config.json`` holds the settings of a ``cls``, TrainConfig or PretrainConfig).
    Anything else is refused (:class:`ConfigError`); files a run does not write are never listed."""
    out = Path(out)
    if not out.exists() or not any(out.iterdir()):
        return []
    kind = "pre-training" if cls is PretrainConfig else "fine-tuning"
    try:
        data = json.loads((out / "config.json").read_text(encoding="utf-8"))
        ours = isinstance(data, dict) and "dataset" in data and set(data) <= {f.name for f in dataclass_fields(cls)}
    except (OSError, UnicodeDecodeError, ValueError):
        ours = False
    if not ours:
        raise ConfigError(f"{out} is not an s3rec {kind} run folder (no config.json of such a run): "
                          "nothing removed or written; choose another --out")
    listed = [*(out / name for name in RUN_FILES), *(p for pattern in RUN_PATTERNS for p in out.glob(pattern))]
    return [p for p in listed if p.is_file() or p.is_symlink()]


def clear_run_dir(out: Path, cls) -> None:
    """Remove a run's own files from ``out`` (:func:`run_files`), for ``--overwrite``."""
    for path in run_files(out, cls):
        path.unlink()
