"""S3-Rec pre-training against a plain-loop oracle written straight from docs/semantics.md, #pre-training.

- Deterministic parts (instances, the four sequences, positions, targets) must match exactly, given
  the batch's random draws.
- Random parts are checked by their distributions.
- The summed losses and their gradients (dropout off) equal those of the released code's
  formulation: each of the four sequences padded to max_len and encoded in its own pass, with
  sigmoid + BCELoss and masks.
"""

from __future__ import annotations

import collections

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import synthetic_sequences, write_dataset
from s3rec.config import PretrainConfig
from s3rec.data.batches import SequenceTensors
from s3rec.data.corruption import make_instances, pretrain_batch, segment_pool
from s3rec.data.store import load_files
from s3rec.models.encoder import EncoderConfig
from s3rec.models.heads import LossWeights, weighted_total
from s3rec.models.s3rec import S3RecPretrain
from s3rec.models.attributes import ItemAttributes

MAX_LEN = 10


@pytest.fixture
def ds(tmp_path):
    seqs = synthetic_sequences(n_users=30, n_items=80, min_len=3, max_len=18, seed=11)
    attrs = {i: [1 + i % 6, 1 + (i * 5) % 11, 1 + i % 6] for i in range(1, 81) if i % 5}  # duplicates, gaps
    folder = write_dataset(tmp_path, "P", seqs, attrs)
    return load_files("P", folder / "P.txt", folder / "P_item2attributes.json")


def oracle_instances(ds):
    """Every prefix of the last max_len items of each user's training part s[:-2]."""
    out = []
    for k in range(ds.n_users):
        part = ds.sequence(k).tolist()[:-2][-MAX_LEN:]
        out += [part[: i + 1] for i in range(len(part))]
    return out


def oracle_sequences(prefix, masked, seg, pool, mask_id):
    """The masked prefix and the three SP sequences of one instance, from docs/semantics.md#pre-training."""
    m = len(prefix)
    main = [mask_id if masked[j] else prefix[j] for j in range(m)]
    if m < 2:
        return main, list(prefix), list(prefix), list(prefix)
    length, s, ns = seg
    assert 1 <= length <= m // 2 and 0 <= s <= m - length and 0 <= ns <= len(pool) - length
    masked_seg = prefix[:s] + [mask_id] * length + prefix[s + length :]
    pos_seg = [mask_id] * s + prefix[s : s + length] + [mask_id] * (m - s - length)
    neg_seg = [mask_id] * s + pool[ns : ns + length] + [mask_id] * (m - s - length)
    return main, masked_seg, pos_seg, neg_seg


def packed_sequences(batch):
    """Read every sequence back out of the packed layout: list of (items, positions)."""
    lay = batch.layout
    flat_items, flat_pos = batch.items.view(-1), lay.positions.view(-1)
    out = []
    for q in range(len(lay.lengths)):
        slots = lay.token_slot[lay.token_seq == q]
        out.append((flat_items[slots].tolist(), flat_pos[slots].tolist()))
    return out


def test_instances_are_every_prefix(ds):
    st = SequenceTensors(ds)
    inst = make_instances(st, MAX_LEN)
    got = [st.items[s : s + m].tolist() for s, m in zip(inst.start.tolist(), inst.length.tolist())]
    assert got == oracle_instances(ds)


def test_segment_pools(ds):
    st = SequenceTensors(ds)
    train = [i for k in range(ds.n_users) for i in ds.sequence(k).tolist()[:-2]]
    full = [i for k in range(ds.n_users) for i in ds.sequence(k).tolist()]
    assert segment_pool(st, "train").tolist() == train
    assert segment_pool(st, "full").tolist() == full


