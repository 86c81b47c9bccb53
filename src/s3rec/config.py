"""Typed, frozen configuration whose defaults are the paper's values (docs/semantics.md, #model and #fine-tuning).

Overrides are strict: an unknown key (with a "did you mean" for a near miss or another library's
name, :data:`ALIASES`), a value of the wrong type or a float that is not finite is an error.
Validation bounds every size and count (:data:`LIMITS`; seeds: 0..2**32-1, what numpy and torch
accept) and refuses an encoder whose parameters alone exceed the device's memory, before anything
is allocated or written.
"""

from __future__ import annotations

import dataclasses
import difflib
import json
import math
import os
from dataclasses import dataclass, field, fields
from pathlib import Path

import torch

from .data.batches import NEGATIVE_SAMPLERS
from .data.corruption import SEGMENT_POOLS
from .errors import ConfigError
from .evaluation import PROTOCOLS
from .models import model_class
from .models.encoder import EncoderConfig
from .models.heads import PRETRAIN_BACKBONES

COMPILE_MODES = ("none", "default", "reduce-overhead")
LOSSES = ("bce", "ce", "bpr", "sampled-softmax", "gbce")
# Shared settings whose default depends on the model: choosing a model (``model=NAME`` in a config
# made from another model's) resets them to TrainConfig's defaults overlaid with the model's own
# ``defaults`` (its paper's values), before any other override applies.
MODEL_SETTINGS = ("lr", "weight_decay", "hidden_dropout", "attn_dropout", "n_layers", "n_heads", "loss")
SEED_MAX = 2**32 - 1  # seeds are 0..2**32-1: what numpy's and torch's generators all accept
# the largest value of each size or count: far beyond any published model (the paper: hidden_size
# 64, n_layers 2, max_len 50), small enough that a slip such as hidden_size=4000000000 is refused
# before anything is allocated; every other whole-number setting is at most INT_MAX
LIMITS = {"hidden_size": 16384, "n_layers": 256, "n_heads": 256, "max_len": 16384, "batch_size": 2**20,
          "n_negatives": 2**16, "seed": SEED_MAX, "fraction_seed": SEED_MAX}
INT_MAX = 2**31 - 1
# names other libraries (and the released code) use for settings: ``--set learning_rate=...`` is
# answered with "did you mean 'lr'?"
ALIASES = {
    "learning_rate": "lr", "dropout": "hidden_dropout", "dropout_rate": "hidden_dropout",
    "hidden_dropout_prob": "hidden_dropout", "attention_probs_dropout_prob": "attn_dropout",
    "attention_dropout": "attn_dropout", "hidden_units": "hidden_size", "embedding_size": "hidden_size",
    "embedding_dim": "hidden_size", "hidden_dim": "hidden_size", "num_layers": "n_layers",
    "num_hidden_layers": "n_layers", "num_blocks": "n_layers", "num_heads": "n_heads",
    "num_attention_heads": "n_heads", "maxlen": "max_len", "max_seq_length": "max_len",
    "max_seq_len": "max_len", "train_batch_size": "batch_size", "num_epochs": "epochs", "n_epochs": "epochs",
    "random_seed": "seed", "l2": "weight_decay", "l2_emb": "weight_decay", "num_negatives": "n_negatives",
    "neg_samples": "n_negatives",
}


