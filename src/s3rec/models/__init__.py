"""The model registry: name -> (class, one-line description). Later models join here.

A registered model is built as ``cls(n_items, n_attributes, EncoderConfig)`` and provides
``encode(SequenceBatch) -> [R, P, D]`` hidden states and ``output_embeddings() -> [n_items + 2, D]``.
"""

from __future__ import annotations

from ..errors import ConfigError


def _registry():
    from .sasrec import SASRec

    return {
        "sasrec": (SASRec, "SASRec: causal self-attention over the item sequence, trained from scratch (S3-Rec's fine-tuning model)"),
    }


def model_names() -> list[str]:
    return list(_registry())


def describe_models() -> list[tuple[str, str]]:
    return [(name, desc) for name, (_, desc) in _registry().items()]


def build_model(name: str, n_items: int, n_attributes: int, encoder_cfg):
    reg = _registry()
    key = name.lower()
    if key not in reg:
        raise ConfigError(f"unknown model {name!r}; available: {', '.join(reg)} (see `s3rec models`)")
    return reg[key][0](n_items, n_attributes, encoder_cfg)
