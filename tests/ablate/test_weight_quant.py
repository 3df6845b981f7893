"""INT8 per-channel and INT4 group-wise weight quantizers (ablate.nn.weight_quant): round-trip
errors within scale / 2 on fresh random inputs with outliers and all-zero rows and groups, the
code ranges, packing, and exact byte counts."""

from __future__ import annotations

import pytest
import torch

from ablate.nn import weight_quant as wq


def _weight(num_out: int, num_in: int, seed: int) -> torch.Tensor:
    """N(0, 0.02) with one large outlier per few rows, an all-zero row and an all-zero group."""
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(num_out, num_in, generator=g) * 0.02
    rows = torch.randint(0, num_out, (max(1, num_out // 4),), generator=g)
    cols = torch.randint(0, num_in, (rows.numel(),), generator=g)
    w[rows, cols] = 50.0 * torch.randn(rows.numel(), generator=g)
    w[0] = 0.0  # an all-zero row (per-channel scale 0)
    w[1, : min(num_in, wq.INT4_GROUP)] = 0.0  # an all-zero INT4 group
    return w


SHAPES = [(8, 128), (16, 300), (5, 1), (33, 257), (64, 512)]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_int8_round_trip_within_half_scale(shape, seed):
    w = _weight(*shape, seed)
    q = wq.quantize_int8(w)
    assert q.codes.dtype == torch.int8 and q.scale.shape == (shape[0],)
    assert q.codes.abs().max() <= wq.INT8_QMAX
    err = (w - wq.dequantize_int8(q)).abs()
    assert torch.all(err <= q.scale[:, None] / 2 * (1 + 1e-6) + 1e-12)
    torch.testing.assert_close(q.scale, w.abs().amax(1) / 127)
    assert torch.all(wq.dequantize_int8(q)[0] == 0)  # zero row: exact zeros, no nan
    # the amax of every nonzero row lands on the grid's end exactly
    nonzero = q.scale > 0
    assert torch.all(q.codes[nonzero].abs().amax(1) == wq.INT8_QMAX)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("group", [128, 32])
def test_int4_round_trip_within_half_scale(shape, seed, group):
    w = _weight(*shape, seed)
    q = wq.quantize_int4(w, group)
    num_groups = -(-shape[1] // group)
    assert q.scale.shape == (shape[0], num_groups)
    assert q.codes.dtype == torch.uint8 and q.codes.shape == (shape[0], -(-shape[1] // 2))
    codes = wq.unpack_int4(q.codes, shape[1])
    assert codes.abs().max() <= wq.INT4_QMAX
    scale_OI = q.scale.repeat_interleave(group, 1)[:, : shape[1]]
    err = (w - wq.dequantize_int4(q)).abs()
    assert torch.all(err <= scale_OI / 2 * (1 + 1e-6) + 1e-12)
    # each group's scale is its own amax / 7 (groups padded with zeros at the row's end)
    pad = num_groups * group - shape[1]
    groups = torch.nn.functional.pad(w, (0, pad)).view(shape[0], num_groups, group)
    torch.testing.assert_close(q.scale, groups.abs().amax(2) / 7)
    assert torch.all(wq.dequantize_int4(q)[0] == 0)


def test_int4_outlier_confined_to_its_group():
    """A huge weight coarsens only its own group: the other groups of the row keep fine steps."""
    w = torch.full((1, 256), 0.01)
    w[0, 3] = 1000.0
    deq = wq.dequantize_int4(wq.quantize_int4(w, 128))
    assert torch.all(deq[0, 128:] == w[0, 128:])  # 0.01 is that group's amax: exact
    assert torch.all(deq[0, :128][torch.arange(128) != 3] == 0)  # rounded away beside it


def test_pack_unpack_every_code():
    q = torch.arange(-8, 8, dtype=torch.int8).repeat(3, 1)[:, :15]  # odd width
    packed = wq.pack_int4(q)
    assert packed.shape == (3, 8)
    assert torch.equal(wq.unpack_int4(packed, 15), q)


@pytest.mark.parametrize("fmt", ["int8", "int4"])
@pytest.mark.parametrize("shape", SHAPES)
def test_bytes_exact(fmt, shape):
    q = wq.quantize(_weight(*shape, 0), fmt)
    assert q.nbytes() == wq.quantized_bytes(*shape, fmt)


def test_bytes_known_shape():
    # (256, 300): int8 76,800 codes + 256 fp32 scales; int4 256 rows x 150 bytes + 256 x 3
    # groups of 128 x 4 bytes
    assert wq.quantize(torch.randn(256, 300), "int8").nbytes() == 256 * 300 + 256 * 4 == 77_824
    assert wq.quantize(torch.randn(256, 300), "int4").nbytes() == 256 * 150 + 256 * 3 * 4 == 41_472


def test_bad_input():
    with pytest.raises(ValueError, match="2-D"):
        wq.quantize_int8(torch.zeros(2, 3, 4))
    with pytest.raises(ValueError, match="group_size"):
        wq.quantize_int4(torch.zeros(2, 3), 0)
    with pytest.raises(ValueError, match="unknown weight format"):
        wq.quantize(torch.zeros(2, 3), "int2")
