"""A search's best trial as a preset (``s3rec tune --save-preset``): the settings that differ from the
defaults and every searched one, and the pre-training it started from when known."""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path

from ..config import PretrainConfig, TrainConfig, for_model, with_overrides
from ..errors import ConfigError

_PRESET_NAME = re.compile(r"^[A-Za-z0-9_.+-]+$")

# what a preset leaves to the command line (NOT_PRESET) or to the user (the evaluation and the seed)
_NOT_IN_PRESET = ("dataset", "init", "device", "protocol", "seed")


def _preset_table(settings: dict, defaults: dict, searched: dict, params_defaults: dict | None = None) -> dict:
    """The settings that differ from the defaults, and every searched one, in the config's order;
    a model's own hyper-parameters flattened (as ``--set`` takes them)."""
    out = {}
    for k, v in settings.items():
        if k in _NOT_IN_PRESET:
            continue
        if k == "model_params":
            out.update({pk: pv for pk, pv in v.items() if pk in searched or (params_defaults or {}).get(pk) != pv})
        elif k in searched or defaults.get(k) != v:
            out[k] = v
    return out


def _init_pretrain_settings(init: str) -> dict | None:
    """The settings of the pre-training run that wrote checkpoint ``init`` (its folder's config.json), as
    a preset's [pretrain] table of those differing from the backbone's defaults, with the checkpoint's
    epoch; None when they cannot be read or do not describe the checkpoint alone (a pre-training
    continued from another checkpoint)."""
    from ..config import config_from_json

    try:
        data = json.loads((Path(init).parent / "config.json").read_text(encoding="utf-8"))
        data["device"] = "cpu"  # where it ran does not matter here (and CUDA may be missing)
        cfg = config_from_json(json.dumps(data), PretrainConfig)
    except (OSError, ValueError, TypeError, ConfigError):
        return None
    if cfg.init:
        return None
    m = re.fullmatch(r"pretrain-epoch-(\d+)\.pt", Path(init).name)
    if m:  # the checkpoint's epoch, not the run's total (a Fig. 5 style intermediate checkpoint)
        cfg = dataclasses.replace(cfg, epochs=int(m.group(1)))
    defaults = with_overrides(PretrainConfig(), {"backbone": cfg.backbone}).to_dict()
    return {k: v for k, v in cfg.to_dict().items()
            if k not in ("dataset", "device", "init", "save_every") and (v != defaults.get(k) or k == "backbone" and v != "s3rec")}


def preset_from_best(best: dict) -> tuple[str, dict, dict | None, dict, bool]:
    """``(description, finetune, pretrain, source, pretrained)`` of a preset holding a search's best
    trial; ``pretrained``: the trial fine-tuned from an S3-Rec pre-training whose settings are known."""
    ft = best["finetune"]
    model_defaults = for_model(TrainConfig(), ft["model"]).resolved().to_dict()
    finetune = _preset_table(ft, model_defaults, best["params"]["finetune"], model_defaults["model_params"])
    if ft["model"] == "sasrec":
        finetune.pop("model", None)
    pretrain = None
    if best.get("pretrain"):
        pretrain = _preset_table(best["pretrain"], PretrainConfig().to_dict(), best["params"]["pretrain"])
    desc = (f"tuned on {best['dataset']} ({best['protocol']} protocol): valid {best['metric']} {best['value']:.4f}, "
            f"trial {best['trial']} of {best['study']}")
    source = {"study": best["study"], "dataset": best["dataset"], "protocol": best["protocol"], "metric": best["metric"],
              "split": "valid", "value": best["value"], "trial": best["trial"]}
    pretrained = pretrain is not None
    if ft.get("init") and not best.get("pretrain"):
        source["init"] = ft["init"]
        pretrain = _init_pretrain_settings(ft["init"])
        pretrained = pretrain is not None
    return desc, finetune, pretrain, source, pretrained


def save_best_preset(best: dict, name: str, preset_dir: str | Path) -> Path:
    """Write the best trial as ``PRESET_DIR/NAME.toml``, usable with ``--preset PATH``."""
    from ..presets import save_preset

    if not _PRESET_NAME.match(name):
        raise ConfigError(f"preset name {name!r}: use letters, digits and _.+- only")
    desc, finetune, pretrain, source, pretrained = preset_from_best(best)
    return save_preset(Path(preset_dir) / f"{name}.toml", desc, finetune, pretrain, source, pretrained)
