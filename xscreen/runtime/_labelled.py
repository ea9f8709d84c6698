"""Labelled image folders: class sub-folders (optionally under train/valid/test) and manifest.csv.

Shared by training (``xscreen train``) and the bench (``xscreen bench``), so both read a
labelled folder the same way.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ._decode import IMAGE_EXTENSIONS

SPLIT_NAMES = {"train": "train", "valid": "val", "val": "val", "validation": "val", "test": "test"}


class LabelledFolderError(ValueError):
    """A labelled folder that cannot be used; the message says how to fix it."""


@dataclass(frozen=True)
class LabelledImage:
    path: Path
    label: str
    group: str  # the patient (or cluster of near-identical films); split by it, never by file
    split: str | None = None  # "train"/"val"/"test" when the folder layout fixes it
    source: str = ""  # where the film comes from (manifest ``source``; else the folder's name)
    population: str = ""  # manifest ``population`` (e.g. pediatric / adult), "" when unknown


def read_labelled_folder(root: str | os.PathLike) -> list[LabelledImage]:
    """List the images of a labelled folder, sorted, with their class and patient group.

    Layouts: ``root/<class>/*`` or ``root/{train,valid,test}/<class>/*``. A ``manifest.csv`` at
    the root with ``file,label[,group,source,population]`` columns overrides the folder labels and
    supplies the patient groups and sources; without it each file is its own group and the
    folder's name is the source.
    """
    root = Path(root)
    if not root.is_dir():
        raise LabelledFolderError(f"{root} is not a folder")
    split_dirs = [d for d in sorted(root.iterdir()) if d.is_dir() and d.name.lower() in SPLIT_NAMES]
    if split_dirs:
        images = [
            img
            for d in split_dirs
            for img in _class_folders(d, root, split=SPLIT_NAMES[d.name.lower()])
        ]
    else:
        images = _class_folders(root, root, split=None)
    images = _apply_manifest(root, images)
    labels = sorted({img.label for img in images})
    if not images:
        raise LabelledFolderError(
            f"{root} holds no images: expected one sub-folder per class with "
            f"{', '.join(IMAGE_EXTENSIONS)} files"
        )
    if len(labels) < 2:
        raise LabelledFolderError(
            f"{root} holds a single class ({labels[0]}): a classifier needs at least two"
        )
    return images


def _is_image(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_EXTENSIONS and not path.name.startswith(".")


def _class_folders(parent: Path, root: Path, split: str | None) -> list[LabelledImage]:
    images = []
    for class_dir in sorted(d for d in parent.iterdir() if d.is_dir() and not d.name.startswith(".")):
        files = sorted(p for p in class_dir.rglob("*") if p.is_file() and _is_image(p))
        if not files:
            raise LabelledFolderError(
                f"class folder {class_dir} has no images; remove it or add "
                f"{', '.join(IMAGE_EXTENSIONS)} files"
            )
        for path in files:
            group = path.relative_to(root).as_posix()
            images.append(LabelledImage(path, class_dir.name, group, split, source=root.name))
    return images


def _apply_manifest(root: Path, images: list[LabelledImage]) -> list[LabelledImage]:
    manifest = root / "manifest.csv"
    if not manifest.is_file():
        return images
    with open(manifest, newline="") as fh:
        rows = list(csv.DictReader(fh))
    if not rows or "file" not in rows[0]:
        raise LabelledFolderError(f"{manifest} needs a 'file' column (and 'label', 'group')")
    by_file = {row["file"]: row for row in rows}
    out = []
    for img in images:
        row = by_file.get(img.path.relative_to(root).as_posix())
        if row is None:
            out.append(img)
            continue
        out.append(
            LabelledImage(
                img.path,
                row.get("label") or img.label,
                row.get("group") or img.group,
                img.split,
                source=row.get("source") or img.source,
                population=row.get("population") or "",
            )
        )
    return out


def cohort_of(image: LabelledImage) -> str:
    """The cohort a film is reported in: its source, population and, where a source names two
    collections by file name (Kermany's ``IM-`` and ``NORMAL2-IM-`` normals), that series."""
    parts = [image.source or "unknown source"]
    if image.population:
        parts.append(image.population)
    name = image.path.name
    if "NORMAL2-" in name:
        parts.append("NORMAL2 series")
    elif name.startswith("kermany-IM-"):
        parts.append("IM series")
    return " / ".join(parts)


def read_labelled_folders(roots) -> list[LabelledImage]:
    """Several labelled folders as one list (``xscreen train cxr3 nih``): each keeps its manifest.

    Patient groups are prefixed with the folder's name, so two folders cannot share a patient id by chance.
    """
    roots = [roots] if isinstance(roots, (str, os.PathLike)) else list(roots)
    if len({Path(r).resolve() for r in roots}) != len(roots):
        raise LabelledFolderError(f"a folder is named twice in {[str(r) for r in roots]}")
    if len(roots) == 1:
        return read_labelled_folder(roots[0])
    return [
        LabelledImage(img.path, img.label, f"{Path(root).name}/{img.group}", img.split, img.source, img.population)
        for root in roots
        for img in read_labelled_folder(root)
    ]


def read_split_csv(split_file: str | os.PathLike, root: str | os.PathLike | None = None) -> list[LabelledImage]:
    """The images of a ``split.csv`` (``file,label,group,split``, as ``xscreen train`` writes it).

    Paths come back resolved; a relative path is taken from ``root`` when given, else from the current
    folder (where ``xscreen train`` ran), else from the CSV's own folder.
    """
    split_file = Path(split_file)
    try:
        with open(split_file, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise LabelledFolderError(f"cannot read split file {split_file}: {exc.strerror or exc}") from exc
    if not rows or not {"file", "split"} <= set(rows[0]):
        raise LabelledFolderError(f"{split_file} needs 'file' and 'split' columns (like runs/<name>/split.csv)")
    images = []
    for row in rows:
        path = Path(row["file"])
        if root is not None:
            path = Path(root) / path
        elif not path.is_absolute() and not path.exists():
            path = split_file.parent / path
        images.append(LabelledImage(path.resolve(), row.get("label", ""), row.get("group", ""), row["split"],
                                    row.get("source", ""), row.get("population", "")))
    return images


def stratified_sample(images: list[LabelledImage], n: int | None, seed: int = 0) -> list[LabelledImage]:
    """A class-stratified random sample of ``n`` images (proportional, each class at least one), in order."""
    if n is None or n >= len(images):
        return list(images)
    by_label: dict[str, list[int]] = {}
    for i, img in enumerate(images):
        by_label.setdefault(img.label, []).append(i)
    if n < len(by_label):
        raise LabelledFolderError(f"a sample of {n} is smaller than the {len(by_label)} classes; use at least that")
    # Largest-remainder allocation, then one per class at least.
    exact = {label: n * len(idx) / len(images) for label, idx in by_label.items()}
    quota = {label: max(1, int(q)) for label, q in exact.items()}
    for label in sorted(exact, key=lambda k: exact[k] - int(exact[k]), reverse=True):
        if sum(quota.values()) >= n:
            break
        quota[label] += 1
    while sum(quota.values()) > n:  # the at-least-one rule overshot: take back from the largest
        quota[max(quota, key=quota.get)] -= 1
    rng = np.random.default_rng(seed)
    chosen = sorted(int(i) for label, idx in sorted(by_label.items()) for i in rng.permutation(idx)[: quota[label]])
    return [images[i] for i in chosen]
