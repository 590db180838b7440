"""Tests of the experiment figures (`pipeline.figures`)."""

from models_genesis.pipeline import figures


def test_plots_written_atomically(tmp_path):
    curve = [{"method": m, "label_fraction": f, "iou": v + 0.01 * r}
             for m, base in (("genesis", 0.7), ("scratch", 0.6))
             for f in (0.1, 0.5, 1.0) for r in range(2) for v in [base + 0.1 * f]]
    path = figures.plot_annotation_efficiency(curve, tmp_path / "eff.pdf", metric="iou")
    assert open(path, "rb").read(4) == b"%PDF"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["eff.pdf"]
