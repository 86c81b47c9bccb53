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
from s3rec.data.corruption import make_instances, pretrain_batch, segment_pool
from s3rec.data.store import load_files
from s3rec.models.encoder import EncoderConfig
from s3rec.models.s3rec import S3RecPretrain
from s3rec.transfer import init_for_finetuning, load_pretrained

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

    ds = registry.load("Tiny")
    enc = init_for_finetuning(ckpt, ds)
    cfg = TrainConfig(dataset="Tiny", model="caser", hidden_size=16).validate()
    model, _ = build(cfg, ds)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    load_pretrained(model, enc, "--init")
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


# ---- other models' encoders pre-trained with the objectives (``backbone``) ----------------------

BACKBONES = ["gru4rec", "gru4rec_f", "sasrec_f"]


def _backbone_setup(tmp_path, name, packed=True):
    from s3rec.config import PretrainConfig, with_overrides
    from s3rec.models.heads import LossWeights
    from s3rec.models.attributes import ItemAttributes
    from s3rec.pretraining import pretrain_model

    seqs = synthetic_sequences(n_users=25, n_items=60, min_len=4, max_len=14, seed=3)
    attrs = {i: [1 + i % 4, 1 + (i * 3) % 7] for i in range(1, 61) if i % 3}
    folder = write_dataset(tmp_path, "B", seqs, attrs)
    ds = load_files("B", folder / "B.txt", folder / "B_item2attributes.json")
    cfg = with_overrides(PretrainConfig(dataset="B"), {"backbone": name, "hidden_size": 16, "max_len": 12,
                                                      "hidden_dropout": 0.0, "attn_dropout": 0.0})
    torch.manual_seed(0)
    model = pretrain_model(cfg, ds)
    st = SequenceTensors(ds)
    batch = pretrain_batch(st, make_instances(st, 12), torch.arange(40), segment_pool(st), torch.Generator().manual_seed(1),
                           max_len=12, packed=packed, causal=cfg.unidirectional)
    return ds, model, batch, ItemAttributes.of(ds), LossWeights()


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_losses_do_not_depend_on_the_packing(tmp_path, name):
    from s3rec.models.heads import weighted_total

    results = []
    for packed in (True, False):
        ds, model, batch, attrs, weights = _backbone_setup(tmp_path / str(packed), name, packed)
        terms = model.losses(batch, attrs, weights)
        weighted_total(terms, weights).backward()
        assert set(terms) == {"aap", "mip", "map", "sp"} and all(torch.isfinite(v) for v in terms.values())
        results.append((terms, {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}))
    (t1, g1), (t2, g2) = results
    for k in t1:
        torch.testing.assert_close(t1[k], t2[k], rtol=1e-5, atol=1e-4)
    assert set(g1) == set(g2) and any(k.startswith("backbone.") for k in g1)
    for k in g1:
        torch.testing.assert_close(g1[k], g2[k], rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_states_are_each_sequence_read_alone_left_to_right(tmp_path, name):
    from s3rec.data.packing import make_layout

    ds, model, batch, _, _ = _backbone_setup(tmp_path, name)
    model.eval()
    lay = batch.layout
    flat = batch.items.reshape(-1)

    def alone(tokens):  # the backbone's states for one sequence in a batch of its own
        one = make_layout(torch.tensor([len(tokens)]), 12, causal=True, mask_value=-1e8, packed=False)
        grid = torch.zeros(1, 12, dtype=torch.long)
        grid[0, 12 - len(tokens):] = tokens
        return model.backbone.position_states(type(batch)(one, grid, 1, 0))

    with torch.no_grad():
        h, h_sp = model.slot_states(batch)
        # every sequence of the batch (masked prefixes and SP sequences alike) as if run alone
        for seq in range(len(lay.lengths)):
            slots = lay.token_slot[lay.token_seq == seq]
            torch.testing.assert_close(h[slots], alone(flat[slots]), rtol=1e-5, atol=1e-5)
        last = lay.last_slot.view(-1, batch.n_instances)[1:].reshape(-1)  # the SP sequences' last tokens
        torch.testing.assert_close(h_sp, h[last])
        # left to right: changing a middle token leaves the earlier states alone and moves the later ones
        seq = int(torch.argmax(lay.lengths[: batch.n_instances]))
        slots = lay.token_slot[lay.token_seq == seq]
        mid = len(slots) // 2
        changed = flat.clone()
        changed[slots[mid]] = 1 if changed[slots[mid]] != 1 else 2
        after = alone(changed[slots])
    assert torch.allclose(h[slots[:mid]], after[:mid], atol=1e-6)
    assert not torch.allclose(h[slots[mid:]], after[mid:], atol=1e-4)
    backbone = model.backbone
    if hasattr(backbone, "mean_attributes"):  # the mask token feeds no attributes into the input
        table = backbone.mean_attributes(backbone.attribute_embeddings.weight)
        assert torch.count_nonzero(table[ds.mask_id]) == 0 and torch.count_nonzero(table[1]) > 0


@pytest.mark.parametrize("name", BACKBONES)
def test_backbone_pretraining_then_the_same_model_fine_tunes_from_all_its_weights(tiny_data, tmp_path, name, capsys):
    from s3rec.config import TrainConfig, with_overrides
    from s3rec.data import registry
    from s3rec.train import build

    pre = tmp_path / "pre"
    assert main(["pretrain", "--dataset", "Tiny", "--quiet", *SMALL, "--epochs", "1", "--set", f"backbone={name}",
                 "--out", str(pre)]) == 0
    saved = json.loads((pre / "config.json").read_text())
    assert saved["backbone"] == name
    if name.startswith("gru4rec"):
        assert saved["n_layers"] == 1  # the GRU models' default, as fine-tuning will use
    ckpt = pre / "pretrain-epoch-1.pt"
    cfg = with_overrides(TrainConfig(dataset="Tiny"), {"model": name, "hidden_size": 16}).validate()
    init = init_for_finetuning(ckpt, registry.load("Tiny"), cfg)
    assert all(k.startswith("backbone.") for k in init)  # the whole backbone, to be loaded strictly
    enc = {k.removeprefix("backbone."): v for k, v in init.items()}
    model, _ = build(cfg, registry.load("Tiny"))
    load_pretrained(model, init, "--init")
    after = model.state_dict()
    assert set(after) == set(enc) and all(torch.equal(after[k], enc[k]) for k in enc)
    assert main(["train", "--dataset", "Tiny", "--quiet", "--model", name, "--set", "hidden_size=16", "--epochs", "1",
                 "--init", str(ckpt), "--out", str(tmp_path / "ft")]) == 0
    # another model takes only the item embeddings of a pre-trained backbone
    caser_cfg = with_overrides(TrainConfig(dataset="Tiny"), {"model": "caser", "hidden_size": 16}).validate()
    caser, _ = build(caser_cfg, registry.load("Tiny"))
    before = {k: v.clone() for k, v in caser.state_dict().items()}
    load_pretrained(caser, init_for_finetuning(ckpt, registry.load("Tiny"), caser_cfg), "--init")
    changed = {k for k, v in caser.state_dict().items() if not torch.equal(v, before[k])}
    assert changed == {"item_embeddings.weight"}
    assert torch.equal(caser.state_dict()["item_embeddings.weight"], model.state_dict()["item_embeddings.weight"])
    # different encoder settings are refused with the reason, not loaded halfway
    for bad in ("hidden_size=32", "n_layers=2" if name.startswith("gru") else "n_layers=1", "max_len=20"):
        assert main(["train", "--dataset", "Tiny", "--quiet", "--model", name, "--set", "hidden_size=16",
                     "--set", bad, "--epochs", "1", "--init", str(ckpt), "--out", str(tmp_path / bad)]) == 2
        assert "does not match the fine-tuning settings" in capsys.readouterr().err


def test_run_refuses_a_backbone_that_is_not_the_model_before_pretraining(tiny_data, tmp_path, capsys):
    assert main(["run", "--dataset", "Tiny", "--quiet", "--pretrain-set", "backbone=gru4rec", "--pretrain-epochs", "1",
                 "--out", str(tmp_path / "r")]) == 2
    assert "--set model=gru4rec" in capsys.readouterr().err and not (tmp_path / "r" / "pretrain").exists()


def test_unknown_backbone_is_a_clear_error(tiny_data, tmp_path, capsys):
    assert main(["pretrain", "--dataset", "Tiny", "--quiet", "--set", "backbone=caser", "--out", str(tmp_path / "x")]) == 2
    assert "backbone" in capsys.readouterr().err and not (tmp_path / "x").exists()
