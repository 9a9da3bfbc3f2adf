"""Figures: mosaics put each image in its tile; figures are written atomically as PNG."""

import numpy as np

from vaelab import plots


def test_mosaic_places_each_image_in_its_tile():
    images = np.stack([np.full(6, v, dtype=np.float32) for v in (0.1, 0.2, 0.3)])  # three 2x3 images
    out = plots.mosaic(images, (2, 3), ncols=2, pad=1)
    assert out.shape == (2 * 3, 2 * 4 - 1)
    assert np.all(out[0:2, 0:3] == 0.1) and np.all(out[0:2, 4:7] == np.float32(0.2))
    assert np.all(out[3:5, 0:3] == np.float32(0.3)) and np.all(out[3:5, 4:7] == 0)  # the fourth tile is empty
    assert np.all(out[:, 3] == 0) and np.all(out[2, :] == 0)  # the gaps


def test_figures_are_saved_as_png_without_temporaries(tmp_path):
    rng = np.random.default_rng(0)
    figs = plots.m2_figures(rng.random((9, 16)), rng.random((3, 16)), rng.random((9, 16)), (4, 4), n_classes=3)
    assert set(figs) == {"m2_conditional.png", "m2_style.png"}
    for name, fig in figs.items():
        plots.save_figure(fig, tmp_path / "figures" / name)
    assert sorted(p.name for p in (tmp_path / "figures").iterdir()) == ["m2_conditional.png", "m2_style.png"]
    assert (tmp_path / "figures" / "m2_style.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
