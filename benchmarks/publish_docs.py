"""Write every figure of the bundled model in README.md and MODEL_CARD.md from committed reports.

    PYTHONPATH=. python benchmarks/publish_docs.py            # rewrite the generated blocks
    PYTHONPATH=. python benchmarks/publish_docs.py --check    # exit 1 when a doc differs (tests/test_docs_generated.py)

A generated block sits between ``<!-- generated:NAME -->`` and ``<!-- /generated -->``; only what lies
between is rewritten. The sources, read at generation time (nothing is copied by hand):

* the shipped files themselves (``xscreen/models/*``: thresholds, scope statistics, export time, data);
* ``benchmarks/results/bundled/card_0.2_recovered.json``: the 0.2 build's test-split, hold-out, per-source
  and per-format figures, recovered from its card because the reports were not kept (it says so);
* ``benchmarks/results/scope_rates.json`` (``benchmarks/scope_rates.py``) and
  ``benchmarks/results/byom_checks.json`` (``benchmarks/byom_checks.py``).
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
RECOVERED = RESULTS / "bundled" / "card_0.2_recovered.json"
DOCS = ("README.md", "MODEL_CARD.md")
BLOCK = re.compile(r"(<!-- generated:([\w-]+) -->\n)(.*?)(<!-- /generated -->)", re.S)
SHIPPED_FORMATS = {"tflite-int8": "xscreen_int8.tflite", "onnx-int8": "xscreen_int8.onnx"}


class Sources:
    """Everything the blocks are written from, loaded once."""

    def __init__(self) -> None:
        from xscreen.runtime import load_model
        from xscreen.runtime._model import BUNDLED_MODEL, BUNDLED_ONNX_MODEL

        self.card = json.loads(RECOVERED.read_text())
        self.scope_rates = json.loads((RESULTS / "scope_rates.json").read_text())
        self.byom = json.loads((RESULTS / "byom_checks.json").read_text())
        self.files = {}
        for fmt, path in (("tflite-int8", BUNDLED_MODEL), ("onnx-int8", BUNDLED_ONNX_MODEL)):
            try:
                self.files[fmt] = (path, load_model(path).metadata)
            except ImportError:  # no onnxruntime: read the metadata without a runtime
                self.files[fmt] = (path, _onnx_metadata(path))
        self.meta = self.files["tflite-int8"][1]

    def threshold(self, fmt: str) -> float:
        """A format's flag threshold: the shipped file's own, else the recovered export figure."""
        if fmt in self.files:
            return self.files[fmt][1].threshold
        return self.card["formats"][fmt]["metrics"]["screening"]["threshold"]


def _onnx_metadata(path: Path):
    import onnx

    from xscreen.runtime._contract import METADATA_KEY, ModelMetadata

    props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
    return ModelMetadata.from_json(props[METADATA_KEY])


def _pct(x: float, digits: int = 1) -> str:
    return f"{x * 100:.{digits}f} %"


def _table(header: list[str], rows: list[list]) -> str:
    return "\n".join(["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
                     + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def _source(s: Sources, cohort: str) -> dict:
    return next(row for row in s.card["test_by_source"] if row["cohort"] == cohort)


def _recall(row: dict, label: str) -> tuple[float, int]:
    """``healthy 0.913 (23)`` in a recovered cohort row -> (0.913, 23)."""
    m = re.search(rf"{label} ([0-9.]+) \((\d+)\)", row["recall_per_class"])
    return float(m[1]), int(m[2])


# ---- blocks shared by both docs -------------------------------------------------------------------

def per_format_threshold(s: Sources) -> str:
    keras, int8 = s.threshold("keras"), s.threshold("tflite-int8")
    return (f"**Each format has its own thresholds.** Quantization moves probabilities, so every exported file gets "
            f"the flag threshold that meets the same validation target (abnormal sensitivity ≥ "
            f"{s.meta.extra['min_sensitivity']}): {int8:.3f} for the shipped int8 TFLite file, "
            f"{s.threshold('onnx-int8'):.3f} for the int8 ONNX file, {keras:.3f} for the Keras model. "
            f"{_scope_threshold_sentence(s)} `xscreen info` shows a file's own values; the tables give each format's.")


def _scope_threshold_sentence(s: Sources) -> str:
    """How the shipped file's scope threshold relates to the Keras model's, from its metadata."""
    scope = s.meta.scope or {}
    if "threshold" not in scope:
        return "The shipped file has no scope threshold."
    if "keras_threshold" in scope and "format_ratio" in scope:
        return (f"The shipped int8 file's scope threshold is the Keras model's ({scope['keras_threshold']:.3f}) "
                f"scaled by the ratio of the int8 and Keras 99th-percentile scores on the validation films "
                f"(×{scope['format_ratio']}): "
                f"**{scope['threshold']:.3f}**.")
    return f"The shipped int8 file's scope threshold is **{scope['threshold']:.3f}**."


def export_table(s: Sources) -> str:
    rows = []
    for fmt, row in s.card["formats"].items():
        m = row["metrics"]
        recalls = " / ".join(f"{m['per_class'][c]['recall']:.3f}" for c in ("healthy", "pneumonia", "covid"))
        screen = m["screening"]
        if fmt == "keras":
            rows.append(["Keras (reference)", "", "", "", f"{m['macro_f1']:.4f}", recalls, f"{s.threshold(fmt):.3f}",
                         f"{screen['sensitivity']:.3f} / {screen['specificity']:.3f}", ""])
            continue
        delta = (m["macro_f1"] - s.card["formats"]["keras"]["metrics"]["macro_f1"]) * 100
        rows.append([f"`{fmt}`", f"{row['size_mb']} MB", _pct(row["top1_agreement"], 2), f"{row['max_abs_dp']:.3f}",
                     f"{m['macro_f1']:.4f} ({delta:+.2f})", recalls, f"{s.threshold(fmt):.3f}",
                     f"{screen['sensitivity']:.3f} / {screen['specificity']:.3f}",
                     f"{row['cam_median_correlation']:.3f} / {_pct(row['scope_decision_agreement'])}"])
    return (f"Measured by `xscreen export` on the bundled model ({s.card['test_images']:,} held-out test images of "
            f"`cxr3` and `nih`, int8 calibrated on {s.card['calibration_images']:,} training images; figures "
            f"recovered from the 0.2 card, `{RECOVERED.relative_to(ROOT)}`):\n\n"
            + _table(["format", "size", "agreement with Keras", "max abs Δp", "macro-F1 (Δ pts)",
                      "healthy / pneumonia / covid recall", "flag threshold", "sensitivity / specificity",
                      "heatmap correlation / scope decisions agreeing"], rows))


# ---- README --------------------------------------------------------------------------------------

def output_example(s: Sources) -> str:
    """Example rows with the bundled file's own thresholds (the probabilities are made up, the rule is not)."""
    t, scope = s.threshold("tflite-int8"), s.meta.scope["threshold"]
    row = {"path": "scans/a.png", "status": "ok", "prediction": "covid",
           "probabilities": {"covid": 0.97, "healthy": 0.01, "pneumonia": 0.02}, "flag": True,
           "margin": round(0.99 - t, 3), "review_reason": f"P(not healthy) 0.990 >= threshold {t:.3f}",
           "scope_score": None, "error": None}
    return (f"With the bundled int8 file (flag threshold {t:.3f}, scope threshold {scope:.3f}: `xscreen info`), "
            f"`review_reason` reads e.g. `P(not healthy) 0.970 >= threshold {t:.3f}` and an out-of-scope `error` "
            f"e.g. `out of scope: far from the training films (score {scope * 1.5:.2f} > {scope:.2f})`. "
            f"A JSONL row is one object per line, with the same fields:\n`{json.dumps(row)}`")


