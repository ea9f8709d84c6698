"""What the assumption check sees on a real notebook-style model, and xscreen's decoding vs a notebook loader.

    PYTHONPATH=. python benchmarks/byom_checks.py OUT/seed.keras OUT/test ../shared/data/fullres [--films 300]

SEED is built by ``benchmarks/notebook_seed_model.py ... OUT unit`` (trained on [0, 1] pixels, as
``ImageDataGenerator(rescale=1./255)`` feeds them); TEST is its held-out class folders. Writes
``benchmarks/results/byom_checks.{json,md}``:

* macro-F1 on TEST films with each input scaling (the given label order), the check's verdict for each
  scaling given as the user's, and for a model whose outputs are in another order than ``--labels`` says;
* the top-1 agreement on FULLRES between xscreen's decoder (draft-mode JPEG decoding, grey, bilinear squash)
  and the notebook's ``keras.utils.load_img(target_size=...)`` (RGB, nearest-neighbour resize) path.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from xscreen.export._wrap import probabilities_by_scaling
from xscreen.runtime._assumptions import _macro_f1, check_assumptions
from xscreen.runtime._decode import PREPROCESSING_ID, decode_radiograph
from xscreen.runtime._labelled import read_labelled_folder, stratified_sample

LABELS = ("covid", "healthy", "pneumonia")  # flow_from_directory's alphabetical order
OUT = Path(__file__).parent / "results"


def scaling_table(model, test: Path, films: int) -> dict:
    images = stratified_sample(read_labelled_folder(test), films, 0)
    pixels = np.stack([decode_radiograph(img.path, (224, 224), PREPROCESSING_ID) for img in images])[..., None]
    truth = [img.label for img in images]
    prob = probabilities_by_scaling(model, pixels, {})
    y = np.array([LABELS.index(t) for t in truth])
    per_scaling = {name: _macro_f1(y, p.argmax(1), len(LABELS)) for name, p in prob.items()}
    verdicts = {name: check_assumptions(prob, truth, LABELS, name).to_dict() for name in prob}
    # The same model with its outputs reordered (healthy, pneumonia, covid), exported as covid,healthy,pneumonia.
    shuffled = {name: p[:, [1, 2, 0]] for name, p in prob.items()}
    reordered = check_assumptions(shuffled, truth, LABELS, "unit").to_dict()
    return {"films": len(images), "macro_f1_by_scaling": per_scaling, "check_if_given": verdicts,
            "reordered_outputs_check": reordered}


def decoder_agreement(model, fullres: Path) -> dict:
    import keras

    paths = sorted(p for p in fullres.rglob("*") if p.suffix.lower() in (".jpg", ".jpeg", ".png"))
    ours = np.stack([decode_radiograph(p, (224, 224), PREPROCESSING_ID) for p in paths])[..., None]
    ours = np.repeat(ours.astype(np.float32), 3, axis=3) / 255.0
    theirs = np.stack([keras.utils.img_to_array(keras.utils.load_img(p, target_size=(224, 224))) for p in paths])
    a = model.predict(ours, verbose=0)
    b = model.predict(theirs / 255.0, verbose=0)
    labels = [p.parent.name for p in paths]
    known = np.array([label in LABELS for label in labels])
    y = np.array([LABELS.index(label) if label in LABELS else -1 for label in labels])
    return {"films": len(paths), "top1_agreement": float((a.argmax(1) == b.argmax(1)).mean()),
            "max_abs_dp": float(np.abs(a - b).max()),
            "accuracy_xscreen_decoder": float((a.argmax(1)[known] == y[known]).mean()),
            "accuracy_notebook_loader": float((b.argmax(1)[known] == y[known]).mean()),
            "notebook_loader": "keras.utils.load_img(path, target_size=(224, 224)) (RGB, nearest), / 255",
            "xscreen_decoder": f"decode_radiograph(path, (224, 224), {PREPROCESSING_ID!r}) tiled to RGB, / 255"}


def markdown(result: dict) -> str:
    table = result["scalings"]
    lines = ["# Bring your own model: what the assumption check sees", "",
             f"Model: `{result['model']}` (notebook-style MobileNetV2, head trained on [0, 1] pixels). "
             f"Produced by `benchmarks/byom_checks.py` on {table['films']} held-out films.", "",
             "| scaling given | macro-F1 | export verdict |", "|---|---|---|"]
    for name, f1 in table["macro_f1_by_scaling"].items():
        verdict = table["check_if_given"][name]
        lines.append(f"| `{name}` | {f1:.3f} | {'pass' if verdict['ok'] else 'fail'}: {verdict['message']} |")
    reordered = table["reordered_outputs_check"]
    lines += ["", f"Outputs in the order healthy, pneumonia, covid exported with `--labels covid,healthy,pneumonia`: "
                  f"{'pass' if reordered['ok'] else 'fail'}: {reordered['message']}.", ""]
    dec = result["decoding"]
    lines += [f"Decoding, {dec['films']} full-resolution films: top-1 agreement **{dec['top1_agreement']:.3f}** "
              "between "
              f"xscreen's decoder ({dec['xscreen_decoder']}) and the notebook's loader ({dec['notebook_loader']}); "
              f"max |Δp| {dec['max_abs_dp']:.3f}; accuracy {dec['accuracy_xscreen_decoder']:.3f} (xscreen) against "
              f"{dec['accuracy_notebook_loader']:.3f} (notebook loader).", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("seed", type=Path)
    parser.add_argument("test", type=Path)
    parser.add_argument("fullres", type=Path)
    parser.add_argument("--films", type=int, default=300)
    args = parser.parse_args()
    import keras

    model = keras.saving.load_model(args.seed, compile=False)
    result = {"model": args.seed.name, "scalings": scaling_table(model, args.test, args.films),
              "decoding": decoder_agreement(model, args.fullres)}
    OUT.mkdir(exist_ok=True)
    (OUT / "byom_checks.json").write_text(json.dumps(result, indent=2) + "\n")
    (OUT / "byom_checks.md").write_text(markdown(result))
    print(markdown(result))


if __name__ == "__main__":
    main()
