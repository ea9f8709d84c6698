"""Do two machines give the same answers on the same films? The steps of ``run.sh``, one subcommand each.

    films   the fixed film set: every ``fullres`` film plus a stratified sample of the bundled model's
            held-out cxr3 test split, as paths relative to the data folder
    screen  on one machine: ``xscreen run`` each model over the films (JSONL), and, to tell decoding
            drift from inference drift, the decoded pixels and the probabilities each model gives on a
            reference machine's pixels
    onnx-options  on one machine: every ``.onnx`` model on the decoded pixels under several onnxruntime
            session settings (ONNX_SESSION_SETTINGS), to find one whose int8 answers match across machines
    report  compare a target machine's ``screen`` folder with a reference one: parity.json, parity.md

Every model file in the models folder is taken as it is at run time; decoding and inference are the
runtime's own (``decode_radiograph``, ``load_model``), so this measures what a user gets.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np

from xscreen.bench._hardware import hardware_fingerprint
from xscreen.runtime import decode_radiograph, load_model
from xscreen.runtime._labelled import LabelledImage, stratified_sample

MODEL_SUFFIXES = (".tflite", ".onnx")
# Films decoded per model input: (height, width, preprocessing) -> file name stem.
PIXELS_STEM = "pixels-{h}x{w}-{preprocessing}"


def model_files(models: Path) -> list[Path]:
    """The model files of a folder, TFLite first (the default format, the one to see first on a slow machine)."""
    return sorted((p for p in models.iterdir() if p.suffix in MODEL_SUFFIXES),
                  key=lambda p: (MODEL_SUFFIXES.index(p.suffix), p.name))


def pick_films(data: Path, split_file: Path, n_cxr3: int, n_fullres: int | None = None) -> list[str]:
    """``n_fullres`` (default all) stratified ``fullres`` films and ``n_cxr3`` of the cxr3 test split.

    Paths are relative to ``data``; the sample is seeded, so the set is the same on every run.
    """
    fullres = [LabelledImage(p.relative_to(data), p.parent.name, "", "") for p in sorted((data / "fullres").rglob("*"))
               if p.suffix.lower() in (".jpg", ".jpeg", ".png")]
    rows = [line.split(",") for line in split_file.read_text().splitlines()[1:] if line]
    test = [LabelledImage(Path("cxr3") / file, label, group, "test") for file, label, group in rows]
    return [img.path.as_posix() for img in stratified_sample(fullres, n_fullres, seed=0)
            + stratified_sample(test, n_cxr3, seed=0)]


def pixels_name(model) -> str:
    height, width = model.input_size
    return PIXELS_STEM.format(h=height, w=width, preprocessing=model.metadata.preprocessing) + ".npy"


def screen(data: Path, films: list[str], models: Path, out: Path, reference: Path | None) -> None:
    """Screen ``films`` with every model here; write JSONL, pixels and probabilities under ``out``."""
    out.mkdir(parents=True, exist_ok=True)
    listing = out / "films.txt"
    listing.write_text("".join(f"{data / f}\n" for f in films))
    (out / "machine.json").write_text(json.dumps(hardware_fingerprint(), indent=2))
    for path in model_files(models):
        jsonl = out / f"{path.name}.jsonl"
        jsonl.unlink(missing_ok=True)
        # The user's path: the CLI, its pipeline and its writer.
        subprocess.run([sys.executable, "-m", "xscreen", "run", str(listing), "--model", str(path),
                        "--out", str(jsonl)], check=True, stdout=subprocess.DEVNULL)
        model = load_model(path)
        pixels_file = out / pixels_name(model)
        if not pixels_file.exists():
            np.save(pixels_file, np.stack([decode_radiograph(data / f, model.input_size, model.metadata.preprocessing)
                                           for f in films]))
        if reference is not None:
            # The model on the reference machine's pixels: inference drift alone. Only films whose pixels
            # differ need it (NaN rows elsewhere: there the end-to-end answer is already that).
            ref_pixels, own_pixels = np.load(reference / pixels_name(model)), np.load(pixels_file)
            differ = np.flatnonzero((ref_pixels != own_pixels).reshape(len(films), -1).any(axis=1))
            on_reference = np.full((len(films), len(model.labels)), np.nan, dtype=np.float32)
            if len(differ):
                on_reference[differ] = predict_all(model, ref_pixels[differ])
            np.save(out / f"{path.name}.on-reference-pixels.npy", on_reference)
        print(f"screened {len(films)} films with {path.name}", flush=True)


def predict_all(model, pixels: np.ndarray, batch: int = 32) -> np.ndarray:
    return np.concatenate([model.predict(pixels[i:i + batch, ..., None]) for i in range(0, len(pixels), batch)])


# onnxruntime session settings tried against its int8 drift across architectures: (graph optimisation
# level, session config entries). "default" is what xscreen runs.
ONNX_SESSION_SETTINGS = {
    "default": ("ORT_ENABLE_ALL", {}),
    "basic optimisation": ("ORT_ENABLE_BASIC", {}),
    "no optimisation": ("ORT_DISABLE_ALL", {}),
    "no QDQ fusion": ("ORT_ENABLE_ALL", {"session.disable_quant_qdq": "1"}),
}


def onnx_options(films: list[str], models: Path, out: Path, limit: int | None = None,
                 settings: list[str] | None = None) -> None:
    """Every ``.onnx`` model in ``models`` on the pixels ``screen`` decoded (the first ``limit`` films), once
    per session setting (``settings``: names from ONNX_SESSION_SETTINGS; default all)."""
    import onnxruntime as ort

    for path in (p for p in model_files(models) if p.suffix == ".onnx"):
        model = load_model(path, threads=1)
        pixels = np.load(out / pixels_name(model))[:limit]
        for name, (level, entries) in ONNX_SESSION_SETTINGS.items():
            if settings and name not in settings:
                continue
            options = ort.SessionOptions()
            options.graph_optimization_level = getattr(ort.GraphOptimizationLevel, level)
            options.intra_op_num_threads = 1
            for key, value in entries.items():
                options.add_session_config_entry(key, value)
            # The runtime's own preprocessing and output mapping, on a session built with these settings.
            model._engine._session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
            probabilities = predict_all(model, pixels)
            margins = np.array([model.metadata.review_margin(p) for p in probabilities], dtype=np.float64)
            np.savez(out / f"{path.name}.ort-{name.replace(' ', '-')}.npz", probabilities=probabilities,
                     margins=margins)
            print(f"{path.name}: {name} on {len(pixels)} films", flush=True)


def compare_onnx_options(reference: Path, target: Path, films: list[str]) -> list[dict]:
    """Per model and setting: how far the target's probabilities are from the reference's, same setting and
    the reference's default."""
    rows = []
    order = [name.replace(" ", "-") for name in ONNX_SESSION_SETTINGS]
    for tgt_file in sorted(target.glob("*.onnx.ort-*.npz"),
                           key=lambda f: (f.name.split(".ort-")[0], order.index(f.name.split(".ort-")[1][:-4]))):
        model_name, setting = tgt_file.name[: -len(".npz")].split(".ort-")
        ref_file, ref_default = reference / tgt_file.name, reference / f"{model_name}.ort-default.npz"
        if not (ref_file.exists() and ref_default.exists()):
            continue
        tgt = dict(np.load(tgt_file))
        n = len(tgt["probabilities"])  # the first n films (onnx-options --limit)
        row = {"model": model_name, "setting": setting.replace("-", " "), "n": n}
        for against, ref_npz in (("same setting", ref_file), ("reference default", ref_default)):
            ref = {key: value[:n] for key, value in np.load(ref_npz).items()}
            dp = np.abs(ref["probabilities"] - tgt["probabilities"]).max(axis=1)
            row[against] = {
                "max_abs_dp": float(dp.max()), "films_dp_over_1e-4": int((dp > 1e-4).sum()),
                "prediction_differs": int((ref["probabilities"].argmax(1) != tgt["probabilities"].argmax(1)).sum()),
                "flag_differs": int(((ref["margins"] >= 0) != (tgt["margins"] >= 0)).sum()),
            }
        # The setting on the reference alone, over every film it ran there: how far it moves the answers xscreen ships.
        own, own_default = np.load(ref_file), np.load(ref_default)
        dp = np.abs(own["probabilities"] - own_default["probabilities"]).max(axis=1)
        row["reference alone"] = {
            "n": len(dp), "max_abs_dp": float(dp.max()), "films_dp_over_1e-4": int((dp > 1e-4).sum()),
            "prediction_differs": int((own["probabilities"].argmax(1) != own_default["probabilities"].argmax(1)).sum()),
            "flag_differs": int(((own["margins"] >= 0) != (own_default["margins"] >= 0)).sum()),
        }
        rows.append(row)
    return rows