def scope_rates_table(s: Sources) -> str:
    r = s.scope_rates
    sets = r["sets"]
    kinds = {"dicom-not-chest": "pydicom / pydicom-data DICOMs that are not CR/DX", "photos": "scikit-image photos",
             "synthetic": "synthetic demo films (drawings)", "cxr3-inverted": "held-out cxr3 films inverted",
             "cxr3-test-inverted": "held-out cxr3 films inverted"}
    rows = []
    frontal = [k for k in ("cxr3-test", "nih-test", "fullres") if k in sets]
    for name, row in sets.items():
        if name in frontal:
            continue
        rows.append([f"{row['decoded']} {kinds.get(name, name)}", _pct(row["out_of_scope_rate"]),
                     _pct(row["image_score_only_rate"])])
    rows.insert(min(3, len(rows)), [", ".join(f"{sets[k]['decoded']} {k}" for k in frontal) + " films",
                    " / ".join(_pct(sets[k]["out_of_scope_rate"]) for k in frontal),
                    " / ".join(_pct(sets[k]["image_score_only_rate"]) for k in frontal)])
    model = Path(r["model"]).name
    return (f"Measured on `{model}` (scope threshold {r['threshold']:.3f}) by `benchmarks/scope_rates.py` "
            f"(`benchmarks/results/scope_rates.md`):\n\n"
            + _table(["inputs", "out of scope", "by the image score alone"], rows))


