"""One evaluation path: user states -> candidate scores -> target ranks -> metrics.

Any registered model is driven through its contract (:mod:`s3rec.models.base`):
``model.user_states(batch)`` for each user's history, then ``model.score(states, items)``.

Protocols differ only in the candidates:

- ``sampled``: the target plus the user's 99 negatives from ``NAME_sample.txt`` (the paper's Table 2).
- ``full``: every item 1..n_items; the user's history (valid: s[:-2], test: s[:-1], uncut) is removed
  with -inf, so a target that repeats a history item (Yelp) is a certain miss; padding and the mask
  id are never candidates.
- ``full-unmasked``: every item 1..n_items, history kept (what RecBole calls full ranking).
- ``full-original``: the released code's behaviour: history scores set to 0 (not removed) and the
  padding and mask rows ranked as if they were items.

:func:`score_users` gives the raw scores of chosen users (for recommending), :func:`history_slots`
their history items.
"""

from __future__ import annotations

import torch

from .data.batches import SequenceTensors, eval_batch
from .data.store import SPLIT_HOLDOUT, Dataset
from .distributed import World
from .errors import DivergedError
from .metrics import metrics_from_ranks, target_ranks

# scores per chunk of users under the full protocols: on a CPU 16 MiB of float32, under glibc's 32 MiB
# ceiling for serving a block from fresh mmapped pages, so that each chunk reuses freed memory instead of
# faulting new pages in, and the passes over it (history, NaN check, ranks) find it in cache; on a GPU
# 64 MiB (fewer, larger kernels)
FULL_CHUNK_CELLS = 1 << 22
FULL_CHUNK_CELLS_GPU = 1 << 24
PROTOCOLS = ("sampled", "full", "full-unmasked", "full-original")
SELECTION_METRIC = {"sampled": "MRR", "full": "NDCG@20", "full-unmasked": "NDCG@20", "full-original": "NDCG@20"}


