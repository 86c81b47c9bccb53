"""``s3rec train``, ``pretrain``, ``run`` and ``evaluate``: thin verbs over :mod:`s3rec.api`."""

from __future__ import annotations

import dataclasses
import json
import os
import sys
from pathlib import Path

from ..errors import ConfigError, S3RecError
from .common import (RAW, add_data_dir, add_protocol, add_quiet, add_run_folder_args, add_sets, add_tensorboard,
                     add_train_args, folder_dataset, log, protocols, resumed_config, run_log, train_config, verb)

EXAMPLES = """
examples:
  s3rec train --dataset Beauty                 SASRec, sampled protocol (the paper's Table 2)
  s3rec train --dataset Beauty --protocol full --out runs/beauty-full
  s3rec train --out runs/beauty-full --resume  continue an interrupted run
  s3rec train --dataset LastFM --preset s3rec-plus   pre-trains first (once, shared), then fine-tunes
"""


def add_parsers(sub, defaults) -> None:
    t = sub.add_parser(
        "train",
        help="train and evaluate a model (SASRec by default)",
        description="Fine-tune a next-item model with the paper's recipe: Adam, batches of 256 users, "
        "validation every epoch, early stopping (patience 10) on MRR (sampled) or NDCG@20 (full), then "
        "the best checkpoint evaluated once on test. A checkpoint is written every epoch; --resume "
        "continues an interrupted run to the same result.",
        epilog=EXAMPLES,
        formatter_class=RAW,
    )
    add_train_args(t, defaults)
    add_tensorboard(t)
    add_run_folder_args(t, "runs/DATASET-MODEL-PROTOCOL-seedSEED")
    t.add_argument("--init", help="start from a pre-training checkpoint (ours or the authors' state_dict): SASRec "
                   "takes the embeddings, LayerNorm and encoder (S3-Rec); other models their item embeddings only")
    t.add_argument("--pretrain-dir", metavar="DIR", default="runs/pretrain",
                   help="where a preset that fine-tunes from a pre-training (`pretrained = true`, e.g. s3rec-plus) "
                   "keeps it, one folder per distinct pre-training setting: a finished one is reused, an "
                   "interrupted one resumed (default runs/pretrain; --init skips this)")

    pt = verb(
        sub, "pretrain",
        help="S3-Rec self-supervised pre-training (AAP, MIP, MAP, SP)",
        description="Pre-train the bidirectional encoder with the four S3-Rec objectives on every prefix of "
        "every user's training part: random batches of 100, fresh corruption each epoch, joint loss "
        "0.2*AAP + 1*MIP + 1*MAP + 0.5*SP. Writes pretrain-epoch-K.pt every 10 epochs and a resumable "
        "checkpoint.pt every epoch. Ablations: --set sp_weight=0 (w/o SP) and so on.",
        examples=(
            "s3rec pretrain --dataset LastFM --epochs 30",
            "s3rec pretrain --dataset Beauty --out runs/beauty-pre --resume",
            "s3rec pretrain --dataset Beauty --set sp_weight=0          # the paper's w/o SP",
            "s3rec train --dataset Beauty --init runs/beauty-pre/pretrain-epoch-150.pt",
            "torchrun --standalone --nproc_per_node 4 -m s3rec pretrain --dataset Beauty   # data-parallel",
            '    (same summed gradient per batch; docs/distributed.md)',
        ),
    )
    pt.add_argument("--dataset",
                    help="registered name or file stem (default LastFM; with --data-dir: its only dataset)")
    add_data_dir(pt)
    pt.add_argument("--epochs", type=int, help="epochs (default: 150 Beauty/Toys/LastFM, 100 Sports/Yelp)")
    pt.add_argument("--seed", type=int, help="random seed (default 42)")
    pt.add_argument("--device", help="cpu (default) or cuda")
    pt.add_argument("--init", help="continue from a pre-training checkpoint (ours or the authors' state_dict)")
    add_sets(pt, help="other settings: lr, batch_size, mask_p, aap_weight, mip_weight, map_weight, sp_weight, "
             "segment_pool, negative_sampler, save_every, amp, packed, hidden_size, causal=true "
             "(left-to-right attention), backbone=gru4rec|gru4rec_f|sasrec_f (pre-train that model's "
             "own encoder; fine-tune it with --model NAME --init CKPT), ...")
    add_run_folder_args(pt, "runs/DATASET-pretrain-seedSEED")
    add_quiet(pt)
    add_tensorboard(pt)

    r = verb(
        sub, "run",
        help="S3-Rec end to end: pre-train, fine-tune, evaluate test",
        description="Pre-train S3-Rec, fine-tune SASRec from the last pre-training checkpoint, evaluate test "
        "once, and print the metrics beside the paper's. OUT/pretrain and OUT/finetune are ordinary run "
        "directories; --resume continues whichever stage was interrupted.",
        examples=(
            "s3rec run --dataset LastFM --pretrain-epochs 20",
            "s3rec run --dataset Beauty --resume",
        ),
    )
    r.add_argument("--dataset", help="registered name or file stem (default LastFM; with --data-dir: its only dataset)")
    add_data_dir(r)
    r.add_argument("--pretrain-epochs", type=int, help="pre-training epochs (default: the dataset's, see pretrain)")
    add_protocol(r, help="default sampled")
    r.add_argument("--seed", type=int, help="random seed for both stages (default 42)")
    r.add_argument("--device", help="cpu (default) or cuda")
    add_sets(r, "pretrain_sets", "--pretrain-set", "a pre-training setting (see `s3rec pretrain --help`)")
    add_sets(r, help="a fine-tuning setting")
    add_run_folder_args(r, "runs/DATASET-s3rec-PROTOCOL-seedSEED")
    add_quiet(r)
    add_tensorboard(r)
    r.add_argument("--preset", metavar="NAME|FILE", help="fine-tuning and pre-training settings from a preset (see "
                   "`s3rec presets`); flags, --set and --pretrain-set win over it")

    e = verb(sub, "evaluate", help="evaluate a saved model", examples=(
        "s3rec evaluate runs/beauty-full    # the run folder: its own protocol and dataset, on test",
        "s3rec evaluate runs/beauty-full/best.pt --dataset Beauty --protocol sampled",
        "s3rec evaluate runs/beauty-full/best.pt --protocol full --split valid --json"))
    e.add_argument("checkpoint", help="a run folder, or its best.pt or checkpoint.pt")
    e.add_argument("--dataset", help="dataset (default: the one the model was trained on)")
    add_data_dir(e)
    e.add_argument("--protocol", choices=protocols(), help="default: the protocol the run was trained with")
    e.add_argument("--split", default="test", choices=["valid", "test"])
    e.add_argument("--device", default="cpu")
    e.add_argument("--json", action="store_true", help="print JSON")


