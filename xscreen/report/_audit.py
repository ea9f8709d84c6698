"""Shortcut audit: does the model's evidence lie in the lungs, or in corners, borders and text?

For each film, the positive part of the predicted class's CAM is upsampled to a fine grid of the
model's input frame and split between four disjoint regions; each film's shares sum to 1, and a
group's share is the mean over its films (every film weighs the same).

**The lung fields are an approximation, not a segmentation**: two fixed ellipses in the squashed
input frame, fitted by eye to typical PA chest films squashed to a square (lungs centred at 30 %
and 70 % of the width, 47 % of the height, 14 % of the width and 31 % of the height as
semi-axes). They miss rotated, AP, paediatric films with a small thorax, and films with wide
borders; read the shares as group averages, never per film. The other regions:

* ``corners``: the four corner squares of 20 % of the side, where burned-in text, markers and
  hospital labels sit (outside the lung ellipses);
* ``border``: the rest of an outer band of 8 % of the side (collimation edges, rulers);
* ``elsewhere``: everything else (mediastinum, heart, diaphragm, abdomen, shoulders).

A model that uses the film the way a reader does puts far more than the lungs' area share in the
lungs; ``area`` in the result is what evidence spread evenly would give, the baseline to compare with.
"""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np

from ._maps import upsample_bilinear

AUDIT_GRID = 112  # cells per side of the frame the shares are measured on
LUNG_ELLIPSES = ((0.30, 0.47, 0.14, 0.31), (0.70, 0.47, 0.14, 0.31))  # (cx, cy, rx, ry), fractions of the frame
CORNER = 0.20
BORDER = 0.08
REGIONS = ("lungs", "corners", "border", "elsewhere")
# When a group's share in the lungs is below this multiple of the lungs' area, the card says so.
LUNG_LIFT_FLOOR = 1.5
# When corners + border hold more than this multiple of their area share, the card says so.
OUTSIDE_LIFT_CEILING = 1.0


def region_masks(size: int = AUDIT_GRID) -> dict[str, np.ndarray]:
    """Boolean (size, size) masks of the four disjoint regions, in the squashed input frame."""
    y, x = (np.mgrid[0:size, 0:size] + 0.5) / size
    lungs = np.zeros((size, size), dtype=bool)
    for cx, cy, rx, ry in LUNG_ELLIPSES:
        lungs |= ((x - cx) / rx) ** 2 + ((y - cy) / ry) ** 2 <= 1
    near_x, near_y = np.minimum(x, 1 - x), np.minimum(y, 1 - y)
    corners = (near_x < CORNER) & (near_y < CORNER) & ~lungs
    border = (np.minimum(near_x, near_y) < BORDER) & ~corners & ~lungs
    elsewhere = ~(lungs | corners | border)
    return {"lungs": lungs, "corners": corners, "border": border, "elsewhere": elsewhere}


def shortcut_audit(cams: np.ndarray, predicted: Sequence[int], groups: Sequence[Hashable]) -> dict:
    """Share of positive heatmap mass per region, for every group of films and overall.

    ``cams``: (N, h, w, C) raw class-activation maps; ``predicted``: (N,) class index per film (the
    map audited is that class's); ``groups``: one key per film, e.g. ``(label, source)``. Films whose
    map has no positive value are counted in ``no_evidence`` and left out of the shares.
    Returns a JSON-ready dict: ``method``, ``area`` (each region's share of the frame) and
    ``groups``, a list of ``{"group", "n", "no_evidence", "share": {region: mean share}}``, the
    last one being ``"all"``.
    """
    cams = np.asarray(cams, dtype=np.float32)
    predicted = np.asarray(predicted, dtype=int)
    if cams.ndim != 4 or len(predicted) != len(cams) or len(groups) != len(cams):
        raise ValueError(f"expected cams (N, h, w, C) with N predictions and N groups, got {cams.shape}, "
                         f"{len(predicted)} predictions, {len(groups)} groups")
    masks = region_masks()
    maps = cams[np.arange(len(cams)), :, :, predicted]  # (N, h, w): the predicted class's map
    evidence = np.maximum(upsample_bilinear(maps, (AUDIT_GRID, AUDIT_GRID)), 0)
    mass = np.stack([evidence[:, mask].sum(axis=1) for mask in masks.values()], axis=1)  # (N, regions)
    total = mass.sum(axis=1)
    has_evidence = total > 0
    shares = np.divide(mass, total[:, None], out=np.zeros_like(mass), where=has_evidence[:, None])
    keys = list(dict.fromkeys(groups))
    rows = [_group_row(key, shares, has_evidence, [g == key for g in groups]) for key in keys]
    rows.append(_group_row("all", shares, has_evidence, [True] * len(cams)))
    return {
        "method": "positive CAM mass of the predicted class per region, fixed-ellipse lung fields "
                  f"(xscreen.report._audit), {AUDIT_GRID}x{AUDIT_GRID} grid",
        "area": {name: float(mask.mean()) for name, mask in masks.items()},
        "groups": rows,
    }


def _group_row(key: Hashable, shares: np.ndarray, has_evidence: np.ndarray, members: list[bool]) -> dict:
    members = np.asarray(members, dtype=bool)
    used = members & has_evidence
    mean = shares[used].mean(axis=0) if used.any() else np.full(len(REGIONS), np.nan)
    return {
        "group": list(key) if isinstance(key, tuple) else key,
        "n": int(members.sum()),
        "no_evidence": int((members & ~has_evidence).sum()),
        "share": {name: None if np.isnan(v) else float(v) for name, v in zip(REGIONS, mean)},
    }


def shortcut_audit_markdown(audit: dict) -> str:
    """The audit as a markdown table plus one sentence per group whose evidence lies outside the lungs."""
    area = audit["area"]
    lines = [
        "| group | films | lungs | corners | border | elsewhere |",
        "|---|---|---|---|---|---|",
        "| *evidence spread evenly (area)* | | " + " | ".join(f"{100 * area[r]:.0f} %" for r in REGIONS) + " |",
    ]
    warnings = []
    for row in audit["groups"]:
        name = " / ".join(map(str, row["group"])) if isinstance(row["group"], list) else str(row["group"])
        share = row["share"]
        cells = " | ".join("-" if share[r] is None else f"{100 * share[r]:.0f} %" for r in REGIONS)
        lines.append(f"| {name} | {row['n']:,} | {cells} |")
        if share["lungs"] is None:
            continue
        outside = share["corners"] + share["border"]
        if share["lungs"] < LUNG_LIFT_FLOOR * area["lungs"]:
            warnings.append(f"**{name}**: only {100 * share['lungs']:.0f} % of the evidence lies in the lung "
                            f"fields (they cover {100 * area['lungs']:.0f} % of the frame).")
        outside_area = area["corners"] + area["border"]
        if outside > OUTSIDE_LIFT_CEILING * outside_area:
            warnings.append(f"**{name}**: {100 * outside:.0f} % of the evidence lies in the corners and borders, "
                            f"where text and markers sit (more than their {100 * outside_area:.0f} % of the "
                            "frame): a possible shortcut.")
    lines.append("")
    lines.append(f"Lung fields approximated by two fixed ellipses in the squashed input frame, not segmented "
                 f"({audit['method']}). A group is called out below when under {LUNG_LIFT_FLOOR:g}x the lungs' "
                 "area share of its evidence lies in them, or when its corners and borders hold more than "
                 "their area share.")
    lines.append("")
    lines.extend(f"- {w}" for w in warnings or ["No group puts its evidence outside the lungs by these rules."])
    return "\n".join(lines) + "\n"