def suggestion(key: str, known) -> str:
    """`` (did you mean 'lr'?)`` for an unknown ``key`` near one of ``known`` (or "" when none is)."""
    known = list(known)
    alias = ALIASES.get(key.lower())
    close = [alias] if alias in known else difflib.get_close_matches(key.lower(), known, n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


@dataclass(frozen=True)
class RunSettings:
    """The settings every run has, pre-training or fine-tuning: the dataset, the encoder (the fields
    of :class:`EncoderConfig`, with its defaults: docs/semantics.md, #model), the learning rate, the batch layout,
    the seed, the device and the limited-training-data subset."""

    dataset: str = "LastFM"
    hidden_size: int = EncoderConfig.hidden_size
    n_layers: int = EncoderConfig.n_layers
    n_heads: int = EncoderConfig.n_heads
    max_len: int = EncoderConfig.max_len
    hidden_dropout: float = EncoderConfig.hidden_dropout
    attn_dropout: float = EncoderConfig.attn_dropout
    pre_ln: bool = EncoderConfig.pre_ln  # pre-LayerNorm blocks (a variant); False = the authors' post-LN encoder
    lr: float = 1e-3
    negative_sampler: str = "exclude-mask"  # or "original": the released sampler that can draw mask_id
    packed: bool = True  # pack sequences into rows (exact); False pads every sequence to max_len
    seed: int = 42
    device: str = "cpu"
    # limited training data (the paper's Fig. 4): a random ``train_fraction`` of the users, drawn with
    # ``fraction_seed`` (independent of ``seed``), keeps its training part for pre-training and
    # fine-tuning; validation and test still use every user. 1.0: every user (the default).
    train_fraction: float = 1.0
    fraction_seed: int = 0

    def encoder(self) -> EncoderConfig:
        return EncoderConfig(**{f.name: getattr(self, f.name) for f in fields(EncoderConfig)})

    def _checks(self) -> list[tuple[bool, str]]:
        return [
            (self.negative_sampler in NEGATIVE_SAMPLERS, f"negative_sampler must be one of {', '.join(NEGATIVE_SAMPLERS)}"),
            *bounds(self),
            (self.hidden_size > 0 and self.n_heads >= 1 and self.hidden_size % self.n_heads == 0,
             "hidden_size must be a positive multiple of n_heads"),
            (self.n_layers >= 1, "n_layers must be >= 1"),
            (self.max_len >= 1, "max_len must be >= 1"),
            (self.seed >= 0, f"seed must be in 0..{SEED_MAX}"),
            (self.fraction_seed >= 0, f"fraction_seed must be in 0..{SEED_MAX}"),
            (0 <= self.hidden_dropout < 1 and 0 <= self.attn_dropout < 1, "dropout must be in [0, 1)"),
            (self.lr > 0, "lr must be > 0"),
            (0 < self.train_fraction <= 1, "train_fraction must be in (0, 1]"),
            (device_ok(self.device), f"device {self.device!r} is not available here (cpu{', cuda' if _cuda() else ''})"),
        ]

    def validate(self):
        for ok, msg in self._checks():
            if not ok:
                raise ConfigError(f"invalid setting: {msg}")
        check_fits(self.encoder(), self.device)
        return self

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2, sort_keys=True)


@dataclass(frozen=True)
class TrainConfig(RunSettings):
    """Fine-tuning (next-item prediction) settings; defaults are the paper's (docs/semantics.md, #fine-tuning)."""

    model: str = "sasrec"  # see `s3rec models`; choosing one applies its paper's defaults (MODEL_SETTINGS)
    protocol: str = "sampled"  # sampled | full | full-unmasked | full-original
    batch_size: int = 256  # users per batch
    epochs: int = 200
    patience: int = 10  # epochs without a better validation score before stopping
    # no early stop before this epoch; -1: the dataset's default (50 for LastFM, whose small validation
    # set lets patience 10 stop models on their early popularity plateau; 0 elsewhere, the released code)
    min_epochs: int = -1
    loss: str = "bce"  # bce: one negative per position (the paper); ce: softmax over all items; bpr: pairwise
    init: str = ""  # pre-trained checkpoint the encoder starts from ("" = random initialisation)
    weight_decay: float = 0.0  # Adam's L2 penalty (0 for SASRec / S3-Rec)
    n_negatives: int = 256  # uniform negatives per batch for loss sampled-softmax / gbce
    # validate on a fixed random subset of this many users (0: every user); for models whose
    # full-ranking pass is expensive (AutoInt) or very large datasets. Test always uses every user.
    valid_users: int = 0
    gbce_t: float = 0.75  # gBCE calibration: 0 = plain BCE with n_negatives, 1 = fully calibrated
    # the model's own hyper-parameters (its Params dataclass; `--set NAME=VALUE` sets one), complete
    # after validate(): config.json records every value the run used
    model_params: dict = field(default_factory=dict)

    def model_class(self):
        return model_class(self.model)

    def params(self):
        """The model's own hyper-parameters: its ``Params`` with ``model_params`` applied."""
        cls = self.model_class().Params
        try:
            return cls(**self.model_params)
        except TypeError:
            known = ", ".join(f.name for f in fields(cls)) or "none"
            raise ConfigError(f"model_params {sorted(self.model_params)} do not fit model {self.model} (it has: {known})") from None

    def resolved(self) -> "TrainConfig":
        """This config with ``model_params`` completed with the model's defaults."""
        return dataclasses.replace(self, model_params=dataclasses.asdict(self.params()))

    def _checks(self):
        cls = self.model_class()
        return super()._checks() + [
            (self.protocol in PROTOCOLS, f"protocol must be one of {', '.join(PROTOCOLS)}"),
            (self.loss in LOSSES, f"loss must be one of {', '.join(LOSSES)}"),
            (self.loss in cls.losses, f"model {self.model} supports loss {', '.join(cls.losses)}"),
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.epochs >= 1, "epochs must be >= 1"),
            (self.patience >= 1, "patience must be >= 1"),
            (self.weight_decay >= 0, "weight_decay must be >= 0"),
            (self.n_negatives >= 1, "n_negatives must be >= 1"),
            (self.valid_users >= 0, "valid_users must be >= 0 (0: every user)"),
            (self.min_epochs >= -1, "min_epochs must be >= 0 (or -1: the dataset's default)"),
            (0.0 <= self.gbce_t <= 1.0, "gbce_t must be in [0, 1]"),
            *bounds(self.params()),
            (not self.init or cls.trainable, f"init (pre-trained weights) needs a trained model, not {self.model}"),
            (self.train_fraction == 1 or cls.trainable,
             f"train_fraction < 1 needs a trained model; {self.model} is fitted from every user's data when built"),
            *self.params().checks(),
        ]

    def validate(self):
        return super().validate().resolved()


