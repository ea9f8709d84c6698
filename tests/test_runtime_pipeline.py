"""screen_files / run_screening: one result per input, in order, with decoding overlapped and memory bounded."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import numpy as np
import pytest
from conftest import INT8_TFLITE, LABELS, grey, save_png, two_tone

from xscreen.runtime import NoInputsError, load_model, run_screening, screen_files
from xscreen.runtime import _pipeline as pipeline
from xscreen.runtime._contract import ModelMetadata


@pytest.fixture(scope="module")
def model():
    return load_model(INT8_TFLITE)


@pytest.fixture
def mixed(brightness_folder, bad_files) -> list[tuple[str, str, str]]:
    """(path, status, label-or-reason) for good and bad files interleaved."""
    good = [(p, "ok", label) for p, label in brightness_folder.items()]
    bad = [(p, "error", reason) for p, reason in bad_files.items()]
    mixed = []
    for i in range(max(len(good), len(bad))):
        mixed += good[i:i + 1] + bad[i:i + 1]
    return mixed


@pytest.mark.parametrize("workers, batch_size", [(0, 1), (1, 4), (3, 5), (None, None)])
def test_every_input_yields_one_result_in_order(model, mixed, workers, batch_size):
    results = list(screen_files([p for p, _, _ in mixed], model, workers=workers, batch_size=batch_size))
    assert [r.path for r in results] == [p for p, _, _ in mixed]
    for result, (_, status, expected) in zip(results, mixed):
        assert result.status == status, result
        if status == "ok":
            assert result.prediction == expected and result.error is None
            assert set(result.probabilities) == set(LABELS)
            assert result.flag == (expected != "healthy")
        else:
            assert expected in result.error and result.prediction is None and result.probabilities is None


def test_a_batch_of_only_failures_still_yields_rows(model, bad_files):
    results = list(screen_files(list(bad_files), model, batch_size=2))
    assert [r.status for r in results] == ["error"] * len(bad_files)


def test_an_unexpected_failure_is_that_files_row_not_the_runs_end(model, tmp_path, monkeypatch):
    paths = [save_png(tmp_path / f"{i}.png", two_tone(200)) for i in range(3)]
    real = pipeline.decode_radiograph

    def flaky(path, size, preprocessing, scope_check, facts):
        if Path(path).name == "1.png":
            raise MemoryError("cannot allocate")
        return real(path, size, preprocessing, scope_check=scope_check, facts=facts)

    monkeypatch.setattr(pipeline, "decode_radiograph", flaky)
    results = list(screen_files(paths, model))
    assert [r.status for r in results] == ["ok", "error", "ok"]
    assert results[1].error == "unexpected MemoryError: cannot allocate"


def test_paths_are_consumed_only_a_few_batches_ahead(model, tmp_path):
    source = save_png(tmp_path / "source.png", grey(30, (64, 64)))
    pulled = 0

    def paths():
        nonlocal pulled
        for _ in range(300):
            pulled += 1
            yield source

    batch_size = 4
    # In flight: the batch being handed out, plus PREFETCH_BATCHES decoding into their buffers.
    ahead = (pipeline.PREFETCH_BATCHES + 1) * batch_size
    for received, _ in enumerate(screen_files(paths(), model, batch_size=batch_size, workers=2), 1):
        assert pulled - received < ahead
    assert received == 300


def test_decoding_overlaps_inference(monkeypatch):
    """With decoding and inference each taking 0.4 s in total, a run takes well under their 0.8 s sum."""
    monkeypatch.setattr(pipeline, "decode_radiograph",
                        lambda path, size, preprocessing, scope_check, facts: time.sleep(0.04) or grey(0, size))
    times = pipeline.StageTimes()
    started = time.perf_counter()
    batches = list(pipeline.screen_batches([f"{i}.png" for i in range(40)], _SlowModel(0.04), workers=4,
                                           batch_size=4, times=times))
    elapsed = time.perf_counter() - started
    assert len(batches) == 10
    assert times.inference_s >= 0.4 and times.decode_s >= 1.6  # 40 x 40 ms over 4 threads
    assert elapsed < 0.65, f"no overlap: {elapsed:.2f} s for 0.4 s decoding + 0.4 s inference"


def test_stopping_early_leaves_no_threads_behind(model, brightness_folder):
    before = threading.active_count()
    results = screen_files(list(brightness_folder) * 10, model, workers=3, batch_size=2)
    next(results)
    results.close()
    assert threading.active_count() == before


def test_run_screening_summarises_and_times_the_stages(model, mixed, tmp_path):
    listing = tmp_path / "list.txt"
    listing.write_text("".join(f"{p}\n" for p, _, _ in mixed))
    seen = []
    summary = run_screening(listing, model, tmp_path / "out.csv", progress=lambda done, total: seen.append(done))
    good = [label for _, status, label in mixed if status == "ok"]
    assert (summary.total, summary.ok, summary.errors) == (len(mixed), len(good), len(mixed) - len(good))
    assert summary.per_class == {label: good.count(label) for label in LABELS}
    assert summary.flagged == len(good) - good.count("healthy")
    assert len(summary.first_errors) == min(5, summary.errors) and all(summary.first_errors[0])
    assert summary.decode_s > 0 and summary.inference_s > 0 and summary.write_s > 0
    assert summary.images_per_s > 0 and summary.to_dict()["images_per_s"] == summary.images_per_s
    assert seen[0] == 0 and seen[-1] == len(mixed) and seen == sorted(seen)
    assert len((tmp_path / "out.csv").read_text().splitlines()) == len(mixed) + 1


def test_run_over_no_images_names_the_folder_and_the_extensions(model, tmp_path):
    (tmp_path / "readme.txt").write_text("no scans here")
    with pytest.raises(NoInputsError, match=rf"{tmp_path}.*\.png, \.jpg"):
        run_screening(tmp_path, model, tmp_path / "out.csv")


class _SlowModel:
    """Duck-typed model whose inference takes a fixed time per batch."""

    input_size = (8, 8)
    labels = LABELS
    metadata = ModelMetadata(labels=LABELS, input_size=(8, 8))
    has_scope = has_heatmaps = False

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def predict(self, pixels):
        time.sleep(self.seconds)
        return np.full((len(pixels), 3), 1 / 3, dtype=np.float32)