def _finetune(cfg, data_dir, out: Path, resume: bool, overwrite: bool, rlog, paper_model: str, world=None) -> dict:
    """Load the data, fine-tune (:func:`s3rec.api.run_finetuning`), print ours beside the paper's numbers;
    ``rlog``: the run's :class:`s3rec.loop.RunLog` (these lines are in its log.txt too); ``world``: this
    rank under torchrun (None: one process)."""
    from ..api import run_finetuning
    from ..data import registry
    from ..paper import comparison_table

    ds = registry.load(cfg.dataset, data_dir)  # the sampled protocol's negatives: once every input is checked
    results = run_finetuning(cfg, ds, out, resume, overwrite, progress=not rlog.quiet, log=rlog, world=world)
    if world is not None and not world.main:
        return results
    rlog(f"test metrics, {ds.name}, {paper_model}, {cfg.protocol} protocol (paper: Zhou et al. 2020)\n"
        + comparison_table(results["test"], cfg.protocol, paper_model, ds.name))
    return results


def _preset_pretraining(args, cfg):
    """``cfg`` fine-tuning from the pre-training a ``pretrained = true`` preset asks for, made or reused in
    its shared folder under --pretrain-dir (:func:`s3rec.presets.pretraining_for`)."""
    from ..data import registry
    from ..presets import load_preset, pretraining_for

    if cfg.init or not getattr(args, "preset", None):
        return cfg
    preset = load_preset(args.preset)
    if not preset.pretrained:
        return cfg
    ds = registry.load(cfg.dataset, args.data_dir)
    final = pretraining_for(preset, cfg, ds, Path(args.pretrain_dir), progress=not args.quiet, log=run_log(args))
    return dataclasses.replace(cfg, init=str(final))


