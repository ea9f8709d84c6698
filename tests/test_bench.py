"""xscreen bench: the report a user reads and the exit codes CI gates on (no timing assertions)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import THIRD_PARTY_UNIT_LOGITS_ONNX, cli_runner, needs_onnxruntime
from PIL import Image

from xscreen.bench import (
    SCHEMA_VERSION,
    BenchError,
    BenchReport,
    _hardware,
    bootstrap_macro_f1,
    latency_summary,
    measure_latency,
    select_images,
    write_report,
)
from xscreen.bench._hardware import cpu_model, parse_cpuinfo, simd_features
from xscreen.cli import main
from xscreen.runtime._labelled import LabelledImage
from xscreen.runtime._metrics import classification_report

MODELS = Path(__file__).parent / "fixtures" / "models"
FP32, INT8 = MODELS / "brightness_fp32.tflite", MODELS / "brightness_int8.tflite"

# The fixture models classify by mean brightness: < 85 healthy, 85..170 pneumonia, > 170 covid.
DARK, MID, BRIGHT = 40, 128, 220
# (folder label, brightness, count): one bright "healthy" and one mid "covid" are misclassified on purpose.
LABELLING = [("healthy", DARK, 4), ("healthy", BRIGHT, 1), ("pneumonia", MID, 4),
             ("covid", BRIGHT, 3), ("covid", MID, 1)]
# Rows truth, columns prediction, in the models' label order (healthy, pneumonia, covid).
EXPECTED_CONFUSION = [[4, 0, 1], [0, 4, 0], [0, 1, 3]]


def write_labelled_folder(root: Path) -> Path:
    rng = np.random.default_rng(0)
    for label, level, count in LABELLING:
        (root / label).mkdir(parents=True, exist_ok=True)
        for i in range(count):
            noise = rng.integers(-5, 6, size=(40, 48))
            noise[:, :24] -= 10  # halves 20 levels apart: structure, so no film is blank (mean kept)
            noise[:, 24:] += 10
            pixels = np.clip(level + noise, 0, 255).astype(np.uint8)
            Image.fromarray(pixels).save(root / label / f"{level}-{i}.png")
    return root


@pytest.fixture(scope="module")
def labelled(tmp_path_factory) -> Path:
    return write_labelled_folder(tmp_path_factory.mktemp("cxr") / "data")


def bench(*args: str) -> tuple[int, str]:
    result = cli_runner().invoke(main, ["bench", *args], catch_exceptions=False)
    return result.exit_code, result.stdout + result.stderr


@pytest.fixture(scope="module")
def two_models_two_threads(labelled, tmp_path_factory) -> tuple[dict, Path]:
    out = tmp_path_factory.mktemp("bench")
    code, output = bench(str(labelled), "--model", str(FP32), "--model", str(INT8), "--threads", "1,2",
                         "--runs", "20", "--warmup", "2", "--out", str(out))
    assert code == 0, output
    return json.loads((out / "bench.json").read_text()), out


def test_bench_json_has_the_documented_schema(two_models_two_threads):
    report, _ = two_models_two_threads
    assert report["schema_version"] == SCHEMA_VERSION
    for key in ("hardware", "data", "settings", "methods", "results", "disclaimer"):
        assert key in report
    for key in ("cpu_model", "cores_logical", "cores_physical", "simd", "os", "python", "xscreen", "packages",
                "date_utc"):
        assert key in report["hardware"]
    assert report["data"]["n_images"] == 13
    assert report["data"]["per_class"] == {"covid": 4, "healthy": 5, "pneumonia": 4}
    assert [(r["model"], r["threads"]) for r in report["results"]] == [
        (FP32.name, 1), (FP32.name, 2), (INT8.name, 1), (INT8.name, 2)]
    for row in report["results"]:
        for key in ("model", "format", "threads", "size_bytes", "load_ms", "peak_rss_mb", "latency_ms",
                    "throughput_ips", "metrics"):
            assert key in row, key
        assert row["format"] == "tflite"
        assert row["size_bytes"] == Path(row["path"]).stat().st_size
        assert row["peak_rss_mb"] > 0 and row["load_ms"] > 0 and row["throughput_ips"] > 0
        assert row["pipeline"]["images"] == 13 and row["pipeline"]["failed"] == 0
    assert "Not a medical device" in report["disclaimer"]


def test_latency_percentiles_are_ordered(two_models_two_threads):
    report, _ = two_models_two_threads
    for row in report["results"]:
        lat = row["latency_ms"]
        assert lat["runs"] == 20 and lat["warmup"] == 2
        assert 0 < lat["min"] <= lat["p50"] <= lat["p90"] <= lat["p99"] <= lat["max"]
        assert lat["min"] <= lat["mean"] <= lat["max"]


def test_metrics_match_a_known_labelling(two_models_two_threads):
    report, _ = two_models_two_threads
    for row in report["results"]:
        m = row["metrics"]
        assert m["labels"] == ["healthy", "pneumonia", "covid"]
        assert m["confusion_matrix"] == EXPECTED_CONFUSION
        assert m["accuracy"] == pytest.approx(11 / 13)
        healthy = {k: m["per_class"]["healthy"][k] for k in ("precision", "recall", "f1", "support")}
        assert healthy == pytest.approx({"precision": 1.0, "recall": 0.8, "f1": 2 * 0.8 / 1.8, "support": 5})
        assert m["per_class"]["pneumonia"]["precision"] == pytest.approx(0.8)
        assert m["per_class"]["covid"]["recall"] == pytest.approx(0.75)
        f1s = [2 * 0.8 / 1.8, 2 * 0.8 / 1.8, 0.75]
        assert m["macro_f1"] == pytest.approx(np.mean(f1s))
        low, high = m["macro_f1_ci95"]
        assert 0 <= low < m["macro_f1"] < high <= 1  # 13 images: a wide interval, never a point
        # Abnormal = not healthy; the bright "healthy" film is the one false positive.
        s = m["screening"]
        assert (s["tp"], s["fn"], s["tn"], s["fp"]) == (8, 0, 4, 1)
        assert s["sensitivity"] == 1.0 and s["specificity"] == pytest.approx(0.8)


def test_markdown_and_plot_are_written(two_models_two_threads):
    _, out = two_models_two_threads
    md = (out / "bench.md").read_text()
    assert "| model | format | threads | size | p50 ms | p90 ms | images/s | macro-F1 (95% CI) |" in md
    assert md.count(f"| {INT8.name} |") == 2
    assert md.count("| 1.000 / 0.800 |") == 4  # abnormal sensitivity / specificity at the model's threshold
    assert "Not a medical device" in md and "## Caveats" in md
    pytest.importorskip("matplotlib")
    assert (out / "pareto.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "![latency p50 vs macro-F1](pareto.png)" in md


def test_without_matplotlib_the_report_says_so_in_one_line(two_models_two_threads, tmp_path, monkeypatch):
    report, _ = two_models_two_threads
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    written = write_report(BenchReport(report["hardware"], report["data"], report["settings"],
                                       report["results"]), tmp_path)
    assert written["plot"] is None and not (tmp_path / "pareto.png").exists()
    md = (tmp_path / "bench.md").read_text()
    notes = [line for line in md.splitlines() if "matplotlib" in line]
    assert notes == ["No Pareto plot: matplotlib is not installed (pip install 'xscreen[report]')."]


def test_floor_gates_ci_with_exit_code_1(labelled, tmp_path):
    args = [str(labelled), "--model", str(FP32), "--runs", "5", "--warmup", "1"]
    code, output = bench(*args, "--floor", "0.9", "--out", str(tmp_path / "strict"))
    assert code == 1
    assert "below the floor" in output and FP32.name in output
    assert (tmp_path / "strict" / "bench.json").exists()  # the report is written before failing
    code, output = bench(*args, "--floor", "0.8", "--out", str(tmp_path / "lenient"))
    assert code == 0, output


def test_a_class_the_model_does_not_know_is_exit_2(tmp_path):
    data = write_labelled_folder(tmp_path / "data")
    (data / "tuberculosis").mkdir()
    Image.fromarray(np.full((40, 48), MID, np.uint8)).save(data / "tuberculosis" / "tb.png")
    code, output = bench(str(data), "--model", str(FP32), "--out", str(tmp_path / "out"))
    assert code == 2
    assert "tuberculosis" in output and "does not know" in output
    assert not (tmp_path / "out").exists()  # refused before measuring anything


@needs_onnxruntime
def test_a_third_party_model_is_benched_with_its_input_scaling(labelled, tmp_path):
    args = [str(labelled), "--model", str(THIRD_PARTY_UNIT_LOGITS_ONNX), "--labels", "healthy,pneumonia,covid",
            "--runs", "5", "--warmup", "1", "--out", str(tmp_path)]
    code, output = bench(*args)
    assert code == 2 and "--input-scaling raw" in output
    code, output = bench(*args, "--input-scaling", "unit", "--negative-label", "healthy", "--threshold", "0.5")
    assert code == 0, output
    assert "input scaling unit" in " ".join(output.split())
    report = json.loads((tmp_path / "bench.json").read_text())
    row = report["results"][0]
    assert row["input_scaling"] == "unit" and "assumed labels healthy" in row["assumptions"]
    assert report["settings"]["model_options"]["input_scaling"] == "unit"
    assert row["metrics"]["confusion_matrix"] == EXPECTED_CONFUSION


@needs_onnxruntime
def test_models_with_and_without_metadata_mix_in_one_bench(labelled, tmp_path):
    # --labels and --input-scaling go to the model without metadata; the one with metadata keeps its own.
    code, output = bench(str(labelled), "--model", str(FP32), "--model", str(THIRD_PARTY_UNIT_LOGITS_ONNX),
                         "--labels", "healthy,pneumonia,covid", "--input-scaling", "unit", "--runs", "5",
                         "--warmup", "1", "--out", str(tmp_path))
    assert code == 0, output
    report = json.loads((tmp_path / "bench.json").read_text())
    assert report["settings"]["model_options_applied_to"] == [THIRD_PARTY_UNIT_LOGITS_ONNX.name]
    by_model = {row["model"]: row for row in report["results"]}
    assert by_model[FP32.name]["assumptions"] is None and by_model[FP32.name]["input_scaling"] == "raw"
    assert by_model[THIRD_PARTY_UNIT_LOGITS_ONNX.name]["input_scaling"] == "unit"


def test_limit_takes_a_stratified_sample(labelled, tmp_path):
    code, output = bench(str(labelled), "--model", str(FP32), "--limit", "6", "--runs", "5",
                         "--out", str(tmp_path))
    assert code == 0, output
    data = json.loads((tmp_path / "bench.json").read_text())["data"]
    assert data["n_images"] == 6 and data["per_class"] == {"covid": 2, "healthy": 2, "pneumonia": 2}


def test_select_images_is_proportional_deterministic_and_keeps_every_class():
    images = [LabelledImage(Path(f"{label}/{i}.png"), label, f"{label}{i}")
              for label, n in (("a", 60), ("b", 30), ("c", 10)) for i in range(n)]
    sample = select_images(images, 20, seed=1)
    assert [img.label for img in sample].count("a") == 12
    assert [img.label for img in sample].count("b") == 6
    assert [img.label for img in sample].count("c") == 2
    assert sample == select_images(images, 20, seed=1)
    assert sample != select_images(images, 20, seed=2)
    rare = select_images(images, 4, seed=0)
    assert sorted({img.label for img in rare}) == ["a", "b", "c"] and len(rare) == 4
    with pytest.raises(BenchError, match="smaller than the 3 classes"):
        select_images(images, 2)


def test_split_file_selects_the_test_split(labelled, tmp_path):
    files = sorted(labelled.rglob("*.png"))
    split_csv = tmp_path / "split.csv"
    test_files = [f for f in files if f.stem.endswith("-0")]
    split_csv.write_text("file,label,group,split\n" + "".join(
        f"{f},{f.parent.name},g{i},{'test' if f in test_files else 'train'}\n" for i, f in enumerate(files)))
    code, output = bench(str(labelled), "--model", str(FP32), "--split", "test", "--split-file", str(split_csv),
                         "--runs", "5", "--out", str(tmp_path / "out"))
    assert code == 0, output
    data = json.loads((tmp_path / "out" / "bench.json").read_text())["data"]
    assert data["n_images"] == len(test_files) and data["split"] == "test"


def test_latency_summary_orders_percentiles_of_any_sample():
    sample = np.random.default_rng(3).lognormal(1.0, 0.5, size=101)
    s = latency_summary(sample)
    assert s["min"] <= s["p50"] <= s["p90"] <= s["p99"] <= s["max"]
    assert s["p50"] == pytest.approx(np.median(sample)) and s["runs"] == 101


def test_bootstrap_interval_is_a_point_for_perfect_predictions_and_wide_for_few_images():
    y = np.repeat([0, 1, 2], 20)
    assert bootstrap_macro_f1(y, y, 3) == [1.0, 1.0]
    noisy = y.copy()
    noisy[::7] = (noisy[::7] + 1) % 3
    point = classification_report(y, np.eye(3)[noisy], ["a", "b", "c"])["macro_f1"]
    low, high = bootstrap_macro_f1(y, noisy, 3)
    assert low < point < high and high - low > 0.1


def test_measure_latency_runs_warmup_then_timed_calls():
    calls = []
    result = measure_latency(calls.append, np.zeros((1, 4, 4, 1), np.uint8), runs=7, warmup=3)
    assert len(calls) == 10 and result["runs"] == 7 and result["warmup"] == 3


RASPBERRY_PI_4_CPUINFO = """processor\t: 0
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid
CPU implementer\t: 0x41
CPU part\t: 0xd08