# settings a pre-trained backbone shares with the model that fine-tunes from it (they must agree)
_BACKBONE_SHAPE = ("dataset", *(f.name for f in fields(EncoderConfig)), "device")


@dataclass(frozen=True)
class PretrainConfig(RunSettings):
    """S3-Rec pre-training settings; defaults are the released code's (docs/semantics.md, #pre-training)."""

    batch_size: int = 100
    epochs: int = 0  # 0: the dataset's default (150 Beauty/Toys/LastFM, 100 Sports/Yelp; 100 otherwise)
    mask_p: float = 0.2
    aap_weight: float = 0.2
    mip_weight: float = 1.0
    map_weight: float = 1.0
    sp_weight: float = 0.5
    segment_pool: str = "train"  # or "full": the released code's pool, which leaks valid/test items
    save_every: int = 10  # keep a checkpoint every N epochs (plus the latest)
    amp: str = "none"  # or "bf16": autocast (CUDA or CPU)
    # "default" or "reduce-overhead" (CUDA graphs): the losses under torch.compile, eager when it fails
    compile: str = "none"
    prefetch: str = "auto"  # build the next batch on a thread while one trains: on, off, auto (CUDA only)
    causal: bool = False  # True: left-to-right attention while pre-training (Fig. 3's unidirectional SASRec)
    # the encoder pre-trained: "s3rec" (S3-Rec's, which SASRec and S3-Rec fine-tune from) or a
    # registered model (gru4rec, gru4rec_f, sasrec_f: Fig. 3), always read left to right; choosing
    # one resets n_layers, n_heads, dropout and lr to that model's defaults (as ``model`` does)
    backbone: str = "s3rec"
    init: str = ""  # continue from a pre-training checkpoint (ours or the authors' layout)

    def _checks(self):
        return super()._checks() + [
            (self.batch_size >= 1, "batch_size must be >= 1"),
            (self.epochs >= 0, "epochs must be >= 0"),
            (0 <= self.mask_p <= 1, "mask_p must be in [0, 1]"),
            (min(self.aap_weight, self.mip_weight, self.map_weight, self.sp_weight) >= 0, "loss weights must be >= 0"),
            (max(self.aap_weight, self.mip_weight, self.map_weight, self.sp_weight) > 0, "at least one loss weight must be > 0"),
            (self.segment_pool in SEGMENT_POOLS, f"segment_pool must be one of {', '.join(SEGMENT_POOLS)}"),
            (self.save_every >= 1, "save_every must be >= 1"),
            (self.amp in ("none", "bf16"), "amp must be none or bf16"),
            (self.compile in COMPILE_MODES, f"compile must be one of {', '.join(COMPILE_MODES)}"),
            (self.prefetch in ("auto", "on", "off"), "prefetch must be auto, on or off"),
            (self.backbone in PRETRAIN_BACKBONES, f"backbone must be one of {', '.join(PRETRAIN_BACKBONES)}"),
        ]

    @property
    def unidirectional(self) -> bool:
        """Whether pre-training reads sequences left to right (``causal``, or any backbone but S3-Rec's)."""
        return self.causal or self.backbone != "s3rec"

    def backbone_config(self) -> "TrainConfig":
        """The fine-tuning config whose model is the pre-trained backbone, with this config's encoder."""
        shape = {k: getattr(self, k) for k in _BACKBONE_SHAPE}
        return dataclasses.replace(for_model(TrainConfig(), self.backbone), **shape)


