"""The local validation report: before and after, with intervals, as Markdown and JSON.

Figures come from ``runtime._metrics.classification_report`` (the one implementation); intervals from
a bootstrap over patients (films of one patient are drawn together) and, for sensitivity and
specificity, the Wilson interval of the counts.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from ..runtime._metrics import classification_report, report_markdown

BOOTSTRAP_RESAMPLES = 1000
Z95 = 1.959964


def wilson_interval(successes: int, n: int) -> list[float] | None:
    """95% Wilson score interval of a proportion; None with n = 0."""
    if n == 0:
        return None
    p = successes / n
    centre = (p + Z95**2 / (2 * n)) / (1 + Z95**2 / n)
    half = Z95 * np.sqrt(p * (1 - p) / n + Z95**2 / (4 * n**2)) / (1 + Z95**2 / n)
    return [float(centre - half), float(centre + half)]


def patient_resamples(groups: Sequence[str], resamples: int, seed: int):
    """Film indices of ``resamples`` bootstrap samples drawn by patient."""
    _, inverse = np.unique(np.asarray(groups), return_inverse=True)
    members = [np.flatnonzero(inverse == g) for g in range(inverse.max() + 1)]
    rng = np.random.default_rng(seed)
    for _ in range(resamples):
        yield np.concatenate([members[g] for g in rng.integers(0, len(members), len(members))])


def evaluate(y: np.ndarray, probabilities: np.ndarray, labels: Sequence[str], negative_label: str | None,
             threshold: float | None, groups: Sequence[str], resamples: int = BOOTSTRAP_RESAMPLES,
             seed: int = 0) -> dict:
    """The classification report of these films with 95% intervals (patient bootstrap; Wilson: screening point)."""
    report = classification_report(y, probabilities, labels, negative_label, threshold)
    present = [label for label, row in report["per_class"].items() if row["support"]]
    draws: dict[str, list[float]] = {}
    for pick in patient_resamples(groups, resamples, seed):
        sample = classification_report(y[pick], probabilities[pick], labels, negative_label, threshold)
        values = {"macro_f1": sample["macro_f1"]}
        for label in present:
            row = sample["per_class"][label]
            if row["support"]:
                values[f"recall {label}"] = row["recall"]
            if row["precision"] or row["support"]:
                values[f"precision {label}"] = row["precision"]
        screening = sample.get("screening") or {}
        for key in ("roc_auc", "sensitivity", "specificity"):
            if screening.get(key) is not None:
                values[key] = screening[key]
        for key, value in values.items():
            draws.setdefault(key, []).append(value)
    report["ci95"] = {key: [float(v) for v in np.percentile(values, [2.5, 97.5])] for key, values in draws.items()}
    screening = report.get("screening")
    if screening:
        report["wilson95"] = {
            "sensitivity": wilson_interval(screening["tp"], screening["tp"] + screening["fn"]),
            "specificity": wilson_interval(screening["tn"], screening["tn"] + screening["fp"]),
        }
    return report


def _value(report: dict | None, key: str) -> tuple[float | None, list[float] | None]:
    if report is None:
        return None, None
    kind, _, label = key.partition(" ")
    if label:
        row = report["per_class"][label]
        return row[kind], report["ci95"].get(key)
    if key == "macro_f1":
        return report["macro_f1"], report["ci95"].get(key)
    screening = report.get("screening") or {}
    interval = (report.get("wilson95") or {}).get(key) or report["ci95"].get(key)
    return screening.get(key), interval


def _cell(value: float | None, interval: list[float] | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3f}" + (f" ({interval[0]:.3f}-{interval[1]:.3f})" if interval else "")


FIGURE_NAMES = {"macro_f1": "macro-F1", "roc_auc": "ROC AUC, P(abnormal)",
                "sensitivity": "sensitivity at the threshold", "specificity": "specificity at the threshold"}


def figure_rows(result: dict) -> list[tuple[str, str, str]]:
    """(figure, before, after) rows of the summary, shared by the Markdown and the screen."""
    before, after = result["before"], result.get("after")
    present = [label for label, n in result["films_per_label"].items() if n]
    keys = ([f"recall {label}" for label in present] + [f"precision {label}" for label in present]
            + ["macro_f1", "roc_auc", "sensitivity", "specificity"])
    rows = [(FIGURE_NAMES.get(key, key), _cell(*_value(before, key)), _cell(*_value(after, key))) for key in keys]
    thresholds = [((report or {}).get("screening") or {}).get("threshold") for report in (before, after)]
    rows.append(("threshold", *(f"{t:.4f}" if t is not None else "n/a" for t in thresholds)))
    return rows


def render_markdown(result: dict) -> str:
    """The report a site files before go-live."""
    evaluate_only = result.get("after") is None
    lines = [f"# {'Local validation' if evaluate_only else 'Site calibration'}: {result['model']['path']} "
             f"on {result['site']}", "",
             f"> **Not a medical device.** {result['disclaimer']}", "",
             f"Written by xscreen {result['xscreen_version']} on {result['fitted_at']}. Films per label: "
             + ", ".join(f"{label} {n} ({result['patients_per_label'][label]} patients)"
                         for label, n in result["films_per_label"].items() if n) + "."]
    lines += ["", *[f"- **Warning:** {w}" for w in result["warnings"]]] if result["warnings"] else []
    lines += ["", "## Figures", "",
              "Before: the model as it is, at its own threshold, on all of these films. "
              + ("" if evaluate_only else "After: cross-validated (each film predicted by a calibration fitted "
                 "without its patient; the choice of calibration and the threshold were made on the same folds, "
                 "so the after figures lean optimistic; judge on new films). ")
              + "In brackets: 95% intervals (patient bootstrap; Wilson for sensitivity and specificity).", "",
              "| figure | before | after |", "|---|---|---|"]
    lines += [f"| {name} | {b} | {a} |" for name, b, a in figure_rows(result)]
    if not evaluate_only:
        cv = result["cross_validation"]
        lines += ["", "## What was fitted", "",
                  f"Chosen by {cv['folds']}-fold patient-grouped cross-validation: **{cv['chosen']}**, "
                  "the simplest candidate within one standard error of the lowest out-of-fold log-loss; one whose "
                  "macro-F1 is below the model as it is cannot be chosen:", "",
                  "| candidate | log-loss | macro-F1 | chosen |", "|---|---|---|---|"]
        lines += [f"| {name} | {s['log_loss']:.4f} | {s['macro_f1']:.4f} | {'yes' if s['chosen'] else ''} |"
                  for name, s in cv["candidates"].items()]
        threshold = result["threshold"]
        if threshold.get("value") is not None:
            lines += ["", f"Threshold: {threshold['rule']}."]
    if result["not_checked"]:
        lines += ["", f"Not checked: {', '.join(result['not_checked'])} (no such films here). Their probabilities are "
                      "left exactly as the model gives them, so they rank films as before; nothing here says how "
                      "well the model finds them at this site."]
    scope = result.get("scope_check")
    if scope:
        lines += ["", f"Scope check: {scope['out_of_scope']} of {scope['films']} films score above the model's scope "
                      f"threshold ({scope['threshold']:g}); `xscreen run` would set them aside as out of scope."]
    if result["failed"]:
        lines += ["", f"{len(result['failed'])} files did not decode and were left out: "
                  + "; ".join(f"{p}: {why}" for p, why in result["failed"][:5])]
    lines += ["", "## Per class", "", report_markdown(result["before"], "Before (the model as it is)")]
    if not evaluate_only:
        lines += [report_markdown(result["after"], "After (cross-validated)")]
    lines += ["## Advice", "", *[f"- {a}" for a in result["advice"]], ""]
    return "\n".join(lines)


def write_report(result: dict, stem: Path) -> tuple[Path, Path]:
    """``STEM.md`` and ``STEM.json``."""
    md, js = stem.with_name(stem.name + ".md"), stem.with_name(stem.name + ".json")
    md.write_text(render_markdown(result), encoding="utf-8")
    js.write_text(json.dumps(result, indent=2) + "\n", encoding="utf-8")
    return md, js
