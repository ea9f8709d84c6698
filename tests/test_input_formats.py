"""What a user's files look like in the wild: sideways (EXIF), TIFF and BMP, blank or degenerate, and huge.

Every film is decoded upright, every format a film digitiser writes is read, an image that cannot be a
radiograph gets a reason with its numbers instead of a diagnosis, and a huge film costs bounded memory.
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import INT8_TFLITE, film, save_png, write_dicom
from PIL import Image

from xscreen.runtime import _decode, decode_radiograph, default_model_path, load_model, screen_files
from xscreen.runtime._decode import DecodeBudget, OutOfScopeError, sniff_format
from xscreen.runtime._degenerate import MAX_ASPECT_RATIO, MIN_PIXEL_STD, MIN_SIDE
from xscreen.runtime._demo import synthetic_film

DATA = Path(os.environ.get("XSCREEN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))
# Stored pixels for each EXIF orientation: the upright film put through the inverse of what the tag asks.
STORED_AS = {1: None, 2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180,
             4: Image.Transpose.FLIP_TOP_BOTTOM, 5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_90,
             7: Image.Transpose.TRANSVERSE, 8: Image.Transpose.ROTATE_270}


def upright_film(size: tuple[int, int] = (300, 240)) -> np.ndarray:
    """A chest-like 8-bit film, taller than wide, so a rotation changes its shape too."""
    height, width = size
    return np.asarray(Image.fromarray(np.clip(synthetic_film(3, 512) * 255, 0, 255).astype(np.uint8))
                      .resize((width, height), Image.Resampling.BILINEAR))


def save_oriented(path: Path, upright: np.ndarray, orientation: int, **params) -> Path:
    """Store ``upright`` as a camera would with EXIF ``orientation``: the pixels turned, the tag set."""
    stored = Image.fromarray(upright)
    if STORED_AS[orientation] is not None:
        stored = stored.transpose(STORED_AS[orientation])
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, exif=exif.tobytes(), **params)
    return path


@pytest.mark.parametrize("suffix", [".png", ".tif"])
@pytest.mark.parametrize("orientation", range(1, 9))
def test_every_exif_orientation_decodes_upright(tmp_path, orientation, suffix):
    upright = upright_film()
    path = save_oriented(tmp_path / f"o{orientation}{suffix}", upright, orientation)
    np.testing.assert_array_equal(decode_radiograph(path), upright)


def real_or_synthetic_film() -> np.ndarray:
    """A real full-resolution film when the data folder is there, else the demo's synthetic one."""
    films = sorted((DATA / "fullres").rglob("*.jpeg")) if (DATA / "fullres").is_dir() else []
    if films:
        return decode_radiograph(films[0])
    return upright_film((1200, 1000))


def test_a_sideways_jpeg_tagged_orientation_6_gets_the_upright_films_answer(tmp_path):
    upright = real_or_synthetic_film()
    straight = tmp_path / "upright.jpg"
    Image.fromarray(upright).save(straight, quality=90)
    sideways = save_oriented(tmp_path / "sideways.jpg", upright, 6, quality=90)
    with Image.open(sideways) as stored:
        assert stored.size == (upright.shape[0], upright.shape[1])  # really stored on its side
        assert stored.getexif()[0x0112] == 6
    model = load_model(default_model_path())
    size = model.input_size
    a = decode_radiograph(straight, size).astype(int)
    b = decode_radiograph(sideways, size).astype(int)
    assert np.abs(a - b).mean() < 2  # JPEG's own loss only
    unturned = np.asarray(Image.open(sideways).convert("L").resize(size[::-1], Image.Resampling.BILINEAR))
    assert np.abs(unturned.astype(int) - a).mean() > 10  # what the model saw before: a different picture
    results = list(screen_files([straight, sideways], model, scope_check=False))
    assert results[0].prediction == results[1].prediction
    for label in model.labels:
        assert abs(results[0].probabilities[label] - results[1].probabilities[label]) < 0.05


def test_a_sideways_jpeg_is_drafted_for_its_upright_size(tmp_path):
    upright = upright_film((2400, 1200))
    sideways = save_oriented(tmp_path / "wide.jpg", upright, 8, quality=95)
    reduced = decode_radiograph(sideways, (96, 48)).astype(int)
    full = np.asarray(Image.fromarray(decode_radiograph(sideways)).resize((48, 96), Image.Resampling.BILINEAR))
    assert reduced.shape == (96, 48)
    assert np.abs(reduced - full.astype(int)).mean() < 3


