"""Fit the scope head on real and made negatives, judge it, and (``--write``) store it in a model file.

    .venv/bin/python benchmarks/scope_head.py                        # judge; write benchmarks/results/scope_head.*
    .venv/bin/python benchmarks/scope_head.py --model M.tflite --split-file RUN/split.csv --write M.tflite
                                                                     # fit a newly trained model's head, store it

The images (``scope_sets.py``): frontal films of cxr3 and nih (whole patients either fit the head or
choose its threshold; xscreen 0.1's cxr3 test films, ``tests/fixtures/bundled_model_test_split.csv``,
only judge it: the head never saw them, but 0.2's network trained on 436 of them; films neither saw:
``scope_frontal_heldout.py``), ``../shared/data/ood`` lateral films and CT slices, pydicom's non-chest DICOM pixels,
scikit-image's photos, and made ones (blank images, text pages, drawings; negatives, rotations and crops
of real films). The model runs once per image (cached under /tmp).

Judged by grouped cross-validation over the negatives (``--folds``; a patient, a DICOM study or the film a
made image came from is never on both sides), each fold's threshold chosen on the select films as the
final one is; the frontal films by the final head on films it never saw. Every rate has a Wilson 95 %
interval. Alternatives on the same folds: the distance alone (before the head), with the colour rule,
the head on fewer coordinates, a binary head (no kinds), the head without the colour rule.
"""

from __future__ import annotations

import argparse
import json
import shutil
import zlib
from collections import Counter
from pathlib import Path

import numpy as np
from scope_sets import CACHE, DEMO_SET, Item, all_items, model_outputs

from xscreen.export._scope_head import SELECT_QUANTILE, fit_head, head_metadata, select_threshold
from xscreen.runtime import load_model
from xscreen.runtime._model import default_model_path
from xscreen.runtime._scope import COLOUR_LIMIT, HEAD_KINDS, ScopeHead

ROOT = Path(__file__).resolve().parent
DATA = ROOT.parent.parent / "shared" / "data"
FEATURES = 1280
NEGATIVE_KINDS = HEAD_KINDS[1:]
# Reason categories a user reads, for the confusion table ("far": the distance backstop).
REASONS = ("in scope", "lateral", "ct", "photo", "blank", "inverted", "other", "colour", "far")


def wilson(k: int, n: int, z: float = 1.96) -> tuple[float, float]:
    if n == 0:
        return float("nan"), float("nan")
    p = k / n
    centre = (p + z * z / (2 * n)) / (1 + z * z / n)
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / (1 + z * z / n)
    return max(0.0, centre - half), min(1.0, centre + half)


def decide(head: dict | None, threshold: float, out: dict, rows: np.ndarray, distance: float,
           colour_rule: bool = True) -> list[str]:
    """The reason category of each row, in the runtime's order: colour, head, distance."""
    scope_head = None
    if head is not None:
        scope_head = ScopeHead(tuple(head["kinds"]), head["features"], np.asarray(head["weights"], np.float32),
                               np.asarray(head["bias"], np.float32), threshold)
        p = scope_head.probabilities(out["z"][rows], out["spread"][rows])
    found = []
    for j, i in enumerate(rows):
        if colour_rule and out["colour"][i] >= COLOUR_LIMIT:
            found.append("colour")
            continue
        kind = None if scope_head is None else scope_head.kind(p[j])
        found.append(kind or ("far" if out["score"][i] > distance else "in scope"))
    return found


