"""Pre-training for other models (the paper's Fig. 3): causal (unidirectional) pre-training, and
initialising a non-encoder model's item embeddings from a pre-training checkpoint."""

from __future__ import annotations

import json

import pytest
import torch

from conftest import synthetic_sequences, write_dataset
from s3rec import checkpoint
from s3rec.cli import main
from s3rec.data.batches import SequenceTensors
from s3rec.data.pretrain import make_instances, pretrain_batch, segment_pool
from s3rec.data.store import load_files
from s3rec.models.encoder import EncoderConfig
from s3rec.models.s3rec import S3RecPretrain
from s3rec.pretrain import init_for_finetuning

SMALL = ["--set", "hidden_size=16", "--set", "batch_size=20"]


@pytest.mark.parametrize("causal", [False, True])
def test_causal_pretraining_never_looks_ahead(tmp_path, causal):
    seqs = synthetic_sequences(n_users=20, n_items=40, min_len=5, max_len=12, seed=1)
    folder = write_dataset(tmp_path, "T", seqs)
    ds = load_files("T", folder / "T.txt", None)
    st = SequenceTensors(ds)
    inst = make_instances(st, 12)
    idx = torch.arange(30)
    batch = pretrain_batch(st, inst, idx, segment_pool(st), torch.Generator().manual_seed(0), max_len=12,
                           causal=causal)
    torch.manual_seed(0)
    model = S3RecPretrain(ds.n_items, 0, EncoderConfig(hidden_size=16, max_len=12, hidden_dropout=0, attn_dropout=0)).eval()
    items = batch.items.clone()
    with torch.no_grad():
        h = model(items, batch.layout.positions, batch.layout.mask)
        row = int((batch.items > 0).sum(1).argmax())  # a row with several tokens
        slots = (batch.items[row] > 0).nonzero().squeeze(1)
        changed = items.clone()
        changed[row, slots[-1]] = 1 if items[row, slots[-1]] != 1 else 2  # change the row's last token
        h2 = model(changed, batch.layout.positions, batch.layout.mask)
    earlier = slots[:-1]
    same = torch.allclose(h[row, earlier], h2[row, earlier], atol=1e-6)
    assert same == causal  # bidirectional states see the change, causal ones cannot


def test_causal_pretraining_then_sasrec_and_caser_from_it(tiny_data, tmp_path, capsys):
    pre = tmp_path / "pre"
    assert main(["pretrain", "--dataset", "Tiny", "--quiet", *SMALL, "--epochs", "1", "--set", "causal=true",
                 "--out", str(pre)]) == 0
    ckpt = pre / "pretrain-epoch-1.pt"
    assert main(["train", "--dataset", "Tiny", "--quiet", "--set", "hidden_size=16", "--epochs", "1",
                 "--init", str(ckpt), "--out", str(tmp_path / "sasrec")]) == 0
    # Caser: only the item embeddings come from the checkpoint; the rest is its own initialisation
    from s3rec.data import registry
    from s3rec.config import TrainConfig
    from s3rec.train import build

    ds = registry.load("Tiny", quiet=True)
    enc = init_for_finetuning(ckpt, ds)
    cfg = TrainConfig(dataset="Tiny", model="caser", hidden_size=16).validate()
    model, _ = build(cfg, ds)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    model.load_pretrained(enc, "--init")
    after = model.state_dict()
    assert torch.equal(after["item_embeddings.weight"], enc["item_embeddings.weight"])
    assert all(torch.equal(before[k], after[k]) for k in before if k != "item_embeddings.weight")
    assert main(["train", "--dataset", "Tiny", "--quiet", "--model", "caser", "--set", "hidden_size=16",
                 "--epochs", "1", "--init", str(ckpt), "--out", str(tmp_path / "caser")]) == 0
    saved = checkpoint.load(tmp_path / "caser" / "checkpoint.pt")
    assert json.loads(saved["config"])["init"] == str(ckpt)


def test_init_errors(tiny_data, tmp_path, capsys):
    pre = tmp_path / "pre"
    assert main(["pretrain", "--dataset", "Tiny", "--quiet", *SMALL, "--epochs", "1", "--out", str(pre)]) == 0
    ckpt = str(pre / "pretrain-epoch-1.pt")
    assert main(["train", "--dataset", "Tiny", "--quiet", "--model", "poprec", "--init", ckpt,
                 "--out", str(tmp_path / "p")]) == 2
    assert "needs a trained model" in capsys.readouterr().err
    # a table of the wrong width (hidden size 32 against the checkpoint's 16) is refused, not ignored
    assert main(["train", "--dataset", "Tiny", "--quiet", "--model", "caser", "--set", "hidden_size=32",
                 "--init", ckpt, "--out", str(tmp_path / "c")]) == 2
    assert "do not fit" in capsys.readouterr().err