def cmd_train(args) -> int:
    from .. import distributed
    from ..api import check_run_dir, default_run_dir
    from ..config import config_from_json

    folder_dataset(args)
    cfg = train_config(args)
    rlog = run_log(args)
    out = Path(args.out) if args.out else default_run_dir(cfg)
    cfg = resumed_config(args, out, lambda a, text: train_config(a, config_from_json(text))) or cfg
    if check_run_dir(out, args.resume, args.overwrite):
        log(f"{out} already finished; results:")
        print((out / "results.json").read_text().strip())
        return 0
    cfg = _preset_pretraining(args, cfg)  # after the run folder's checks: a resumed run keeps its init
    paper_model = "s3rec" if cfg.init and cfg.model == "sasrec" else cfg.model
    world, device = distributed.from_env(cfg.device)  # launched by torchrun: one rank of several
    try:
        world.barrier()  # every rank has checked the run directory before rank 0 writes to it
        results = _finetune(dataclasses.replace(cfg, device=device), args.data_dir, out, args.resume,
                            args.overwrite, rlog, paper_model, world)
    finally:
        distributed.close(world)
    if world.main:
        print(json.dumps({"test": results["test"], "best_epoch": results["best_epoch"], "epochs": results["epochs"],
                          "out": str(out)}, indent=2))
    if world.active:
        _exit_rank()
    return 0


def _pretrain_config(args, base=None):
    from ..config import PretrainConfig, parse_sets, with_overrides

    overrides = {k: getattr(args, k) for k in ("dataset", "epochs", "seed", "device", "init") if getattr(args, k, None) is not None}
    overrides.update(parse_sets(args.sets))
    return with_overrides(base or PretrainConfig(), overrides).validate()


def _pretrain(cfg, ds, out: Path, resume: bool, overwrite: bool, rlog, world=None) -> dict:
    """Pre-train ``cfg`` on the loaded dataset ``ds`` into ``out`` (``--overwrite`` clears it first)."""
    from ..config import PretrainConfig
    from ..distributed import World
    from ..loop import clear_run_dir
    from ..pretraining import pretrain
    from ..transfer import read_pretrained

    world = world or World()
    cfg = dataclasses.replace(cfg, dataset=ds.name)
    init_state = None
    if cfg.init and not (resume and (out / "checkpoint.pt").is_file()):
        init_state, _ = read_pretrained(cfg.init)
    if overwrite and not resume and world.main:
        clear_run_dir(out, PretrainConfig)
    world.barrier()
    return pretrain(cfg, ds, out, resume=resume, progress=not rlog.quiet, log=rlog, init_state=init_state, world=world)


def cmd_pretrain(args) -> int:
    from .. import distributed
    from ..api import check_run_dir
    from ..data import registry
    from ..config import PretrainConfig, config_from_json

    folder_dataset(args)
    cfg = _pretrain_config(args)
    rlog = run_log(args)
    out = Path(args.out) if args.out else Path("runs") / f"{cfg.dataset}-pretrain-seed{cfg.seed}"
    cfg = resumed_config(args, out, lambda a, text: _pretrain_config(a, config_from_json(text, PretrainConfig))) or cfg
    check_run_dir(out, args.resume, args.overwrite, PretrainConfig)
    world, device = distributed.from_env(cfg.device)  # launched by torchrun: one rank of several
    try:
        world.barrier()  # every rank has checked the run directory before rank 0 writes to it
        ds = registry.load(cfg.dataset, args.data_dir)
        summary = _pretrain(dataclasses.replace(cfg, device=device), ds, out, args.resume,
                            args.overwrite, rlog, world)
    finally:
        distributed.close(world)
    if world.main:
        print(json.dumps({**summary, "out": str(out)}, indent=2))
    if world.active:
        _exit_rank()
    return 0