VARIANTS = {  # name -> (features, binary, colour rule, head); variants differing only in the rule share fits
    "distance only (before)": (FEATURES, False, False, False),
    "colour rule + distance": (FEATURES, False, True, False),
    "head, 256 coordinates": (256, False, True, True),
    "head, 1280 coordinates (shipped)": (FEATURES, False, True, True),
    "binary head, 1280 coordinates": (FEATURES, True, True, True),
    "head, 1280, no colour rule": (FEATURES, False, False, True),
}
SHIPPED = "head, 1280 coordinates (shipped)"
# What the `test` frontal films are without --split-file (the bundled model's head): not the 0.2 test split.
FIXTURE_FILMS = (
    "`test` films: xscreen 0.1's cxr3 test split (`tests/fixtures/bundled_model_test_split.csv`) and the "
    "full-resolution originals of its films: never seen by the head, but not all held out from the 0.2 network: of "
    "the 1,100 cxr3 films 527 are in its test split, 436 are films it trained on and 137 its validation films. Films "
    "neither the network nor the head saw: `scope_frontal_heldout.md` (`benchmarks/scope_frontal_heldout.py`); "
)


def fit(items: list[Item], out: dict, rows: np.ndarray, features: int, binary: bool) -> dict:
    kinds = np.array([HEAD_KINDS.index(items[i].kind) for i in rows])
    if binary:
        kinds = np.where(kinds == 0, 0, HEAD_KINDS.index("other"))
    return fit_head(out["z"][rows], out["spread"][rows], kinds, features)


def threshold_on(head: dict, items: list[Item], out: dict, select: np.ndarray) -> tuple[float, dict]:
    scope_head = ScopeHead(tuple(head["kinds"]), head["features"], np.asarray(head["weights"], np.float32),
                           np.asarray(head["bias"], np.float32), 1.0)
    p_out = 1.0 - scope_head.probabilities(out["z"][select], out["spread"][select])[:, 0]
    return select_threshold(p_out, np.array([items[i].set for i in select]))


def evaluate(items: list[Item], out: dict, distance: float, folds: int, variants: dict) -> dict:
    ok = out["decoded"]
    role = np.array([i.role for i in items])
    fit_rows, select = np.flatnonzero((role == "fit") & ok), np.flatnonzero((role == "select") & ok)
    negatives = np.flatnonzero((role == "negative") & ok)
    fold = np.array([zlib.crc32(items[i].group.encode()) % max(folds, 1) for i in negatives])
    judged = np.flatnonzero(np.isin(role, ("test", "extra")) & ok)
    report, fits = {}, {}

    def fitted(features: int, binary: bool, f: int | None) -> tuple[dict, float, dict]:
        """The head of fold ``f`` (None: on every negative) and its threshold, fitted once per variant."""
        key = (features, binary, f)
        if key not in fits:
            rows = np.concatenate([fit_rows, negatives if f is None else negatives[fold != f]])
            head = fit(items, out, rows, features, binary)
            fits[key] = (head, *threshold_on(head, items, out, select))
            print(f"fitted {key}: threshold {fits[key][1]:.4f}", flush=True)
        return fits[key]

    for name, (features, binary, colour_rule, with_head) in variants.items():
        reasons = {}
        thresholds = []
        for f in range(folds):
            head = threshold = None
            if with_head:
                head, threshold, _ = fitted(features, binary, f)
                thresholds.append(threshold)
            held = negatives[fold == f]
            reasons.update(zip(held.tolist(), decide(head, threshold, out, held, distance, colour_rule)))
        head = threshold = per_source = None
        if with_head:
            head, threshold, per_source = fitted(features, binary, None)
        reasons.update(zip(judged.tolist(), decide(head, threshold, out, judged, distance, colour_rule)))
        report[name] = {"reasons": reasons, "head": head, "threshold": threshold, "select_quantiles": per_source,
                        "fold_thresholds": thresholds}
    return report