def full_chunk(n_items: int, cells: int) -> int:
    """Users per chunk under the full protocols: up to 1024, fewer so that a chunk's ``[users,
    n_items + 2]`` scores stay within ``cells`` floats."""
    return max(1, min(1024, cells // (n_items + 2)))


def has_nan(scores: torch.Tensor) -> bool:
    """Whether any score is NaN: ``amax`` propagates NaN, one pass and no ``[U, C]`` mask (a sum would
    also be one pass, but can overflow to inf and meet the -inf of removed history: a false NaN)."""
    return bool(torch.isnan(scores.amax())) if scores.numel() else False


@torch.no_grad()
def user_states(model, st: SequenceTensors, users: torch.Tensor, split: str, device, chunk: int = 4096) -> torch.Tensor:
    """The model's state of each user's history for the split (valid: s[:-2], test: s[:-1], cut to
    the model's ``max_len``): ``[U, S]`` on ``device``. Batches are laid out as the model asks
    (``causal``; packed rows unless ``packed_ok`` is False)."""
    outs = []
    max_len = model.cfg.max_len
    packed = model.packed_ok
    for i in range(0, len(users), chunk):
        batch = eval_batch(st, users[i : i + chunk], split, max_len, packed=packed, causal=model.causal).to(device)
        outs.append(model.user_states(batch))
    return torch.cat(outs)


def history_slots(st: SequenceTensors, users: torch.Tensor, split: str):
    """(row in ``users``, item id) of every history item of the given users for the split
    (valid: s[:-2], test: s[:-1], uncut): what the full protocol removes."""
    lo = st.offsets[users]
    hi = st.offsets[users + 1] - SPLIT_HOLDOUT[split]
    n = hi - lo
    row = torch.repeat_interleave(torch.arange(len(users)), n)
    idx = torch.arange(int(n.sum())) - (torch.cumsum(n, 0) - n)[row] + lo[row]
    return row, st.items[idx]


@torch.no_grad()
def score_users(model, st: SequenceTensors, users: torch.Tensor, split: str = "test", device="cpu",
                items: torch.Tensor | None = None, chunk: int = 1024) -> torch.Tensor:
    """The model's raw scores for the given dataset users (rows, ``[U]`` long), after the history of
    ``split`` ("valid": s[:-2]; "test": s[:-1], i.e. everything but the last item).

    ``items [U, C]``: candidate item ids per user -> ``[U, C]``; ``items=None``: every row of the item
    table -> ``[U, n_items + 2]``, where column i is item i, column 0 is padding and column
    ``n_items + 1`` the mask id (both meaningless: exclude them). Nothing is removed: history items
    keep their scores (:func:`history_slots` lists them). Returned on the CPU, float32; the model is
    in eval mode meanwhile and its mode is restored after."""
    was_training = model.training
    model.eval()
    try:
        if len(users) == 0:
            width = items.shape[1] if items is not None else st.n_items + 2
            return torch.zeros(0, width)
        states = user_states(model, st, users, split, device)
        out = []
        for i in range(0, len(users), chunk):
            cand = None if items is None else items[i : i + chunk].to(device)
            out.append(model.score(states[i : i + chunk], cand).float().cpu())
        return torch.cat(out)
    finally:
        model.train(was_training)


@torch.no_grad()
def evaluate(
    model,
    ds: Dataset,
    split: str,
    protocol: str = "sampled",
    device="cpu",
    st: SequenceTensors | None = None,
    chunk: int | None = None,
    users: torch.Tensor | None = None,
    world: World = World(),
) -> tuple[dict[str, float], dict]:
    """Metrics of the model on ``split`` ("valid" or "test") for every user, and facts about the run.

    Users are scored ``chunk`` at a time (default: up to 1024, fewer for large catalogues, so that a
    chunk's score matrix stays near ``FULL_CHUNK_CELLS`` floats, ``FULL_CHUNK_CELLS_GPU`` on a GPU,
    whatever the number of items)."""
    ranks, info = evaluate_ranks(model, ds, split, protocol, device, st, chunk, users, world)
    return metrics_from_ranks(ranks), info


@torch.no_grad()
def evaluate_ranks(
    model,
    ds: Dataset,
    split: str,
    protocol: str = "sampled",
    device="cpu",
    st: SequenceTensors | None = None,
    chunk: int | None = None,
    users: torch.Tensor | None = None,
    world: World = World(),
) -> tuple[torch.Tensor, dict]:
    """The 1-based rank of every user's target (``[n_users]`` int64, dataset row order) on ``split``
    under ``protocol``, and facts about the run: what :func:`evaluate` averages into metrics.
    ``users``: only these dataset rows (in their order), e.g. a validation subsample. ``world``: under
    torchrun each rank ranks its share of the users and every rank gets all the ranks."""
    if not chunk:  # 1024 users; under the full protocols fewer for large catalogues
        cells = FULL_CHUNK_CELLS if torch.device(device).type == "cpu" else FULL_CHUNK_CELLS_GPU
        chunk = 1024 if protocol == "sampled" else full_chunk(ds.n_items, cells)
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")
    if protocol == "sampled" and ds.negatives is None:
        raise ValueError("the sampled protocol needs the dataset's negatives (load it with s3rec.data.negatives.load_with_negatives)")
    was_training = model.training
    model.eval()
    st = st or SequenceTensors(ds)
    users = torch.arange(ds.n_users) if users is None else users.to(torch.long)
    n_all = len(users)
    users = world.share(users)
    h = user_states(model, st, users, split, device) if len(users) else None  # [U, S]; a share may be empty
    targets = torch.from_numpy(ds.targets(split))[users]
    ranks = []
    in_history = 0
    diverged = False
    for i in range(0, len(users), chunk):
        u = users[i : i + chunk]
        hu = h[i : i + chunk]
        t = targets[i : i + chunk]
        if protocol == "sampled":
            cands = torch.cat([t.view(-1, 1), torch.from_numpy(ds.negatives[u.numpy()])], 1).to(device)
            scores = model.score(hu, cands)  # [u, 100]
            col = torch.zeros(len(u), dtype=torch.long)
        elif protocol == "full-original":
            scores = model.score(hu, None)  # [u, n_items + 2], padding and mask ranked too
            row, item = history_slots(st, u, split)
            scores[row.to(device), item.to(device)] = 0.0
            col = t
        else:
            scores = model.score(hu, None)[:, 1 : ds.n_items + 1]  # [u, n_items]
            col = t - 1
            if protocol == "full":
                row, item = history_slots(st, u, split)
                scores[row.to(device), (item - 1).to(device)] = float("-inf")
                hist = torch.zeros(len(u), dtype=torch.bool)
                hist[row[item == t[row]]] = True
                in_history += int(hist.sum())
        if has_nan(scores):
            diverged = True
            break
        ranks.append(target_ranks(scores, col.to(device)).cpu())
    model.train(was_training)  # leave the model's mode as it was, even on an error
    counts = world.sum_floats({"diverged": float(diverged), "in_history": float(in_history)})  # every rank decides alike
    if counts["diverged"]:
        raise DivergedError("the model produced NaN scores (training diverged?); try a smaller lr")
    info = {"users": n_all, "protocol": protocol, "split": split}
    if protocol == "full":
        info["targets_in_history"] = int(counts["in_history"])
    mine = torch.cat(ranks) if ranks else torch.zeros(0, dtype=torch.long)
    return world.gather_shares(mine, n_all), info
