"""The shared battery every registered model passes, through the model contract only
(``loss``, ``user_states``, ``score``; ``position_states`` for causal models), on tiny synthetic data:

- shapes, and scoring a candidate subset equals the same columns of full scoring;
- causal models never look at future positions;
- left-padding (and packing, where accepted) never changes a user's state;
- training learns a planted pattern well above chance: a deterministic item cycle for the
  sequential models, a planted popularity for PopRec, a planted attribute preference for FM and
  AutoInt;
- ``s3rec train --model NAME`` writes the run files and its checkpoint re-evaluates to the same
  numbers under both protocols; settings and hyper-parameters are strict and recorded.
"""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from conftest import cycle_sequences, synthetic_sequences, write_dataset
from s3rec.cli import main
from s3rec.config import TrainConfig, with_overrides
from s3rec.data.batches import SequenceBatch, SequenceTensors, eval_batch, finetune_batch
from s3rec.data.packing import FINETUNE_MASK_VALUE, make_layout, scatter_tokens
from s3rec.data.store import load_files
from s3rec.errors import ConfigError
from s3rec.evaluation import evaluate, score_users
from s3rec.models import ModelData, build_model, model_class, model_names
from s3rec.train import build, train_epoch, train_users

NAMES = model_names()
SEQUENTIAL = [n for n in NAMES if n not in ("poprec", "fm", "autoint")]
MAX_LEN = 10


def small_cfg(name: str, **extra) -> TrainConfig:
    settings = {"model": name, "hidden_size": 16, "max_len": MAX_LEN, "batch_size": 16, **extra}
    return with_overrides(TrainConfig(), settings).validate()


@pytest.fixture(scope="module")
def syn(tmp_path_factory):
    """60 users of 4..16 random items out of 50, every item with one or two attributes (some none)."""
    folder = tmp_path_factory.mktemp("syn")
    attrs = {i: [1 + i % 4, 5 + i % 3] for i in range(1, 51) if i % 7}
    write_dataset(folder, "Syn", synthetic_sequences(n_users=60, n_items=50, min_len=4, max_len=16, seed=2), attrs)
    return load_files("Syn", folder / "Syn.txt", folder / "Syn_item2attributes.json")


def built(name: str, ds, **extra):
    model, _ = build(small_cfg(name, hidden_dropout=0.0, attn_dropout=0.0, **extra), ds)
    return model.eval()


def layout_batch(st: SequenceTensors, users: torch.Tensor, split: str, packed: bool, row_len: int, causal: bool) -> SequenceBatch:
    """An evaluation batch with a chosen layout (``row_len`` > max_len adds left padding)."""
    start, end = st.split_bounds(split, MAX_LEN, users)
    lay = make_layout(end - start, MAX_LEN, causal, FINETUNE_MASK_VALUE, packed=packed, row_len=row_len)
    return SequenceBatch(lay, scatter_tokens(lay, st.items[start[lay.token_seq] + lay.token_pos]), users)


def seq_batch(seqs: list[list[int]], packed: bool, causal: bool) -> SequenceBatch:
    """A batch of explicit item sequences (users 0..B-1)."""
    lay = make_layout(torch.tensor([len(s) for s in seqs]), MAX_LEN, causal, FINETUNE_MASK_VALUE, packed=packed)
    flat = torch.tensor([i for s in seqs for i in s])
    return SequenceBatch(lay, scatter_tokens(lay, flat), torch.arange(len(seqs)))


def test_registry_has_the_papers_eleven_methods(capsys):
    assert NAMES == ["poprec", "fm", "autoint", "gru4rec", "caser", "sasrec", "bert4rec", "hgn",
                     "gru4rec_f", "sasrec_f", "fdsa"]
    assert main(["models"]) == 0
    lines = capsys.readouterr().out.strip().splitlines()
    assert [line.split()[0] for line in lines] == NAMES
    assert main(["models", "--params"]) == 0
    assert "att_heads" in capsys.readouterr().out


