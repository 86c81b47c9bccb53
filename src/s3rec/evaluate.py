"""One evaluation path: last hidden state -> candidate scores -> target ranks -> metrics.

Protocols differ only in the candidates:

- ``sampled``: the target plus the user's 99 negatives from ``NAME_sample.txt`` (the paper's Table 2).
- ``full``: every item 1..n_items; the user's history (valid: s[:-2], test: s[:-1], uncut) is removed
  with -inf, so a target that repeats a history item (Yelp) is a certain miss; padding and the mask
  id are never candidates.
- ``full-unmasked``: every item 1..n_items, history kept (what RecBole calls full ranking).
- ``full-original``: the released code's behaviour: history scores set to 0 (not removed) and the
  padding and mask rows ranked as if they were items.
"""

from __future__ import annotations

import torch

from .data.batches import SequenceTensors, eval_batch
from .data.store import SPLIT_HOLDOUT, Dataset
from .errors import DivergedError
from .metrics import metrics_from_ranks, target_ranks

PROTOCOLS = ("sampled", "full", "full-unmasked", "full-original")
SELECTION_METRIC = {"sampled": "MRR", "full": "NDCG@20", "full-unmasked": "NDCG@20", "full-original": "NDCG@20"}


@torch.no_grad()
def last_hidden(model, st: SequenceTensors, users: torch.Tensor, split: str, device, chunk: int = 4096):
    """Hidden state at the last input position for each user: ``[U, D]``."""
    outs = []
    max_len = model.cfg.max_len
    for i in range(0, len(users), chunk):
        batch = eval_batch(st, users[i : i + chunk], split, max_len, causal=model.causal).to(device)
        h = model.encode(batch)  # [R, P, D]
        outs.append(h.reshape(-1, h.shape[-1])[batch.layout.last_slot])
    return torch.cat(outs) if outs else torch.zeros(0, model.cfg.hidden_size, device=device)


def _history_slots(st: SequenceTensors, users: torch.Tensor, split: str):
    """(row in the chunk, item id) of every history item of the chunk's users."""
    lo = st.offsets[users]
    hi = st.offsets[users + 1] - SPLIT_HOLDOUT[split]
    n = hi - lo
    row = torch.repeat_interleave(torch.arange(len(users)), n)
    idx = torch.arange(int(n.sum())) - (torch.cumsum(n, 0) - n)[row] + lo[row]
    return row, st.items[idx]


@torch.no_grad()
def evaluate(
    model,
    ds: Dataset,
    split: str,
    protocol: str = "sampled",
    device="cpu",
    st: SequenceTensors | None = None,
    chunk: int = 1024,
) -> tuple[dict[str, float], dict]:
    """Metrics of the model on ``split`` ("valid" or "test") for every user, and facts about the run."""
    if protocol not in PROTOCOLS:
        raise ValueError(f"unknown protocol {protocol!r}; choose from {PROTOCOLS}")
    if protocol == "sampled" and ds.negatives is None:
        raise ValueError("the sampled protocol needs the dataset's negatives (load with negatives=True)")
    was_training = model.training
    model.eval()
    st = st or SequenceTensors(ds)
    users = torch.arange(ds.n_users)
    h = last_hidden(model, st, users, split, device)  # [U, D]
    targets = torch.from_numpy(ds.targets(split))
    table = model.output_embeddings()  # [n_items + 2, D]
    ranks = []
    in_history = 0
    for i in range(0, ds.n_users, chunk):
        u = users[i : i + chunk]
        hu = h[i : i + chunk]
        t = targets[i : i + chunk]
        if protocol == "sampled":
            cands = torch.cat([t.view(-1, 1), torch.from_numpy(ds.negatives[i : i + chunk])], 1).to(device)
            scores = torch.einsum("ucd,ud->uc", table[cands], hu)  # [u, 100]
            col = torch.zeros(len(u), dtype=torch.long)
        elif protocol == "full-original":
            scores = hu @ table.T  # [u, n_items + 2], padding and mask ranked too
            row, item = _history_slots(st, u, split)
            scores[row.to(device), item.to(device)] = 0.0
            col = t
        else:
            scores = hu @ table[1 : ds.n_items + 1].T  # [u, n_items]
            col = t - 1
            if protocol == "full":
                row, item = _history_slots(st, u, split)
                scores[row.to(device), (item - 1).to(device)] = float("-inf")
                hist = torch.zeros(len(u), dtype=torch.bool)
                hist[row[item == t[row]]] = True
                in_history += int(hist.sum())
        if torch.isnan(scores).any():
            model.train(was_training)  # leave the model's mode as it was, even on this error
            raise DivergedError("the model produced NaN scores (training diverged?); try a smaller lr")
        ranks.append(target_ranks(scores, col.to(device)).cpu())
    model.train(was_training)
    info = {"users": ds.n_users, "protocol": protocol, "split": split}
    if protocol == "full":
        info["targets_in_history"] = in_history
    return metrics_from_ranks(torch.cat(ranks)), info
