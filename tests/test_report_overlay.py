"""Heatmap overlays and their file names: what a reader sees, where it is written, what is never overwritten."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from xscreen.report import COLOUR_MAP, HeatmapNames, render_overlay, upsample_bilinear
from xscreen.report._overlay import save_heatmap_png


def test_upsampling_is_pillows_bilinear_resize():
    cam = np.random.default_rng(0).normal(size=(7, 7)).astype(np.float32)
    pillow = np.asarray(Image.fromarray(cam, "F").resize((300, 224), Image.Resampling.BILINEAR))
    np.testing.assert_allclose(upsample_bilinear(cam, (224, 300)), pillow, atol=1e-5)


def test_overlay_keeps_the_film_where_there_is_no_evidence_and_colours_the_strongest_cell():
    film = np.full((400, 300), 100, dtype=np.uint8)  # portrait film, aspect kept
    cam = np.full((7, 7), -2.0, dtype=np.float32)
    cam[6, 0] = 3.0  # bottom-left cell: the strongest evidence
    image = render_overlay(film, cam, "covid 0.97, flagged for review", max_side=1024)
    pixels = np.asarray(image)
    assert image.size == (300, 400) and image.mode == "RGB"
    assert (pixels[200:, 250:] == 100).all()  # no evidence: the grey film, untouched
    hot = pixels[380, 20].astype(int)
    assert hot[0] > hot[1] + 40 and hot[0] > hot[2] + 40  # red end of the map
    caption_band = pixels[:20, :150]
    assert (caption_band == 0).all(axis=2).any() and (caption_band > 200).all(axis=2).any()  # white on black


def test_overlay_is_shrunk_to_its_maximum_side():
    image = render_overlay(np.zeros((2000, 1000), np.uint8), np.ones((7, 7)), "x", max_side=256)
    assert image.size == (128, 256)


def test_colour_map_runs_from_dark_blue_to_dark_red():
    assert COLOUR_MAP.shape == (256, 3)
    assert COLOUR_MAP[0, 2] > COLOUR_MAP[0, 0] and COLOUR_MAP[-1, 0] > COLOUR_MAP[-1, 2]


def test_names_follow_the_input_path_and_stay_unique(tmp_path):
    names = HeatmapNames(tmp_path / "out", tmp_path / "scans")
    (tmp_path / "out").mkdir()
    first = names.path_for(str(tmp_path / "scans" / "ward 3" / "film.png"))
    assert first.name == "ward 3__film.png.heatmap.png"
    assert names.path_for(str(tmp_path / "scans" / "ward 3" / "film.jpg")).name == "ward 3__film.jpg.heatmap.png"
    # A file literally named "ward 3__film.png" maps to the same stem: it gets a suffix, not the same file.
    assert names.path_for(str(tmp_path / "scans" / "ward 3__film.png")).name == "ward 3__film.png-2.heatmap.png"
    hostile = names.path_for(str(tmp_path / "scans" / '<script>alert(1)</script>:"x".png'))
    assert hostile.parent == tmp_path / "out" and not set('<>:"') & set(hostile.name)


def test_a_users_file_is_never_overwritten_but_an_earlier_heatmap_of_the_same_film_is(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    source = str(tmp_path / "film.png")
    (out / "film.png.heatmap.png").write_bytes(b"the user's own file")
    names = HeatmapNames(out, tmp_path)
    path = names.path_for(source)
    assert path.name == "film.png-2.heatmap.png"
    save_heatmap_png(Image.new("RGB", (4, 4)), path, source)
    # A later run replaces its own heatmap of this film, and still not the user's file.
    assert HeatmapNames(out, tmp_path).path_for(source) == path
    assert (out / "film.png.heatmap.png").read_bytes() == b"the user's own file"


@pytest.mark.parametrize("shape", [(2000, 3), (3, 2000)])
def test_a_thin_film_makes_a_thumbnail_of_bounded_aspect(tmp_path, shape):
    """A 3 x 2000 film made a 1 x 256 thumbnail: 51,000 px tall at the gallery's 200 px width."""
    from xscreen.report._build import _draw_film
    from xscreen.runtime import ScreeningResult

    path = tmp_path / "thin.png"
    Image.fromarray(np.full(shape, 90, np.uint8)).save(path)
    cam = np.zeros((7, 7), np.float32)
    cam[3, 3] = 1.0
    result = ScreeningResult(str(path), "ok", "covid", {"healthy": 0.01, "pneumonia": 0.02, "covid": 0.97}, True,
                             heatmap=cam)
    _, _, jpeg = _draw_film(result, None, thumbnail=True)
    with Image.open(io.BytesIO(jpeg)) as thumbnail:
        assert max(thumbnail.size) == 256 and min(thumbnail.size) == round(256 / 3)
    # the heatmap PNG keeps the film's own shape
    png = render_overlay(np.full(shape, 90, np.uint8), cam, "covid 0.97", 1024)
    assert max(png.size) == 1024 and min(png.size) < 3