@pytest.mark.parametrize("packed", [True, False])
def test_batch_matches_the_oracle_given_its_draws(ds, packed):
    st = SequenceTensors(ds)
    inst = make_instances(st, MAX_LEN)
    pool = segment_pool(st)
    prefixes = oracle_instances(ds)
    idx = torch.randperm(len(inst), generator=torch.Generator().manual_seed(0))[:40]
    batch = pretrain_batch(st, inst, idx, pool, torch.Generator().manual_seed(1), max_len=MAX_LEN, packed=packed)
    B = len(idx)
    seqs = packed_sequences(batch)
    assert len(seqs) == 4 * B
    seg_len, seg_start, neg_start = (t.tolist() for t in batch.segments)
    pool_list = pool.tolist()
    offset = 0
    for i, n in enumerate(idx.tolist()):
        prefix = prefixes[n]
        m = len(prefix)
        masked = batch.masked[offset : offset + m].tolist()
        assert batch.targets[offset : offset + m].tolist() == prefix
        offset += m
        expected = oracle_sequences(prefix, masked, (seg_len[i], seg_start[i], neg_start[i]), pool_list, ds.mask_id)
        for g in range(4):  # main, segment-masked, positive, negative
            items, positions = seqs[g * B + i]
            assert items == expected[g], (g, i)
            assert positions == list(range(MAX_LEN - m, MAX_LEN))
    # the SP heads read the last position of the three SP sequences of each instance
    for g in range(3):
        assert torch.equal(batch.sp_last[g], batch.layout.last_slot[(g + 1) * B : (g + 2) * B])
    # one MIP negative per masked position, outside its prefix, never padding or the mask id
    owner = torch.repeat_interleave(torch.arange(B), torch.tensor([len(prefixes[n]) for n in idx.tolist()]))
    for neg, i in zip(batch.negatives.tolist(), owner[batch.masked].tolist()):
        assert 1 <= neg <= ds.n_items and neg not in prefixes[idx[i]]


