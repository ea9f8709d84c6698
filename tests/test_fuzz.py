"""Fuzzing: damaged images and model files end in a row or one clear error, never a crash or a hang.

Seeded (``derandomize=True``) and bounded: about 2,600 cases in well under a minute on one core. The long
run is ``benchmarks/fuzz.py``; the harness (seeds, mutations, the model-loading worker) is ``fuzzing.py``.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import pytest
from fuzzing import ModelLoader, decode_case, mutate, seed_images, seed_models

hypothesis = pytest.importorskip("hypothesis")
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

IMAGES = seed_images()
MODEL_FILES = seed_models()
MUTATIONS = st.lists(st.tuples(st.integers(0, 4), st.integers(0, 2**20), st.integers(0, 255)), min_size=1, max_size=4)
SEEDED = dict(derandomize=True, deadline=None, database=None, suppress_health_check=list(HealthCheck))


@pytest.fixture(scope="module")
def folder():
    with tempfile.TemporaryDirectory(prefix="xscreen-fuzz-") as name:
        yield Path(name)


@pytest.fixture(scope="module")
def loader(folder):
    worker = ModelLoader(folder)
    yield worker
    worker.close()


def test_every_seed_decodes(folder):
    for name, data in IMAGES.items():
        (folder / name).write_bytes(data)
        assert decode_case(folder / name, scope_check=False) == "ok", name


@pytest.mark.timeout(120)
@settings(max_examples=2000, **SEEDED)
@given(name=st.sampled_from(sorted(IMAGES)), ops=MUTATIONS, scope_check=st.booleans())
def test_a_damaged_image_is_pixels_or_a_decode_error(folder, name, ops, scope_check):
    path = folder / f"case{Path(name).suffix}"
    path.write_bytes(mutate(IMAGES[name], ops))
    decode_case(path, scope_check)  # raises anything but a DecodeError


@pytest.mark.timeout(180)
@settings(max_examples=600, **SEEDED)
@given(name=st.sampled_from(sorted(MODEL_FILES)), ops=MUTATIONS)
def test_a_damaged_model_file_is_a_model_or_one_clear_error(loader, name, ops):
    outcome = loader.load(mutate(MODEL_FILES[name], ops), Path(name).suffix)
    assert outcome.kind in ("ok", "clear"), (name, ops, outcome)


# Cases fuzzing found: (seed, mutations, words of the error). The first segfaulted allocate_tensors (an int8
# zero point of -536,871,040); the second loaded and then failed with a RuntimeError traceback when run; the
# third (a shape of [268435457, 3] float32) made allocate_tensors ask for 3.2 GB and stall.
FOUND = [("brightness_int8.tflite", [(2, 711107, 98), (1, 288467, 141)], "zero point -536,871,040, outside int8"),
         ("scoped_int8.tflite", [(1, 65436, 223), (1, 692948, 210)], ""),
         ("brightness_fp32.tflite", [(1, 738419, 116)], "impossible shape [268435457, 3]")]


@pytest.mark.parametrize("name, ops, words", FOUND)
def test_model_files_that_crashed_or_raised_are_one_clear_error(loader, name, ops, words):
    outcome = loader.load(mutate(MODEL_FILES[name], ops), Path(name).suffix)
    assert outcome.kind == "clear" and words in outcome.detail, outcome


@pytest.mark.parametrize("name", sorted(MODEL_FILES))
def test_truncated_model_files_are_one_clear_error(loader, name):
    data = MODEL_FILES[name]
    for keep in (0, 8, len(data) // 3, len(data) - 1):
        outcome = loader.load(data[:keep], Path(name).suffix)
        assert outcome.kind == "clear", (name, keep, outcome)
