"""Package figures never switch matplotlib's backend and are written atomically."""

import os
import subprocess
import sys

from models_genesis.plotting import new_figure, save_figure


def test_save_figure_writes_atomically(tmp_path):
    fig, ax = new_figure(figsize=(2, 2))
    ax.plot([0, 1], [1, 0])
    path = save_figure(fig, tmp_path / "sub" / "plot.png", dpi=50)
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"
    assert os.listdir(tmp_path / "sub") == ["plot.png"]
    pdf = save_figure(fig, tmp_path / "plot.pdf")
    assert open(pdf, "rb").read(4) == b"%PDF"


def test_package_plots_leave_the_backend_alone(tmp_path):
    code = (
        "import matplotlib; matplotlib.use('svg'); import numpy as np\n"
        "from models_genesis.transformations.figures import plot_transformations\n"
        "from models_genesis.transformations.unified import TransformConfig\n"
        f"plot_transformations(np.random.default_rng(0).random((32, 32, 16), dtype='float32'), "
        f"{str(tmp_path / 'f.png')!r}, config=TransformConfig(margin=1))\n"
        "print(matplotlib.get_backend())\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip().splitlines()[-1] == "svg"
    assert (tmp_path / "f.png").stat().st_size > 1000