def read_jsonl(path: Path, films: list[str]) -> dict[str, dict]:
    """Rows keyed by the film's path relative to the data folder (the two machines mount it differently)."""
    rows = {}
    for line in path.read_text().splitlines():
        row = json.loads(line)
        key = next((f for f in films if row["path"].endswith("/" + f)), None)
        if key is None:
            raise SystemExit(f"{path}: row for {row['path']} is not one of the films")
        rows[key] = row
    return rows


def compare_model(name: str, reference: Path, target: Path, films: list[str]) -> dict:
    """Agreement of one model's answers on two machines, end to end, and its drift split by cause."""
    ref_rows, tgt_rows = read_jsonl(reference / f"{name}.jsonl", films), read_jsonl(target / f"{name}.jsonl", films)
    # Films both machines screened (a run cut short compares what it has; "n" says how many).
    ok = [f for f in films
          if f in ref_rows and f in tgt_rows and ref_rows[f]["status"] == tgt_rows[f]["status"] == "ok"]
    labels = list(ref_rows[ok[0]]["probabilities"])
    ref_p = np.array([[ref_rows[f]["probabilities"][label] for label in labels] for f in ok])
    tgt_p = np.array([[tgt_rows[f]["probabilities"][label] for label in labels] for f in ok])
    dp = np.abs(ref_p - tgt_p).max(axis=1)
    worst = int(np.argmax(dp)) if len(dp) else None
    sha = {side: json.loads(meta.read_text()).get("model_sha256") if meta.exists() else None
           for side, meta in (("reference", reference / f"{name}.jsonl.meta.json"),
                              ("target", target / f"{name}.jsonl.meta.json"))}
    result = {
        "model": name,
        "model_sha256": sha,  # the two machines must have screened the same file
        "n": len(ok),
        "films_missing": {"reference": len(films) - len(ref_rows), "target": len(films) - len(tgt_rows)},
        "errors": {"reference": sum(r["status"] != "ok" for r in ref_rows.values()),
                   "target": sum(r["status"] != "ok" for r in tgt_rows.values())},
        "prediction_agreement": float(np.mean([ref_rows[f]["prediction"] == tgt_rows[f]["prediction"] for f in ok])),
        "flag_agreement": float(np.mean([ref_rows[f]["flag"] == tgt_rows[f]["flag"] for f in ok])),
        "max_abs_dp": float(dp.max()),
        "mean_abs_dp": float(np.abs(ref_p - tgt_p).mean()),
        "films_dp_over_1e-4": int((dp > 1e-4).sum()),
        "films_dp_over_0.01": int((dp > 0.01).sum()),
        "worst_film": ok[worst] if worst is not None else None,
        # What a user sees: films whose answer differs, with each machine's margin (P(not healthy) minus the
        # threshold; the flag is margin >= 0) and top-1 gap (the prediction flips when it crosses 0).
        "differing_films": [_answers(f, ref_rows[f], tgt_rows[f], labels) for f in ok
                            if ref_rows[f]["prediction"] != tgt_rows[f]["prediction"]
                            or ref_rows[f]["flag"] != tgt_rows[f]["flag"]],
        # Films this close to the threshold on the reference could flip at the largest drift seen here.
        "films_margin_within_max_dp": int(sum(abs(ref_rows[f]["margin"]) <= dp.max() for f in ok
                                              if ref_rows[f]["margin"] is not None)),
    }
    on_ref = target / f"{name}.on-reference-pixels.npy"
    if on_ref.exists() and len(ok) == len(films):  # the target's inference on the reference's pixels: kernels alone
        on_ref_p = np.load(on_ref)[[films.index(f) for f in ok]]
        on_ref_p = np.where(np.isnan(on_ref_p), tgt_p, on_ref_p)  # NaN: same pixels, same inference
        kernel_dp = np.abs(on_ref_p - ref_p).max(axis=1)
        result["inference_only_max_abs_dp"] = float(kernel_dp.max())
        result["inference_only_films_dp_over_1e-4"] = int((kernel_dp > 1e-4).sum())
    return result