@pytest.mark.parametrize("compression", [None, "tiff_lzw", "tiff_adobe_deflate", "packbits"])
def test_tiff_8_and_16_bit_read_as_their_png_twins(tmp_path, compression):
    eight = upright_film()
    sixteen = (eight.astype(np.uint16) * 200 + 1000).astype(np.uint16)
    for name, pixels in (("eight", eight), ("sixteen", sixteen)):
        Image.fromarray(pixels).save(tmp_path / f"{name}.tif", compression=compression)
        Image.fromarray(pixels).save(tmp_path / f"{name}.png")
        assert sniff_format(tmp_path / f"{name}.tif") == "tiff"
        np.testing.assert_array_equal(decode_radiograph(tmp_path / f"{name}.tif"),
                                      decode_radiograph(tmp_path / f"{name}.png"))


def test_big_endian_16_bit_tiff_is_scaled_by_its_range(tmp_path):
    values = np.tile(np.linspace(1000, 3000, 64), (8, 1)).astype(">u2")
    Image.frombytes("I;16B", (64, 8), values.tobytes()).save(tmp_path / "be.tif")
    out = decode_radiograph(tmp_path / "be.tif")
    assert out[0, 0] == 0 and out[0, -1] == 255


@pytest.mark.parametrize("mode", ["L", "RGB", "P"])
def test_bmp_is_read(tmp_path, mode):
    upright = upright_film()
    Image.fromarray(upright).convert(mode).save(tmp_path / "film.bmp")
    assert sniff_format(tmp_path / "film.bmp") == "bmp"
    np.testing.assert_array_equal(decode_radiograph(tmp_path / "film.bmp"), upright)


def test_text_starting_with_bm_is_not_a_bmp(tmp_path):
    (tmp_path / "notes").write_text("BMW service notes, 2026: nothing to see here\n")
    assert sniff_format(tmp_path / "notes") is None


def test_tiff_and_bmp_are_screened_from_a_folder(tmp_path):
    model = load_model(INT8_TFLITE)
    folder = tmp_path / "scans"
    folder.mkdir()
    Image.fromarray(film(150)).save(folder / "a.tif")
    Image.fromarray(film(150)).save(folder / "b.TIFF")
    Image.fromarray(film(150)).save(folder / "c.bmp")
    Image.fromarray(film(150)).save(folder / "no_extension", format="TIFF")
    from xscreen.runtime import discover_inputs
    paths = list(discover_inputs(folder))
    assert [p.name for p in paths] == ["a.tif", "b.TIFF", "c.bmp", "no_extension"]
    assert [r.status for r in screen_files(paths, model)] == ["ok"] * 4


def rgba_transparent(size=(256, 256)) -> np.ndarray:
    return np.zeros((*size, 4), dtype=np.uint8)


def near_uniform(size=(1024, 1024)) -> np.ndarray:
    return np.clip(np.random.default_rng(0).normal(128, 1.0, size), 0, 255).astype(np.uint8)


DEGENERATE = {
    "black": (np.zeros((1024, 1024), np.uint8), "blank or nearly uniform (pixel std 0 of 255"),
    "grey": (np.full((1024, 1024), 128, np.uint8), "blank or nearly uniform (pixel std 0 of 255"),
    "white": (np.full((1024, 1024), 255, np.uint8), "blank or nearly uniform (pixel std 0 of 255"),
    "transparent": (rgba_transparent(), "blank or nearly uniform (pixel std 0 of 255"),
    "near_uniform": (near_uniform(), "blank or nearly uniform (pixel std 0."),
    "one_pixel": (np.full((1, 1), 90, np.uint8), f"too small to be a radiograph (1x1 px; needs at least {MIN_SIDE} px"),
    "thin": (film(100, (2000, 3)), "too thin to be a radiograph (3x2000 px, sides 1:667; a film's are at most 1:3"),
    "wide": (film(100, (40, 200)), "too thin to be a radiograph (200x40 px, sides 1:5"),
}


