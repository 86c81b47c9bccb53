"""Top-k recommendations from a fine-tuned checkpoint, in the user's own ids.

The Python API::

    from s3rec.recommend import Recommender
    rec = Recommender.load("runs/beauty")                      # a run folder (its best.pt) or a checkpoint
    rec.recommend(["B0001", "B0042"], k=10)                    # for a history of original item ids
    rec.recommend_users(["A3F..."], k=10)                     # for dataset users (whole history)

Each recommendation is a list of ``(item, score)`` pairs, best first, the history's items excluded
(unless ``exclude_history=False``), padding and the mask id never recommended. Histories longer than
the model's ``max_len`` use their last ``max_len`` items, as in training.

Ids: a dataset written by ``s3rec data import`` / ``prepare`` keeps maps from its internal ids to the
original ones, and every id in and out of this module is an original id (a string). For the benchmark
files, which have no maps, the ids in the files are the original ids.

Scores are computed in chunks of users so that memory stays bounded for large catalogues
(``chunk_cells`` score cells, users x items, at a time).
"""

from __future__ import annotations

from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch

from .checkpoint import read as read_checkpoint
from .data import registry
from .data.batches import SequenceBatch
from .data.idmaps import IdMaps, load_id_maps
from .data.packing import FINETUNE_MASK_VALUE, make_layout, scatter_tokens
from .errors import S3RecError
from .train import model_from_state

CHUNK_CELLS = 1 << 23  # ~8M scores (32 MiB of float32) per chunk


class UnknownItemsError(S3RecError):
    """A history names items the model does not know."""

    def __init__(self, items: list[str]):
        self.items = items
        shown = ", ".join(repr(i) for i in items[:5]) + (" ..." if len(items) > 5 else "")
        super().__init__(f"{len(items)} unknown item id(s): {shown}")


def original_ids(ds, maps: IdMaps | None) -> tuple[list[str], list[str]]:
    """``(items, users)``: the original id of internal item ``i`` at ``items[i]`` (``items[0]``:
    padding, ``""``) and of the dataset's k-th user row at ``users[k]``. Without id maps (the
    benchmark files) the ids in the files are the original ones."""
    if maps is None:
        return [""] + [str(i) for i in range(1, ds.n_items + 1)], [str(u) for u in ds.user_ids.tolist()]
    maps.check(ds)
    return maps.items, [maps.users[int(u)] for u in ds.user_ids.tolist()]


def history_batch(histories: list[np.ndarray], users: torch.Tensor, max_len: int, causal: bool, packed: bool) -> SequenceBatch:
    """A scoring batch for arbitrary histories (internal item ids, each non-empty), cut to max_len."""
    cut = [h[-max_len:] for h in histories]
    lengths = torch.tensor([len(h) for h in cut], dtype=torch.long)
    layout = make_layout(lengths, max_len, causal, FINETUNE_MASK_VALUE, packed=packed)
    flat = torch.from_numpy(np.concatenate(cut).astype(np.int64))
    return SequenceBatch(layout, scatter_tokens(layout, flat), users)