def _cuda() -> bool:
    return torch.cuda.is_available()


def bounds(cfg) -> list[tuple[bool, str]]:
    """The upper bound of every whole-number setting of ``cfg``: :data:`LIMITS`, else :data:`INT_MAX`."""
    out = []
    for f in fields(cfg):
        v = getattr(cfg, f.name)
        if isinstance(v, int) and not isinstance(v, bool):
            top = LIMITS.get(f.name, INT_MAX)
            out.append((v <= top, f"{f.name} must be at most {top}, got {v}"))
    return out


def device_memory(device: str) -> int | None:
    """Bytes of memory of ``device``: the GPU's, or this machine's RAM for the CPU (None: unknown)."""
    try:
        dev = torch.device(device)
        if dev.type == "cuda":
            return torch.cuda.get_device_properties(dev.index or 0).total_memory
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError, RuntimeError, AssertionError):
        return None


def check_fits(enc: EncoderConfig, device: str, n_items: int = 0) -> None:
    """Refuse an encoder whose float32 parameters alone (:meth:`EncoderConfig.n_parameters`, the item
    table of ``n_items + 2`` rows included) exceed the memory of ``device`` (training needs about four
    times as much: gradients and Adam's two moments). Settings are checked without the data
    (``n_items=0``); the model is checked again with its dataset's catalogue before it is built."""
    need, have = 4 * enc.n_parameters(n_items), device_memory(device)
    if have is not None and need > have:
        items = f", {n_items} items" if n_items else ""
        raise ConfigError(f"the model does not fit in memory: {need / 2**30:.1f} GiB of parameters (hidden_size "
                          f"{enc.hidden_size}, n_layers {enc.n_layers}, max_len {enc.max_len}{items}), and {device} "
                          f"has {have / 2**30:.1f} GiB")


def device_ok(device: str) -> bool:
    """Whether torch can use this device string on this machine."""
    try:
        dev = torch.device(device)
    except (RuntimeError, ValueError):
        return False
    return dev.type == "cpu" or (dev.type == "cuda" and _cuda())


def _coerce(name: str, typ, value):
    value = _parsed(name, typ, value)
    if typ is float and not math.isfinite(value):
        raise ConfigError(f"setting {name}: {value!r} is not a finite number")
    return value


def _parsed(name: str, typ, value):
    if isinstance(value, str):
        try:
            if typ is bool:
                low = value.lower()
                if low not in ("true", "false", "1", "0", "yes", "no"):
                    raise ValueError
                return low in ("true", "1", "yes")
            return typ(value)
        except (ValueError, OverflowError):
            raise ConfigError(f"setting {name}: {value!r} is not a valid {typ.__name__}") from None
    if typ is float and isinstance(value, int) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            raise ConfigError(f"setting {name}: {value!r} is not a finite number") from None
    if not isinstance(value, typ) or (typ is int and isinstance(value, bool)):
        raise ConfigError(f"setting {name}: expected {typ.__name__}, got {type(value).__name__} {value!r}")
    return value


_PYTYPES = {"int": int, "float": float, "str": str, "bool": bool}


def _types(dc) -> dict:
    return {f.name: _PYTYPES.get(f.type, f.type) for f in fields(dc)}


def for_model(cfg, name: str):
    """``cfg`` switched to model ``name``: its MODEL_SETTINGS reset to the defaults overlaid with the
    model's paper values, and its ``model_params`` to the model's defaults."""
    cls = model_class(name)
    shared = {k: getattr(type(cfg)(), k) for k in MODEL_SETTINGS}
    shared.update(cls.defaults)
    return dataclasses.replace(cfg, model=name.lower(), model_params=dataclasses.asdict(cls.Params()), **shared)


def _for_backbone(cfg, name: str):
    """A PretrainConfig switched to backbone ``name``: the encoder settings it shares with
    MODEL_SETTINGS reset to the defaults overlaid with that model's own (none for "s3rec")."""
    if name not in PRETRAIN_BACKBONES:
        raise ConfigError(f"setting backbone: {name!r} is not one of {', '.join(PRETRAIN_BACKBONES)}")
    base = type(cfg)()
    shared = {k: getattr(base, k) for k in MODEL_SETTINGS if hasattr(base, k)}
    if name != "s3rec":
        shared.update({k: v for k, v in model_class(name).defaults.items() if k in shared})
    return dataclasses.replace(cfg, backbone=name, **shared)