def _exit_rank() -> None:
    """Leave a torchrun rank without C++ static destructors: with torch 2.13's gloo, a rank's exit
    aborted ("terminate called without an active exception", after the last Python frame) in 8 of ~120
    torchrun runs on 2026-11-27; none in 44 runs since this exit."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)


def cmd_run(args) -> int:
    """Pre-train, fine-tune from the last pre-training checkpoint, evaluate test: one command."""
    from ..api import check_run_dir
    from ..config import PretrainConfig, TrainConfig, config_from_json, parse_sets, with_overrides
    from ..data.registry import registered
    from ..presets import apply_finetune, apply_pretrain, load_preset

    def given(pairs: dict, sets: list[str]) -> dict:
        return {**{k: v for k, v in pairs.items() if v is not None}, **parse_sets(sets)}

    pre_log, ft_log = run_log(args), run_log(args)
    folder_dataset(args)
    info = registered(args.dataset or PretrainConfig.dataset)
    pre_given = given({"dataset": info.name if info else args.dataset, "seed": args.seed, "device": args.device,
                       "epochs": args.pretrain_epochs}, args.pretrain_sets)
    ft_given = given({"seed": args.seed, "device": args.device, "protocol": args.protocol}, args.sets)
    preset = load_preset(args.preset) if args.preset else None
    pre = with_overrides(apply_pretrain(PretrainConfig(), preset), pre_given).validate()
    protocol = ft_given.get("protocol", "sampled")
    out = Path(args.out) if args.out else Path("runs") / f"{pre.dataset}-s3rec-{protocol}-seed{pre.seed}"
    pre_json, ft_json = out / "pretrain" / "config.json", out / "finetune" / "config.json"
    if args.resume and pre_json.is_file():  # settings not given now come from the run being resumed
        pre = with_overrides(apply_pretrain(config_from_json(pre_json.read_text(), PretrainConfig), preset),
                             pre_given).validate()
    if check_run_dir(out / "finetune", args.resume, args.overwrite):
        log(f"{out} already finished; results:")
        print((out / "finetune" / "results.json").read_text().strip())
        return 0
    if not args.resume and out.exists() and any(out.iterdir()) and not args.overwrite:
        raise S3RecError(f"run directory {out} is not empty: use --resume to continue it, --overwrite to replace it, or --out")
    check_run_dir(out / "pretrain", args.resume, args.overwrite, PretrainConfig)
    model = with_overrides(apply_finetune(TrainConfig(), preset), ft_given).model
    if pre.backbone not in ("s3rec", model):  # found out now, not after the pre-training
        raise ConfigError(f"the pre-trained backbone is {pre.backbone} but the model to fine-tune is {model}: "
                          f"add --set model={pre.backbone}")
    from ..data import registry
    from ..data.store import check_trainable

    ds = registry.load(pre.dataset, args.data_dir)
    check_trainable(ds)  # before the pre-training, not after it
    summary = _pretrain(pre, ds, out / "pretrain", args.resume, args.overwrite, pre_log)
    shared = ("dataset", "seed", "device", "hidden_size", "n_layers", "n_heads", "max_len")
    ft_base = dataclasses.replace(apply_finetune(TrainConfig(), preset), **{k: getattr(pre, k) for k in shared},
                                  init=summary["checkpoint"])
    if args.resume and ft_json.is_file():
        ft_base = apply_finetune(config_from_json(ft_json.read_text()), preset)
    ft = with_overrides(ft_base, ft_given).validate()
    results = _finetune(ft, args.data_dir, out / "finetune", args.resume, args.overwrite, ft_log, "s3rec")
    print(json.dumps({"test": results["test"], "best_epoch": results["best_epoch"], "pretrain_epochs": summary["epochs"],
                      "out": str(out)}, indent=2))
    return 0


def cmd_evaluate(args) -> int:
    from ..api import evaluate_checkpoint

    metrics, info, ds = evaluate_checkpoint(Path(args.checkpoint), args.dataset, args.protocol, args.split,
                                            args.device, args.data_dir, log=log)
    if args.json:
        print(json.dumps({"metrics": metrics, **info}))
    else:
        print(f"{ds.name} {args.split} ({info['protocol']}, {info['users']} users)")
        for k, v in metrics.items():
            print(f"  {k:<8} {v:.4f}")
        if "targets_in_history" in info:
            print(f"  targets already in the history (certain misses): {info['targets_in_history']}")
    return 0
