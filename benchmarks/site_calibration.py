"""Calibrate to a site the model never saw: figures against films per class, judged on the site's other films.

    nice -n 10 .venv/bin/python benchmarks/site_calibration.py --model runs/site-holdout-export/model_int8.tflite \
        --split-file runs/site-holdout/split.csv

Sites (each a collection the model was trained without):

* ``nih``: adults of a third hospital, ``DATA/nih`` (no-finding and pneumonia films, patients from its manifest);
* ``normal2``: the Kermany ``NORMAL2-`` healthy series of ``DATA/cxr3`` (another collection of the children's
  hospital), with the Kermany pneumonia films of the patients in the ``test`` rows of ``--split-file`` (the
  training run's held-out patients) as the abnormal half.

Steps: the model's outputs for every film, computed once (``site_outputs``); for k = 5, 10, 20, 50 films per
class and ``--draws`` random draws of whole patients (``draw_patients``), the calibration ``xscreen calibrate``
would fit on those films (``xscreen.calibrate.fit_site``: the same cross-validation, choice and threshold), then
the model as it is and the calibrated one judged on every film of the site's other patients (``judge``).
Writes ``benchmarks/results/site_calibration.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import time
from collections import Counter
from dataclasses import replace
from pathlib import Path

# Small matrices: OpenBLAS threads on a busy machine made each fit ~100x slower (measured). Before numpy loads.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import numpy as np  # noqa: E402

from xscreen.calibrate import site_films  # noqa: E402
from xscreen.calibrate._calibrate import fit_site  # noqa: E402
from xscreen.runtime import load_model  # noqa: E402
from xscreen.runtime._labelled import LabelledImage, read_labelled_folder, read_split_csv  # noqa: E402
from xscreen.runtime._metrics import classification_report  # noqa: E402

FILMS_PER_CLASS = (5, 10, 20, 50)
RESULTS = Path(__file__).resolve().parent / "results"
# The targets after calibration on 20 films per class, per kind of site.
TARGETS = {
    "normal2": ("healthy recall >= 0.88 with pneumonia recall >= 0.95",
                lambda f: f["recall healthy"] >= 0.88 and f["recall pneumonia"] >= 0.95),
    "nih": ("macro-F1 >= 0.78 with ROC AUC >= 0.87", lambda f: f["macro_f1"] >= 0.78 and f["roc_auc"] >= 0.87),
}
FIGURES = ("recall healthy", "recall pneumonia", "macro_f1", "roc_auc", "sensitivity", "specificity", "called covid")
SHOWN = {"recall healthy": "healthy recall", "recall pneumonia": "pneumonia recall", "macro_f1": "macro-F1",
         "roc_auc": "ROC AUC", "sensitivity": "sensitivity at the threshold",
         "specificity": "specificity at the threshold", "called covid": "share called covid"}


def site_images(site: str, data: Path, split_file: Path | None) -> list[LabelledImage]:
    """The labelled films of a site, with their patients."""
    if site == "nih":
        return read_labelled_folder(data / "nih")
    held_out = {Path(img.path).name for img in read_split_csv(split_file) if img.split == "test"}
    return [img for img in read_labelled_folder(data / "cxr3")
            if "NORMAL2-" in img.path.name
            or (img.label == "pneumonia" and img.source == "kermany" and img.path.name in held_out)]


def subset(films, index: np.ndarray):
    """The films at ``index`` (a SiteFilms of their own)."""
    pick = lambda a: None if a is None else a[index]  # noqa: E731
    return replace(films, paths=[films.paths[i] for i in index], y=films.y[index],
                   groups=[films.groups[i] for i in index], probabilities=films.probabilities[index],
                   as_is=films.as_is[index], features=pick(films.features), scope_scores=pick(films.scope_scores),
                   pixels=films.pixels[index], failed=[])


def draw_patients(films, labels, k: int, rng) -> np.ndarray:
    """Indices of whole patients drawn at random until each label present has at least k films of 2 patients or more
    (fewer patients cannot be cross-validated: xscreen calibrate refuses them)."""
    groups = np.asarray(films.groups)
    chosen: set[str] = set()
    for label in sorted(set(films.y.tolist())):
        patients = rng.permutation(sorted(set(groups[films.y == label].tolist())))
        for count, patient in enumerate(patients):
            if count >= 2 and sum(1 for g, y in zip(groups, films.y) if g in chosen and y == label) >= k:
                break
            chosen.add(patient)
    return np.flatnonzero(np.isin(groups, list(chosen)))


def figures(y, probabilities, labels, negative, threshold) -> dict:
    """The judged figures of one set of probabilities."""
    report = classification_report(y, probabilities, labels, negative, threshold)
    screening = report["screening"]
    return {"recall healthy": report["per_class"]["healthy"]["recall"],
            "recall pneumonia": report["per_class"]["pneumonia"]["recall"],
            "macro_f1": report["macro_f1"], "roc_auc": screening["roc_auc"],
            "sensitivity": screening["sensitivity"], "specificity": screening["specificity"],
            "called covid": float((probabilities.argmax(axis=1) == list(labels).index("covid")).mean())
            if "covid" in labels else 0.0}


def judge(films, calibration, threshold, model) -> dict:
    """Before (the model as it is, its threshold) and after (calibrated, the site threshold) on ``films``."""
    meta = model.metadata
    calibrated = calibration.apply(films.probabilities, films.features, model.labels)
    return {"before": figures(films.y, films.as_is, model.labels, meta.negative_label, meta.threshold),
            "after": figures(films.y, calibrated, model.labels, meta.negative_label, threshold)}


def summarise(values: list[float]) -> dict:
    arr = np.asarray([v for v in values if v is not None], float)
    return {"mean": float(arr.mean()), "sd": float(arr.std()), "min": float(arr.min()), "max": float(arr.max())}


def run_site(site: str, films, model, draws: int, sensitivity: float, seed: int) -> dict:
    labels, meta = model.labels, model.metadata
    whole = figures(films.y, films.as_is, labels, meta.negative_label, meta.threshold)
    curve = {}
    for k in FILMS_PER_CLASS:
        rng = np.random.default_rng(seed + k)
        rows = []
        for draw in range(draws):
            calibrate_on = draw_patients(films, labels, k, rng)
            judged_on = np.setdiff1d(np.arange(len(films.y)), calibrate_on)
            started = time.perf_counter()
            calibration, sections = fit_site(subset(films, calibrate_on), model, sensitivity=sensitivity,
                                             seed=seed + draw, resamples=200)
            threshold = sections["threshold"].get("value", meta.threshold)
            rows.append({"draw": draw, "calibration_films": int(len(calibrate_on)), "judged_films": int(len(judged_on)),
                         "chosen": sections["cross_validation"]["chosen"], "threshold": threshold,
                         "fit_s": time.perf_counter() - started,
                         **judge(subset(films, judged_on), calibration, threshold, model)})
        curve[k] = {
            "draws": rows,
            "before": {f: summarise([r["before"][f] for r in rows]) for f in FIGURES},
            "after": {f: summarise([r["after"][f] for r in rows]) for f in FIGURES},
            "chosen": dict(Counter(r["chosen"] for r in rows)),
            "fit_s": summarise([r["fit_s"] for r in rows]),
        }
        print(f"{site} k={k}: macro-F1 {curve[k]['before']['macro_f1']['mean']:.3f} -> "
              f"{curve[k]['after']['macro_f1']['mean']:.3f}, chosen {curve[k]['chosen']}", flush=True)
    target, met = TARGETS[site]
    at20 = {f: curve[20]["after"][f]["mean"] for f in FIGURES}
    return {"films": films.counts(labels), "patients": len(set(films.groups)), "whole_site_before": whole,
            "curve": curve, "target": target, "target_met_at_20": bool(met(at20))}


def _portable(value) -> str:
    """A path as the reader can use it: relative to the working folder, never this machine's absolute path."""
    text = str(value)
    return os.path.relpath(text) if os.path.isabs(text) else text