class Recommender:
    """A fine-tuned model, its dataset's histories and id maps: ``recommend`` and ``recommend_users``.

    ``maps``: the dataset's :class:`~s3rec.data.idmaps.IdMaps`, or ``None`` when it has none (the ids
    in the files are the original ids then). ``item_names[i]`` / ``user_names[k]`` are the original ids
    of internal item ``i`` and of user row ``k``.
    """

    def __init__(self, model, cfg, ds, maps: IdMaps | None = None, device="cpu", chunk_cells: int = CHUNK_CELLS):
        self.model = model.eval()
        self.cfg = cfg
        self.ds = ds
        self.maps = maps
        self.item_names, self.user_names = original_ids(ds, maps)
        self._item_index = {name: i for i, name in enumerate(self.item_names) if i > 0}
        self._user_row = {name: k for k, name in enumerate(self.user_names)}
        self.device = device
        self.chunk_cells = chunk_cells

    @classmethod
    def load(cls, checkpoint: str | Path, dataset: str | None = None, data_dir=None, device="cpu") -> "Recommender":
        """Load a model written by ``s3rec train`` and its dataset (found as for training, or ``dataset``).

        ``checkpoint``: a checkpoint file (``best.pt`` or ``checkpoint.pt``) or a run folder, whose
        ``best.pt`` is read. Without ``data_dir``, the model's own dataset is looked for first in the
        folder its run was trained on (:func:`s3rec.api.run_data_dir`).
        """
        from .api import run_data_dir

        path = Path(checkpoint)
        if path.is_dir():
            path = path / "best.pt"
        cfg, state = read_checkpoint(path)
        if data_dir is None and dataset is None:
            data_dir = run_data_dir(path)
        files = registry.locate(dataset or state["dataset"], data_dir)
        ds = registry.load(files.name, data_dir)
        model = model_from_state(cfg, state, path, device, ds)
        return cls(model, cfg, ds, load_id_maps(files.folder, ds.name), device)

    @property
    def max_len(self) -> int:
        return self.cfg.max_len

    def info(self) -> dict:
        return {"model": self.cfg.model, "dataset": self.ds.name, "items": self.ds.n_items,
                "users": self.ds.n_users, "max_len": self.max_len,
                "parameters": sum(p.numel() for p in self.model.parameters())}

    def internal_items(self, history: Iterable) -> np.ndarray:
        """Original item ids -> internal ids; unknown ids raise :class:`UnknownItemsError`."""
        names = [str(x) for x in history]
        idx = [self._item_index.get(n, -1) for n in names]
        unknown = [n for n, i in zip(names, idx) if i < 0]
        if unknown:
            raise UnknownItemsError(unknown)
        return np.asarray(idx, dtype=np.int64)

    def user_rows(self, users: Iterable) -> np.ndarray:
        rows = [self._user_row.get(str(u), -1) for u in users]
        unknown = [str(u) for u, r in zip(users, rows) if r < 0]
        if unknown:
            raise S3RecError(f"{len(unknown)} unknown user id(s): {', '.join(map(repr, unknown[:5]))}")
        return np.asarray(rows, dtype=np.int64)

    @torch.no_grad()
    def _top_k(self, histories: list[np.ndarray], users: np.ndarray, k: int, exclude_history: bool):
        """(items [B, k] internal, scores [B, k]) for internal-id histories, in bounded chunks."""
        n_items = self.ds.n_items
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= n_items:
            raise S3RecError(f"-k {k}: must be a whole number in 1..{n_items} (the items of {self.ds.name})")
        step = max(1, self.chunk_cells // (n_items + 2))
        out_items, out_scores = [], []
        for a in range(0, len(histories), step):
            hs = histories[a : a + step]
            batch = history_batch(hs, torch.from_numpy(users[a : a + step]), self.max_len, self.model.causal,
                                  getattr(self.model, "packed_ok", True)).to(self.device)
            scores = self.model.score(self.model.user_states(batch), None).float()  # [b, n_items + 2]
            scores[:, 0] = float("-inf")
            scores[:, n_items + 1 :] = float("-inf")
            if exclude_history:
                rows = torch.repeat_interleave(torch.arange(len(hs)), torch.tensor([len(h) for h in hs]))
                scores[rows.to(scores.device), torch.from_numpy(np.concatenate(hs)).to(scores.device)] = float("-inf")
            top = torch.topk(scores, k, dim=1)
            out_items.append(top.indices.cpu())
            out_scores.append(top.values.cpu())
        return torch.cat(out_items).numpy(), torch.cat(out_scores).numpy()

    def _named(self, items: np.ndarray, scores: np.ndarray) -> list[list[tuple[str, float]]]:
        names = self.item_names
        return [[(names[i], float(s)) for i, s in zip(row_i, row_s) if np.isfinite(s)]
                for row_i, row_s in zip(items.tolist(), scores.tolist())]

    def recommend(self, history: Iterable, k: int = 10, exclude_history: bool = True, user=None) -> list[tuple[str, float]]:
        """Top-k ``(item, score)`` for one history of original item ids (oldest first).

        Models that embed users (Caser, HGN, FM, AutoInt) need ``user``: a known original user id.
        """
        h = self.internal_items(history)
        if len(h) == 0:
            raise S3RecError("the history is empty: at least one item is needed")
        if getattr(self.model, "uses_users", False) and user is None:
            raise S3RecError(f"model {self.cfg.model} embeds users: give a known user id with the history")
        row = self.user_rows([user])[0] if user is not None else 0
        return self._named(*self._top_k([h], np.array([row]), k, exclude_history))[0]

    def iter_users(self, users: Iterable | None = None, k: int = 10, exclude_history: bool = True
                   ) -> Iterator[tuple[str, list[tuple[str, float]]]]:
        """``(user, top-k)`` for the given original user ids (default: every user), from each user's
        whole sequence, in chunks (memory stays bounded however many users)."""
        rows = np.arange(self.ds.n_users) if users is None else self.user_rows(list(users))
        step = max(1, self.chunk_cells // (self.ds.n_items + 2))
        for a in range(0, len(rows), step):
            part = rows[a : a + step]
            hs = [self.ds.sequence(int(r)) for r in part]
            for r, rec in zip(part.tolist(), self._named(*self._top_k(hs, part, k, exclude_history))):
                yield self.user_names[r], rec

    def recommend_users(self, users: Iterable | None = None, k: int = 10, exclude_history: bool = True) -> dict:
        """``{user: top-k}`` for the given original user ids (default: every user)."""
        return dict(self.iter_users(users, k, exclude_history))
