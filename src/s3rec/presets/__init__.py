"""Presets: named configurations shipped as TOML files, applied under the command line's settings.

A preset is a TOML file with a one-line ``description``, a ``[finetune]`` table (settings of
:class:`~s3rec.config.TrainConfig`, as ``--set`` takes them) and an optional ``[pretrain]`` table
(settings of :class:`~s3rec.config.PretrainConfig`, used by ``s3rec run``), optionally
``pretrained = true`` (the fine-tuning starts from an S3-Rec pre-training with the ``[pretrain]``
settings: ``s3rec train --preset NAME`` pre-trains first, or reuses the pre-training with the same
settings and data, see :func:`pretraining_for`), and optionally a ``[source]`` table recording where it came from (a search's study, score and trial; never read).
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
    from ..config import read_toml_text

    if _is_path(ref):
        path = Path(ref)
        if not path.is_file():
            raise ConfigError(f"preset file {ref} not found" + (" (not a regular file)" if path.exists() else ""))
        text, name = read_toml_text(path, "preset"), path.stem
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


def pretraining_for(preset: Preset, cfg, ds, root: Path, progress: bool = True, log=lambda m: None):
    """The checkpoint a fine-tuning ``cfg`` (a TrainConfig on ``ds``) with a ``pretrained = true``
    preset starts from: the preset's [pretrain] settings with ``cfg``'s device and users, made (or
    reused, or extended) in its shared folder under ``root`` (:func:`s3rec.shared_pretrain.ensure_pretrained`).
    Settings the two stages must share are checked first, before anything is pre-trained."""
    import dataclasses

    from ..config import PretrainConfig, with_overrides
    from ..models.encoder import ENCODER_SHAPE
    from ..pretraining import default_epochs
    from ..shared_pretrain import ensure_pretrained, pretrain_id

    # the users a limited-data run keeps are the users its pre-training sees (as in `s3rec reproduce`)
    pre = with_overrides(apply_pretrain(PretrainConfig(), preset), {
        "dataset": ds.name, "device": cfg.device, "train_fraction": cfg.train_fraction, "fraction_seed": cfg.fraction_seed})
    pre = dataclasses.replace(pre, epochs=pre.epochs or default_epochs(ds.name)).validate()
    if pre.backbone not in ("s3rec", cfg.model):
        raise ConfigError(f"preset {preset.name} pre-trains {pre.backbone}, which {cfg.model} cannot fine-tune from: "
                          f"add --model {pre.backbone}")
    whole = pre.backbone == cfg.model or (pre.backbone == "s3rec" and cfg.model == "sasrec")
    keys = ENCODER_SHAPE if whole else ("hidden_size",)  # other models take the item embeddings only
    diff = [f"{k} {getattr(pre, k)} vs {getattr(cfg, k)}" for k in keys if getattr(pre, k) != getattr(cfg, k)]
    if diff:  # found out now, not after the pre-training
        raise ConfigError(f"preset {preset.name}: its pre-training and this fine-tuning differ in {', '.join(diff)}: "
                          "drop those --set, or use a preset file whose [pretrain] matches, or --init CKPT")
    out = (Path(root) / pretrain_id(pre)).resolve()
    final = out / f"pretrain-epoch-{pre.epochs}.pt"
    what = f"preset {preset.name} fine-tunes from an S3-Rec pre-training"
    if final.is_file():
        log(f"{what}: reusing {final}")
    else:
        done = len((out / "metrics.jsonl").read_text().splitlines()) if (out / "metrics.jsonl").is_file() else 0
        log(f"{what}: pre-training {pre.epochs} epochs in {out}" + (f" (continuing after epoch {done})" if done else "")
            + "; resumable, shared")
    ensure_pretrained(pre, ds, out, progress=progress, log=log)
    return final


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
