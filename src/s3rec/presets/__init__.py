"""Presets: named configurations shipped as TOML files, applied under the command line's settings.

A preset is a TOML file with a one-line ``description``, a ``[finetune]`` table (settings of
:class:`~s3rec.config.TrainConfig`, as ``--set`` takes them) and an optional ``[pretrain]`` table
(settings of :class:`~s3rec.config.PretrainConfig`, used by ``s3rec run``), optionally
``pretrained = true`` (the fine-tuning starts from an S3-Rec pre-training with the ``[pretrain]``
settings: ``s3rec train --preset NAME`` pre-trains first, or reuses the pre-training with the same
settings and data, see :func:`shared_pretrain_dir`), and optionally a ``[source]`` table recording where it came from (a search's study, score and trial; never read).
The shipped presets are ``s3rec/presets/NAME.toml``: adding one is dropping a file there. ``--preset``
takes such a NAME or the path of any preset file (what ``s3rec tune --save-preset`` writes).

Order of application: the defaults, then the preset, then explicit flags and ``--set`` (they win).
The dataset, the checkpoint to start from and the device are the command line's business: a preset
that sets them is rejected.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from ..errors import ConfigError
from ..fileio import atomic_write_text

_TOP_KEYS = {"description", "pretrained", "finetune", "pretrain", "source"}
# chosen by the command line, never by a preset
NOT_PRESET = ("dataset", "init", "device")


@dataclass(frozen=True)
class Preset:
    name: str
    description: str
    finetune: dict = field(default_factory=dict)
    pretrain: dict = field(default_factory=dict)
    source: dict = field(default_factory=dict)
    path: str = ""
    pretrained: bool = False  # fine-tune from an S3-Rec pre-training with the [pretrain] settings


def _shipped_dir():
    return resources.files("s3rec.presets")


def preset_names() -> list[str]:
    """The shipped presets, sorted."""
    return sorted(p.name[:-5] for p in _shipped_dir().iterdir() if p.name.endswith(".toml"))


def _is_path(ref: str) -> bool:
    return ref.endswith(".toml") or "/" in ref or "\\" in ref


def load_preset(ref: str) -> Preset:
    """A shipped preset by name, or a preset file by path (ending in .toml or containing a slash)."""
    if _is_path(ref):
        path = Path(ref)
        if not path.is_file():
            raise ConfigError(f"preset file {ref} not found")
        text, name = path.read_text(encoding="utf-8"), path.stem
    else:
        res = _shipped_dir() / f"{ref}.toml"
        if not res.is_file():
            raise ConfigError(f"unknown preset {ref!r}; shipped: {', '.join(preset_names()) or 'none'} "
                              "(or give the path of a .toml preset file)")
        text, name = res.read_text(encoding="utf-8"), ref
    return parse_preset(text, name, ref)


def parse_preset(text: str, name: str, where: str) -> Preset:
    """Parse and check a preset: known top-level keys and settings, values of the right types."""
    from ..config import PretrainConfig, TrainConfig, parse_toml_head, with_overrides

    data, desc = parse_toml_head(text, "preset", where, _TOP_KEYS)
    tables = {}
    for key, cls in (("finetune", TrainConfig), ("pretrain", PretrainConfig)):
        table = data.get(key, {})
        if not isinstance(table, dict):
            raise ConfigError(f"preset {where}: [{key}] must be a table")
        bad = [k for k in table if k in NOT_PRESET]
        if bad:
            raise ConfigError(f"preset {where}: [{key}] {bad[0]} is chosen on the command line, not by a preset")
        try:
            with_overrides(cls(), table).validate()
        except ConfigError as e:
            raise ConfigError(f"preset {where}: [{key}] {e}") from None
        tables[key] = table
    source = data.get("source", {})
    if not isinstance(source, dict):
        raise ConfigError(f"preset {where}: [source] must be a table")
    pretrained = data.get("pretrained", False)
    if not isinstance(pretrained, bool):
        raise ConfigError(f"preset {where}: pretrained must be true or false")
    return Preset(name, desc, tables["finetune"], tables["pretrain"], source, where, pretrained)


def describe_presets() -> list[tuple[str, str]]:
    """``(name, description)`` of every shipped preset."""
    return [(n, load_preset(n).description) for n in preset_names()]


def apply_finetune(cfg, preset: Preset | None):
    """``cfg`` (a TrainConfig) with the preset's fine-tuning settings; unchanged without a preset."""
    from ..config import with_overrides

    return with_overrides(cfg, preset.finetune) if preset else cfg


