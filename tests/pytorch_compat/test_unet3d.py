"""The released PyTorch U-Net: state_dict layout, forward pass, batch-statistics BatchNorm."""

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from pytorch_compat import UNet3D  # noqa: E402
from pytorch_compat.unet3d import BatchStatisticsBatchNorm3d  # noqa: E402
from tests.pytorch_compat.helpers import randomise_torch  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
REFERENCE = REPO.parent / "shared" / "reference_data" / "official_pt_state_dict.txt"


def _reference_layout():
    out = []
    for line in REFERENCE.read_text(encoding="utf-8").splitlines():
        if line.strip():
            key, shape = line.split(" ", 1)
            out.append((key, tuple(int(s) for s in shape.strip("()").split(",") if s.strip())))
    return out


@pytest.mark.skipif(not REFERENCE.is_file(),
                    reason=f"reference state-dict listing not found at {REFERENCE} "
                           "(shared/ must sit beside the clone)")
def test_state_dict_matches_released_checkpoint_exactly():
    expected = _reference_layout()
    got = [("module." + k, tuple(v.shape)) for k, v in UNet3D().state_dict().items()]
    assert len(expected) == 106
    assert got == expected


def test_module_names_do_not_depend_on_width():
    small, full = UNet3D(n_base_filters=4, n_class=2), UNet3D()
    assert list(small.state_dict()) == list(full.state_dict())
    assert small.out_tr.final_conv.weight.shape == (2, 8, 1, 1, 1)
    assert small.up_tr256.ops[0].conv1.weight.shape == (32, 96, 3, 3, 3)


def test_forward_shape_range_and_transposed_decoder(rng):
    model = randomise_torch(UNet3D(n_base_filters=4), rng).eval()
    x = torch.from_numpy(rng.random((2, 1, 16, 16, 8), dtype=np.float32))
    with torch.no_grad():
        y = model(x)
        up = model.up_tr64.up_conv(torch.zeros(1, 16, 4, 4, 2))
    assert y.shape == (2, 1, 16, 16, 8)
    assert 0.0 <= float(y.min()) and float(y.max()) <= 1.0 and float(y.std()) > 0
    assert up.shape == (1, 16, 8, 8, 4)  # ConvTranspose3d(2, stride 2) keeps the channels


def test_bad_input_raises():
    with pytest.raises(ValueError, match="divisible by 8"):
        UNet3D(n_base_filters=4)(torch.zeros(1, 1, 12, 16, 8))
    with pytest.raises(ValueError, match="n_base_filters"):
        UNet3D(n_base_filters=0)


def test_batch_statistics_batchnorm(rng):
    bn = BatchStatisticsBatchNorm3d(3)
    randomise_torch(bn, rng)
    x = torch.from_numpy(rng.normal(2.0, 3.0, (2, 3, 4, 4, 2)).astype(np.float32))
    before = bn.running_mean.clone()
    bn.eval()
    y = bn(x)
    mean = x.mean(dim=(0, 2, 3, 4), keepdim=True)
    var = x.var(dim=(0, 2, 3, 4), unbiased=False, keepdim=True)
    w, b = bn.weight.view(1, 3, 1, 1, 1), bn.bias.view(1, 3, 1, 1, 1)
    expected = (x - mean) / torch.sqrt(var + bn.eps) * w + b
    torch.testing.assert_close(y, expected, rtol=1e-5, atol=1e-5)
    assert torch.equal(bn.running_mean, before)  # eval leaves the statistics alone
    bn.train()
    bn(x)
    torch.testing.assert_close(bn.running_mean, 0.9 * before + 0.1 * mean.flatten())
    # The option reaches every block; an ordinary model in eval uses running statistics.
    release = UNet3D(n_base_filters=4, batch_statistics=True)
    assert all(isinstance(m.bn1, BatchStatisticsBatchNorm3d)
               for m in release.modules() if hasattr(m, "bn1"))
    assert not any(isinstance(m, BatchStatisticsBatchNorm3d) for m in UNet3D(n_base_filters=4).modules())