def render_markdown(data: dict) -> str:
    lines = ["# Calibrate to your clinic: a site the model never saw", "",
             f"Model `{data['model']}` ({data['model_note']}). Produced by `{data['command']}` on "
             f"{data['machine']}, {data['date']}.", "",
             f"Each row: {data['draws']} random draws of whole patients with at least k films per class; the "
             "calibration `xscreen calibrate` fits on them (same cross-validation, choice and threshold for "
             f"sensitivity {data['sensitivity']:g}), then the model as it is (its own threshold) and calibrated "
             "(the site threshold) judged on every film of the site's other patients. Cells: before -> **after**, "
             "means over the draws (sd of after).", ""]
    for site, result in data["sites"].items():
        films = ", ".join(f"{n} {label}" for label, n in result["films"].items() if n)
        lines += [f"## {site}: {data['site_notes'][site]}", "",
                  f"{films} films, {result['patients']} patients. The model as it is on all of them: "
                  + ", ".join(f"{SHOWN[f]} {v:.3f}" for f, v in result["whole_site_before"].items()) + ".", "",
                  "| films per class | " + " | ".join(SHOWN[f] for f in FIGURES) + " | chosen (draws) |",
                  "|---|" + "---|" * (len(FIGURES) + 1)]
        for k, row in result["curve"].items():
            cells = [f"{row['before'][f]['mean']:.3f} -> **{row['after'][f]['mean']:.3f}** "
                     f"({row['after'][f]['sd']:.3f})" for f in FIGURES]
            chosen = "; ".join(f"{name} x{n}" for name, n in row["chosen"].items())
            lines.append(f"| {k} | " + " | ".join(cells) + f" | {chosen} |")
        verdict = "met" if result["target_met_at_20"] else "not met"
        lines += ["", f"Target at 20 films per class ({result['target']}): **{verdict}** (means over draws).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, required=True)
    parser.add_argument("--model-note", default="trained without these sites")
    parser.add_argument("--data", type=Path, default=Path("/work/shared/data"))
    parser.add_argument("--split-file", type=Path, required=True, help="the training run's split.csv")
    parser.add_argument("--sites", default="normal2,nih")
    parser.add_argument("--draws", type=int, default=10)
    parser.add_argument("--sensitivity", type=float, default=0.95)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=RESULTS / "site_calibration")
    args = parser.parse_args()
    model = load_model(args.model)
    notes = {"nih": "adults of a third hospital (NIH Clinical Center)",
             "normal2": "another collection of the children's hospital (Kermany NORMAL2 healthy films, held-out "
                        "Kermany pneumonia patients)"}
    data = {"model": _portable(args.model), "model_note": args.model_note, "draws": args.draws,
            "sensitivity": args.sensitivity, "machine": f"{platform.machine()}, Python {platform.python_version()}",
            "date": time.strftime("%Y-%m-%d"), "site_notes": notes, "sites": {},
            "command": "benchmarks/site_calibration.py " + " ".join(
                f"--{k.replace('_', '-')} {shlex.quote(_portable(v))}" for k, v in vars(args).items() if k != "data")}
    for site in args.sites.split(","):
        started = time.perf_counter()
        films = site_films(site_images(site, args.data, args.split_file), model)
        print(f"{site}: {len(films.y)} films run once in {time.perf_counter() - started:.1f} s", flush=True)
        data["sites"][site] = run_site(site, films, model, args.draws, args.sensitivity, args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(data, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(render_markdown(data))


if __name__ == "__main__":
    main()