processor\t: 1
BogoMIPS\t: 108.00
Features\t: fp asimd evtstrm crc32 cpuid

Hardware\t: BCM2835
Revision\t: c03114
Model\t\t: Raspberry Pi 4 Model B Rev 1.4
"""
X86_CPUINFO = """processor\t: 0
vendor_id\t: GenuineIntel
model\t\t: 106
model name\t: Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz
flags\t\t: fpu sse4_2 avx avx2 fma avx512f avx512_vnni
"""


@pytest.mark.parametrize("text, model, simd", [
    (RASPBERRY_PI_4_CPUINFO, "Raspberry Pi 4 Model B Rev 1.4", ["neon", "asimd"]),
    (X86_CPUINFO, "Intel(R) Xeon(R) Platinum 8375C CPU @ 2.90GHz", ["sse4_2", "avx", "avx2", "fma", "avx512f",
                                                                     "avx512_vnni"]),
])
def test_fingerprint_names_the_cpu_and_its_simd_on_x86_and_a_raspberry_pi(text, model, simd):
    blocks = parse_cpuinfo(text)
    assert cpu_model(blocks) == model
    assert simd_features(blocks) == simd


@pytest.mark.parametrize("machine, text, emulated", [
    ("aarch64", X86_CPUINFO, True),  # qemu-user: an arm64 process reading its x86 host's cpuinfo
    ("aarch64", RASPBERRY_PI_4_CPUINFO, False),
    ("x86_64", X86_CPUINFO, False),
    ("x86_64", RASPBERRY_PI_4_CPUINFO, True),
    ("aarch64", "", False),  # no /proc/cpuinfo (macOS): nothing says so
    ("aarch64", RASPBERRY_PI_4_CPUINFO.replace("Rev 1.4", "(emulated by qemu-user cortex-a72)"), True),
])
def test_fingerprint_says_emulated_when_the_process_and_the_cpu_differ(monkeypatch, machine, text, emulated):
    monkeypatch.setattr(_hardware.platform, "machine", lambda: machine)
    monkeypatch.setattr(_hardware, "_read_cpuinfo", lambda: parse_cpuinfo(text) if text else [])
    hardware = _hardware.hardware_fingerprint()
    assert hardware["emulated"] is emulated
    assert ("emulated by qemu" in hardware["cpu_model"]) is emulated
    if emulated and machine == "aarch64":  # the host's AVX flags are not the emulated CPU's
        assert hardware["simd"] == ["neon"]


def test_split_from_train_and_test_folders(tmp_path):
    write_labelled_folder(tmp_path / "data" / "train")
    write_labelled_folder(tmp_path / "data" / "test")
    (tmp_path / "data" / "test" / "covid" / f"{BRIGHT}-0.png").unlink()
    code, output = bench(str(tmp_path / "data"), "--model", str(FP32), "--split", "test", "--runs", "5",
                         "--out", str(tmp_path / "out"))
    assert code == 0, output
    assert json.loads((tmp_path / "out" / "bench.json").read_text())["data"]["n_images"] == 12
    code, output = bench(str(tmp_path / "data" / "test"), "--model", str(FP32), "--split", "test",
                         "--out", str(tmp_path / "out2"))
    assert code == 2 and "--split-file" in output


def test_bench_shows_the_films_the_scope_check_takes_from_each_class(tmp_path):
    from conftest import SCOPED_FP32_TFLITE, film, noise

    from xscreen.bench._report import summary_rows
    from xscreen.bench._worker import measure_row

    files, truth = [], []
    for label, level, extra_noise in (("healthy", 30, 1), ("pneumonia", 120, 0), ("covid", 190, 2)):
        for i in range(4):
            files.append(tmp_path / f"{label}-{i}.png")
            Image.fromarray(noise(seed=i) if i < extra_noise else film(level, seed=i)).save(files[-1])
            truth.append(label)
    row = measure_row({"model": str(SCOPED_FP32_TFLITE), "threads": 1, "files": [str(f) for f in files],
                       "truth": truth, "runs": 3, "warmup": 1})
    scope = row["metrics"]["scope"]
    assert scope["image_check"] is True
    assert {k: v["in_scope_rate"] for k, v in scope["per_class"].items()} == {
        "healthy": 0.75, "pneumonia": 1.0, "covid": 0.5}
    # The classifier is right on every film it kept; counting the taken films as missed shows the loss.
    assert scope["per_class"]["covid"]["recall_of_all"] == 0.5
    assert row["pipeline"]["out_of_scope"] == 3 and row["pipeline"]["failed"] == 0
    assert summary_rows([{"model": "m", **row}])[0]["in scope"] == "75.0 / 100.0 / 50.0 %"


def test_the_terminal_table_fits_100_columns_without_cutting_a_cell(two_models_two_threads):
    import io

    from rich.console import Console

    from xscreen._console import bench_table
    from xscreen.bench import terminal_rows

    report, _ = two_models_two_threads
    # A user's own long file name is folded onto two lines, never cut.
    results = [{**r, "model": r["model"].replace("brightness", "xscreen_cxr3_mobilenetv2_retrained")}
               for r in report["results"]]
    rows = terminal_rows(results)
    console = Console(width=100, file=io.StringIO(), record=True)
    console.print(bench_table(rows, "xscreen bench: 13 images of data (all columns: bench.md)"))
    text = console.export_text()
    lines = text.splitlines()
    assert "…" not in text and max(len(line) for line in lines) <= 100
    for row in rows:
        for column, cell in row.items():
            if column != "model":
                assert any(cell in line for line in lines), cell
    # The model column is the first: a folded name reads whole down its consecutive lines.
    firsts = [line.split()[0] if line[1:2].strip() else "" for line in lines]
    for name in {row["model"] for row in rows}:
        assert any("".join(firsts[i:i + k]) == name for i in range(len(firsts)) for k in (1, 2, 3)), name


def test_bench_prints_the_extra_with_its_brackets_when_matplotlib_is_missing(labelled, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    code, output = bench(str(labelled), "--model", str(INT8), "--runs", "3", "--warmup", "0",
                         "--out", str(tmp_path / "b"))
    assert code == 0, output
    assert "pip install 'xscreen[report]'" in output
    assert f"{Path(INT8).stat().st_size / 1e6:.2g} MB" in output  # sizes in MB (10^6), as everywhere


def test_bench_on_the_folder_a_model_was_trained_on_warns_in_table_json_and_markdown(tmp_path):
    # The bundled model's metadata says it was trained on cxr3 + nih: a folder named cxr3 is its pool.
    data = write_labelled_folder(tmp_path / "cxr3")
    code, output = bench(str(data), "--model", "bundled", "--runs", "2", "--warmup", "0", "--out", str(tmp_path / "b"))
    assert code == 0, output
    assert "warning:" in output and "trained on films of cxr3/" in output and "ON ITS TRAINING FILMS" in output
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert "xscreen_int8.tflite" in report["data"]["training_films_warnings"]
    assert report["results"][0]["on_training_films"] is True
    assert "**Warning: xscreen_int8.tflite was trained on films of cxr3/" in (tmp_path / "b" / "bench.md").read_text()
    # Restricted to a held-out split it does not warn; a folder it never saw does not either.
    split = tmp_path / "split.csv"
    split.write_text("file,split\n" + "".join(f"{p},test\n" for p in sorted(data.rglob("*.png"))))
    code, output = bench(str(data), "--model", "bundled", "--runs", "2", "--warmup", "0", "--split", "test",
                         "--split-file", str(split), "--out", str(tmp_path / "c"))
    assert code == 0 and "warning:" not in output, output
    other = write_labelled_folder(tmp_path / "ward3")
    code, output = bench(str(other), "--model", "bundled", "--runs", "2", "--warmup", "0", "--out", str(tmp_path / "d"))
    assert code == 0 and "warning:" not in output, output


def test_split_test_with_the_bundled_model_uses_its_shipped_split(tmp_path, monkeypatch):
    import xscreen.bench._bench as bench_module

    data = write_labelled_folder(tmp_path / "pool" / "cxr3")
    held_out = sorted(data.rglob("*.png"))[::2]
    shipped = tmp_path / "models" / "xscreen_split.csv"
    shipped.parent.mkdir()
    monkeypatch.setattr(bench_module, "BUNDLED_SPLIT", shipped)
    code, output = bench(str(data), "--model", "bundled", "--split", "test", "--runs", "2",
                         "--out", str(tmp_path / "a"))
    assert code == 2 and "ships no split of the bundled model" in output, output
    # As the build script writes it: file names from the pool's root, no images.
    rows = [f"{p.relative_to(data.parent).as_posix()},x,g,{'test' if p in held_out else 'train'}\n"
            for p in sorted(data.rglob("*.png"))]
    shipped.write_text("file,label,group,split\n" + "".join(rows))
    code, output = bench(str(data), "--model", "bundled", "--split", "test", "--runs", "2", "--warmup", "0",
                         "--out", str(tmp_path / "b"))
    assert code == 0 and "warning:" not in output, output
    report = json.loads((tmp_path / "b" / "bench.json").read_text())
    assert report["data"]["n_images"] == len(held_out) and report["data"]["split_file"] == str(shipped)
    assert report["data"]["split_note"].startswith("reconstructed")
    assert "reconstructed" in (tmp_path / "b" / "bench.md").read_text()
    assert "reconstructed" in output
