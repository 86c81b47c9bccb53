"""Fine-tuning losses beyond the paper (sampled softmax, gBCE) and the pre-LayerNorm encoder variant,
checked against independent formulas and against the padded reference."""

from __future__ import annotations

import json
import math

import pytest
import torch
import torch.nn.functional as F

from conftest import synthetic_sequences, write_dataset
from s3rec.cli import main
from s3rec.data.batches import SequenceTensors, eval_batch, finetune_batch
from s3rec.data.store import load_files
from s3rec.losses import ce_next_item, gbce_beta, gbce_next_item, sampled_softmax_next_item
from s3rec.models.encoder import EncoderConfig
from s3rec.models.sasrec import SASRec


def _hidden(T=7, D=5, n_items=9, seed=0):
    g = torch.Generator().manual_seed(seed)
    h = torch.randn(T, D, generator=g)
    table = torch.randn(n_items + 2, D, generator=g)
    targets = torch.randint(1, n_items + 1, (T,), generator=g)
    return h, table, targets


def test_sampled_softmax_with_every_item_as_negative_is_the_full_softmax():
    h, table, targets = _hidden()
    every = torch.arange(1, 10)  # N = n_items: correction log(n/N) = 0, the target masked as a hit
    torch.testing.assert_close(sampled_softmax_next_item(h, table, targets, every, 9), ce_next_item(h, table, targets, 9))


@pytest.mark.parametrize("block_elements", [1, 20, 1 << 19])  # one row a block, a few rows, all rows
def test_linear_cross_entropy_matches_the_plain_loss_and_its_gradients(monkeypatch, block_elements):
    from s3rec.losses import LinearCrossEntropy
    monkeypatch.setattr(LinearCrossEntropy, "CACHE_ELEMENTS", block_elements)
    h, table, targets = _hidden(T=11, D=6, n_items=9, seed=3)
    h, table = h.double(), table.double()
    targets[:3] = targets[0]  # repeated targets in one block
    grads = []
    for loss_fn in (ce_next_item, lambda h, t, y, n: F.cross_entropy(h @ t[1 : n + 1].T, y - 1)):
        hh, tt = h.clone().requires_grad_(), table.clone().requires_grad_()
        loss = loss_fn(hh, tt, targets, 9)
        (3.0 * loss).backward()  # an upstream gradient other than 1
        grads.append((loss.detach(), hh.grad, tt.grad))
    for got, want in zip(*grads):
        torch.testing.assert_close(got, want)
    assert grads[0][2][0].abs().sum() == 0 and grads[0][2][10].abs().sum() == 0  # pad and mask rows untouched


@pytest.mark.parametrize("block_elements", [1, 20, 1 << 19])
@pytest.mark.parametrize("wanted", ["all", "bias", "weights"])  # which inputs ask for a gradient
def test_linear_cross_entropy_with_a_bias(monkeypatch, block_elements, wanted):
    from s3rec.losses import LinearCrossEntropy, linear_cross_entropy
    monkeypatch.setattr(LinearCrossEntropy, "CACHE_ELEMENTS", block_elements)
    g = torch.Generator().manual_seed(5)
    h, w, b = (torch.randn(13, 4, generator=g, dtype=torch.float64), torch.randn(9, 4, generator=g, dtype=torch.float64),
               torch.randn(9, generator=g, dtype=torch.float64))
    y = torch.randint(0, 9, (13,), generator=g)
    grads = []
    for loss_fn in (linear_cross_entropy, lambda h, w, y, b: F.cross_entropy(h @ w.T + b, y)):
        hh, ww, bb = (x.clone().requires_grad_(wanted == "all" or wanted == name)
                      for x, name in ((h, "h"), (w, "weights"), (b, "bias")))
        loss = loss_fn(hh, ww, y, bb)
        (2.5 * loss).backward()
        grads.append([loss.detach(), hh.grad, ww.grad, bb.grad])
    for got, want in zip(*grads):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got, want)


