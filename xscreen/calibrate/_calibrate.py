"""``xscreen calibrate``: check a model on a site's labelled films, fit the calibration, write one model file.

Steps: read and run the films once (``_films``); cross-validate the candidates and choose (``_fit``);
the site threshold for the sensitivity asked, from the chosen candidate's out-of-fold scores, with a
patient-bootstrap interval; fit the chosen candidate on every film; write the same network with the
calibration in its metadata; open that file again and check that it gives the calibrated answers;
write the report (``_report``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from .. import __version__
from ..runtime import ScreeningModel, load_model
from ..runtime._calibration import SiteCalibration
from ..runtime._contract import CALIBRATED_SCHEMA_VERSION
from ..runtime._metrics import choose_threshold
from ..runtime._model_file import write_model_with_metadata
from ._films import BATCH, CalibrationError, SiteFilms, read_site_films
from ._fit import cross_validate, fit_calibration
from ._report import BOOTSTRAP_RESAMPLES, evaluate, patient_resamples, write_report

MIN_FILMS = 5  # per label checked: below it, refuse
ADVISED_FILMS = 20  # per label checked: below it, warn
LOW_SPECIFICITY = 0.5  # below it at the site threshold, the report warns that the model barely separates the films
WRITTEN_FILE_TOLERANCE = 1e-4  # probabilities of the written file against the calibration applied in memory
DISCLAIMER = ("This report checks a research model on a site's films; it does not "
              "make the model fit for clinical use, and a qualified reader must read every film.")


@dataclass
class CalibrationOutcome:
    """What ``calibrate_site`` did: the report (as written to JSON), its files, and the model file written."""

    result: dict
    report_files: tuple[Path, Path]
    model_file: Path | None


def calibrate_site(folder: str | os.PathLike, model: ScreeningModel, out: str | os.PathLike | None, *,
                   sensitivity: float = 0.95, evaluate_only: bool = False, seed: int = 0,
                   resamples: int = BOOTSTRAP_RESAMPLES) -> CalibrationOutcome:
    """Validate ``model`` on the labelled ``folder``; unless ``evaluate_only``, calibrate it and write ``out``.

    The report goes to ``OUT.calibration.md/.json`` (``OUT.evaluation.*`` with ``evaluate_only``; without
    ``out``, ``xscreen-evaluation.*`` in the current folder). CalibrationError (one line) when the films cannot do it.
    """
    films = read_site_films(folder, model)
    labels, meta = model.labels, model.metadata
    counts = films.counts(labels)
    scarce = {label: n for label, n in counts.items() if 0 < n < MIN_FILMS}
    if scarce:
        raise CalibrationError(f"{', '.join(f'{n} {label}' for label, n in scarce.items())} film(s): xscreen "
                               f"calibrate needs at least {MIN_FILMS} films of each label in {folder} "
                               f"({ADVISED_FILMS} or more advised)")
    result = _header(folder, model, films, counts, evaluate_only)
    result["before"] = evaluate(films.y, films.as_is, labels, meta.negative_label, meta.threshold, films.groups,
                                resamples, seed)
    if evaluate_only:
        stem = Path(out).with_name(Path(out).name + ".evaluation") if out else Path("xscreen-evaluation")
        return CalibrationOutcome(result, write_report(result, stem), None)

    try:
        calibration, fitted = fit_site(films, model, sensitivity=sensitivity, seed=seed, resamples=resamples)
    except ValueError as exc:
        raise CalibrationError(f"{folder}: {exc}") from None
    result.update(fitted)
    threshold = result["threshold"]
    specificity = (result["after"].get("screening") or {}).get("specificity")
    if specificity is not None and specificity < LOW_SPECIFICITY:
        result["warnings"].append(
            f"at sensitivity {sensitivity:g} the site threshold flags {1 - specificity:.0%} of the "
            f"{meta.negative_label} films: the model does not separate this site's films well")
    record = _record(result, result["cross_validation"]["chosen"], model)
    stored = replace(calibration, record=record).to_dict()
    new_meta = meta.with_updates(calibration=stored, schema_version=CALIBRATED_SCHEMA_VERSION,
                                 threshold=threshold.get("value", meta.threshold))
    out = Path(out)
    write_model_with_metadata(model.path, out, new_meta)
    written, difference = _check_written(out, model, films, stored)
    result["out"] = {"path": str(out), "sha256": written.sha256, "max_difference_vs_in_memory": difference}
    return CalibrationOutcome(result, write_report(result, out.with_name(out.name + ".calibration")), out)


def fit_site(films: SiteFilms, model: ScreeningModel, *, sensitivity: float = 0.95, seed: int = 0,
             resamples: int = BOOTSTRAP_RESAMPLES) -> tuple[SiteCalibration, dict]:
    """Cross-validate the candidates on ``films``, choose, set the site threshold, fit the choice on every film.

    Returns the calibration (without its record) and the report's ``after``, ``cross_validation`` and
    ``threshold`` sections. ValueError when the films cannot be split into folds by patient.
    """
    labels = model.labels
    checked = tuple(label for label, n in films.counts(labels).items() if n)
    feature_scale = 1.0
    if films.features is not None:
        feature_scale = float(np.sqrt((films.features.astype(np.float64) ** 2).sum(axis=1).mean())) or 1.0
    cv = cross_validate(films.probabilities, films.as_is, films.features, films.y, films.groups, labels,
                        checked, feature_scale, seed)
    oof = cv.out_of_fold[cv.chosen.name]
    threshold = _site_threshold(films, oof, model, sensitivity, resamples, seed)
    after = evaluate(films.y, oof, labels, model.metadata.negative_label,
                     threshold.get("value", model.metadata.threshold), films.groups, resamples, seed)
    if cv.chosen.refit:
        calibration = fit_calibration(cv.chosen, films.probabilities, films.features, films.y, labels, checked,
                                      feature_scale)
    else:  # as is won: keep what the file already applies (or nothing)
        calibration = model.calibration or SiteCalibration(checked, 1.0, (0.0,) * len(checked))
    sections = {"after": after, "threshold": threshold,
                "cross_validation": {"folds": int(cv.folds.max() + 1), "chosen": cv.chosen.name,
                                     "candidates": cv.scores}}
    return calibration, sections


def _header(folder, model: ScreeningModel, films: SiteFilms, counts: dict, evaluate_only: bool) -> dict:
    patients = {label: len({g for g, y in zip(films.groups, films.y) if model.labels[y] == label})
                for label in model.labels}
    warnings = [f"only {n} {label} films: fewer than {ADVISED_FILMS}, so the figures below are rough (see their "
                "intervals)" for label, n in counts.items() if 0 < n < ADVISED_FILMS]
    not_checked = [label for label, n in counts.items() if n == 0]
    result = {
        "xscreen_version": __version__,
        "disclaimer": DISCLAIMER,
        "fitted_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "site": str(folder),
        "model": {"path": str(model.path), "sha256": model.sha256, "has_features": model.has_features},
        "films_per_label": counts,
        "patients_per_label": patients,
        "not_checked": not_checked,
        "warnings": warnings,
        "failed": films.failed,
        "after": None,
        "advice": [
            "Re-check on new films (other patients, other weeks) before go-live and after any change of "
            "X-ray unit, protocol or export settings: "
            "`xscreen calibrate NEW_FILMS --model THIS_MODEL --evaluate-only`.",
            "Keep this report with the model file: its SHA-256 is in every run record xscreen writes.",
        ],
    }
    if not model.has_features and not evaluate_only:
        result["advice"].append("This model has no pooled-feature (scope) output: only biases, temperature and the "
                                "threshold could be fitted.")
    if films.scope_scores is not None:
        limit = model.scope_threshold
        result["scope_check"] = {"films": len(films.y), "threshold": limit,
                                 "out_of_scope": int((films.scope_scores > limit).sum())}
    return result


def _site_threshold(films: SiteFilms, oof: np.ndarray, model: ScreeningModel, sensitivity: float,
                    resamples: int, seed: int) -> dict:
    """The threshold reaching ``sensitivity`` on the out-of-fold scores, with a patient-bootstrap 95% interval."""
    negative = model.metadata.negative_label
    out = {"sensitivity_asked": sensitivity, "model_threshold": model.metadata.threshold}
    if negative is None:
        out["rule"] = "none: the model has no negative label (give --negative-label)"
        return out
    abnormal = films.y != model.labels.index(negative)
    if abnormal.all() or not abnormal.any():
        out["rule"] = f"the model's own ({model.metadata.threshold}): the films need both {negative} and abnormal ones"
        return out
    score = 1.0 - oof[:, model.labels.index(negative)]
    value = _threshold(abnormal, score, sensitivity)
    draws = [_threshold(abnormal[pick], score[pick], sensitivity)
             for pick in patient_resamples(films.groups, resamples, seed) if abnormal[pick].any()]
    interval = [float(v) for v in np.percentile(draws, [2.5, 97.5])]
    out.update(value=value, ci95=interval,
               rule=f"{value:.4f} for sensitivity {sensitivity:g} on the site's films, cross-validated "
                    f"(95% interval {interval[0]:.4f}-{interval[1]:.4f}); the model's own was "
                    f"{model.metadata.threshold}")
    return out


def _threshold(abnormal: np.ndarray, score: np.ndarray, sensitivity: float) -> float:
    """``choose_threshold``, moved halfway down to the next lower score: a threshold sitting exactly on the
    lowest kept film's score (1.0 for a model that saturates) misses that film's twin on the next film set."""
    value = choose_threshold(abnormal, score, sensitivity)
    below = score[score < value]
    return float((value + below.max()) / 2) if below.size else value


def _record(result: dict, fitted: str, model: ScreeningModel) -> dict:
    """What the file keeps of this calibration, for ``xscreen info``."""
    before, after = result["before"], result["after"]
    return {
        "fitted_at": result["fitted_at"],
        "site": Path(result["site"]).name,
        "films_per_label": {k: v for k, v in result["films_per_label"].items() if v},
        "not_checked": result["not_checked"],
        "fitted": fitted,
        "calibrated_from_sha256": model.sha256,
        "xscreen_version": __version__,
        "cross_validated": {
            "folds": result["cross_validation"]["folds"],
            "macro_f1_before": before["macro_f1"], "macro_f1_after": after["macro_f1"],
            "auc_before": (before.get("screening") or {}).get("roc_auc"),
            "auc_after": (after.get("screening") or {}).get("roc_auc"),
        },
        "threshold_rule": result["threshold"]["rule"],
    }


def _check_written(out: Path, model: ScreeningModel, films: SiteFilms, stored: dict) -> tuple[ScreeningModel, float]:
    """Open the written file as any command would and check it gives the calibrated answers on the site's films."""
    written = load_model(out, threads=model.threads)
    if written.calibration is None:
        raise CalibrationError(f"{out}: the written file carries no calibration; it was not written correctly")
    difference = _difference(written, films, stored, model)
    if difference > WRITTEN_FILE_TOLERANCE:
        out.unlink()
        raise CalibrationError(f"{out}: the written file's answers differ from the calibration by {difference:.2g}; "
                               "removed it")
    return written, difference


def _difference(written: ScreeningModel, films: SiteFilms, stored: dict, model: ScreeningModel) -> float:
    reference = SiteCalibration.from_dict(stored, model.labels, None if films.features is None
                                          else films.features.shape[1], model.path)
    expected = reference.apply(films.probabilities, films.features, model.labels)
    got = np.concatenate([written.predict(films.pixels[i:i + BATCH]) for i in range(0, len(films.pixels), BATCH)])
    return float(np.abs(got - expected).max())
