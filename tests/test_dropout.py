"""The encoder's dropout (``s3rec.models.encoder.dropout``): masks cut from random bytes must be the
inverted dropout of ``F.dropout`` in distribution: uniform bits, the right keep rate, the right scale,
seeded by the default generator, and gradients through the same mask."""

from __future__ import annotations

import math

import pytest
import torch

import s3rec.models.encoder as encoder
from s3rec.models.encoder import Dropout, dropout, keep_scale, random_bits


@pytest.mark.parametrize("dtype", [torch.uint8, torch.int16])
def test_random_bits_are_uniform_in_every_byte_of_the_word(dtype):
    torch.manual_seed(0)
    n_words = 1 << 16
    bits = random_bits(n_words * 8 // torch.empty((), dtype=dtype).element_size(), dtype, "cpu")
    assert bits.dtype == dtype
    as_bytes = bits.view(torch.uint8).view(n_words, 8).long()
    # every byte position of the 64-bit draws (a 63-bit draw would leave the top byte below 128)
    for position in range(8):
        column = as_bytes[:, position].double()
        assert abs(column.mean().item() - 127.5) < 4 * 73.9 / math.sqrt(n_words)
        assert (column >= 128).double().mean().item() == pytest.approx(0.5, abs=4 * 0.5 / math.sqrt(n_words))
    # all 256 byte values about equally often (chi-square, 255 degrees of freedom: mean 255, sd 22.6)
    counts = torch.bincount(as_bytes.flatten(), minlength=256).double()
    expected = counts.sum() / 256
    chi2 = ((counts - expected) ** 2 / expected).sum().item()
    assert chi2 < 255 + 5 * 22.6


def test_random_bits_cut_to_length():
    assert random_bits(13, torch.uint8, "cpu").shape == (13,)
    assert random_bits(7, torch.int16, "cpu").shape == (7,)


@pytest.mark.parametrize("p", [0.5, 0.25, 0.2, 0.1, 0.9, 0.3])
def test_keep_rate_and_scale(p):
    torch.manual_seed(1)
    x = torch.ones(1 << 20)
    m = keep_scale(x, p)
    values = torch.unique(m)
    kept = (m > 0).double().mean().item()
    sd = math.sqrt(p * (1 - p) / x.numel())
    assert kept == pytest.approx(1 - p, abs=4 * sd + 2 ** -16)
    assert len(values) == 2 and values[0].item() == 0.0
    # the scale is 1/(1 - p) for the drop probability actually used (p itself, or p on a 1/65536 grid)
    used = 1 - 1 / values[1].item()
    assert used == pytest.approx(p, abs=2 ** -17)
    if float(p * 256).is_integer():
        assert values[1].item() == pytest.approx(1 / (1 - p), rel=1e-6)
    assert m.double().mean().item() == pytest.approx(1.0, abs=4 * sd / (1 - p) + 1e-4)


def test_dropout_edges():
    x = torch.randn(4, 5)
    assert dropout(x, 0.5, training=False) is x
    assert dropout(x, 0.0, training=True) is x
    assert torch.equal(dropout(x, 1.0, training=True), torch.zeros_like(x))


def test_dropout_is_seeded_by_the_default_generator_and_module_matches_function():
    x = torch.randn(3, 7, 16)
    torch.manual_seed(5)
    a = dropout(x, 0.5, training=True)
    torch.manual_seed(5)
    b = Dropout(0.5).train()(x)
    torch.manual_seed(6)
    c = dropout(x, 0.5, training=True)
    assert torch.equal(a, b)
    assert not torch.equal(a, c)
    assert torch.equal(Dropout(0.5).eval()(x), x)


def test_gradient_flows_through_the_same_mask():
    x = torch.randn(64, 32, requires_grad=True)
    torch.manual_seed(3)
    y = dropout(x, 0.2, training=True)
    y.sum().backward()
    mult = torch.where(x.detach() != 0, y.detach() / x.detach(), torch.zeros(()))
    assert torch.allclose(x.grad, mult, rtol=1e-5, atol=1e-6)
    assert set(torch.unique(x.grad > 0).tolist()) == {True, False}


@pytest.mark.parametrize("p", [0.5, 0.25, 0.2, 0.1, 0.3, 0.999])
def test_every_bit_pattern_once_keeps_exactly_one_minus_p(monkeypatch, p):
    """Fed each byte (or int16) value exactly once, the mask keeps exactly (1 - p) of them: no
    off-by-one at the threshold, signed or unsigned."""
    def every_value(n, dtype, device):
        lo, hi = (0, 256) if dtype == torch.uint8 else (-32768, 32768)
        assert n == hi - lo
        return torch.arange(lo, hi, dtype=torch.int32).to(dtype)

    monkeypatch.setattr(encoder, "random_bits", every_value)
    levels = 256 if float(p * 256).is_integer() else 65536
    m = keep_scale(torch.ones(levels), p)
    assert int((m > 0).sum()) == levels - round(p * levels)


def test_drop_probability_next_to_one_drops_everything_and_shapes_hold():
    x = torch.ones(1000)
    assert torch.equal(keep_scale(x, 1 - 2 ** -18), torch.zeros_like(x))  # rounds to 1 on the 1/65536 grid
    assert keep_scale(torch.ones(0, 5), 0.3).shape == (0, 5)
    wide = torch.randn(40, 60).t()  # not contiguous
    torch.manual_seed(2)
    y = dropout(wide, 0.5, training=True)
    assert y.shape == wide.shape and set(torch.unique((y != 0).float()).tolist()) == {0.0, 1.0}
    assert torch.allclose(y[y != 0], 2 * wide[y != 0])