def test_random_draws_have_the_specified_distributions(ds):
    st = SequenceTensors(ds)
    inst = make_instances(st, MAX_LEN)
    pool = segment_pool(st)
    gen = torch.Generator().manual_seed(3)
    last_masked, other_masked, other_total = 0, 0, 0
    lengths_by_m = collections.defaultdict(collections.Counter)
    starts_by_ml = collections.defaultdict(collections.Counter)
    neg_starts = collections.Counter()
    n_last = 0
    for _ in range(300):
        idx = torch.randint(len(inst), (100,), generator=gen)
        b = pretrain_batch(st, inst, idx, pool, gen, max_len=MAX_LEN)
        m = inst.length[idx]
        last = torch.cat([torch.arange(k) == k - 1 for k in m.tolist()])
        last_masked += int(b.masked[last].sum())
        n_last += int(last.sum())
        other_masked += int(b.masked[~last].sum())
        other_total += int((~last).sum())
        seg_len, seg_start, neg_start = b.segments
        for mm, ll, ss, ns in zip(m.tolist(), seg_len.tolist(), seg_start.tolist(), neg_start.tolist()):
            if mm >= 2:
                lengths_by_m[mm][ll] += 1
                starts_by_ml[(mm, ll)][ss] += 1
                neg_starts[ns * 4 // (len(pool) - ll + 1)] += 1  # quarter of the valid range
            else:
                assert ll == 0
    assert last_masked == n_last  # the last position is always masked
    assert abs(other_masked / other_total - 0.2) < 0.01
    for mm in (4, 8, 10):  # length uniform on {1..m//2}, both ends included
        c = lengths_by_m[mm]
        assert set(c) == set(range(1, mm // 2 + 1))
        assert max(c.values()) / min(c.values()) < 1.5
    for (mm, ll), c in starts_by_ml.items():  # start uniform on {0..m-len}, both ends included
        if sum(c.values()) > 400:
            assert set(c) == set(range(0, mm - ll + 1))
    assert set(neg_starts) == {0, 1, 2, 3} and max(neg_starts.values()) / min(neg_starts.values()) < 1.2


def test_original_sampler_can_draw_the_mask_id(tmp_path):
    folder = write_dataset(tmp_path, "S", {1: [1, 2, 3, 4, 5, 6], 2: [2, 3, 4, 5, 6, 7]})
    ds = load_files("S", folder / "S.txt", None)
    st = SequenceTensors(ds)
    inst = make_instances(st, MAX_LEN)
    full_prefix = (inst.length == inst.length.max()).nonzero()[:1, 0].repeat(300)  # prefix 1..4 or 2..5
    gen = torch.Generator().manual_seed(0)
    b = pretrain_batch(st, inst, full_prefix, segment_pool(st), gen, sampler="original", max_len=MAX_LEN)
    assert ds.mask_id in set(b.negatives.tolist())
    b = pretrain_batch(st, inst, full_prefix, segment_pool(st), gen, max_len=MAX_LEN)
    assert ds.mask_id not in set(b.negatives.tolist()) and 0 not in set(b.negatives.tolist())


def _model(ds, seed=0):
    torch.manual_seed(seed)
    cfg = EncoderConfig(hidden_size=16, n_heads=2, max_len=MAX_LEN, hidden_dropout=0.0, attn_dropout=0.0)
    return S3RecPretrain(ds.n_items, ds.n_attributes, cfg)


def dense_attributes(ds) -> torch.Tensor:
    """The released code's attribute targets: a multi-hot ``[n_items + 2, n_attributes + 1]`` matrix."""
    m = np.zeros((ds.n_items + 2, ds.n_attributes + 1), dtype=np.float32)
    m[np.repeat(np.arange(ds.n_items + 2), np.diff(ds.attr_offsets)), ds.attributes] = 1.0
    return torch.from_numpy(m)


def reference_losses(model, ds, batch, prefixes, idx, pool):
    """The released code's computation: four padded passes, sigmoid + BCELoss, masks, sums."""
    mask_id = ds.mask_id
    seg_len, seg_start, neg_start = (t.tolist() for t in batch.segments)
    attrs = dense_attributes(ds)
    rows = {"main": [], "seg": [], "pos": [], "neg": []}
    targets, negs = [], []
    offset, k = 0, 0
    neg_list = batch.negatives.tolist()
    for i, n in enumerate(idx.tolist()):
        prefix = prefixes[n]
        m = len(prefix)
        masked = batch.masked[offset : offset + m].tolist()
        offset += m
        seqs = oracle_sequences(prefix, masked, (seg_len[i], seg_start[i], neg_start[i]), pool, mask_id)
        for key, s in zip(rows, seqs):
            rows[key].append([0] * (MAX_LEN - m) + s)
        targets.append([0] * (MAX_LEN - m) + prefix)
        row_negs = []
        for j in range(m):  # the released code stores the item itself where nothing is masked
            row_negs.append(neg_list[k] if masked[j] else prefix[j])
            k += masked[j]
        negs.append([0] * (MAX_LEN - m) + row_negs)

    def encode(ids):
        ids = torch.tensor(ids)
        mask = ((ids == 0).float() * -1e8)[:, None, None, :]
        return model(ids, torch.arange(MAX_LEN).expand_as(ids), mask)  # [B, L, D]

    bce = torch.nn.BCELoss(reduction="none")
    main = torch.tensor(rows["main"])
    h = encode(rows["main"])
    pos_items, neg_items = torch.tensor(targets), torch.tensor(negs)
    A = model.attribute_embeddings.weight
    attr_t = attrs[pos_items.view(-1)]  # [B*L, A]
    aap_mask = ((main != mask_id) & (main != 0)).float().view(-1, 1)
    mip_mask = (main == mask_id).float().view(-1)
    aap = (bce(torch.sigmoid(model.aap_norm(h).view(-1, h.shape[-1]) @ A.T), attr_t) * aap_mask).sum()
    map_ = (bce(torch.sigmoid(model.map_norm(h).view(-1, h.shape[-1]) @ A.T), attr_t) * mip_mask[:, None]).sum()
    E = model.item_embeddings
    z = model.mip_norm(h.view(-1, h.shape[-1]))
    pos = torch.sigmoid((z * E(pos_items).view(-1, z.shape[-1])).sum(-1))
    neg = torch.sigmoid((z * E(neg_items).view(-1, z.shape[-1])).sum(-1))
    dist = torch.sigmoid(pos - neg)
    mip = (bce(dist, torch.ones_like(dist)) * mip_mask).sum()
    c = encode(rows["seg"])[:, -1]
    p = encode(rows["pos"])[:, -1]
    n = encode(rows["neg"])[:, -1]
    zc = model.sp_norm(c)
    sp_dist = torch.sigmoid(torch.sigmoid((zc * p).sum(-1)) - torch.sigmoid((zc * n).sum(-1)))
    sp = bce(sp_dist, torch.ones_like(sp_dist)).sum()
    return {"aap": aap, "mip": mip, "map": map_, "sp": sp}


@pytest.mark.parametrize("packed,partial", [(True, True), (True, False), (False, False)])
def test_losses_and_gradients_equal_the_padded_reference(ds, packed, partial):
    st = SequenceTensors(ds)
    inst = make_instances(st, MAX_LEN)
    pool = segment_pool(st)
    idx = torch.randperm(len(inst), generator=torch.Generator().manual_seed(5))[:50]
    batch = pretrain_batch(st, inst, idx, pool, torch.Generator().manual_seed(6), max_len=MAX_LEN, packed=packed)
    weights = LossWeights()
    model = _model(ds)
    model.partial_last_layer = partial
    attrs = ItemAttributes.of(ds)
    terms = model.losses(batch, attrs, weights)
    weighted_total(terms, weights).backward()
    grads = {n: p.grad.clone() for n, p in model.named_parameters()}
    model.zero_grad()

    ref = reference_losses(model, ds, batch, oracle_instances(ds), idx, pool.tolist())
    weighted_total(ref, weights).backward()
    for name in ("aap", "mip", "map", "sp"):
        torch.testing.assert_close(terms[name], ref[name], rtol=1e-5, atol=1e-4, msg=lambda m: f"{name}: {m}")
    for n, p in model.named_parameters():
        torch.testing.assert_close(grads[n], p.grad, rtol=1e-4, atol=1e-5, msg=lambda m: f"{n}: {m}")


@pytest.mark.parametrize("off", ["aap", "mip", "map", "sp"])
def test_a_zero_weight_skips_its_term(ds, off):
    st = SequenceTensors(ds)
    inst = make_instances(st, MAX_LEN)
    weights = LossWeights(**{off: 0.0})
    with_items = any(weights.active(n) for n in ("aap", "mip", "map"))
    batch = pretrain_batch(st, inst, torch.arange(20), segment_pool(st), torch.Generator().manual_seed(0),
                           with_items=with_items, with_segments=weights.active("sp"), max_len=MAX_LEN)
    terms = _model(ds).losses(batch, ItemAttributes.of(ds), weights)
    assert off not in terms and set(terms) == {"aap", "mip", "map", "sp"} - {off}
    if off == "sp":  # no SP sequences were even built
        assert batch.sp_last is None and len(batch.layout.lengths) == 20


def test_only_segments_when_the_item_terms_are_off(ds):
    st = SequenceTensors(ds)
    inst = make_instances(st, MAX_LEN)
    batch = pretrain_batch(st, inst, torch.arange(20), segment_pool(st), torch.Generator().manual_seed(0),
                           with_items=False, max_len=MAX_LEN)
    assert batch.main_tokens == 0 and len(batch.layout.lengths) == 60
    terms = _model(ds).losses(batch, None, LossWeights(aap=0, mip=0, map=0))
    assert set(terms) == {"sp"} and torch.isfinite(terms["sp"])


def test_config_rejects_all_zero_weights():
    from s3rec.errors import ConfigError

    with pytest.raises(ConfigError):
        PretrainConfig(aap_weight=0, mip_weight=0, map_weight=0, sp_weight=0).validate()


def test_bce_with_logits_equals_sigmoid_bce_on_ordinary_logits():
    # beyond |x| ~ 10 float32 sigmoid + BCELoss (the released code) loses precision; logits do not
    x = torch.linspace(-8, 8, 101)
    t = (torch.arange(101) % 2).float()
    torch.testing.assert_close(
        F.binary_cross_entropy_with_logits(x, t, reduction="sum"), F.binary_cross_entropy(torch.sigmoid(x), t, reduction="sum"),
        rtol=1e-4, atol=1e-4,
    )


def test_bf16_autocast_option_runs_on_cpu(ds):
    from s3rec.pretraining import Pretrainer

    cfg = PretrainConfig(dataset="P", hidden_size=16, max_len=MAX_LEN, batch_size=20, amp="bf16")
    trainer = Pretrainer(cfg, ds)
    gen = torch.Generator().manual_seed(0)
    terms = trainer.step(trainer.epoch_order(gen)[0], gen)
    assert set(terms) == {"aap", "mip", "map", "sp"} and all(v == v and v < float("inf") for v in terms.values())