def _answers(film: str, ref: dict, tgt: dict, labels: list[str]) -> dict:
    def side(row: dict) -> dict:
        top = sorted(row["probabilities"].values(), reverse=True)
        return {"prediction": row["prediction"], "flag": row["flag"], "margin": row["margin"],
                "top1_gap": round(top[0] - top[1], 6), "probabilities": row["probabilities"]}

    dp = max(abs(ref["probabilities"][label] - tgt["probabilities"][label]) for label in labels)
    return {"film": film, "abs_dp": round(dp, 6), "reference": side(ref), "target": side(tgt)}


def compare_pixels(reference: Path, target: Path, films: list[str]) -> list[dict]:
    """Decoding drift: how many films decode to different pixels on the two machines."""
    out = []
    for ref_file in sorted(reference.glob(PIXELS_STEM.split("{")[0] + "*.npy")):
        if not (target / ref_file.name).exists():
            continue
        ref, tgt = np.load(ref_file).astype(int), np.load(target / ref_file.name).astype(int)
        diff = np.abs(ref - tgt).reshape(len(films), -1)
        out.append({"pixels": ref_file.stem, "films_differing": int((diff.max(axis=1) > 0).sum()),
                    "max_abs_grey_level_diff": int(diff.max()), "pixels_differing": int((diff > 0).sum())})
    return out


