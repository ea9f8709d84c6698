"""The arm64 parity report (benchmarks/aarch64/parity.py): what it says about films whose answer differs
between two machines, and about onnxruntime session settings."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np

PARITY = Path(__file__).parents[1] / "benchmarks" / "aarch64" / "parity.py"
spec = importlib.util.spec_from_file_location("parity", PARITY)
parity = importlib.util.module_from_spec(spec)
spec.loader.exec_module(parity)

FILMS = ["fullres/healthy/a.jpeg", "fullres/pneumonia/b.jpeg", "cxr3/covid/c.png"]
THRESHOLD = 0.2


def row(film: str, covid: float, healthy: float) -> dict:
    probabilities = {"covid": covid, "healthy": healthy, "pneumonia": round(1 - covid - healthy, 6)}
    margin = round(1 - healthy - THRESHOLD, 6)
    return {"path": f"/data/{film}", "status": "ok", "prediction": max(probabilities, key=probabilities.get),
            "probabilities": probabilities, "flag": margin >= 0, "margin": margin}


def machine(folder: Path, arch: str, rows: list[dict], sha: str = "ab" * 32) -> Path:
    folder.mkdir()
    (folder / "machine.json").write_text(json.dumps({"machine": arch, "cpu_model": "cpu", "python": "CPython 3.11",
                                                     "packages": {"numpy": "2"}}))
    (folder / "xscreen_int8.onnx.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    (folder / "xscreen_int8.onnx.jsonl.meta.json").write_text(json.dumps({"model_sha256": sha}))
    return folder


def settings(folder: Path, name: str, probabilities: np.ndarray) -> None:
    np.savez(folder / f"xscreen_int8.onnx.ort-{name}.npz", probabilities=probabilities,
             margins=1 - probabilities[:, 1] - THRESHOLD)


def test_the_report_names_each_film_whose_answer_differs_with_both_margins(tmp_path):
    # Film a sits just below the threshold on x86 and just above it on arm64: its flag flips.
    ref = machine(tmp_path / "x86", "x86_64", [row(FILMS[0], 0.0, 0.81), row(FILMS[1], 0.1, 0.1),
                                               row(FILMS[2], 0.9, 0.05)])
    tgt = machine(tmp_path / "arm64", "aarch64", [row(FILMS[0], 0.0, 0.79), row(FILMS[1], 0.1, 0.1),
                                                  row(FILMS[2], 0.9, 0.05)])
    report = parity.report(ref, tgt, FILMS, None, tmp_path / "out")

    (model,) = report["models"]
    assert model["flag_agreement"] == 2 / 3 and model["prediction_agreement"] == 1.0
    (flipped,) = model["differing_films"]
    assert flipped["film"] == FILMS[0]
    assert flipped["reference"]["margin"] == -0.01 and not flipped["reference"]["flag"]
    assert flipped["target"]["margin"] == 0.01 and flipped["target"]["flag"]
    assert flipped["reference"]["top1_gap"] == 0.62
    assert model["films_margin_within_max_dp"] == 1  # only film a is within 0.02 of the threshold
    assert model["model_sha256"] == {"reference": "ab" * 32, "target": "ab" * 32}
    markdown = (tmp_path / "out" / "parity.md").read_text()
    assert f"`{FILMS[0]}` | 0.020 | healthy, no flag, -0.0100, 0.6200 | healthy, flag, +0.0100, 0.5800 |" in markdown
    assert "same file on both" in markdown


def test_onnx_settings_compare_the_same_setting_across_machines_and_against_the_default(tmp_path):
    rows = [row(f, 0.1, 0.5) for f in FILMS]
    ref, tgt = machine(tmp_path / "x86", "x86_64", rows), machine(tmp_path / "arm64", "aarch64", rows)
    shipped = np.array([[0.1, 0.3, 0.6]] * 3, dtype=np.float32)  # pneumonia, flagged
    unfused = np.array([[0.05, 0.9, 0.05]] * 3, dtype=np.float32)  # healthy, not flagged: moves x86 itself
    settings(ref, "default", shipped)
    settings(ref, "no-QDQ-fusion", unfused)
    settings(tgt, "default", shipped[:2] + np.array([[0.0, 0.01, -0.01]], dtype=np.float32))  # --limit 2
    settings(tgt, "no-QDQ-fusion", unfused[:2])

    rows = {r["setting"]: r for r in parity.report(ref, tgt, FILMS, None, tmp_path / "out")["onnx_session_settings"]}

    assert list(rows) == ["default", "no QDQ fusion"]  # in the table's order
    default, unfused_row = rows["default"], rows["no QDQ fusion"]
    assert default["n"] == 2 and np.isclose(default["same setting"]["max_abs_dp"], 0.01)
    assert unfused_row["same setting"]["max_abs_dp"] == 0.0  # the same on both machines...
    assert unfused_row["reference default"]["flag_differs"] == 2  # ...but not what xscreen ships
    assert unfused_row["reference alone"] == {"n": 3, "max_abs_dp": unfused_row["reference alone"]["max_abs_dp"],
                                              "films_dp_over_1e-4": 3, "prediction_differs": 3, "flag_differs": 3}