def bundled_section(s: Sources) -> str:
    m = s.card["formats"]["tflite-int8"]["metrics"]
    labels = m["labels"]
    rows = [[c, f"{m['per_class'][c]['precision']:.4f}", f"{m['per_class'][c]['recall']:.4f}",
             f"{m['per_class'][c]['f1']:.4f}", m["per_class"][c]["support"]] for c in labels]
    rows.append(["**macro**", "", "", f"**{m['macro_f1']:.4f}**", m["n"]])
    confusion = [[c, *m["confusion_matrix"][i]] for i, c in enumerate(labels)]
    screen = m["screening"]
    nih = _source(s, "nih-chestxray14")
    old = s.card["readme_0.2"]["model_0.1_on_nih_test"]
    held = s.card["readme_0.2"]["hold_out_nih_all_films"]
    pn, _ = _recall(nih, "pneumonia")
    sens, spec = nih["sens_spec"].split(" / ")
    lat = s.card["readme_0.2"]["latency_p50_ms"]
    return "\n".join([
        f"On the {m['n']:,} held-out test films (patient-grouped, never seen in training or threshold choice), "
        "the shipped int8 file (figures recovered from the 0.2 card):", "",
        _table(["class", "precision", "recall", "F1", "support"], rows), "",
        "Confusion matrix (rows: truth, columns: prediction):", "",
        _table(["truth \\ pred", *labels], confusion), "",
        f"Abnormal vs healthy at the shipped threshold ({s.threshold('tflite-int8'):.3f}): **sensitivity "
        f"{screen['sensitivity']:.3f}, specificity {screen['specificity']:.3f}**.", "",
        "**Believe the per-source figures over these.** On films from a source the model never saw, it does much "
        f"worse (MODEL_CARD.md, *Films the model never saw*): a model trained the same way without NIH scores "
        f"macro-F1 {held['macro_f1']:.2f} on the {held['n']} NIH films (pneumonia recall "
        f"{held['pneumonia_recall']:.2f}, "
        f"ROC AUC {held['abnormal_roc_auc']:.2f}); with NIH in training, the shipped model on NIH test patients "
        f"({nih['n']} films) reaches macro-F1 {nih['macro_f1']:.2f}, pneumonia recall {pn:.2f} and "
        f"sensitivity/specificity {float(sens):.2f}/{float(spec):.2f} at its threshold, where the 0.1 model had "
        f"{old['macro_f1']:.2f}, {old['pneumonia_recall']:.2f} and {old['sensitivity']:.2f}/{old['specificity']:.2f} "
        f"(`{old['command']}`, same run). Adult non-COVID pneumonia from a few hundred films of one hospital is the "
        "weakest class.", "",
        f"Speed: in one `xscreen bench` run ({lat['what']}), p50 latency at 1 / 2 threads was "
        f"{lat['0.2 int8'][0]} / {lat['0.2 int8'][1]} ms for the 0.2 int8 file against {lat['0.1 int8'][0]} / "
        f"{lat['0.1 int8'][1]} ms for 0.1's (the 0.2 file also computes the heatmap and the scope score).", "",
        "`xscreen bench` on `cxr3` or `nih` without `--split test --split-file` scores this model on its own training "
        "films and says so (*Bench: measure before you choose*).",
    ])