def table(items: list[Item], reasons: dict[int, str]) -> dict:
    """Per set and per kind: n, out of scope, Wilson interval, reasons."""
    by: dict[str, list[str]] = {}
    for i, reason in reasons.items():
        item = items[i]
        if item.set == DEMO_SET:  # drawn by a program: neither a film nor a negative the head learned from
            by.setdefault("all demo drawings", []).append(reason)
            continue
        name = (f"frontal {item.role}: {item.set}" if item.kind == "frontal" else f"{item.kind}: {item.set}")
        by.setdefault(name, []).append(reason)
        by.setdefault(f"all {item.kind}" + (f" ({item.role})" if item.kind == "frontal" else ""), []).append(reason)
    rows = {}
    for name, found in sorted(by.items()):
        n, k = len(found), sum(r != "in scope" for r in found)
        rows[name] = {"n": n, "out": k, "rate": k / n, "ci95": wilson(k, n), "reasons": dict(Counter(found))}
    return rows


def write_report(report: dict, items: list[Item], out_dir: Path, meta: dict) -> Path:
    """``scope_head.{json,md}`` (``scope_head_onnx.*`` for an ONNX model) in ``out_dir``; the .md's path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    stem = "scope_head" + ("_onnx" if meta["model"].endswith(".onnx") else "")
    tables = {name: table(items, v["reasons"]) for name, v in report.items()}
    shipped = report[SHIPPED]
    doc = {**meta, "threshold": shipped["threshold"], "select_quantiles": shipped["select_quantiles"],
           "fold_thresholds": {k: v["fold_thresholds"] for k, v in report.items()}, "tables": tables}
    (out_dir / f"{stem}.json").write_text(json.dumps(doc, indent=2))
    lines = ["# Scope head: out-of-scope rates per kind, with intervals", "",
             f"Model `{meta['model']}`. Produced by `{meta['command']}` "
             "(fits and judges the head; the model runs once per image, cached under /tmp).", "",
             ("Negatives: out-of-fold decisions of a patient/study/donor-grouped "
              f"{meta['folds']}-fold cross-validation (each fold's threshold chosen on the select films). "
              if meta["folds"] else "Negatives: not judged here (`--fit-only`; see `scope_head.md`). ") + "Frontal "
             + ("`test` films: the training run's test split (never seen in training, nor by the head); "
                if meta.get("split_file") else FIXTURE_FILMS)
             + "`extra`: judged only, not held out from the network (full-resolution originals of cxr3 training "
             "films). `demo drawings`: the synthetic films `xscreen demo` draws, judged only (they are not chest "
             "films; the demo screens them with the image check off). 95 % Wilson intervals.", "",
             f"Shipped: {SHIPPED}: threshold {shipped['threshold']:.4f} on p(not a frontal chest film), the largest "
             f"per-source {100 * SELECT_QUANTILE:g} % quantile over the select films (" + ", ".join(
                 f"{k} {v:.3f}" for k, v in shipped["select_quantiles"].items()) + ").", "",
             "## Alternatives (out-of-scope rate; frontal rows: films lost)", ""]
    keys = [k for k in tables[SHIPPED] if k.startswith("all ")]
    lines += ["| variant | " + " | ".join(k[4:] for k in keys) + " |", "|---" * (len(keys) + 1) + "|"]
    for name, rows in tables.items():
        lines.append(f"| {name} | " + " | ".join(
            f"{100 * rows[k]['rate']:.1f} % ({100 * rows[k]['ci95'][0]:.0f}–{100 * rows[k]['ci95'][1]:.0f})"
            if k in rows else "–" for k in keys) + " |")
    lines += ["", f"## {SHIPPED}: every set, and the reason a user reads (confusion table)", "",
              "| set | n | out of scope | 95 % interval | " + " | ".join(REASONS) + " |",
              "|---|---|---|---|" + "---|" * len(REASONS)]
    for name, row in tables[SHIPPED].items():
        lines.append(f"| {name} | {row['n']} | {100 * row['rate']:.1f} % | {100 * row['ci95'][0]:.1f}–"
                     f"{100 * row['ci95'][1]:.1f} % | " + " | ".join(str(row["reasons"].get(r, "")) for r in REASONS)
                     + " |")
    lines += ["", "Reasons: `lateral` lateral view; `ct` CT or cross-section; `photo` photo or colour image (head); "
              "`colour` photo or colour image (the colour rule, mean saturation >= "
              f"{COLOUR_LIMIT}); `blank` blank or nearly uniform; `inverted` probably inverted; `other` not a "
              "frontal chest film (the head, no kind likely); `far` far from the training films (the distance)."]
    (out_dir / f"{stem}.md").write_text("\n".join(lines) + "\n")
    return out_dir / f"{stem}.md"


def write_model(model, head: dict, threshold: float, rule: str, fitted_on: str, out: Path) -> None:
    """A copy of the model file with ``metadata.scope["head"]`` set; the network's bytes are untouched."""
    from xscreen.export._metadata import embed_onnx_metadata, embed_tflite_metadata

    scope = {**model.metadata.scope, "head": head_metadata(head, threshold, rule, fitted_on)}
    metadata = model.metadata.with_updates(scope=scope)
    if model.format == "onnx":
        import onnx

        proto = onnx.load(str(model.path))
        embed_onnx_metadata(proto, metadata)
        onnx.save(proto, str(out))
    else:
        out.write_bytes(embed_tflite_metadata(model.path.read_bytes(), metadata))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=None, help="default: the bundled model")
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--fit-only", action="store_true",
                        help="fit the shipped head and judge it on the frontal films only (no cross-validation, "
                             "no alternatives): for storing a head whose evaluation was run already")
    parser.add_argument("--out", type=Path, default=ROOT / "results")
    parser.add_argument("--split-file", type=Path, default=None,
                        help="the model's training run's split.csv (default: the bundled model's films: its test "
                             "split in tests/fixtures, the other cxr3/nih films by patient into fit and select)")
    parser.add_argument("--write", type=Path, default=None,
                        help="store the shipped head in a copy of --model at this path (may be --model itself)")
    args = parser.parse_args()
    model = load_model(args.model or default_model_path())
    items = all_items(args.data, args.split_file)
    if not any(item.role == "select" for item in items):
        parser.error(f"no frontal films under {args.data} (cxr3/, nih/): give --data")
    out = model_outputs(model, items)
    folds = 0 if args.fit_only else args.folds
    variants = {SHIPPED: VARIANTS[SHIPPED]} if args.fit_only else VARIANTS
    report = evaluate(items, out, model.scope_threshold, folds, variants)
    command = "python benchmarks/scope_head.py" + (f" --model {args.model}" if args.model else "") + (
        f" --split-file {args.split_file}" if args.split_file else "") + (" --fit-only" if args.fit_only else "")
    meta = {"model": model.path.name, "command": command, "folds": folds, "cache": str(CACHE),
            "items": len(items), "decoded": int(out["decoded"].sum()),
            "split_file": None if args.split_file is None else str(args.split_file)}
    print(write_report(report, items, args.out, meta).read_text())
    shipped = report[SHIPPED]
    role = np.array([i.role for i in items])
    n_fit = int(((role == "fit") | (role == "negative")).sum())
    kinds = Counter(items[i].kind for i in np.flatnonzero(role == "negative"))
    not_test = "not the test split" if args.split_file else "not xscreen 0.1's cxr3 test split"
    fitted_on = (f"{int((role == 'fit').sum())} frontal films (cxr3, nih; {not_test}) and "
                 + ", ".join(f"{n} {k}" for k, n in sorted(kinds.items())) + f" negatives ({n_fit} images)")
    rule = (f"the largest per-source {100 * SELECT_QUANTILE:g} % quantile of p(not frontal) over frontal films the "
            "head never learned "
            "from (" + ", ".join(f"{k} {v:.3f}" for k, v in shipped["select_quantiles"].items()) + ")")
    if args.write is not None:
        tmp = args.write.with_name(args.write.name + ".tmp")
        write_model(model, shipped["head"], shipped["threshold"], rule, fitted_on, tmp)
        shutil.move(tmp, args.write)
        print(f"wrote {args.write}")

if __name__ == "__main__":
    main()
