"""The images the scope head is fitted and judged on, and their model outputs, computed once per image.

Every image is listed with its ``kind`` (frontal, lateral, ct, photo, blank, inverted, other), its
``group`` (the patient, or the source image a synthetic one was made from: cross-validation never
puts one group on both sides) and its ``role`` (``fit``: frontal films the head may learn from;
``select``: frontal films that choose the threshold; ``test``: judged only: a run's test films with a split
file, else xscreen 0.1's cxr3 test films (not held out from 0.2's network: see ``scope_frontal_heldout.py``);
``negative``: judged by grouped cross-validation; ``extra``: judged only, e.g. the demo's synthetic films).
Outputs (whitened coordinates ``z``, the distance score, the colour measure) are cached under
``/tmp/xscreen-scope-cache/<model sha256>/``, never in the repository.
"""

from __future__ import annotations

import csv
import hashlib
import importlib.util
import json
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from xscreen.export._scope_negatives import FROM_FILM, FROM_SEED
from xscreen.runtime import DecodeError, decode_radiograph
from xscreen.runtime._demo import synthetic_film
from xscreen.runtime._labelled import read_labelled_folder, read_split_csv
from xscreen.runtime._scope import RADIOGRAPH_MODALITIES

ROOT = Path(__file__).resolve().parent
TEST_SPLIT = ROOT.parent / "tests" / "fixtures" / "bundled_model_test_split.csv"
CACHE = Path("/tmp/xscreen-scope-cache")
CROSS_SECTIONS = frozenset({"CT", "MR", "PT", "NM"})  # slices: "CT or cross-section"
PER_SOURCE_FIT, PER_SOURCE_SELECT = 700, 400
SYNTHETIC_PER_MAKER, FILMS_PER_DERIVATION, DEMO_FILMS = 60, 120, 40
DEMO_SET = "demo-synthetic"


@dataclass(frozen=True)
class Item:
    path: str
    kind: str
    group: str
    role: str
    set: str  # where it comes from, for the tables: cxr3:kermany, ood-lateral, pydicom, skimage, blank, ...


def package_folder(package: str, *parts: str) -> Path | None:
    spec = importlib.util.find_spec(package)
    return None if spec is None or spec.origin is None else Path(spec.origin).parent.joinpath(*parts)


def split_items(split_file: Path, seed: int = 0) -> list[Item]:
    """A training run's own films (its ``split.csv``): train films fit the head, val films choose its
    threshold, test films judge it (a sample of each source's, as for the bundled model)."""
    rng = np.random.default_rng(seed)
    images = read_split_csv(split_file)
    items = []
    for split, role, cap in (("train", "fit", PER_SOURCE_FIT), ("val", "select", PER_SOURCE_SELECT),
                             ("test", "test", PER_SOURCE_SELECT)):
        for source in sorted({img.source for img in images}):
            chosen = [img for img in images if img.split == split and img.source == source]
            for i in sorted(rng.permutation(len(chosen))[:cap]):
                img = chosen[i]
                items.append(Item(str(img.path), "frontal", img.group, role, f"{img.path.parent.parent.name}:{source}"))
    return items


def frontal_items(data: Path, seed: int = 0) -> list[Item]:
    """cxr3 and nih films: the bundled model's test films judged only; the rest split into fit and select."""
    with open(TEST_SPLIT, newline="") as fh:
        test = {row["file"] for row in csv.DictReader(fh)}
    rng = np.random.default_rng(seed)
    items = []
    for folder in ("cxr3", "nih"):
        if not (data / folder).is_dir():
            continue
        images = read_labelled_folder(data / folder)
        by_source: dict[str, list] = {}
        for img in images:
            name = img.path.relative_to(data / folder).as_posix()
            if folder == "cxr3" and name in test:
                items.append(Item(str(img.path), "frontal", img.group, "test", f"{folder}:{img.source}"))
            else:
                by_source.setdefault(img.source, []).append(img)
        for source, imgs in sorted(by_source.items()):
            # Whole patients go to fit or select, never both.
            groups = sorted({img.group for img in imgs})
            rng.shuffle(groups)
            fit_share = PER_SOURCE_FIT / (PER_SOURCE_FIT + PER_SOURCE_SELECT)
            fit_groups = set(groups[: int(len(groups) * fit_share)])
            for role in ("fit", "select"):
                chosen = [img for img in imgs if (img.group in fit_groups) == (role == "fit")]
                cap = PER_SOURCE_FIT if role == "fit" else PER_SOURCE_SELECT
                for i in sorted(rng.permutation(len(chosen))[:cap]):
                    img = chosen[i]
                    items.append(Item(str(img.path), "frontal", img.group, role, f"{folder}:{source}"))
    full = data / "fullres"
    if full.is_dir():  # the originals of cxr3 films: held out only where their cxr3 film is a test film
        test_stems = {Path(name).stem for name in test}
        for img in read_labelled_folder(full):
            role = "test" if img.path.stem in test_stems else "extra"
            items.append(Item(str(img.path), "frontal", img.group, role, "fullres"))
    return items


