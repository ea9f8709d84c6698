"""decode_radiograph: every format a user brings becomes the same grey uint8 pixels, or a clear reason."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import pytest
from conftest import DICOM_RAW, DICOM_RESCALE, grey, png_bytes, save_png, write_dicom
from PIL import Image

from xscreen.runtime import DecodeError, decode_radiograph


def test_8bit_png_is_read_exactly(tmp_path):
    pixels = np.arange(48 * 40, dtype=np.uint32).reshape(48, 40).astype(np.uint8)
    out = decode_radiograph(save_png(tmp_path / "a.png", pixels))
    assert out.dtype == np.uint8
    np.testing.assert_array_equal(out, pixels)


def test_16bit_png_is_scaled_by_its_real_range_not_divided(tmp_path):
    values = np.tile(np.linspace(1000, 3000, 64), (8, 1)).astype(np.uint16)
    path = tmp_path / "sixteen.png"
    Image.fromarray(values).save(path)
    with Image.open(path) as stored:
        assert stored.mode.startswith("I")  # really stored as 16-bit
    out = decode_radiograph(path)
    assert out[0, 0] == 0 and out[0, -1] == 255  # 1000 -> 0, 3000 -> 255 (not 1000/257 = 3)
    assert abs(int(out[0, 32]) - 130) <= 2  # 2016 sits at 1016/2000 of the range
    assert (np.diff(out[0].astype(int)) >= 0).all()


def test_jpeg_decodes_close_to_its_grey_level(tmp_path):
    path = tmp_path / "a.jpg"
    path.write_bytes(png_bytes(grey(140, (300, 200)), "JPEG", quality=95))
    out = decode_radiograph(path)
    assert out.shape == (300, 200)
    assert abs(float(out.mean()) - 140) < 1.5


def test_large_jpeg_resized_matches_full_decode(tmp_path):
    # Draft mode decodes at reduced scale; the result must still match a full decode + resize.
    rng = np.random.default_rng(0)
    smooth = np.kron(rng.integers(0, 255, (16, 16)), np.ones((128, 128))).astype(np.uint8)
    path = tmp_path / "big.jpg"
    path.write_bytes(png_bytes(smooth, "JPEG", quality=95))
    reduced = decode_radiograph(path, size=(64, 64)).astype(int)
    full = np.asarray(Image.fromarray(decode_radiograph(path)).resize((64, 64), Image.BILINEAR)).astype(int)
    assert np.abs(reduced - full).mean() < 3


def test_rgba_transparent_pixels_become_black(tmp_path):
    rgba = np.zeros((10, 10, 4), dtype=np.uint8)
    rgba[:, :5] = (200, 200, 200, 255)  # opaque light grey
    rgba[:, 5:] = (255, 255, 255, 0)  # transparent white
    out = decode_radiograph(save_png(tmp_path / "rgba.png", rgba))
    assert (out[:, :5] == 200).all()
    assert (out[:, 5:] == 0).all()


def test_rgb_and_palette_become_grey(tmp_path):
    rgb = np.zeros((8, 8, 3), dtype=np.uint8)
    rgb[..., 1] = 255  # pure green: luminance 0.587 * 255
    assert abs(int(decode_radiograph(save_png(tmp_path / "rgb.png", rgb))[0, 0]) - 150) <= 1
    palette = Image.fromarray(grey(90, (8, 8))).convert("P")
    palette.save(tmp_path / "p.png")
    assert (decode_radiograph(tmp_path / "p.png") == 90).all()


def test_resize_squashes_to_height_width(tmp_path):
    out = decode_radiograph(save_png(tmp_path / "a.png", grey(77, (100, 30))), size=(24, 20))
    assert out.shape == (24, 20)
    assert (out == 77).all()


def test_dicom_monochrome2_applies_rescale_then_window(tmp_path):
    out = decode_radiograph(write_dicom(tmp_path / "m2.dcm", DICOM_RAW, **DICOM_RESCALE))
    row = out[0].astype(int)
    # Raw < 250 is below the window (-500 after rescale): black; raw > 750 above it: white.
    assert (row[:15] == 0).all() and (row[-15:] == 255).all()
    assert (np.diff(row) >= 0).all() and 0 < row[32] < 255


def test_dicom_monochrome1_is_inverted_after_windowing(tmp_path):
    m2 = decode_radiograph(write_dicom(tmp_path / "m2.dcm", DICOM_RAW, **DICOM_RESCALE))
    m1 = decode_radiograph(write_dicom(tmp_path / "m1.dcm", DICOM_RAW, photometric="MONOCHROME1",
                                       **DICOM_RESCALE))
    np.testing.assert_array_equal(m1, 255 - m2)
    assert (m1[0, :15] == 255).all()


def test_dicom_without_window_uses_full_range(tmp_path):
    out = decode_radiograph(write_dicom(tmp_path / "nowin.dcm", DICOM_RAW, slope=2.0, intercept=-1000.0))
    assert out[0, 0] == 0 and out[0, -1] == 255 and 100 < out[0, 32] < 155


def test_multiframe_dicom_screens_the_first_frame(tmp_path):
    frames = np.stack([DICOM_RAW, 1000 - DICOM_RAW, np.zeros_like(DICOM_RAW)])
    out = decode_radiograph(write_dicom(tmp_path / "multi.dcm", frames))
    assert out[0, 0] == 0 and out[0, -1] == 255  # the first frame's gradient, not the reversed one


def test_compressed_dicom_decodes_like_uncompressed(tmp_path):
    plain = decode_radiograph(write_dicom(tmp_path / "plain.dcm", DICOM_RAW, **DICOM_RESCALE))
    rle = decode_radiograph(write_dicom(tmp_path / "rle.dcm", DICOM_RAW, compress=True, **DICOM_RESCALE))
    np.testing.assert_array_equal(rle, plain)


def test_extensionless_dicom_is_detected_by_content(tmp_path):
    path = write_dicom(tmp_path / "1.2.840.113619.2.55", DICOM_RAW)
    assert path.suffix == ".55"
    assert decode_radiograph(path).shape == DICOM_RAW.shape


def test_every_bad_file_gets_a_reason(bad_files):
    for path, reason in bad_files.items():
        with pytest.raises(DecodeError) as caught:
            decode_radiograph(path, size=(32, 32))
        assert reason in str(caught.value), (path, str(caught.value))


def test_a_pipe_named_like_an_image_is_refused_without_blocking(tmp_path):
    os.mkfifo(tmp_path / "pipe.png")
    with pytest.raises(DecodeError, match="not a regular file"):
        decode_radiograph(tmp_path / "pipe.png")


def test_missing_file_is_a_decode_error(tmp_path):
    with pytest.raises(DecodeError, match="No such file"):
        decode_radiograph(tmp_path / "gone.png")


def test_unreadable_file_says_permission_denied():
    with tempfile.TemporaryDirectory() as folder:
        os.chmod(folder, 0o755)  # only the file itself is unreadable
        path = save_png(Path(folder) / "secret.png", grey(10))
        path.chmod(0)
        # root reads everything: check as an unprivileged user, the case permissions exist for.
        as_root = os.geteuid() == 0
        if as_root:
            os.seteuid(65534)
        try:
            with pytest.raises(DecodeError, match="Permission denied"):
                decode_radiograph(path)
        finally:
            if as_root:
                os.seteuid(0)


def test_cxr3_preprocessing_adds_the_pools_jpeg_encoding(tmp_path):
    """The jpeg75 id = the plain pipeline + one JPEG q75 round trip at the model's size; idempotent-ish."""
    from xscreen.runtime._decode import CXR3_PREPROCESSING_ID, PREPROCESSING_ID, jpeg_round_trip

    rng = np.random.default_rng(0)
    path = save_png(tmp_path / "noisy.png", rng.integers(0, 256, (96, 80), dtype=np.uint8))
    plain = decode_radiograph(path, (48, 40), PREPROCESSING_ID)
    cxr3 = decode_radiograph(path, (48, 40), CXR3_PREPROCESSING_ID)
    assert cxr3.shape == plain.shape == (48, 40) and cxr3.dtype == np.uint8
    assert np.array_equal(cxr3, jpeg_round_trip(plain, 75))
    assert not np.array_equal(cxr3, plain)  # noise does not survive JPEG unchanged
    # a second round trip moves pixels far less than the first: films already in the pool barely change
    again = jpeg_round_trip(cxr3, 75).astype(int)
    assert np.abs(again - cxr3).mean() < 0.5 * np.abs(cxr3.astype(int) - plain).mean()
    # without a size there is nothing to match the pool's encoding to: the full image comes back
    assert decode_radiograph(path, None, CXR3_PREPROCESSING_ID).shape == (96, 80)
    with pytest.raises(ValueError, match="unknown preprocessing"):
        decode_radiograph(path, (48, 40), "made-up")


