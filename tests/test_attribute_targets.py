"""AAP's and MAP's targets from pairs (s3rec.models.attributes) against the dense multi-hot computation."""

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from s3rec.models.attributes import ItemAttributes, multi_hot_bce


def dense(attrs, items):
    """The multi-hot rows of ``items`` from the pairs."""
    rows, cols = attrs.pairs(items)
    out = torch.zeros(len(items), attrs.n_columns)
    out[rows, cols] = 1.0
    return out


def _catalogue():
    # 6 rows (pad, 4 items, mask): an item without attributes, duplicates, attribute 0 given by the data
    lists = [[], [3, 1, 3], [], [0, 2, 5, 2, 2], [4], []]
    offsets = np.cumsum([0] + [len(x) for x in lists])
    return lists, ItemAttributes(offsets, np.array(sum(lists, []), dtype=np.int64), n_attributes=5)


def test_pairs_are_each_items_distinct_attributes():
    lists, attrs = _catalogue()
    items = torch.tensor([3, 1, 2, 3, 4, 0])
    rows, cols = attrs.pairs(items)
    got = sorted(zip(rows.tolist(), cols.tolist()))
    want = sorted((i, a) for i, item in enumerate(items.tolist()) for a in set(lists[item]))
    assert got == want
    multi_hot = dense(attrs, items)
    assert multi_hot.shape == (6, 6) and multi_hot.sum() == len(want)
    assert multi_hot[0].tolist() == [1, 0, 1, 0, 0, 1] and multi_hot[5].sum() == 0
    assert attrs.pairs(torch.tensor([], dtype=torch.long))[0].numel() == 0


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
def test_multi_hot_bce_equals_the_dense_bce_and_its_gradient(dtype):
    _, attrs = _catalogue()
    items = torch.randint(0, 6, (40,), generator=torch.Generator().manual_seed(0))
    x = (torch.randn(40, 6, generator=torch.Generator().manual_seed(1)) * 8).to(dtype).requires_grad_()  # saturated too
    got = multi_hot_bce(x, *attrs.pairs(items))
    (g_got,) = torch.autograd.grad(got * 3.0, x)
    want = F.binary_cross_entropy_with_logits(x.float(), dense(attrs, items), reduction="sum")
    (g_want,) = torch.autograd.grad(want * 3.0, x)
    assert got.dtype == torch.float32 and g_got.dtype == dtype
    torch.testing.assert_close(got, want, rtol=1e-6, atol=1e-4)
    torch.testing.assert_close(g_got, g_want.to(dtype))