def apply_pretrain(cfg, preset: Preset | None):
    """``cfg`` (a PretrainConfig) with the preset's pre-training settings; unchanged without a preset."""
    from ..config import with_overrides

    return with_overrides(cfg, preset.pretrain) if preset else cfg


# settings that never change what a pre-training's epoch k computes: left out of its shared folder's
# name (``epochs`` too: without a learning-rate schedule, epoch k is the same whatever the total, so one
# folder serves every length; see :func:`s3rec.pretrain.pretrain`)
_NOT_IDENTITY = ("device", "save_every", "epochs")


def data_fingerprint(ds) -> str:
    """A short digest of a dataset's sequences and item attributes (what a pre-training reads)."""
    import hashlib

    h = hashlib.sha256()
    for arr in (ds.offsets, ds.items, ds.attr_offsets, ds.attributes):
        h.update(arr.astype("int64").tobytes())
    h.update(f"{ds.n_items},{ds.n_attributes}".encode())
    return h.hexdigest()[:12]


def shared_pretrain_dir(root: Path, cfg, fingerprint: str) -> Path:
    """The folder under ``root`` for a pre-training with these settings (a PretrainConfig) on the data
    with this :func:`data_fingerprint`: ``DATASET-BACKBONE-seedSEED-HASH``, the hash over the settings
    that differ from their defaults and change the computation, and over the data. Every run asking
    for the same pre-training, of any length, gets the same folder: it reuses the checkpoint of the
    epoch it needs, or extends the run to it. A pre-training continued from ``init`` has no shared
    folder (it depends on a file outside the settings)."""
    import hashlib

    from ..config import PretrainConfig

    if cfg.init:
        raise ConfigError("a pre-training continued from a checkpoint (init) has no shared folder")
    defaults = PretrainConfig().to_dict()
    settings = {k: v for k, v in sorted(cfg.to_dict().items()) if k not in _NOT_IDENTITY and v != defaults.get(k)}
    if settings.get("train_fraction", 1.0) == 1.0:
        settings.pop("fraction_seed", None)  # which users are dropped matters only when some are
    digest = hashlib.sha256(json.dumps({"settings": settings, "data": fingerprint}, sort_keys=True).encode()).hexdigest()[:10]
    return Path(root) / f"{cfg.dataset}-{cfg.backbone}-seed{cfg.seed}-{digest}"


def _toml_value(value) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, dict):
        return "{ " + ", ".join(f"{_toml_key(k)} = {_toml_value(v)}" for k, v in value.items()) + " }"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} {value!r} as TOML")


def _toml_key(key: str) -> str:
    return key if key.replace("_", "").replace("-", "").isalnum() else json.dumps(key)


def preset_toml(description: str, finetune: dict, pretrain: dict | None = None, source: dict | None = None,
                pretrained: bool = False) -> str:
    """A preset file's text (the form :func:`parse_preset` reads)."""
    lines = [f"description = {_toml_value(description)}"]
    if pretrained:
        lines.append("pretrained = true")
    lines += ["", "[finetune]"]
    lines += [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in finetune.items()]
    if pretrain:
        lines += ["", "[pretrain]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in pretrain.items()]
    if source:
        lines += ["", "[source]"] + [f"{_toml_key(k)} = {_toml_value(v)}" for k, v in source.items()]
    return "\n".join(lines) + "\n"


def save_preset(path: Path, description: str, finetune: dict, pretrain: dict | None = None,
                source: dict | None = None, pretrained: bool = False) -> Path:
    """Write a preset file atomically, after checking that it reads back."""
    text = preset_toml(description, finetune, pretrain, source, pretrained)
    parse_preset(text, Path(path).stem, str(path))
    atomic_write_text(path, text)
    return Path(path)