def ood_items(data: Path) -> list[Item]:
    manifest = data / "ood" / "manifest.csv"
    if not manifest.is_file():
        return []
    with open(manifest, newline="") as fh:
        return [Item(str(data / "ood" / row["file"]), row["kind"], row["group"], "negative", f"ood-{row['kind']}")
                for row in csv.DictReader(fh)]


def pydicom_items() -> list[Item]:
    """pydicom's and pydicom-data's sample DICOMs with pixels and a modality other than a radiograph's."""
    try:
        import pydicom
    except ImportError:
        return []
    items = []
    for folder in (package_folder("pydicom", "data", "test_files"), package_folder("data_store", "data")):
        for path in sorted(p for p in (folder.rglob("*") if folder else []) if p.is_file()):
            try:
                ds = pydicom.dcmread(path, defer_size="1 KB")
            except Exception:  # not DICOM, or damaged on purpose (pydicom's own test files)
                continue
            modality = str(ds.get("Modality", "")).upper()
            if modality in RADIOGRAPH_MODALITIES or "PixelData" not in ds:
                continue
            group = str(ds.get("StudyInstanceUID", "") or path.name)  # one study in many encodings: one group
            kind = "ct" if modality in CROSS_SECTIONS else "other"
            items.append(Item(str(path), kind, f"dicom-{group}", "negative", f"pydicom-{modality or 'none'}"))
    return items


def photo_items() -> list[Item]:
    folder = package_folder("skimage", "data")
    paths = sorted(p for p in folder.iterdir() if p.suffix in (".png", ".jpg")) if folder else []
    return [Item(str(p), "photo", f"skimage-{p.stem}", "negative", "skimage") for p in paths]


def synthetic_items(folder: Path, films: list[Item]) -> list[Item]:
    """Blank images, text pages, drawings; negatives, rotations and crops of real films; the demo's films."""
    folder.mkdir(parents=True, exist_ok=True)
    items = []
    for name, (kind, make) in FROM_SEED.items():
        for seed in range(SYNTHETIC_PER_MAKER):
            path = _save(folder / f"{name}-{seed}.png", lambda make=make, seed=seed: make(seed))
            items.append(Item(str(path), kind, f"{name}-{seed}", "negative", name))
    rng = np.random.default_rng(1)
    donors = [films[i] for i in rng.permutation(len(films))[:FILMS_PER_DERIVATION]]
    for name, (kind, make) in FROM_FILM.items():
        for seed, film in enumerate(donors):
            path = _save(folder / f"{name}-{seed}.png",
                         lambda make=make, film=film, seed=seed: make(decode_radiograph(film.path), seed))
            # The donor's patient is the group: its film and its derivative never split across folds.
            items.append(Item(str(path), kind, film.group, "negative", name))
    for seed in range(DEMO_FILMS):
        path = _save(folder / f"demo-{seed}.png", lambda seed=seed: (synthetic_film(seed) * 255).astype(np.uint8))
        items.append(Item(str(path), "frontal", f"demo-{seed}", "extra", DEMO_SET))
    return items


def _save(path: Path, make) -> Path:
    if not path.is_file():
        Image.fromarray(make()).save(path)
    return path


def all_items(data: Path, split_file: Path | None = None) -> list[Item]:
    """Every image of the benchmark; frontal films from ``split_file`` (a run's split.csv) when given."""
    frontal = frontal_items(data) if split_file is None else split_items(split_file)
    donors = [item for item in frontal if item.role in ("fit", "test") and item.set.startswith("cxr3")]
    return frontal + ood_items(data) + pydicom_items() + photo_items() + synthetic_items(CACHE / "synthetic", donors)


def model_outputs(model, items: list[Item], batch: int = 16) -> dict[str, np.ndarray]:
    """``z`` (N, k); ``score``, ``colour``, ``spread`` (pixel std), ``decoded`` (N,) for ``items``; cached per model."""
    key = hashlib.sha256(json.dumps([asdict(i) for i in items]).encode()).hexdigest()[:16]
    cache = CACHE / model.sha256[:16] / f"{key}.npz"
    if cache.is_file():
        return dict(np.load(cache))
    height, width = model.input_size
    z = np.zeros((len(items), model.metadata.outputs["scope"][0]), np.float32)
    score, colour, spread = (np.zeros(len(items), np.float32) for _ in range(3))
    decoded = np.zeros(len(items), bool)
    for start, chunk in _batches(items, batch):
        pixels, slots = [], []
        for i, item in enumerate(chunk):
            facts: dict = {}
            try:
                pixels.append(decode_radiograph(item.path, (height, width), model.metadata.preprocessing, facts=facts))
            except DecodeError:
                continue
            slots.append(start + i)
            colour[start + i], spread[start + i] = facts["colour"], pixels[-1].std()
        if slots:
            outputs = model.predict_outputs(np.stack(pixels)[..., None])
            z[slots], score[slots], decoded[slots] = outputs.scope, outputs.scope_score, True
    cache.parent.mkdir(parents=True, exist_ok=True)
    found = {"z": z, "score": score, "colour": colour, "spread": spread, "decoded": decoded}
    np.savez(cache, **found)
    return found


def _batches(items: list, size: int) -> Iterator[tuple[int, list]]:
    for start in range(0, len(items), size):
        yield start, items[start:start + size]
