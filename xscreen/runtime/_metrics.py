"""Classification and screening metrics, numpy only (the bench runs them on a Pi).

One function, :func:`classification_report`, serves the training test report, the export
verification and the bench, so every figure xscreen prints is computed the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def confusion_matrix(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Rows are true classes, columns predicted classes."""
    matrix = np.zeros((n_classes, n_classes), dtype=np.int64)
    np.add.at(matrix, (np.asarray(y_true, int), np.asarray(y_pred, int)), 1)
    return matrix


def macro_f1_rows(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro-F1 (mean F1 over the classes present) of each row of ``(B, N)`` label arrays: ``(B,)``, for bootstraps."""
    rows = np.arange(y_true.shape[0])[:, None]
    matrix = np.zeros((y_true.shape[0], n_classes, n_classes))
    np.add.at(matrix, (rows, y_true, y_pred), 1)
    tp = np.diagonal(matrix, axis1=1, axis2=2)
    actual, predicted = matrix.sum(axis=2), matrix.sum(axis=1)
    f1 = np.divide(2 * tp, actual + predicted, out=np.zeros_like(tp), where=(actual + predicted) > 0)
    present = actual > 0
    return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)


def roc_auc(positive: np.ndarray, scores: np.ndarray) -> float | None:
    """Area under the ROC curve (Mann-Whitney U with tie correction); None with one class only."""
    positive = np.asarray(positive, bool)
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos == 0 or n_neg == 0:
        return None
    order = np.argsort(scores, kind="mergesort")
    sorted_scores = np.asarray(scores, float)[order]
    ranks = np.empty(len(scores), float)
    # Average ranks over ties so equal scores count half.
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    avg = first + (counts - 1) / 2.0 + 1.0
    ranks[order] = np.repeat(avg, counts)
    return float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2.0) / (n_pos * n_neg))


def screening_point(
    abnormal_true: np.ndarray, abnormal_score: np.ndarray, threshold: float
) -> dict:
    """Sensitivity and specificity of "abnormal score >= threshold" against the truth."""
    abnormal_true = np.asarray(abnormal_true, bool)
    flagged = np.asarray(abnormal_score, float) >= threshold
    tp = int((flagged & abnormal_true).sum())
    fn = int((~flagged & abnormal_true).sum())
    tn = int((~flagged & ~abnormal_true).sum())
    fp = int((flagged & ~abnormal_true).sum())
    return {
        "threshold": float(threshold),
        "sensitivity": tp / (tp + fn) if tp + fn else None,
        "specificity": tn / (tn + fp) if tn + fp else None,
        "tp": tp, "fn": fn, "tn": tn, "fp": fp,
    }


def choose_threshold(
    abnormal_true: np.ndarray, abnormal_score: np.ndarray, min_sensitivity: float
) -> float:
    """The highest threshold whose sensitivity reaches ``min_sensitivity`` (best specificity)."""
    abnormal_true = np.asarray(abnormal_true, bool)
    positives = np.sort(np.asarray(abnormal_score, float)[abnormal_true])
    if positives.size == 0:
        return 0.5
    # Keep at least ceil(min_sensitivity * n) positives at or above the threshold.
    keep = int(np.ceil(min_sensitivity * positives.size))
    return float(positives[positives.size - keep]) if keep else float(positives[-1])


def classification_report(
    y_true: Sequence[int],
    probabilities: np.ndarray,
    labels: Sequence[str],
    negative_label: str | None = None,
    threshold: float | None = None,
) -> dict:
    """Per-class precision/recall/F1/support, macro-F1, accuracy, confusion matrix, ROC AUC.

    With ``negative_label`` and ``threshold`` it adds the screening operating point (abnormal =
    any label but ``negative_label``). Returns plain JSON-serialisable values.
    """
    y_true = np.asarray(y_true, int)
    probabilities = np.asarray(probabilities, float)
    y_pred = probabilities.argmax(axis=1)
    n = len(labels)
    matrix = confusion_matrix(y_true, y_pred, n)
    per_class = {}
    f1s = []
    for i, label in enumerate(labels):
        tp = matrix[i, i]
        predicted, actual = matrix[:, i].sum(), matrix[i, :].sum()
        precision = tp / predicted if predicted else 0.0
        recall = tp / actual if actual else 0.0
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
        per_class[label] = {
            "precision": float(precision), "recall": float(recall), "f1": float(f1),
            "support": int(actual),
            "roc_auc": roc_auc(y_true == i, probabilities[:, i]),
        }
        if actual:
            f1s.append(f1)
    report = {
        "n": int(len(y_true)),
        "accuracy": float((y_pred == y_true).mean()) if len(y_true) else 0.0,
        "macro_f1": float(np.mean(f1s)) if f1s else 0.0,
        "per_class": per_class,
        "labels": list(labels),
        "confusion_matrix": matrix.tolist(),
    }
    if negative_label is not None and threshold is not None:
        neg = list(labels).index(negative_label)
        abnormal_true = y_true != neg
        abnormal_score = 1.0 - probabilities[:, neg]
        report["screening"] = {
            "negative_label": negative_label,
            **screening_point(abnormal_true, abnormal_score, threshold),
            "roc_auc": roc_auc(abnormal_true, abnormal_score),
        }
    return report


def report_markdown(report: dict, title: str | None = None) -> str:
    """The per-class table users know, the confusion matrix and the screening point, as Markdown."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| class | precision | recall | F1 | support | ROC AUC |", "|---|---|---|---|---|---|"]
    for label, row in report["per_class"].items():
        auc = "n/a" if row["roc_auc"] is None else f"{row['roc_auc']:.4f}"
        lines.append(
            f"| {label} | {row['precision']:.4f} | {row['recall']:.4f} | {row['f1']:.4f} "
            f"| {row['support']} | {auc} |"
        )
    lines += ["", f"Macro-F1 **{report['macro_f1']:.4f}**, accuracy {report['accuracy']:.4f}, "
              f"n = {report['n']}.", "", "Confusion matrix (rows: truth, columns: prediction):", ""]
    labels = report["labels"]
    lines += ["| truth \\ pred | " + " | ".join(labels) + " |", "|---" * (len(labels) + 1) + "|"]
    for label, row in zip(labels, report["confusion_matrix"]):
        lines.append(f"| {label} | " + " | ".join(str(v) for v in row) + " |")
    screening = report.get("screening")
    if screening:
        sens = screening["sensitivity"]
        spec = screening["specificity"]
        lines += [
            "",
            f"Screening (abnormal = not {screening['negative_label']}) at threshold "
            f"{screening['threshold']:.4f}: sensitivity "
            f"{'n/a' if sens is None else f'{sens:.4f}'}, specificity "
            f"{'n/a' if spec is None else f'{spec:.4f}'} "
            f"(TP {screening['tp']}, FN {screening['fn']}, TN {screening['tn']}, FP {screening['fp']}).",
        ]
    return "\n".join(lines) + "\n"


