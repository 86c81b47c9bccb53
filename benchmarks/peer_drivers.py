"""Child-process drivers for ``benchmarks/peer_recbole.py``: time S3-Rec pre-training in RecBole 1.2.1 or in
the authors' released code (github aHuiWang/CIKM2020-S3Rec), with the peer virtual environment's python.

This file imports nothing from s3rec and contains none of the peers' code: it builds each peer's own
objects and calls each peer's own training loop on a bounded stream of its own batches.

    python peer_drivers.py recbole --data-path DIR [--dataset Beauty] --batches N --warmup W --threads T
    python peer_drivers.py authors --authors-dir DIR --data-dir DIR --batches N --warmup W --threads T

Both print one line ``PEER_RESULT {json}`` last on stdout (the peers print their own logs too).
Run them in an empty working folder (``--workdir``): RecBole writes log/, log_tensorboard/ and saved/
under the current folder and the authors' trainer appends to a log file.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import time


class Stream:
    """The next ``n`` batches of ``it``, with a length (the peers' loops ask for one), counting instances."""

    shuffle = True  # RecBole's _train_epoch reads it (only when distributed)

    def __init__(self, it, n: int, size):
        self.it, self.n, self.size, self.instances = it, n, size, 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        for batch in itertools.islice(self.it, self.n):
            self.instances += self.size(batch)
            yield batch


def timed(run, it, warmup: int, batches: int, size) -> dict:
    """``run(stream)`` on ``warmup`` batches of ``it``, then timed on the next ``batches`` batches."""
    run(Stream(it, warmup, size))
    stream = Stream(it, batches, size)
    t0 = time.perf_counter()
    run(stream)
    seconds = time.perf_counter() - t0
    if stream.instances == 0:
        raise SystemExit("peer_drivers: no batch was timed")
    return {"seconds": seconds, "instances": stream.instances, "batches": batches,
            "instances_per_second": stream.instances / seconds}


def recbole(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    import numpy
    import recbole
    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.sequential_recommender.s3rec import S3Rec
    from recbole.trainer import PretrainTrainer
    from recbole.utils import init_seed

    settings = {  # the paper's pre-training settings, on the data as `s3rec data export` writes them
        "data_path": a.data_path, "checkpoint_dir": os.path.abspath("saved"), "gpu_id": "",
        "load_col": {"inter": ["user_id", "item_id", "timestamp"], "item": ["item_id", "categories"]},
        "user_inter_num_interval": "[0,inf)", "item_inter_num_interval": "[0,inf)",
        "eval_args": {"split": {"LS": "valid_and_test"}, "order": "TO", "group_by": "user", "mode": "full"},
        "MAX_ITEM_LIST_LENGTH": 50, "item_attribute": "categories", "train_stage": "pretrain",
        "hidden_size": 64, "inner_size": 256, "n_layers": 2, "n_heads": 2,
        "hidden_dropout_prob": 0.5, "attn_dropout_prob": 0.5, "hidden_act": "gelu",
        "mask_ratio": 0.2, "aap_weight": 0.2, "mip_weight": 1.0, "map_weight": 1.0, "sp_weight": 0.5,
        "learner": "adam", "learning_rate": 1e-3, "weight_decay": 0.0, "train_batch_size": 100,
        "train_neg_sample_args": None, "seed": 2020, "show_progress": False, "worker": 0,
    }
    sys.argv[1:] = []  # RecBole's Config reads the command line too
    t0 = time.perf_counter()
    config = Config(model="S3Rec", dataset=a.dataset, config_dict=settings)
    init_seed(config["seed"], config["reproducibility"])
    dataset = create_dataset(config)
    train_data, _, _ = data_preparation(config, dataset)
    model = S3Rec(config, train_data._dataset).to(config["device"])
    trainer = PretrainTrainer(config, model)
    setup = time.perf_counter() - t0
    torch.set_num_threads(a.threads)
    # RecBole's own epoch loop: collate (TrainDataLoader), calculate_loss (which rebuilds the four
    # objectives' inputs from the item sequences), backward, Adam step
    epoch = itertools.count()
    r = timed(lambda s: trainer._train_epoch(s, next(epoch), show_progress=False),
              iter(train_data), a.warmup, a.batches, len)
    return {**r, "batch_size": config["train_batch_size"], "epoch_instances": train_data.sample_size,
            "epoch_batches": len(train_data), "epoch_instances_counted_from": "len(TrainDataLoader.dataset), "
            "RecBole's augmented training set (one instance per next-item target)",
            "users": dataset.user_num - 1, "items": dataset.item_num - 1, "attributes": model.n_features,
            "device": str(config["device"]), "setup_seconds": setup, "threads": torch.get_num_threads(),
            "versions": {"recbole": recbole.__version__, "torch": torch.__version__, "numpy": numpy.__version__}}


def authors(a) -> dict:
    import torch

    torch.set_num_threads(a.threads)
    sys.path.insert(0, a.authors_dir)
    import numpy
    from torch.utils.data import DataLoader, RandomSampler

    from datasets import PretrainDataset
    from models import S3RecModel
    from trainers import PretrainTrainer
    from utils import get_item2attribute_json, get_user_seqs_long, set_seed

    # run_pretrain.py's defaults (the paper's settings), CPU
    args = argparse.Namespace(
        data_name=a.dataset, model_name="Pretrain", hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
        hidden_act="gelu", attention_probs_dropout_prob=0.5, hidden_dropout_prob=0.5, initializer_range=0.02,
        max_seq_length=50, lr=0.001, no_cuda=True, cuda_condition=False, seed=42, pre_batch_size=100,
        mask_p=0.2, aap_weight=0.2, mip_weight=1.0, map_weight=1.0, sp_weight=0.5, weight_decay=0.0,
        adam_beta1=0.9, adam_beta2=0.999, log_file=os.path.abspath("Pretrain.txt"))
    t0 = time.perf_counter()
    set_seed(args.seed)
    prefix = os.path.join(a.data_dir, a.dataset)
    user_seq, max_item, long_sequence = get_user_seqs_long(prefix + ".txt")
    args.item2attribute, attribute_size = get_item2attribute_json(prefix + "_item2attributes.json")
    args.item_size, args.mask_id, args.attribute_size = max_item + 2, max_item + 1, attribute_size + 1
    model = S3RecModel(args=args)
    trainer = PretrainTrainer(model, None, None, None, args)
    data = PretrainDataset(args, user_seq, long_sequence)
    loader = DataLoader(data, sampler=RandomSampler(data), batch_size=args.pre_batch_size)
    setup = time.perf_counter() - t0
    torch.set_num_threads(a.threads)
    # their epoch loop: __getitem__ per instance + default collate, model.pretrain's four losses,
    # backward, Adam step, the four .item() calls
    epoch = itertools.count()
    r = timed(lambda s: trainer.pretrain(next(epoch), s), iter(loader), a.warmup, a.batches, lambda b: len(b[0]))
    return {**r, "batch_size": args.pre_batch_size, "epoch_instances": len(data), "epoch_batches": len(loader),
            "epoch_instances_counted_from": "len(PretrainDataset): every prefix of each user's last 50 "
            "training items", "users": len(user_seq), "items": max_item, "attributes": attribute_size,
            "device": str(trainer.device), "setup_seconds": setup, "threads": torch.get_num_threads(),
            "versions": {"torch": torch.__version__, "numpy": numpy.__version__}}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("peer", choices=["recbole", "authors"])
    p.add_argument("--dataset", default="Beauty")
    p.add_argument("--data-path", help="recbole: the folder holding DATASET/DATASET.inter and .item")
    p.add_argument("--authors-dir", help="authors: their checkout (datasets.py, models.py, ...)")
    p.add_argument("--data-dir", help="authors: the folder holding DATASET.txt, DATASET_item2attributes.json")
    p.add_argument("--batches", type=int, default=300)
    p.add_argument("--warmup", type=int, default=20)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--workdir", help="run in this folder (default: the current one)")
    a = p.parse_args()
    for k in ("data_path", "authors_dir", "data_dir"):  # before changing folder
        if getattr(a, k):
            setattr(a, k, os.path.abspath(getattr(a, k)))
    if a.workdir:
        os.chdir(a.workdir)
    result = recbole(a) if a.peer == "recbole" else authors(a)
    result["python"] = sys.executable
    print("PEER_RESULT " + json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
