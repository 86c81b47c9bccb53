"""How much of a packed batch's work is real: the bound on any further packing or attention saving.

For pre-training (S3-Rec's four objectives, the default batches of 100 instances) and SASRec fine-tuning
(batches of 256 users), over the first N batches of a seeded epoch order (fewer where the data has fewer),
it counts:

  slot use        tokens / slots: the share of the [rows x row_len] grid that holds a token; the
                  per-token work (embeddings, projections, FFN, LayerNorm) scales with the slots
  attention use   the scores the mask keeps / (rows x row_len^2): per sequence of length l, l^2 with the
                  bidirectional mask of pre-training, l (l + 1) / 2 with the causal one of fine-tuning

With ``--profile`` it also runs the pre-training steps under ``torch.profiler`` (one thread) and gives the
share of the step's CPU time (all operators' self time) spent in operators with a
``[..., row_len, row_len]`` input (score matrices: the second batched matmul, softmax and its backward, the
mask, attention dropout). Attention's whole cost is larger (the first matmul's inputs are
``[..., row_len, d]``), so an attention that skipped every masked score would save about
``(1 - attention use) x`` this share plus that share of the first matmul.
Usage: python benchmarks/packing_efficiency.py [--configs Beauty:50 LastFM:50 LastFM:200] [--batches 30]
       [--profile]
Writes benchmarks/results/packing_efficiency.json and prints a table.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from s3rec.bench import step_fixture, write_record
from s3rec.config import PretrainConfig, TrainConfig
from s3rec.data import registry
from s3rec.pretraining import Pretrainer


def layout_use(layouts, causal: bool = False) -> dict:
    """Token and attention-score use summed over ``layouts`` (each a :class:`~s3rec.data.packing.Layout`);
    ``causal``: the layouts' masks are causal (a query sees only itself and earlier keys)."""
    tokens = slots = useful = scores = 0
    for lay in layouts:
        n = lay.lengths.long()
        tokens += int(n.sum())
        slots += lay.n_rows * lay.row_len
        useful += int((n * (n + 1) // 2).sum()) if causal else int((n**2).sum())
        scores += lay.n_rows * lay.row_len**2
    return {"tokens": tokens, "slots": slots, "slot_use": tokens / slots,
            "attention_use": useful / scores, "batches": len(layouts)}


def pretrain_layouts(ds, max_len: int, batches: int):
    trainer = Pretrainer(PretrainConfig(dataset=ds.name, max_len=max_len), ds)
    gen = torch.Generator().manual_seed(0)
    order = trainer.epoch_order(gen)[:batches]
    return trainer, gen, order, [trainer.batch(idx, gen).layout for idx in order]


def attention_share(trainer, gen, order, row_len: int) -> float:
    """Share of the profiled steps' self CPU time in operators with a ``[..., row_len, row_len]`` input."""
    from torch.profiler import ProfilerActivity, profile

    for idx in order[:3]:  # warm-up
        trainer.step(idx, gen)
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        for idx in order[3:]:
            trainer.step(idx, gen)
    total = square = 0.0
    for e in prof.key_averages(group_by_input_shape=True):  # self times: each microsecond counted once
        total += e.self_cpu_time_total
        if any(len(s) >= 2 and s[-2:] == [row_len, row_len] for s in e.input_shapes if isinstance(s, list)):
            square += e.self_cpu_time_total
    return square / total


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=["Beauty:50", "LastFM:50", "LastFM:200"],
                   help="DATASET:MAX_LEN configurations")
    p.add_argument("--batches", type=int, default=30)
    p.add_argument("--profile", action="store_true", help="also profile the pre-training steps (one thread)")
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "packing_efficiency.json"))
    args = p.parse_args()
    if args.profile:
        torch.set_num_threads(1)
    rows = []
    for conf in args.configs:
        name, max_len = conf.split(":")
        max_len = int(max_len)
        ds = registry.load(name)
        trainer, gen, order, layouts = pretrain_layouts(ds, max_len, args.batches)
        row = {"step": "pretrain", "dataset": ds.name, "max_len": max_len, **layout_use(layouts)}
        if args.profile:
            row["square_op_time_share"] = attention_share(trainer, gen, order, max_len)
        rows.append(row)
        cfg = TrainConfig(dataset=ds.name, model="sasrec", max_len=max_len).resolved()
        _, _, batches = step_fixture(cfg, ds, args.batches)
        rows.append({"step": "finetune", "dataset": ds.name, "max_len": max_len,
                     **layout_use([b.layout for b in batches], causal=True)})
        for r in rows[-2:]:
            share = f"  [P,P]-op time {r['square_op_time_share']:.1%}" if "square_op_time_share" in r else ""
            print(f"{r['step']:8s} {r['dataset']:8s} max_len {max_len:3d}  slot use {r['slot_use']:.3f}  "
                  f"attention use {r['attention_use']:.3f}{share}", flush=True)
    write_record(
        args.out, "packing_efficiency",
        command=f"python benchmarks/packing_efficiency.py --configs {' '.join(args.configs)} --batches {args.batches}"
        + (" --profile" if args.profile else ""),
        results=rows,
    )


if __name__ == "__main__":
    main()
