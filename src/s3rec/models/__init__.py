"""The model registry: name -> (class, one-line description), in the order of the paper's tables.

Every registered model follows the contract of :mod:`s3rec.models.base` (``loss``, ``user_states``,
``score`` and the class attributes ``causal``, ``packed_ok``, ``trainable``, ``uses_users``), is
built by :func:`build_model` from a :class:`~s3rec.models.base.ModelData` and a ``TrainConfig``, and
documents its hyper-parameters with their sources in its class's module.
"""

from __future__ import annotations

import difflib

from ..errors import ConfigError
from .autoint import AutoInt
from .base import Model, ModelData
from .bert4rec import BERT4Rec
from .caser import Caser
from .fdsa import FDSA
from .fm import FM
from .gru4rec import GRU4Rec, GRU4RecF
from .hgn import HGN
from .poprec import PopRec
from .sasrec import SASRec
from .sasrec_f import SASRecF

__all__ = ["ModelData", "Model", "build_model", "describe_models", "model_class", "model_names", "register_model"]

_REGISTERED: dict = {}  # models added at run time by register_model (s3rec.register_model)


def _registry() -> dict:
    return {
        "poprec": (PopRec, "PopRec: items ranked by their number of interactions before the ranked target; nothing is trained"),
        "fm": (FM, "FM: factorization machine over user, item and mean-pooled item attributes (non-sequential)"),
        "autoint": (AutoInt, "AutoInt: multi-head self-attention over user, item and attribute fields (non-sequential)"),
        "gru4rec": (GRU4Rec, "GRU4Rec: GRU over item embeddings, next-item loss at every position"),
        "caser": (Caser, "Caser: horizontal and vertical convolutions over the last L items, plus a user embedding"),
        "sasrec": (SASRec, "SASRec: causal self-attention over the items, from scratch (S3-Rec's fine-tuning model)"),
        "bert4rec": (BERT4Rec, "BERT4Rec: bidirectional self-attention trained with the Cloze (masked item) objective"),
        "hgn": (HGN, "HGN: hierarchical gating (feature and instance gates) over the last L items, item-item product"),
        "gru4rec_f": (GRU4RecF, "GRU4Rec_F: parallel GRUs over items and their attributes (p-RNN), states concatenated"),
        "sasrec_f": (SASRecF, "SASRec_F: SASRec over [item; attribute] representations concatenated as input"),
        "fdsa": (FDSA, "FDSA: separate self-attention streams over items and attention-pooled attributes"),
        **_REGISTERED,
    }


def register_model(name: str, cls: type, description: str = "") -> None:
    """Register ``cls`` (a :class:`Model` subclass following the contract) as model ``name``
    in this process; a built-in name cannot be taken."""
    key = name.lower()
    if not (isinstance(cls, type) and issubclass(cls, Model)):
        raise ConfigError(f"register_model({name!r}): {cls!r} is not a subclass of s3rec.models.base.Model")
    if key in _registry() and key not in _REGISTERED:
        raise ConfigError(f"register_model: {name!r} is a built-in model")
    _REGISTERED[key] = (cls, description or (cls.__doc__ or name).strip().splitlines()[0])


def model_names() -> list[str]:
    return list(_registry())


def describe_models() -> list[tuple[str, str]]:
    return [(name, desc) for name, (_, desc) in _registry().items()]


def model_class(name: str) -> type[Model]:
    """The class registered under ``name`` (case-insensitive); an unknown name is a ConfigError."""
    reg = _registry()
    key = name.lower()
    if key not in reg:
        close = difflib.get_close_matches(key, list(reg), n=1, cutoff=0.7)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise ConfigError(f"unknown model {name!r}{hint}; available: {', '.join(reg)} (see `s3rec models`)")
    return reg[key][0]


def build_model(name: str, data: ModelData, cfg) -> Model:
    """A freshly initialised model ``name`` for the dataset described by ``data`` under the settings
    ``cfg`` (a ``TrainConfig``; its ``model`` field is not consulted). Seed torch first for
    reproducible weights."""
    return model_class(name).from_config(data, cfg)