def byom_figures(s: Sources) -> str:
    b = s.byom
    f1 = b["scalings"]["macro_f1_by_scaling"]
    checks = b["scalings"]["check_if_given"]
    mob = checks["mobilenet_v2"]
    dec = b["decoding"]
    reordered = b["scalings"]["reordered_outputs_check"]
    return (f"Measured by `benchmarks/byom_checks.py` (`benchmarks/results/byom_checks.md`) with a model built like "
            f"the notebook's and fed `rescale=1./255` (`benchmarks/notebook_seed_model.py ... unit`: ImageNet "
            f"MobileNetV2, head trained on 900 cxr3 films), on {b['scalings']['films']} of its held-out films: "
            f"macro-F1 {f1['unit']:.3f} with `unit` (right), {f1['mobilenet_v2']:.3f} with `mobilenet_v2`, "
            f"{f1['imagenet']:.3f} with `imagenet`, {f1['raw']:.3f} with `raw`. Export fails every wrong one; the "
            f"closest, `mobilenet_v2`, by {mob['best']['macro_f1'] - mob['given']['macro_f1']:.3f} (95 % interval "
            f"{mob['difference_ci95'][0]:+.3f} to {mob['difference_ci95'][1]:+.3f}), just past the 0.05 margin: a "
            f"scaling that costs less than that passes. Its outputs relabelled in the wrong order score "
            f"{reordered['given']['macro_f1']:.3f} (below chance, 0.333) and export names the right order.\n\n"
            f"**Decoding differs from a notebook's loader.** xscreen decodes every film the same way (JPEG in "
            f"Pillow's draft mode at reduced scale, grey, squashed to the input with bilinear resampling); a notebook "
            f"typically used `keras.utils.load_img(path, target_size=(224, 224))` (RGB, nearest-neighbour). On the "
            f"{dec['films']} full-resolution films of `fullres`, the same model gave the same top-1 label on "
            f"{_pct(dec['top1_agreement'])} of them (max |Δp| {dec['max_abs_dp']:.2f}; accuracy "
            f"{dec['accuracy_xscreen_decoder']:.3f} with xscreen's decoder, {dec['accuracy_notebook_loader']:.3f} with "
            f"the notebook's). Expect a model to be a little different on full-resolution films than in its "
            "notebook; on films already at its input size the two agree.")


# ---- MODEL_CARD ----------------------------------------------------------------------------------

def shipped_file(s: Sources) -> str:
    path, meta = s.files["tflite-int8"]
    outputs = ["probabilities"] + [{"cam": "a class-activation heatmap", "scope": "the out-of-scope statistic"}[o]
                                   for o in ("cam", "scope") if o in (meta.outputs or {})]
    return (f"Shipped file: `xscreen/models/{path.name}` ({meta.format}, {path.stat().st_size / 1e6:.1f} MB), the "
            f"default of `xscreen run`. Source Keras model sha256 `{meta.source_sha256}`; exported "
            f"{meta.exported_at} by xscreen {meta.xscreen_version} (the file's own metadata, `xscreen info --json`). "
            f"Outputs: {', '.join(outputs)}.")


def data_summary(s: Sources) -> str:
    return f"Trained on {s.meta.data_summary} (the file's metadata)."


def training(s: Sources) -> str:
    t = s.card["training"]
    keras = s.threshold("keras")
    return (f"Threshold chosen on validation for abnormal sensitivity ≥ {s.meta.extra['min_sensitivity']}: "
            f"**{keras:.4f}** for Keras; each exported format gets its own (below).\n\n"
            f"Training time on {t['cores']} CPU cores (wall clock, other jobs sharing them): {t['minutes_total']} min "
            f"in all, hold-out models included (feature cache {t['feature_cache_minutes']} min, "
            f"{t['fine_tune_epoch_s']:.0f} s per fine-tune epoch).")


def unseen_targets(s: Sources) -> str:
    rows = [[t["target"], t["measured_on"], "not measured (see below)" if t["value"] is None else t["value"],
             t["wanted"], "**no**" if t["met"] == "no" else t["met"]] for t in s.card["targets_unseen"]]
    return (_table(["target (issue 8)", "measured on", "value", "wanted", "met"], rows)
            + f"\n\nThe NORMAL2 row: {s.card['normal2_hold_out_missing']}.")


def hold_outs(s: Sources) -> str:
    return _table(["hold-out", "cohort", "n", "recall per true class", "macro-F1 (classes present)",
                   "abnormal ROC AUC"],
                  [[r["hold_out"], r["cohort"], r["n"], r["recall_per_class"], f"{r['macro_f1']:.4f}",
                    "" if r["abnormal_roc_auc"] is None else f"{r['abnormal_roc_auc']:.4f}"]
                   for r in s.card["hold_outs_by_cohort"]])


