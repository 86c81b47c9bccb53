"""``s3rec tune`` (a hyper-parameter search on validation: :mod:`s3rec.tune`) and ``s3rec presets``."""

from __future__ import annotations

import json
import textwrap

from ..errors import ConfigError, S3RecError
from .common import RAW, add_data_dir, add_protocol, log, non_negative_int, positive_int, verb


def add_parsers(sub) -> None:
    """``s3rec tune`` (a hyper-parameter search on validation) and ``s3rec presets``."""
    from ..tune.space import describe_spaces

    spaces = "\n".join(f"  {n:<12} {desc}" for n, desc in describe_spaces())
    tu = sub.add_parser(
        "tune",
        help="hyper-parameter search (optuna) on the validation split; resumable",
        description="Search fine-tuning settings (and optionally pre-training settings) with optuna's TPE sampler: each "
        "trial fine-tunes with sampled settings and scores the best epoch's validation metric (MRR sampled, NDCG@20 "
        "full); test is never evaluated. The study lives in --study-dir (a journal file, no database): running the "
        "same command again continues it, --trials being the total; a trial cut short is retried from its checkpoint. "
        "best.json holds the best trial; --save-preset writes it as a preset for `s3rec train/run --preset FILE`.",
        epilog="search spaces (--space NAME, or a .toml file of the same form: see s3rec/tune/space.py):\n" + spaces
        + "\n\nexamples:\n"
        "  s3rec tune --dataset LastFM --init runs/LastFM-pretrain-seed42/pretrain-epoch-150.pt --trials 30\n"
        "  s3rec tune --dataset LastFM --trials 30 --set epochs=50      SASRec from scratch, shorter trials\n"
        "  s3rec tune --dataset LastFM --space pretrain --pretrain-epochs 50 --trials 40\n"
        "  s3rec tune --dataset LastFM --init CKPT --trials 30 --save-preset lastfm-tuned --preset-dir presets/\n"
        "  s3rec train --dataset LastFM --init CKPT --preset presets/lastfm-tuned.toml",
        formatter_class=RAW,
    )
    tu.add_argument("--dataset", required=True, help="registered name or file stem")
    add_data_dir(tu)
    tu.add_argument("--trials", type=non_negative_int, required=True,
                    help="total number of finished trials wanted in the study (earlier runs count)")
    tu.add_argument("--study-dir", help="study folder (default runs/tune/DATASET-MODEL-PROTOCOL-SPACE)")
    tu.add_argument("--space", default="finetune", metavar="NAME|FILE", help="search space (default finetune)")
    tu.add_argument("--init", help="a fixed pre-trained checkpoint every trial fine-tunes from")
    tu.add_argument("--pretrain", action="store_true",
                    help="pre-train S3-Rec first (once per distinct pre-training setting, cached in the study folder)")
    tu.add_argument("--pretrain-epochs", type=positive_int, help="pre-training epochs (implies --pretrain)")
    tu.add_argument("--pretrain-set", dest="pretrain_sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a fixed pre-training setting (implies --pretrain)")
    tu.add_argument("--model", help="model name (default sasrec)")
    add_protocol(tu, help="default sampled")
    tu.add_argument("--seed", type=int, help="training seed of every trial (default 42)")
    tu.add_argument("--sampler-seed", type=int, default=0, help="seed of the TPE sampler (default 0)")
    tu.add_argument("--device", help="cpu (default) or cuda")
    tu.add_argument("--set", dest="sets", action="append", default=[], metavar="KEY=VALUE",
                    help="a fixed fine-tuning setting, e.g. --set epochs=50 (not one the space searches)")
    tu.add_argument("--preset", metavar="NAME|FILE", help="base settings from a preset; --set wins over it")
    tu.add_argument("--save-preset", metavar="NAME", help="write the best trial as the preset file PRESET_DIR/NAME.toml")
    tu.add_argument("--preset-dir", metavar="DIR", help="folder for --save-preset (default: the study folder)")
    tu.add_argument("--verbose", action="store_true", help="log every epoch of every trial")

    ps = verb(
        sub, "presets",
        help="list the shipped presets, or show one",
        description="Presets are named configurations (TOML files in s3rec/presets/) that `s3rec train --preset NAME` "
        "and `s3rec run --preset NAME` start from; flags and --set win over them. `--preset FILE.toml` takes any "
        "preset file, such as one written by `s3rec tune --save-preset`.",
        examples=(
            "s3rec presets",
            "s3rec presets s3rec-plus",
            "s3rec train --dataset LastFM --preset s3rec-plus",
        ),
    )
    ps.add_argument("name", nargs="?", metavar="NAME|FILE", help="show this preset's settings")


def cmd_tune(args) -> int:
    from ..config import parse_sets
    from ..extras import require
    from ..presets import load_preset
    from ..tune.space import load_space
    from ..tune.presets import save_best_preset
    from ..tune.study import Tuner, make_setup

    require("optuna", "tune", "s3rec tune")
    ft_sets = {k: getattr(args, k) for k in ("model", "protocol", "seed", "device", "init") if getattr(args, k) is not None}
    ft_sets.update(parse_sets(args.sets))
    pre_sets = parse_sets(args.pretrain_sets)
    if args.pretrain_epochs is not None:
        pre_sets["epochs"] = args.pretrain_epochs
    preset = load_preset(args.preset) if args.preset else None
    if preset and preset.pretrained and not (args.init or args.pretrain or pre_sets):
        raise ConfigError(f"preset {preset.name} fine-tunes from a pre-training: give --init CKPT (e.g. the "
                          f"checkpoint `s3rec train --preset {preset.name}` made under runs/pretrain/) or --pretrain")
    setup = make_setup(args.dataset, load_space(args.space), ft_sets, pre_sets, preset, args.pretrain, args.study_dir,
                       args.data_dir, args.sampler_seed)
    best = Tuner(setup, log=log, verbose=args.verbose).run(args.trials)
    if best is None:
        raise S3RecError(f"no trial of the study in {setup.study_dir} completed (see the lines above)")
    params = ", ".join(f"{k}={v}" for section in best["params"].values() for k, v in section.items())
    log(f"best: trial {best['trial']}, valid {best['metric']} {best['value']:.4f}: {params}\n"
         f"  {setup.study_dir / 'best.json'}; its test score, once chosen: s3rec evaluate {best['checkpoint']} "
         f"--protocol {best['protocol']}")
    if args.save_preset:
        path = save_best_preset(best, args.save_preset, args.preset_dir or setup.study_dir)
        log(f"preset written: {path} (use it with --preset {path})")
    print(json.dumps(best, indent=2))
    return 0


def cmd_presets(args) -> int:
    from ..presets import describe_presets, load_preset

    if args.name:
        preset = load_preset(args.name)
        print(f"{preset.name}: {preset.description}")
        if preset.pretrained:
            print("  fine-tunes from an S3-Rec pre-training with the [pretrain] settings: `s3rec train --preset "
                  f"{preset.name}` pre-trains first (once; reused by every later run with the same settings)")
        for section in ("finetune", "pretrain"):
            table = getattr(preset, section)
            if table:
                print(f"  [{section}] " + ", ".join(f"{k}={v}" for k, v in table.items()))
        return 0
    rows = describe_presets()
    width = max([len(n) for n, _ in rows] + [6])
    for name, desc in rows:
        print(f"{name:<{width}}  {textwrap.shorten(desc, 100)}")
    return 0