def test_linear_cross_entropy_keeps_no_logits_and_backs_up_twice(monkeypatch):
    """The gradients are made in the forward: what the graph keeps is the size of the inputs, never
    the [T, n] logits, and a second backward (retain_graph) gives the same gradients again."""
    from s3rec.losses import LinearCrossEntropy, linear_cross_entropy
    monkeypatch.setattr(LinearCrossEntropy, "CACHE_ELEMENTS", 40)  # several blocks
    g = torch.Generator().manual_seed(2)
    h = torch.randn(30, 3, generator=g, dtype=torch.float64, requires_grad=True)
    w = torch.randn(50, 3, generator=g, dtype=torch.float64, requires_grad=True)
    y = torch.randint(0, 50, (30,), generator=g)
    loss = linear_cross_entropy(h, w, y)
    kept = [t for t in loss.grad_fn.grads if t is not None]
    assert sorted(t.shape for t in kept) == [torch.Size([30, 3]), torch.Size([50, 3])]
    loss.backward(retain_graph=True)
    first = (h.grad.clone(), w.grad.clone())
    loss.backward()
    torch.testing.assert_close((h.grad, w.grad), (2 * first[0], 2 * first[1]))
    plain = F.cross_entropy(h.detach() @ w.detach().T, y)
    torch.testing.assert_close(loss.detach(), plain)
    empty = linear_cross_entropy(h[:0], w, y[:0])  # like F.cross_entropy on no rows: nan
    assert torch.isnan(empty) and torch.isnan(F.cross_entropy(h[:0] @ w.T, y[:0]))


def test_linear_cross_entropy_refuses_targets_out_of_range_and_is_plain_without_grad(monkeypatch):
    from s3rec import losses
    h = torch.randn(4, 3, requires_grad=True)
    w = torch.randn(6, 3, requires_grad=True)
    for bad in (-1, 6):  # like F.cross_entropy: an error, not the last (or a wrapped) column
        with pytest.raises((IndexError, RuntimeError)):
            losses.linear_cross_entropy(h, w, torch.tensor([0, 1, bad, 2]))
    calls = []
    monkeypatch.setattr(losses.LinearCrossEntropy, "apply", lambda *a: calls.append(1) or torch.zeros(()))
    with torch.no_grad():  # parameters still require grad, but no gradient is wanted: the plain loss
        losses.linear_cross_entropy(h, w[1:], torch.tensor([0, 1, 2, 3]))
    assert calls == []


def test_linear_cross_entropy_is_used_for_training_and_not_under_autocast(monkeypatch):
    from s3rec import losses
    calls = []
    monkeypatch.setattr(losses.LinearCrossEntropy, "apply", lambda *a: calls.append(1) or torch.zeros(()))
    h, table, targets = _hidden()
    ce_next_item(h, table, targets, 9)  # no gradient needed: the plain loss
    assert calls == []
    ce_next_item(h.requires_grad_(), table, targets, 9)
    assert calls == [1]
    with torch.autocast("cpu", dtype=torch.bfloat16):
        loss = ce_next_item(h, table, targets, 9)
    assert calls == [1] and loss.dtype == torch.float32  # autocast's own cross-entropy, in float32


def test_sampled_softmax_correction_and_accidental_hits():
    h, table, targets = _hidden(T=1)
    negs = torch.tensor([targets.item() % 9 + 1, targets.item() % 9 + 1, targets.item()])  # last one: a hit
    pos = (h[0] * table[targets[0]]).sum()
    neg = h[0] @ table[negs[:2]].T + math.log(9 / 3)
    expected = -(pos - torch.logsumexp(torch.cat([pos.view(1), neg]), 0))
    torch.testing.assert_close(sampled_softmax_next_item(h, table, targets, negs, 9), expected)


def test_gbce_beta_endpoints():
    assert gbce_beta(256, 1001, 0.0) == pytest.approx(1.0)
    assert gbce_beta(256, 1001, 1.0) == pytest.approx(256 / 1000)
    assert gbce_beta(256, 1001, 0.75) == pytest.approx(0.75 * (256 / 1000 - 1) + 1)


@pytest.mark.parametrize("t", [0.0, 0.5, 1.0])
def test_gbce_equals_the_authors_transformed_logit_formulation(t):
    """gSASRec computes gBCE as BCE-with-logits (mean over the N + 1 logits) after replacing the
    positive logit by log(1 / (sigmoid(s)^-beta - 1)), whose sigmoid is sigmoid(s)^beta."""
    h, table, targets = _hidden(T=6)
    negs = torch.tensor([1, 2, 3, 4])
    negs = negs[(negs[None, :] != targets[:, None]).all(0)]  # no accidental hits in this oracle
    beta = gbce_beta(len(negs), 9, t)
    pos = (h * table[targets]).sum(-1).double()
    neg = (h @ table[negs].T).double()
    transformed = torch.log(1.0 / (torch.sigmoid(pos) ** -beta - 1.0))
    logits = torch.cat([transformed[:, None], neg], 1)
    labels = torch.zeros_like(logits)
    labels[:, 0] = 1
    expected = F.binary_cross_entropy_with_logits(logits, labels)
    got = gbce_next_item(h, table, targets, negs, 9, t)
    torch.testing.assert_close(got.double(), expected, rtol=1e-5, atol=1e-6)