@pytest.mark.parametrize("name", DEGENERATE)
def test_an_image_that_cannot_be_a_radiograph_is_out_of_scope_with_its_numbers(tmp_path, name):
    pixels, reason = DEGENERATE[name]
    path = save_png(tmp_path / f"{name}.png", pixels)
    model = load_model(INT8_TFLITE)
    [result] = screen_files([path], model)
    assert result.status == "out_of_scope" and result.prediction is None and result.flag is None
    assert result.error.startswith("out of scope: " + reason), result.error
    [unchecked] = screen_files([path], model, scope_check=False)  # --no-scope-check screens it anyway
    assert unchecked.status == "ok"


def test_limits_leave_room_around_real_films():
    assert MIN_SIDE <= 224 / 4 and MAX_ASPECT_RATIO >= 1.99 * 1.5 and MIN_PIXEL_STD <= 14.1 / 2


def test_a_structured_film_passes_every_cheap_check(tmp_path):
    model = load_model(INT8_TFLITE)
    paths = [save_png(tmp_path / "film.png", film(100, (MIN_SIDE, MIN_SIDE * 3))),
             save_png(tmp_path / "demo.png", upright_film())]
    assert [r.status for r in screen_files(paths, model)] == ["ok", "ok"]


def test_a_tiny_dicom_is_too_small(tmp_path):
    pytest.importorskip("pydicom")
    path = write_dicom(tmp_path / "tiny.dcm", np.arange(16, dtype=np.uint16).reshape(4, 4))
    with pytest.raises(OutOfScopeError, match=r"too small to be a radiograph \(4x4 px"):
        decode_radiograph(path, (32, 32), scope_check=True)
    assert decode_radiograph(path, (32, 32)).shape == (32, 32)


@pytest.mark.data
@pytest.mark.skipif(not (DATA / "fullres").is_dir(), reason=f"real X-rays not present at {DATA}")
def test_no_real_frontal_film_is_called_degenerate():
    films = sorted((DATA / "fullres").rglob("*.jpeg")) + sorted((DATA / "nih").rglob("*.jpg"))[::4]
    films += sorted((DATA / "cxr3").rglob("*.jpg"))[::40]
    refused = []
    for path in films:
        try:
            decode_radiograph(path, (224, 224), scope_check=True)
        except OutOfScopeError as exc:
            refused.append((path.name, str(exc)))
    assert len(films) > 300 and refused == []


def sixteen_bit_reference(values: np.ndarray) -> np.ndarray:
    """The 16-bit rule, spelled out: the image's own range onto 0..255, rounded."""
    v = values.astype(np.float64)
    return np.clip(np.rint((v - v.min()) * (255.0 / (v.max() - v.min()))), 0, 255).astype(np.uint8)


def test_16_bit_strips_give_exactly_the_whole_image_rule(tmp_path):
    rng = np.random.default_rng(0)
    values = rng.integers(300, 60_000, (1500, 1100), dtype=np.uint16)  # 1.6 M pixels: two strips
    path = tmp_path / "sixteen.png"
    Image.fromarray(values).save(path, compress_level=1)
    np.testing.assert_array_equal(decode_radiograph(path), sixteen_bit_reference(values))


def test_an_image_over_the_reduce_size_matches_its_full_decode(tmp_path, monkeypatch):
    monkeypatch.setattr(_decode, "REDUCE_ABOVE_PIXELS", 1_000_000)  # a 2000x2400 film instead of 25 M pixels
    film16 = (upright_film((2400, 2000)).astype(np.uint16) * 250 + 500).astype(np.uint16)
    path = tmp_path / "big16.png"
    Image.fromarray(film16).save(path, compress_level=1)
    reduced = decode_radiograph(path, (120, 100)).astype(int)
    full = np.asarray(Image.fromarray(decode_radiograph(path)).resize((100, 120), Image.Resampling.BILINEAR))
    assert np.abs(reduced - full.astype(int)).mean() < 1.5


PEAK_SCRIPT = """
import resource, sys
from xscreen.runtime import decode_radiograph
decode_radiograph(sys.argv[1], (224, 224))
print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)
"""