def test_dicom_without_the_128_byte_preamble_is_read_when_the_name_says_dicom(tmp_path):
    pydicom = pytest.importorskip("pydicom")
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    full = write_dicom(tmp_path / "full.dcm", DICOM_RAW, **DICOM_RESCALE)
    reference = decode_radiograph(full)
    (tmp_path / "no_preamble.dcm").write_bytes(full.read_bytes()[132:])  # meta header kept, preamble and DICM cut
    ds = pydicom.dcmread(full)
    del ds.file_meta
    raw = DicomBytesIO()
    raw.is_little_endian, raw.is_implicit_VR = True, True
    write_dataset(raw, ds)
    (tmp_path / "bare_dataset.dicom").write_bytes(raw.getvalue())  # no preamble, no meta header at all
    for name in ("no_preamble.dcm", "bare_dataset.dicom"):
        np.testing.assert_array_equal(decode_radiograph(tmp_path / name), reference)
    (tmp_path / "notes.dcm").write_text("a text file named like DICOM\n" * 4)
    with pytest.raises(DecodeError, match=r"^not a PNG, JPEG, TIFF, BMP or DICOM file \(a \.dcm name, but no DICOM"):
        decode_radiograph(tmp_path / "notes.dcm")


def _dicom_with_frames_field(path: Path, value: bytes) -> Path:
    """A DICOM whose NumberOfFrames (IS, two bytes) holds ``value`` as written by a broken device."""
    write_dicom(path, DICOM_RAW)
    import pydicom

    ds = pydicom.dcmread(path)
    ds.NumberOfFrames = "1"
    from xscreen.runtime._demo import save_dicom_file

    save_dicom_file(ds, path)
    data = path.read_bytes()
    tag = b"\x28\x00\x08\x00IS\x02\x00"
    assert data.count(tag) == 1
    path.write_bytes(data.replace(tag + b"1 ", tag + value))
    return path