@pytest.mark.parametrize("name", NAMES)
def test_shapes_and_subset_scores(name, syn):
    model = built(name, syn)
    st = SequenceTensors(syn)
    users = torch.arange(syn.n_users)
    batch = eval_batch(st, users, "test", MAX_LEN, packed=model.packed_ok, causal=model.causal)
    with torch.no_grad():
        states = model.user_states(batch)
        full = model.score(states, None)
        items = torch.randint(0, syn.n_items + 2, (syn.n_users, 7), generator=torch.Generator().manual_seed(0))
        sub = model.score(states, items)
    assert states.dim() == 2 and states.shape[0] == syn.n_users
    assert full.shape == (syn.n_users, syn.n_items + 2)
    assert sub.shape == (syn.n_users, 7)
    torch.testing.assert_close(sub, full.gather(1, items), rtol=1e-5, atol=1e-5)
    # score_users returns the same scores for the dataset's users
    torch.testing.assert_close(score_users(model, st, users[:9], "test", items=items[:9]), sub[:9], rtol=1e-5, atol=1e-5)
    assert score_users(model, st, users[:3], "valid").shape == (3, syn.n_items + 2)
    if model.trainable:  # one training step runs and reaches the parameters
        model.train()
        batch = finetune_batch(st, users[:16], torch.Generator().manual_seed(1), MAX_LEN,
                               packed=model.packed_ok, causal=model.causal)
        loss = model.loss(batch)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        assert any(p.grad is not None and p.grad.abs().sum() > 0 for p in model.parameters())