def test_a_large_16_bit_png_decodes_in_bounded_memory(tmp_path):
    width, height = 5000, 5000  # 25 M pixels, 50 MB as 16 bits: a float64 copy alone would be 200 MB
    row = np.linspace(1000, 50_000, width).astype(np.uint16)
    path = tmp_path / "large16.png"
    Image.fromarray(np.broadcast_to(row, (height, width)).copy()).save(path, compress_level=1)
    baseline = subprocess.run([sys.executable, "-c", PEAK_SCRIPT.replace("decode_radiograph(sys.argv[1], (224, 224))",
                                                                          ""), "x"],
                              capture_output=True, text=True, check=True, env={**os.environ})
    peak = subprocess.run([sys.executable, "-c", PEAK_SCRIPT, str(path)], capture_output=True, text=True, check=True)
    grown = int(peak.stdout) - int(baseline.stdout)
    assert grown < 130, f"decoding a 50 MB 16-bit image grew the process by {grown} MB"


class RecordingBudget(DecodeBudget):
    """A budget that remembers the most bytes it ever let in at once."""

    def __init__(self, max_bytes: int) -> None:
        super().__init__(max_bytes)
        self.most = 0

    def hold(self, nbytes: int):
        inner = super().hold(nbytes)

        class Recording:
            def __enter__(_):
                inner.__enter__()
                self.most = max(self.most, self.in_use)
                time.sleep(0.01)  # long enough for other threads to try to get in

            def __exit__(_, *exc):
                return inner.__exit__(*exc)

        return Recording()


def test_in_flight_images_stay_within_the_budget_whatever_the_workers_and_batch(tmp_path, monkeypatch):
    one_image = 300 * 260 * 1
    budget = RecordingBudget(2 * one_image)
    monkeypatch.setattr(_decode, "DECODE_BUDGET", budget)
    paths = [save_png(tmp_path / f"{i}.png", film(100, (300, 260), seed=i)) for i in range(12)]
    results = list(screen_files(paths, load_model(INT8_TFLITE), workers=6, batch_size=8))
    assert [r.status for r in results] == ["ok"] * 12
    assert 0 < budget.most <= 2 * one_image and budget.in_use == 0


def test_an_image_larger_than_the_whole_budget_still_decodes_alone():
    budget = DecodeBudget(100)
    order = []

    def decode(name: str, nbytes: int) -> None:
        with budget.hold(nbytes):
            order.append((name, budget.in_use))
            time.sleep(0.02)

    threads = [threading.Thread(target=decode, args=(f"t{i}", 1000)) for i in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(5)
    assert sorted(in_use for _, in_use in order) == [1000, 1000, 1000]  # one at a time, never refused


def test_a_float_tiff_with_nan_is_an_error_not_garbage(tmp_path):
    values = np.tile(np.linspace(0, 1, 64, dtype=np.float32), (2000, 1))  # two strips
    values[1500, 3] = np.nan
    Image.fromarray(values, mode="F").save(tmp_path / "nan.tif")
    with pytest.raises(_decode.DecodeError, match="not finite numbers"):
        decode_radiograph(tmp_path / "nan.tif")


def test_a_dicom_whose_transfer_syntax_uid_is_no_transfer_syntax_is_a_decode_error(tmp_path):
    path = write_dicom(tmp_path / "odd.dcm", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    data = path.read_bytes()
    explicit_little = b"1.2.840.10008.1.2.1\x00"
    assert data.count(explicit_little) == 1
    path.write_bytes(data.replace(explicit_little, b"2.2.840.10008.1.2.1\x00"))  # one flipped bit: found by fuzzing
    with pytest.raises(_decode.DecodeError, match="cannot decode DICOM pixel data"):
        decode_radiograph(path, (32, 32))


def test_a_dicom_tag_with_an_unknown_vr_is_a_decode_error_under_the_scope_check(tmp_path):
    path = write_dicom(tmp_path / "uk.dcm", np.arange(64 * 64, dtype=np.uint16).reshape(64, 64))
    data = path.read_bytes()
    sop_class = b"\x08\x00\x16\x00UI"  # (0008,0016) SOPClassUID, explicit VR "UI"
    assert data.count(sop_class) == 1
    path.write_bytes(data.replace(sop_class, b"\x08\x00\x16\x00UK"))  # VR "UK": found by fuzzing
    with pytest.raises(_decode.DecodeError, match="unreadable DICOM header"):
        decode_radiograph(path, (32, 32), scope_check=True)