def read_tests(junit: Path | None) -> dict:
    if junit is None or not junit.exists():
        return {"passed": None, "failed": None}
    import xml.etree.ElementTree as ET

    suite = ET.parse(junit).getroot()
    suite = suite if suite.tag == "testsuite" else suite.find("testsuite")
    total, failed = int(suite.get("tests")), int(suite.get("failures")) + int(suite.get("errors"))
    skipped = int(suite.get("skipped"))
    return {"passed": total - failed - skipped, "failed": failed, "skipped": skipped}


def report(reference: Path, target: Path, films: list[str], junit: Path | None, out: Path) -> dict:
    machine = json.loads((target / "machine.json").read_text())
    ref_machine = json.loads((reference / "machine.json").read_text())
    names = [p.name[: -len(".jsonl")] for p in sorted(target.glob("*.jsonl"))]
    parity = {
        "arch": machine["machine"] + (" (emulated)" if machine.get("emulated") else ""),
        "python": machine["python"],
        "packages": machine["packages"],
        "n": len(films),
        "models": [compare_model(name, reference, target, films) for name in names],
        "decoding": compare_pixels(reference, target, films),
        "tests": read_tests(junit),
        "onnx_session_settings": compare_onnx_options(reference, target, films),
        "reference": {"arch": ref_machine["machine"], "cpu": ref_machine["cpu_model"],
                      "python": ref_machine["python"], "packages": ref_machine["packages"]},
        "target_cpu": machine["cpu_model"],
    }
    out.mkdir(parents=True, exist_ok=True)
    (out / "parity.json").write_text(json.dumps(parity, indent=2) + "\n")
    (out / "parity.md").write_text(render_markdown(parity))
    return parity


