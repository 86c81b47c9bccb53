"""Where a pre-training's segment-prediction (SP) logits lie: 5/50/95% quantiles of the positive and
negative scores <W_sp(c), p> and <W_sp(c), n> at saved epochs, on a fixed random sample of instances.

Both far below zero (or both far above) means SP's sigmoid-of-sigmoids loss sits at ln 2 with no
gradient (see the README's pre-training section).
Usage: python scripts/sp_saturation.py RUN_DIR EPOCH [EPOCH ...] [--instances 500]
(RUN_DIR is a pre-training folder such as runs/reproduce/pretrain/Beauty-train_fraction=0.4-seed42;
the dataset is read from S3REC_DATA_DIR.)
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from s3rec.config import PretrainConfig, config_from_json
from s3rec.data import registry
from s3rec.data.corruption import pretrain_batch
from s3rec.models.heads import sp_logits
from s3rec.pretraining import Pretrainer
from s3rec.transfer import read_pretrained


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("run", type=Path)
    p.add_argument("epochs", nargs="+", type=int)
    p.add_argument("--instances", type=int, default=500)
    args = p.parse_args()
    cfg = config_from_json((args.run / "config.json").read_text(), PretrainConfig)
    trainer = Pretrainer(cfg, registry.load(cfg.dataset))
    model = trainer.model.eval()
    qs = torch.tensor([0.05, 0.5, 0.95])
    print("| epoch | positive logit 5/50/95% | negative logit 5/50/95% |\n|---|---|---|")
    for epoch in args.epochs:
        state, _ = read_pretrained(args.run / f"pretrain-epoch-{epoch}.pt")
        model.load_state_dict(state)
        gen = torch.Generator().manual_seed(0)  # the same instances and corruption at every epoch
        idx = torch.randperm(len(trainer.instances), generator=gen)[: args.instances]
        batch = pretrain_batch(trainer.st, trainer.instances, idx, trainer.pool, gen, cfg.mask_p,
                               cfg.negative_sampler, True, True, cfg.max_len, cfg.packed, cfg.unidirectional)
        with torch.no_grad():
            _, h_sp = model.slot_states(batch)
            cells = [" / ".join(f"{v:.1f}" for v in torch.quantile(s, qs).tolist()) for s in sp_logits(model, h_sp)]
        print(f"| {epoch} | {cells[0]} | {cells[1]} |")


if __name__ == "__main__":
    main()