def _cohorts(rows: list[dict]) -> str:
    return _table(["cohort", "n", "recall per true class", "called", "macro-F1 (classes present)",
                   "abnormal ROC AUC", "sens / spec"],
                  [[r["cohort"], r["n"], r["recall_per_class"], r["called"], f"{r['macro_f1']:.4f}",
                    "" if r["abnormal_roc_auc"] is None else f"{r['abnormal_roc_auc']:.4f}", r["sens_spec"] or ""]
                   for r in rows])


def by_source(s: Sources) -> str:
    return _cohorts(s.card["test_by_source"])


def by_cohort(s: Sources) -> str:
    return _cohorts(s.card["test_by_cohort"])


def pooled_targets(s: Sources) -> str:
    m = s.card["formats"]["tflite-int8"]["metrics"]
    keras = s.card["formats"]["keras"]["metrics"]
    delta = (m["macro_f1"] - keras["macro_f1"]) * 100
    pc, sc = m["per_class"], m["screening"]
    rows = [["macro-F1", "≥ 0.93", f"{m['macro_f1']:.4f}", m["macro_f1"] >= 0.93],
            ["healthy recall", "≥ 0.9", f"{pc['healthy']['recall']:.4f}", pc["healthy"]["recall"] >= 0.9],
            ["pneumonia recall", "≥ 0.93", f"{pc['pneumonia']['recall']:.4f}", pc["pneumonia"]["recall"] >= 0.93],
            ["covid recall", "≥ 0.95", f"{pc['covid']['recall']:.4f}", pc["covid"]["recall"] >= 0.95],
            ["abnormal sensitivity at the shipped threshold", "≥ 0.97", f"{sc['sensitivity']:.4f}",
             sc["sensitivity"] >= 0.97],
            ["macro-F1 within 1 point of Keras", "≥ -1.00 pts", f"{delta:+.2f} pts", delta >= -1.0]]
    return (_table(["target", "wanted", "achieved", "met"], [[*r[:3], "yes" if r[3] else "**no**"] for r in rows])
            + f"\n\nScreening operating point (shipped model): threshold {s.threshold('tflite-int8'):.4f}, sensitivity "
              f"{sc['sensitivity']:.4f} (missed abnormal films: {sc['fn']}), specificity {sc['specificity']:.4f} "
              f"(healthy films flagged: {sc['fp']}).")


def pooled_formats(s: Sources) -> str:
    rows = []
    for fmt, row in s.card["formats"].items():
        m = row["metrics"]
        name = "keras (reference)" if fmt == "keras" else f"**{fmt}**" if fmt == "tflite-int8" else fmt
        rows.append([name, row.get("size_mb") or "", f"{row['top1_agreement']:.4f}", f"{row['max_abs_dp']:.4f}",
                     f"{s.threshold(fmt):.4f}", f"{m['macro_f1']:.4f}",
                     *(f"{m['per_class'][c]['recall']:.4f}" for c in ("healthy", "pneumonia", "covid")),
                     f"{m['screening']['sensitivity']:.4f}", f"{m['screening']['specificity']:.4f}"])
    return (f"{s.card['test_images']:,} test images (patient-grouped, never seen in training or threshold choice). "
            "Every format below was loaded through the xscreen runtime.\n\n"
            + _table(["format", "size (MB)", "agreement with Keras", "max abs Δp", "flag threshold", "macro-F1",
                      "healthy R", "pneumonia R", "covid R", "sensitivity", "specificity"], rows))


def scope_card(s: Sources) -> str:
    scope = s.meta.scope
    cal = scope.get("calibration", {})
    held = [[name, v["n"], f"{v['q50']:.3f}", f"{v['q99']:.3f}", f"{v['max']:.3f}"]
            for name, v in cal.get("held_out_sources", {}).items()]
    return "\n\n".join([
        f"Score: whitened distance of the pooled features to the nearest class mean ({scope['features']} PCA "
        f"dimensions, {scope['fitted_on']}). Rule for the Keras model: "
        f"{scope.get('threshold_rule', 'not recorded')}. "
        f"{_scope_threshold_sentence(s)}",
        _table(["source (films under the full fit)", "in scope"],
               [[k, f"{v:.3f}"] for k, v in cal.get("in_scope_rate_by_source", {}).items()]),
        _table(["source held out of the fit", "n", "median score", "99th percentile", "max"], held) if held else "",
        scope_rates_table(s),
    ]).rstrip()