@pytest.mark.parametrize("name", NAMES)
def test_left_padding_and_packing_never_change_a_state(name, syn):
    model = built(name, syn)
    st = SequenceTensors(syn)
    users = torch.arange(syn.n_users)
    layouts = [(False, MAX_LEN), (False, MAX_LEN + 7)]
    if model.packed_ok:
        layouts += [(True, MAX_LEN), (True, MAX_LEN + 7)]
    with torch.no_grad():
        states = [model.user_states(layout_batch(st, users, "valid", p, w, model.causal)) for p, w in layouts]
    for s in states[1:]:
        torch.testing.assert_close(s, states[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("name", [n for n in NAMES if model_class(n).causal])
def test_causal_models_never_look_at_the_future(name, syn):
    model = built(name, syn)
    seqs = [[3, 4, 5, 6, 7, 8, 9, 10, 11, 12], [5, 9, 2], [20, 21, 22, 23, 24, 25]]
    later = [list(s) for s in seqs]
    later[0][6:] = [30, 31, 32, 33]
    with torch.no_grad():
        for packed in sorted({False, model.packed_ok}):
            a = model.position_states(seq_batch(seqs, packed, True))
            b = model.position_states(seq_batch(later, packed, True))
            torch.testing.assert_close(a[:6], b[:6])  # positions before the change
            torch.testing.assert_close(a[10:], b[10:])  # the other sequences
            assert not torch.allclose(a[6:10], b[6:10])
            # a user's state is the state after its last item
            last = torch.tensor([9, 12, 18])
            torch.testing.assert_close(model.user_states(seq_batch(seqs, packed, True)), a[last])


@pytest.fixture(scope="module")
def cycle(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cycle")
    write_dataset(folder, "C", cycle_sequences(n_users=80, n_items=20, length=12), {i: [1 + i % 3] for i in range(1, 21)})
    return load_files("C", folder / "C.txt", folder / "C_item2attributes.json")


def train(name: str, ds, epochs: int, **extra) -> dict:
    cfg = small_cfg(name, **{"lr": 0.01, "hidden_dropout": 0.1, "attn_dropout": 0.1, "weight_decay": 0.0, **extra})
    model, opt = build(cfg, ds)
    st = SequenceTensors(ds)
    gen = torch.Generator().manual_seed(0)
    for _ in range(epochs):
        train_epoch(model, opt, st, train_users(ds), cfg, gen)
    return evaluate(model, ds, "test", "full", st=st)[0]


# epochs (and settings) enough for each model to pass the threshold with a margin on the cycle;
# the Cloze objective masks 60 % of these 9-item sequences and needs a gentler rate and more epochs
CYCLE_TRAINING = {"bert4rec": (50, {"lr": 0.003}), "caser": (20, {}), "gru4rec_f": (20, {})}


@pytest.mark.parametrize("name", SEQUENTIAL)
def test_sequential_models_learn_a_deterministic_cycle(name, cycle):
    epochs, extra = CYCLE_TRAINING.get(name, (15, {}))
    metrics = train(name, cycle, epochs, **extra)
    assert metrics["HR@1"] > 0.6  # chance is 1/9 (20 items, 11 of them in the history)


def test_poprec_finds_a_planted_popularity(tmp_path):
    """Items are drawn with Zipf-like weights: the popular ones are also the likely test targets."""
    rng = np.random.default_rng(0)
    weights = 1.0 / np.arange(1, 41) ** 1.5
    seqs = {u: rng.choice(np.arange(1, 41), size=8, replace=False, p=weights / weights.sum()).tolist() for u in range(1, 201)}
    folder = write_dataset(tmp_path, "Pop", seqs)
    ds = load_files("Pop", folder / "Pop.txt", None)
    metrics = train("poprec", ds, 0)
    assert metrics["HR@5"] > 0.4  # chance is 5/33 = 0.15 (40 items, 7 in the history)


@pytest.mark.parametrize("count", ["history", "train"])
def test_poprec_counts_only_what_precedes_the_ranked_target(count, tmp_path):
    """Validation ranks by the counts over s[:-2]; test by s[:-1] (count=history) or again s[:-2]
    (count=train). A validation or test target is never counted where it is ranked."""
    seqs = {1: [1, 2, 3, 4], 2: [1, 2, 4, 3], 3: [2, 1, 4, 5]}
    folder = write_dataset(tmp_path, "Cnt", seqs)
    ds = load_files("Cnt", folder / "Cnt.txt", None)
    model = built("poprec", ds, model_params={"count": count})
    st = SequenceTensors(ds)
    users = torch.arange(3)
    train_counts = torch.tensor([0, 3, 3, 0, 0, 0, 0], dtype=torch.float)  # s[:-2]: [1,2] [1,2] [2,1]
    history_counts = train_counts + torch.tensor([0, 0, 0, 1, 2, 0, 0], dtype=torch.float)  # + 3, 4, 4
    valid = score_users(model, st, users, "valid")
    test = score_users(model, st, users, "test")
    assert torch.equal(valid, train_counts.expand(3, -1))
    assert torch.equal(test, (history_counts if count == "history" else train_counts).expand(3, -1))
    cands = torch.tensor([[4, 1], [3, 5], [5, 2]])
    assert torch.equal(score_users(model, st, users, "test", items=cands), test.gather(1, cands))


def preference_data(tmp_path):
    """Two groups of users: one consumes only items with attribute 1 (items 1..20), the other only
    items with attribute 2 (21..40), in random order: no sequential signal, only a preference."""
    rng = np.random.default_rng(0)
    seqs = {u: (rng.permutation(20)[:8] + 1 + 20 * (u % 2)).tolist() for u in range(1, 121)}
    attrs = {i: [1 if i <= 20 else 2] for i in range(1, 41)}
    folder = write_dataset(tmp_path, "Pref", seqs, attrs)
    return load_files("Pref", folder / "Pref.txt", folder / "Pref_item2attributes.json")


@pytest.mark.parametrize("name", ["fm", "autoint"])
def test_feature_models_learn_a_planted_attribute_preference(name, tmp_path):
    metrics = train(name, preference_data(tmp_path), 25)
    # chance is 10/33 = 0.30 (40 items, 7 in the history); knowing the group gives ~10/13 = 0.77
    assert metrics["HR@10"] > 0.6


def test_fm_scores_are_the_factorization_machine(syn):
    """The decomposed full scoring equals Rendle's FM over the three fields, pair by pair."""
    model = built("fm", syn)
    with torch.no_grad():
        for p in model.parameters():
            p.normal_(0, 0.3)
        model.item_embeddings.weight[0].zero_()
        users, items = torch.tensor([0, 3, 7, 8]), torch.tensor([5, 14, 49, 22])
        batch = eval_batch(SequenceTensors(syn), users, "test", MAX_LEN, packed=False)
        got = model.score(model.user_states(batch), None)[torch.arange(4), items]
        for k, (u, i) in enumerate(zip(users.tolist(), items.tolist())):
            attrs = sorted(set(syn.attributes[syn.attr_offsets[i] : syn.attr_offsets[i + 1]].tolist()))
            pooled = model.attribute_embeddings.weight[attrs].mean(0) if attrs else torch.zeros(16)  # item 14, 49: none
            attr_w = model.attribute_bias.weight[attrs].mean(0) if attrs else torch.zeros(1)
            fields = [model.user_embeddings.weight[u], model.item_embeddings.weight[i], pooled]
            first = model.global_bias + model.user_bias.weight[u] + model.item_bias.weight[i] + attr_w
            pairs = sum(fields[a] @ fields[b] for a in range(3) for b in range(a + 1, 3))
            torch.testing.assert_close(got[k], (first + pairs).squeeze(), rtol=1e-5, atol=1e-5)


def test_autoint_full_scoring_is_exact_across_chunks(syn, monkeypatch):
    import s3rec.models.autoint as autoint

    model = built("autoint", syn)
    batch = eval_batch(SequenceTensors(syn), torch.arange(9), "test", MAX_LEN, packed=False)
    with torch.no_grad():
        states = model.user_states(batch)
        whole = model.score(states, None)
        monkeypatch.setattr(autoint, "PAIR_CHUNK", 37)  # many chunks, ragged ends
        torch.testing.assert_close(model.score(states, None), whole, rtol=1e-5, atol=1e-6)
        items = torch.arange(syn.n_items + 2).expand(9, -1)
        torch.testing.assert_close(model.score(states, items), whole, rtol=1e-5, atol=1e-6)
        few = torch.tensor([[3, 9, 0, 51], [50, 2, 2, 7]])  # fewer pairs than items: projected per pair
        torch.testing.assert_close(model.score(states[:2], few), whole[:2].gather(1, few), rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("name", [n for n in NAMES if model_class(n).trainable])
def test_every_supported_loss_trains(name, syn):
    st = SequenceTensors(syn)
    for loss in model_class(name).losses:
        model = built(name, syn, loss=loss).train()
        batch = finetune_batch(st, torch.arange(20), torch.Generator().manual_seed(3), MAX_LEN,
                               packed=model.packed_ok, causal=model.causal)
        value = model.loss(batch)
        value.backward()
        assert torch.isfinite(value) and value > 0, loss


@pytest.mark.parametrize("name", [n for n in NAMES if model_class(n).trainable and "ce" in model_class(n).losses])
def test_full_softmax_loss_is_the_cross_entropy_of_the_models_scores(name, syn):
    """Models that name their output table (``output_table``) train "ce" fused: the loss and every
    parameter's gradient equal the plain cross-entropy of ``score`` over items 1..n_items."""
    model = built(name, syn)
    g = torch.Generator().manual_seed(4)
    with torch.no_grad():  # no parameter left at its initial value (output biases start at zero)
        for p in model.parameters():
            p.add_(0.1 * torch.randn(p.shape, generator=g))
    st = SequenceTensors(syn)
    batch = eval_batch(st, torch.arange(syn.n_users), "test", MAX_LEN, packed=model.packed_ok, causal=model.causal)
    targets = torch.randint(1, syn.n_items + 1, (syn.n_users,), generator=g)
    grads = []
    for loss_of in (model.full_softmax_loss,
                    lambda s, t: F.cross_entropy(model.score(s, None)[:, 1 : syn.n_items + 1], t - 1)):
        model.zero_grad()
        value = loss_of(model.user_states(batch), targets)
        (1.7 * value).backward()  # an upstream gradient other than 1
        grads.append([value.detach()] + [p.grad.clone() if p.grad is not None else None for p in model.parameters()])
    for got, want in zip(*grads):
        if want is None:
            assert got is None
        else:
            torch.testing.assert_close(got, want, rtol=1e-4, atol=1e-6)
    if name in ("bert4rec", "caser", "hgn", "gru4rec", "fdsa", "sasrec_f", "gru4rec_f"):
        assert model.output_table() is not None  # these run fused


def test_bert4rec_cloze_batches(syn):
    """The Cloze sequence is s[:-2] cut to max_len, and the prediction sequence ends with the mask token."""
    model = built("bert4rec", syn)
    st = SequenceTensors(syn)
    seen = []
    original = model.hidden_tokens

    def spy(layout, values):
        seen.append(values.split(layout.lengths.tolist()))
        return original(layout, values)

    model.hidden_tokens = spy
    users = torch.arange(6)
    torch.manual_seed(0)
    model.loss(finetune_batch(st, users, torch.Generator().manual_seed(0), MAX_LEN, packed=True, causal=False))
    cloze, last_only = seen[0], seen[1]  # the random masks, then the last-item-only copies
    for k in range(6):
        s = syn.sequence(k).tolist()[:-2][-MAX_LEN:]
        assert len(cloze[k]) == len(s)
        assert all(v in (a, model.mask_id) for v, a in zip(cloze[k].tolist(), s))
        assert last_only[k].tolist() == s[:-1] + [model.mask_id]
    with torch.no_grad():
        model.user_states(eval_batch(st, users, "test", MAX_LEN, packed=True, causal=False))
    for k in range(6):
        s = syn.sequence(k).tolist()[:-1][-(MAX_LEN - 1):]
        assert seen[-1][k].tolist() == s + [model.mask_id]


def test_bert4rec_packed_states_equal_padded_rows(syn):
    """Packing is exact: the prediction states equal those of each history (+ mask) right-aligned in
    its own row of max_len, positions 0..max_len-1 and padding keys masked (BERT4Rec's own layout)."""
    model = built("bert4rec", syn)
    st = SequenceTensors(syn)
    users = torch.arange(syn.n_users)
    with torch.no_grad():
        packed = model.user_states(eval_batch(st, users, "test", MAX_LEN, packed=True, causal=False))
        rows = torch.zeros(len(users), MAX_LEN, dtype=torch.long)
        for k in range(len(users)):
            s = syn.sequence(k).tolist()[:-1][-(MAX_LEN - 1):] + [model.mask_id]
            rows[k, MAX_LEN - len(s):] = torch.tensor(s)
        positions = torch.arange(MAX_LEN).expand_as(rows)
        mask = (rows == 0)[:, None, None, :].float() * FINETUNE_MASK_VALUE
        padded = model.transform(model.encoder(rows, positions, mask)[:, -1])
    torch.testing.assert_close(packed, padded, rtol=1e-5, atol=1e-5)


def test_model_data_from_the_dataset(syn):
    data = ModelData.from_dataset(syn)
    assert data.n_users == syn.n_users and len(data.attr_offsets) == syn.n_items + 3
    for i in (1, 7, 13, 50):
        want = sorted(set(syn.attributes[syn.attr_offsets[i] : syn.attr_offsets[i + 1]].tolist()))
        assert data.attr_ids[data.attr_offsets[i] : data.attr_offsets[i + 1]].tolist() == want
    counts = np.zeros(syn.n_items + 2)
    for k in range(syn.n_users):
        for i in syn.sequence(k)[:-2]:
            counts[i] += 1
    assert data.popularity.tolist() == counts.tolist()


TRAIN = ["train", "--dataset", "Tiny", "--quiet", "--epochs", "1", "--set", "hidden_size=16", "--set", "batch_size=16"]


@pytest.mark.parametrize("name", NAMES)
def test_train_cli_and_checkpoint_under_both_protocols(name, tiny_data, tmp_path, capsys):
    out = tmp_path / name
    assert main([*TRAIN, "--model", name, "--protocol", "full", "--out", str(out)]) == 0
    res = json.loads((out / "results.json").read_text())
    assert res["model"] == name and res["epochs"] == (1 if model_class(name).trainable else 0)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["model"] == name and cfg["model_params"] == json.loads(small_params_json(name))
    capsys.readouterr()
    assert main(["evaluate", str(out / "best.pt"), "--protocol", "full", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["metrics"] == pytest.approx(res["test"], abs=1e-12)
    assert main(["evaluate", str(out / "best.pt"), "--protocol", "sampled", "--json"]) == 0
    sampled = json.loads(capsys.readouterr().out)["metrics"]
    assert 0 < sampled["MRR"] <= 1


def small_params_json(name: str) -> str:
    import dataclasses

    return json.dumps(dataclasses.asdict(model_class(name).Params()))


def test_model_settings_follow_the_paper_and_stay_strict(tiny_data, tmp_path, capsys):
    bert = small_cfg("bert4rec")
    assert (bert.lr, bert.hidden_dropout, bert.loss, bert.weight_decay) == (1e-3, 0.1, "ce", 0.01)
    assert small_cfg("bert4rec", lr=0.01).lr == 0.01  # what is given wins over the paper's default
    assert small_cfg("sasrec").lr == 1e-3 and small_cfg("caser", L=3).model_params["L"] == 3
    assert with_overrides(bert, {"model": "sasrec"}).hidden_dropout == 0.5  # back to SASRec's
    with pytest.raises(ConfigError, match="L"):
        small_cfg("sasrec", L=3)  # not a SASRec hyper-parameter
    with pytest.raises(ConfigError, match="loss"):
        small_cfg("autoint", loss="ce")
    with pytest.raises(ConfigError, match="mask_p"):
        small_cfg("bert4rec", mask_p=0.0)
    with pytest.raises(ConfigError, match="unknown model"):
        small_cfg("nope")
    # through the command line: recorded, and --resume refuses a different value
    out = tmp_path / "caser"
    assert main([*TRAIN, "--model", "caser", "--set", "L=3", "--set", "patience=5", "--out", str(out)]) == 0
    assert json.loads((out / "config.json").read_text())["model_params"]["L"] == 3
    (out / "results.json").unlink()
    capsys.readouterr()
    assert main([*TRAIN, "--model", "caser", "--set", "L=4", "--out", str(out), "--resume"]) == 2
    assert "model_params" in capsys.readouterr().err
    assert main([*TRAIN, "--model", "poprec", "--init", "x.pt", "--out", str(tmp_path / "p")]) == 2
    assert "needs a trained model" in capsys.readouterr().err
    assert main([*TRAIN, "--model", "gru4rec", "--init", str(tmp_path / "x.pt"), "--out", str(tmp_path / "g")]) == 2
    assert "x.pt" in capsys.readouterr().err  # a missing checkpoint is an error, never a silent start


def test_build_model_needs_no_dataset_to_rebuild(syn):
    """A model's data-derived tensors travel in its state_dict (checkpoints rebuild without data)."""
    for name in ("poprec", "fm", "fdsa", "caser"):
        model = built(name, syn)
        state = model.state_dict()
        again = build_model(name, ModelData.from_state(syn.n_items, syn.n_attributes, state), small_cfg(name))
        again.load_state_dict(state)
        for k, v in again.state_dict().items():
            assert torch.equal(v, state[k])


def test_bert4rec_decays_weights_decoupled_and_others_use_l2(syn):
    """BERT4Rec: AdamW (BERT's optimiser) decaying the matrices only; the other models: Adam + L2."""
    model, opt = build(small_cfg("bert4rec"), syn)
    assert isinstance(opt, torch.optim.AdamW)
    decayed, plain = opt.param_groups
    assert decayed["weight_decay"] == 0.01 and plain["weight_decay"] == 0.0
    assert all(p.ndim >= 2 for p in decayed["params"]) and all(p.ndim == 1 for p in plain["params"])
    assert len(decayed["params"]) + len(plain["params"]) == len(list(model.parameters()))
    _, opt = build(small_cfg("caser"), syn)
    assert type(opt) is torch.optim.Adam and opt.param_groups[0]["weight_decay"] == 1e-6