def render_markdown(parity: dict) -> str:
    ref = parity["reference"]
    lines = [
        f"# Parity: {parity['arch']} against {ref['arch']}",
        "",
        f"Target: {parity['arch']}, {parity['python']}, {_packages(parity['packages'])}.  ",
        f"Reference: {ref['arch']} ({ref['cpu']}), {ref['python']}, {_packages(ref['packages'])}.  ",
        f"{parity['n']} films (`films.txt`: `fullres` and the cxr3 test split, stratified samples). "
        + ("Runtime tests on the target: not run." if parity["tests"]["passed"] is None else
           f"Runtime tests on the target: {parity['tests']['passed']} passed, {parity['tests']['failed']} failed, "
           f"{parity['tests']['skipped']} skipped."),
        "",
        "| model | films compared | prediction agreement | flag agreement | max abs Δp | mean abs Δp "
        "| films Δp > 1e-4 | max abs Δp, inference alone |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for m in parity["models"]:
        lines.append(
            f"| `{m['model']}` | {m['n']} | {m['prediction_agreement']:.2%} | {m['flag_agreement']:.2%} "
            f"| {m['max_abs_dp']:.2g} | {m['mean_abs_dp']:.2g} | {m['films_dp_over_1e-4']} "
            f"| {_number(m.get('inference_only_max_abs_dp'))} |"
        )
    lines += ["", "Model files (SHA-256, as each machine's `xscreen run` recorded it):", ""]
    for m in parity["models"]:
        ref_sha, tgt_sha = m["model_sha256"]["reference"], m["model_sha256"]["target"]
        same = "same file on both" if ref_sha == tgt_sha else f"DIFFERENT files: target {tgt_sha}"
        lines.append(f"- `{m['model']}`: `{ref_sha}` ({same})")
    for m in parity["models"]:
        if m.get("differing_films"):
            lines += ["", f"`{m['model']}`: films whose answer differs ({m['films_margin_within_max_dp']} films have a "
                      f"reference margin within the largest abs Δp, {m['max_abs_dp']:.2g}, of the threshold: those can "
                      "flip at this drift). Margin: P(not healthy) − threshold, the flag is margin ≥ 0; top-1 gap: "
                      "the two largest probabilities apart.", "",
                      "| film | abs Δp | reference: prediction, flag, margin, top-1 gap | target: prediction, flag, "
                      "margin, top-1 gap |", "|---|---|---|---|"]
            for d in m["differing_films"]:
                ref, tgt = d["reference"], d["target"]
                lines.append(f"| `{d['film']}` | {d['abs_dp']:.3f} | {_side(ref)} | {_side(tgt)} |")
    if parity.get("onnx_session_settings"):
        lines += ["", "onnxruntime session settings, each run on both machines on the same pixels (1 thread): "
                  "target against the reference with the same setting, and against the reference's default "
                  "(what xscreen runs):", "",
                  "| model | setting | films | max abs Δp, same setting | films Δp > 1e-4 | predictions differ | flags "
                  "differ | max abs Δp vs reference default | predictions differ | flags differ | reference alone: "
                  "films, max abs Δp vs its default, predictions, flags differ |",
                  "|---|---|---|---|---|---|---|---|---|---|---|"]
        for r in parity["onnx_session_settings"]:
            same, default, own = r["same setting"], r["reference default"], r["reference alone"]
            lines.append(f"| `{r['model']}` | {r['setting']} | {r['n']} | {same['max_abs_dp']:.2g} | "
                         f"{same['films_dp_over_1e-4']} | {same['prediction_differs']} | {same['flag_differs']} | "
                         f"{default['max_abs_dp']:.2g} | {default['prediction_differs']} | "
                         f"{default['flag_differs']} | {own['n']}: {own['max_abs_dp']:.2g}, "
                         f"{own['prediction_differs']}, {own['flag_differs']} |")
    lines += ["", "Decoded pixels (the model input), target against reference:", ""]
    if not parity["decoding"]:
        lines.append("- not compared: the target wrote no decoded pixels (its `screen` step did not finish)")
    for d in parity["decoding"]:
        lines.append(f"- `{d['pixels']}`: {d['films_differing']} films differ, max {d['max_abs_grey_level_diff']} "
                     "grey levels")
    lines += ["", "Timings under emulation mean nothing; only the answers are compared. Probabilities depend on the "
              "network alone: a file whose metadata alone is rewritten keeps these results (its SHA-256 changes).", ""]
    return "\n".join(lines)


def _side(answer: dict) -> str:
    flag = "flag" if answer["flag"] else "no flag"
    return f"{answer['prediction']}, {flag}, {answer['margin']:+.4f}, {answer['top1_gap']:.4f}"


def _number(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2g}"


def _packages(packages: dict) -> str:
    return ", ".join(f"{k} {v}" for k, v in sorted(packages.items()))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="step", required=True)
    p = sub.add_parser("films")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--split-file", type=Path, required=True)
    p.add_argument("--cxr3", type=int, default=240)
    p.add_argument("--fullres", type=int, help="a stratified sample of fullres (default: all 120)")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("screen")
    p.add_argument("--data", type=Path, required=True)
    p.add_argument("--films", type=Path, required=True)
    p.add_argument("--models", type=Path, required=True)
    p.add_argument("--reference", type=Path, help="a reference machine's screen folder (for its pixels)")
    p.add_argument("--out", type=Path, required=True)
    p = sub.add_parser("onnx-options")
    p.add_argument("--films", type=Path, required=True)
    p.add_argument("--models", type=Path, required=True)
    p.add_argument("--out", type=Path, required=True, help="the screen folder of this machine (its pixels)")
    p.add_argument("--limit", type=int, help="only the first N films (emulation is slow)")
    p.add_argument("--settings", nargs="+", choices=list(ONNX_SESSION_SETTINGS), help="default: all")
    p = sub.add_parser("report")
    p.add_argument("--reference", type=Path, required=True)
    p.add_argument("--target", type=Path, required=True)
    p.add_argument("--films", type=Path, required=True)
    p.add_argument("--tests", type=Path, help="the target's pytest JUnit XML")
    p.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    if args.step == "films":
        films = pick_films(args.data, args.split_file, args.cxr3, args.fullres)
        args.out.write_text("".join(f + "\n" for f in films))
        print(f"{len(films)} films -> {args.out}")
    elif args.step == "screen":
        screen(args.data, args.films.read_text().split(), args.models, args.out, args.reference)
    elif args.step == "onnx-options":
        onnx_options(args.films.read_text().split(), args.models, args.out, args.limit, args.settings)
    else:
        parity = report(args.reference, args.target, args.films.read_text().split(), args.tests, args.out)
        print(json.dumps(parity["models"], indent=2))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
