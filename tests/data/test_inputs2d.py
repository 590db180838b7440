"""2D slice-based and 2.5D orthogonal inputs, slice-by-slice segmentation (paper Sec. 4.5)."""

import numpy as np
import pytest

from models_genesis.data.target_tasks.inputs2d import (
    axial_stack_at, orthogonal_inputs, predict_slicewise, slice_inputs, slicewise_inputs,
    slicewise_targets, stack_slices,
)


@pytest.fixture
def crops(rng):
    return rng.random((2, 16, 12, 8), dtype=np.float32)


def test_slice_inputs_are_the_three_centre_axial_slices(crops):
    x = slice_inputs(crops[..., None])
    assert x.shape == (2, 16, 12, 3)
    for k, z in enumerate((3, 4, 5)):  # deps 8: centre 4
        np.testing.assert_array_equal(x[..., k], crops[:, :, :, z])


def test_orthogonal_inputs_are_the_planes_through_the_centre_voxel(crops):
    x = orthogonal_inputs(crops)  # size = min(16, 12, 8) = 8
    assert x.shape == (2, 8, 8, 3)
    cx, cy, cz = 8, 6, 4
    np.testing.assert_array_equal(x[..., 0], crops[:, cx - 4:cx + 4, cy - 4:cy + 4, cz])
    np.testing.assert_array_equal(x[..., 1], crops[:, cx - 4:cx + 4, cy, cz - 4:cz + 4])
    np.testing.assert_array_equal(x[..., 2], crops[:, cx, cy - 4:cy + 4, cz - 4:cz + 4])
    # The centre voxel is the same in all three planes, at (4, 4).
    np.testing.assert_array_equal(x[:, 4, 4, 0], crops[:, cx, cy, cz])
    np.testing.assert_array_equal(x[:, 4, 4, 1], x[:, 4, 4, 2])
    with pytest.raises(ValueError, match=r"size.*\[1, 8\]"):
        orthogonal_inputs(crops, size=9)


def test_slicewise_round_trip_and_edges(crops):
    x = slicewise_inputs(crops)
    assert x.shape == (2 * 8, 16, 12, 3)
    np.testing.assert_array_equal(x[8 + 5], crops[1][:, :, 4:7])  # crop 1, slice 5
    np.testing.assert_array_equal(x[0], crops[0][:, :, [0, 0, 1]])  # edge repeats the border
    np.testing.assert_array_equal(x[7], crops[0][:, :, [6, 7, 7]])
    masks = (crops > 0.5).astype(np.uint8)
    t = slicewise_targets(masks)
    assert t.shape == (16, 16, 12, 1)
    np.testing.assert_array_equal(stack_slices(t, 8)[..., 0], masks)  # stacking inverts


def test_predict_slicewise_stacks_a_2d_models_maps(crops):
    class CentreSlice:  # a "model" returning the centre channel: stacking must give the crops
        def predict(self, x, batch_size=32, verbose=0):
            return x[..., 1:2]

    np.testing.assert_array_equal(predict_slicewise(CentreSlice(), crops)[..., 0], crops)


def test_axial_stack_at_and_slice_outside_the_scan(rng):
    vol = rng.random((20, 20, 6))
    out = axial_stack_at(vol, (10, 10, 3), (8, 8))
    np.testing.assert_array_equal(out, vol[6:14, 6:14, 2:5])
    edge = axial_stack_at(vol, (1, 10, 3), (8, 8), pad_value=-1.0)
    np.testing.assert_array_equal(edge[:3], -1.0)
    np.testing.assert_array_equal(edge[3:], vol[0:5, 6:14, 2:5])
    for z in (0, 5, 9):
        with pytest.raises(ValueError, match=f"Slice index z={z} is outside the scan"):
            axial_stack_at(vol, (10, 10, z), (8, 8))