def cohort_report(
    y_true: Sequence[int],
    probabilities: np.ndarray,
    labels: Sequence[str],
    cohorts: Sequence[str],
    negative_label: str | None = None,
    threshold: float | None = None,
) -> dict[str, dict]:
    """Figures per cohort (a source, a population, a naming series...): the pooled figure hides them.

    Each cohort gets its size, recall per true class present, what its films were called, macro-F1
    over the classes present, and, when it holds both healthy and abnormal films, the ROC AUC of
    P(abnormal) and the screening point at ``threshold``.
    """
    y_true = np.asarray(y_true, int)
    probabilities = np.asarray(probabilities, float)
    cohorts = np.asarray(cohorts)
    out = {}
    for cohort in sorted(set(cohorts.tolist())):
        members = cohorts == cohort
        report = classification_report(y_true[members], probabilities[members], labels, negative_label, threshold)
        predicted = probabilities[members].argmax(axis=1)
        entry = {
            "n": report["n"],
            "macro_f1_present": report["macro_f1"],
            "recall": {lab: row["recall"] for lab, row in report["per_class"].items() if row["support"]},
            "support": {lab: row["support"] for lab, row in report["per_class"].items() if row["support"]},
            "called": {lab: int((predicted == i).sum()) for i, lab in enumerate(labels)},
        }
        screening = report.get("screening")
        if screening and screening["tp"] + screening["fn"] and screening["tn"] + screening["fp"]:
            entry["abnormal_roc_auc"] = screening["roc_auc"]
            entry["sensitivity"], entry["specificity"] = screening["sensitivity"], screening["specificity"]
        out[cohort] = entry
    return out


def cohort_markdown(cohorts: dict[str, dict], title: str | None = None) -> str:
    """One row per cohort: n, recall per class present, macro-F1 over them, AUC and the screening point."""
    lines = [f"### {title}", ""] if title else []
    lines += ["| cohort | n | recall per true class | called | macro-F1 (classes present) | "
              "abnormal ROC AUC | sens / spec |", "|---|---|---|---|---|---|---|"]
    for name, row in cohorts.items():
        recall = ", ".join(f"{lab} {v:.3f} ({row['support'][lab]})" for lab, v in row["recall"].items())
        called = ", ".join(f"{lab} {v}" for lab, v in row["called"].items() if v)
        auc = row.get("abnormal_roc_auc")
        point = (f"{row['sensitivity']:.3f} / {row['specificity']:.3f}" if "sensitivity" in row else "")
        lines.append(f"| {name} | {row['n']} | {recall} | {called} | {row['macro_f1_present']:.4f} | "
                     f"{'' if auc is None else f'{auc:.4f}'} | {point} |")
    return "\n".join(lines) + "\n"