def test_dicom_reasons_are_words_and_the_codec_hint_only_concerns_codecs(tmp_path):
    pytest.importorskip("pydicom")
    bad_number = _dicom_with_frames_field(tmp_path / "bad_number.dcm", b"1A")
    with pytest.raises(DecodeError) as caught:
        decode_radiograph(bad_number)
    assert str(caught.value) == "damaged DICOM header: NumberOfFrames should be a number but holds '1A'"

    whole = write_dicom(tmp_path / "whole.dcm", DICOM_RAW).read_bytes()
    (tmp_path / "truncated.dcm").write_bytes(whole[: len(whole) - 1000])
    with pytest.raises(DecodeError) as caught:
        decode_radiograph(tmp_path / "truncated.dcm")
    assert "truncated" in str(caught.value)
    for reason in (str(caught.value), "damaged DICOM header"):
        assert "pip install" not in reason and "invalid literal" not in reason


def test_a_decompression_bomb_is_described_in_words(tmp_path):
    from conftest import png_header_claiming

    (tmp_path / "bomb.png").write_bytes(png_header_claiming(100_000, 100_000))
    with pytest.raises(DecodeError) as caught:
        decode_radiograph(tmp_path / "bomb.png")
    assert str(caught.value).startswith("image too large to decode safely: its header claims a huge size")
    assert "DOS attack" not in str(caught.value) and "could be" not in str(caught.value)