def shortcut_audit(s: Sources) -> str:
    a = s.card["shortcut_audit"]
    return "\n".join([f"Films: the 0.2 test split ({a['films']:,} films), grouped by (true label, source); model "
                      "`xscreen_int8.tflite`; lung fields are two fixed ellipses in the squashed frame "
                      "(`xscreen.report._audit`), not segmented.", "",
                      _table(a["header"], a["rows"]), "", *(f"- {note}" for note in a["notes"])])


def per_format_detail(s: Sources) -> str:
    from xscreen.runtime._metrics import report_markdown

    parts = []
    for fmt, row in s.card["formats"].items():
        title = "Keras (reference)" if fmt == "keras" else f"{fmt} ({row['runtime']})"
        parts.append(report_markdown(row["metrics"], title).rstrip())
    return "\n\n".join(parts)


def clinician(s: Sources) -> str:
    nih, kermany, covid = _source(s, "nih-chestxray14"), _source(s, "kermany"), _source(s, "covid19-radiography-db")
    pn_recall, pn_n = _recall(nih, "pneumonia")
    h_recall, h_n = _recall(nih, "healthy")
    sens, spec = (float(v) for v in nih["sens_spec"].split(" / "))
    kp, kp_n = _recall(kermany, "pneumonia")
    cv, cv_n = _recall(covid, "covid")
    held = s.card["readme_0.2"]["hold_out_nih_all_films"]
    found, flagged = round(pn_recall * pn_n), round(sens * pn_n)
    return "\n".join([
        "In plain words, for a clinician reading its output (figures from the tables below):", "",
        f"- **Adults from a hospital it learned little from.** On {pn_n + h_n} films of NIH patients it never saw "
        f"(adults, from a hospital of which a few hundred other films were in training) it called "
        f"pneumonia in only {found} of {pn_n} pneumonias and **missed {pn_n - found}**; "
        f"the review flag, which is set to catch more, still let {pn_n - flagged} of the {pn_n} through, and "
        f"flagged {h_n - round(spec * h_n)} of {h_n} healthy films. A model trained the same way without any film "
        f"of that hospital found **none** of its pneumonias (recall {held['pneumonia_recall']:.2f} on "
        f"{held['n']} films).",
        f"- **Children from the training hospital.** On new patients of the children's hospital it learned from, it "
        f"found {kp:.1%} of {kp_n} pneumonias. That is the hospital it knows best; do not expect it elsewhere.",
        f"- **COVID-19.** Its COVID figure ({cv:.1%} of {cv_n} films found) comes only from the sources it was "
        "trained on (the COVID-19 Radiography Database); it was never tested on COVID films from a source it did "
        "not see, and COVID films there differ from the others in age and origin, so the figure may reflect the "
        "source as much as the disease.",
        "- **What it is for.** Sorting a research archive or testing a deployment, with a reader reading every "
        "film. It is not a diagnosis and it does not replace a report.",
    ])


BLOCKS = {
    "per-format-threshold": per_format_threshold, "export-table": export_table,
    "output-example": output_example, "scope-rates": scope_rates_table, "bundled": bundled_section,
    "byom-figures": byom_figures, "shipped-file": shipped_file, "data-summary": data_summary,
    "training": training, "unseen-targets": unseen_targets, "hold-outs": hold_outs, "by-source": by_source,
    "by-cohort": by_cohort, "pooled-targets": pooled_targets, "pooled-formats": pooled_formats,
    "scope-card": scope_card, "shortcut-audit": shortcut_audit, "per-format-detail": per_format_detail,
    "clinician": clinician,
}


def render(text: str, sources: Sources) -> str:
    """``text`` with every generated block rewritten; KeyError for a block name this script lacks."""
    return BLOCK.sub(lambda m: m[1] + BLOCKS[m[2]](sources).rstrip() + "\n" + m[4], text)


def main(argv: list[str]) -> int:
    sources = Sources()
    stale = []
    for name in DOCS:
        path = ROOT / name
        text = path.read_text()
        new = render(text, sources)
        if new != text:
            stale.append(name)
            if "--check" not in argv:
                path.write_text(new)
    if stale:
        print(("out of date: " if "--check" in argv else "rewrote: ") + ", ".join(stale))
    return 1 if stale and "--check" in argv else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
