"""The shortcut audit: where the predicted class's evidence lies (lungs, corners, border, elsewhere)."""

from __future__ import annotations

import numpy as np
import pytest

from xscreen.report import region_masks, shortcut_audit, shortcut_audit_markdown


def cams_with(cells: list[tuple[int, int]], n_classes: int = 3, size: int = 7) -> np.ndarray:
    """One (1, size, size, C) CAM per entry with evidence in one cell for every class."""
    cams = np.zeros((len(cells), size, size, n_classes), dtype=np.float32)
    for i, (row, col) in enumerate(cells):
        cams[i, row, col, :] = 4.0
    return cams


def row(audit: dict, group) -> dict:
    return next(r for r in audit["groups"] if r["group"] == group)


def test_regions_are_disjoint_and_cover_the_frame():
    masks = region_masks(64)
    total = sum(mask.astype(int) for mask in masks.values())
    assert (total == 1).all()
    # The lung ellipses sit in the middle band, the corners at the corners.
    assert masks["lungs"][32, 19] and masks["lungs"][32, 45] and not masks["lungs"][32, 32]
    assert masks["corners"][0, 0] and masks["corners"][63, 63] and masks["border"][32, 0]


def test_evidence_in_a_corner_is_called_out_and_evidence_in_a_lung_is_not():
    # Two "covid" films whose evidence is a top-left corner marker, two "pneumonia" films with it in a lung.
    cams = cams_with([(0, 0), (0, 6), (3, 2), (3, 4)])
    groups = [("covid", "sourceA"), ("covid", "sourceA"), ("pneumonia", "sourceB"), ("pneumonia", "sourceB")]
    audit = shortcut_audit(cams, [2, 2, 1, 1], groups)
    covid, pneumonia = row(audit, ["covid", "sourceA"]), row(audit, ["pneumonia", "sourceB"])
    assert covid["n"] == 2 and covid["share"]["corners"] > 0.8 and covid["share"]["lungs"] < 0.05
    assert pneumonia["share"]["lungs"] > 0.6 and pneumonia["share"]["corners"] < 0.05
    for r in audit["groups"]:
        assert sum(r["share"].values()) == pytest.approx(1.0, abs=1e-5)
    text = shortcut_audit_markdown(audit)
    assert "| covid / sourceA | 2 |" in text
    flagged = [line for line in text.splitlines() if line.startswith("- ")]
    assert any("covid / sourceA" in line and "corners" in line for line in flagged)
    assert not any("pneumonia / sourceB" in line for line in flagged)


def test_evenly_spread_evidence_gives_each_region_its_area():
    cams = np.ones((2, 7, 7, 3), dtype=np.float32)
    audit = shortcut_audit(cams, [0, 1], ["x", "x"])
    for region, area in audit["area"].items():
        assert row(audit, "x")["share"][region] == pytest.approx(area, abs=1e-4)


def test_only_the_predicted_class_map_counts_and_films_without_evidence_are_counted_apart():
    cams = np.zeros((2, 7, 7, 2), dtype=np.float32)
    cams[0, 0, 0, 0] = 5.0  # class 0: corner
    cams[0, 3, 2, 1] = 5.0  # class 1: lung; the film is predicted class 1
    cams[1] = -1.0  # nothing positive at all
    audit = shortcut_audit(cams, [1, 0], ["a", "b"])
    assert row(audit, "a")["share"]["lungs"] > 0.6
    assert row(audit, "b") == {"group": "b", "n": 1, "no_evidence": 1, "share": dict.fromkeys(
        ("lungs", "corners", "border", "elsewhere"))}
    assert row(audit, "all")["no_evidence"] == 1
    assert "| b | 1 | - | - | - | - |" in shortcut_audit_markdown(audit)


def test_mismatched_lengths_are_refused():
    with pytest.raises(ValueError, match="expected cams"):
        shortcut_audit(np.zeros((2, 7, 7, 3)), [0], ["a", "b"])