def with_overrides(cfg, overrides: dict):
    """A copy of the config with ``overrides`` (strings are parsed to the field's type).

    For a TrainConfig, ``model`` is applied first: a different model brings its own defaults
    (:func:`for_model`); keys that are not settings but hyper-parameters of the (new) model go to
    ``model_params``; ``model_params`` itself (from a config.json) must name only those.
    """
    overrides = dict(overrides)
    has_model = hasattr(cfg, "model_params")
    if has_model and "model" in overrides:
        name = str(_coerce("model", str, overrides.pop("model"))).lower()
        if name != cfg.model:
            cfg = for_model(cfg, name)
    if hasattr(cfg, "backbone") and "backbone" in overrides:
        name = str(_coerce("backbone", str, overrides.pop("backbone"))).lower()
        if name != cfg.backbone:
            cfg = _for_backbone(cfg, name)
    types = _types(cfg)
    ptypes = _types(cfg.model_class().Params) if has_model else {}
    changes, params = {}, {}
    for key, value in overrides.items():
        if has_model and key == "model_params":
            if not isinstance(value, dict):
                raise ConfigError(f"setting model_params: expected an object, got {type(value).__name__}")
            for k, v in value.items():
                if k not in ptypes:
                    raise ConfigError(f"model {cfg.model} has no hyper-parameter {k!r}{suggestion(k, ptypes)}; "
                                      f"it has: {', '.join(ptypes) or 'none'}")
                params[k] = _coerce(k, ptypes[k], v)
        elif key in types and key != "model_params":
            changes[key] = _coerce(key, types[key], value)
        elif key in ptypes:
            params[key] = _coerce(key, ptypes[key], value)
        else:
            known = sorted(k for k in types if k != "model_params")
            hint = suggestion(key, [*known, *ptypes])
            extra = f"; model {cfg.model} also takes: {', '.join(ptypes)}" if ptypes else ""
            raise ConfigError(f"unknown setting {key!r}{hint}" if hint else
                              f"unknown setting {key!r}; known: {', '.join(known)}{extra}")
    if params:
        changes["model_params"] = {**cfg.model_params, **params}
    return dataclasses.replace(cfg, **changes)


def parse_sets(pairs: list[str]) -> dict:
    """``["lr=0.01", "epochs=5"]`` -> ``{"lr": "0.01", "epochs": "5"}``."""
    out = {}
    for p in pairs:
        if "=" not in p:
            raise ConfigError(f"--set expects key=value, got {p!r}")
        k, v = p.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def read_toml_text(path, kind: str) -> str:
    """The text of a settings TOML file (a preset, a search space, an experiment), or a one-line
    :class:`ConfigError` naming it when it is not UTF-8."""
    try:
        return Path(path).read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise ConfigError(f"{kind} file {path}: not UTF-8 text ({e.reason})") from None


def load_toml(text: str, where: str) -> dict:
    """``tomllib.loads(text)``, its errors (invalid TOML, nesting too deep for the parser) one line
    naming ``where``."""
    import tomllib

    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{where}: not valid TOML: {e}") from None
    except RecursionError:
        raise ConfigError(f"{where}: not valid TOML: nested too deeply") from None


def parse_toml_head(text: str, kind: str, where: str, top_keys) -> tuple[dict, str]:
    """Parse a settings TOML file (a preset, a search space): ``(data, description)``, with one-line
    errors for invalid TOML, an unknown top-level key or a non-string ``description``."""
    data = load_toml(text, f"{kind} {where}")
    unknown = sorted(set(data) - set(top_keys))
    if unknown:
        raise ConfigError(f"{kind} {where}: unknown key {unknown[0]!r}; known: {', '.join(sorted(top_keys))}")
    desc = data.get("description", "")
    if not isinstance(desc, str):
        raise ConfigError(f"{kind} {where}: description must be a string")
    return data, desc


def config_from_json(text: str, cls=TrainConfig, **fixed):
    """The validated config of a ``cls`` that JSON ``text`` (a config.json, a checkpoint's) holds;
    ``fixed``: settings that replace the recorded ones (``device="cpu"``: where a run ran does not
    decide where it is read)."""
    try:
        data = json.loads(text)
    except (json.JSONDecodeError, RecursionError) as e:
        raise ConfigError(f"config is not valid JSON: {e}") from None
    if not isinstance(data, dict):
        raise ConfigError(f"config must be a JSON object, got {type(data).__name__}")
    return with_overrides(cls(), {**data, **fixed}).validate()