@pytest.fixture
def ds(tmp_path):
    seqs = synthetic_sequences(n_users=30, n_items=60, min_len=4, max_len=20, seed=3)
    folder = write_dataset(tmp_path, "T", seqs)
    return load_files("T", folder / "T.txt", None)


def test_pre_ln_packed_equals_padded_and_differs_from_post_ln(ds):
    torch.manual_seed(0)
    cfg = EncoderConfig(hidden_size=16, n_heads=2, max_len=12, hidden_dropout=0.0, attn_dropout=0.0, pre_ln=True)
    model = SASRec(ds.n_items, cfg).eval()
    assert model.item_encoder.final_LayerNorm is not None
    st = SequenceTensors(ds)
    users = torch.arange(ds.n_users)
    with torch.no_grad():
        packed = model.user_states(eval_batch(st, users, "test", 12, packed=True))
        padded = model.user_states(eval_batch(st, users, "test", 12, packed=False))
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)
    post = SASRec(ds.n_items, EncoderConfig(hidden_size=16, n_heads=2, max_len=12, hidden_dropout=0.0, attn_dropout=0.0))
    post.load_state_dict({k: v for k, v in model.state_dict().items() if "final_LayerNorm" not in k})
    with torch.no_grad():
        assert not torch.allclose(post.eval().user_states(eval_batch(st, users, "test", 12)), packed)


def test_pre_ln_partial_last_block_is_exact(ds):
    torch.manual_seed(0)
    cfg = EncoderConfig(hidden_size=16, n_heads=2, max_len=12, hidden_dropout=0.0, attn_dropout=0.0, pre_ln=True)
    model = SASRec(ds.n_items, cfg).eval()
    st = SequenceTensors(ds)
    b = finetune_batch(st, torch.arange(ds.n_users), torch.Generator().manual_seed(0), 12)
    x = model.dropout(model.LayerNorm(model.item_embeddings(b.items) + model.position_embeddings(b.layout.positions)))
    with torch.no_grad():
        full = model.item_encoder(x, b.layout.mask)
        rows = b.layout.n_rows // 2
        slots = b.layout.last_slot[b.layout.last_slot >= rows * 12]
        head, rest = model.item_encoder(x, b.layout.mask, rows, slots)
    torch.testing.assert_close(head, full[:rows])
    torch.testing.assert_close(rest, full.reshape(-1, 16)[slots])


@pytest.mark.parametrize("extra, recorded", [
    (["--loss", "sampled-softmax", "--set", "n_negatives=20"], {"loss": "sampled-softmax", "n_negatives": 20}),
    (["--loss", "gbce", "--set", "n_negatives=20", "--set", "gbce_t=0.5"], {"loss": "gbce", "gbce_t": 0.5}),
    (["--set", "pre_ln=true"], {"pre_ln": True}),
])
def test_cli_trains_with_the_strong_options_and_records_them(tiny_data, tmp_path, extra, recorded):
    out = tmp_path / "run"
    assert main(["train", "--dataset", "Tiny", "--quiet", "--epochs", "2", "--set", "hidden_size=16",
                 "--out", str(out), *extra]) == 0
    cfg = json.loads((out / "config.json").read_text())
    assert {k: cfg[k] for k in recorded} == recorded
    assert json.loads((out / "results.json").read_text())["test"]["MRR"] > 0


def test_strong_loss_settings_are_checked(tiny_data, tmp_path, capsys):
    assert main(["train", "--dataset", "Tiny", "--quiet", "--loss", "gbce", "--set", "gbce_t=2",
                 "--out", str(tmp_path / "r")]) == 2
    assert "gbce_t" in capsys.readouterr().err
    assert main(["train", "--dataset", "Tiny", "--quiet", "--model", "gru4rec", "--loss", "gbce",
                 "--out", str(tmp_path / "r2")]) == 2
