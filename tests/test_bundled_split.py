"""The bundled model's shipped split (xscreen/models/xscreen_split.csv) and where it comes from."""

import csv
import os
from collections import Counter
from pathlib import Path

import pytest

from xscreen.runtime._model import BUNDLED_SPLIT

DATA = Path(os.environ.get("XSCREEN_DATA", Path(__file__).resolve().parents[2] / "shared" / "data"))


def shipped_rows():
    with open(BUNDLED_SPLIT, newline="") as fh:
        return list(csv.DictReader(fh))


def test_shipped_split_has_the_recorded_sizes_and_no_patient_in_two_splits():
    rows = shipped_rows()
    assert list(rows[0]) == ["file", "label", "group", "split"]
    # train/val/test of the 0.2 build (MODEL_CARD.md, benchmarks/results/bundled/card_0.2_recovered.json)
    assert Counter(r["split"] for r in rows) == {"train": 9200, "val": 1153, "test": 1153}
    test = Counter(r["label"] for r in rows if r["split"] == "test")
    assert test == {"covid": 326, "healthy": 412, "pneumonia": 415}
    splits_of = {}
    for r in rows:
        splits_of.setdefault(r["group"], set()).add(r["split"])
        assert not Path(r["file"]).is_absolute() and r["file"].split("/")[0] in ("cxr3", "nih")
    assert all(len(s) == 1 for s in splits_of.values())


@pytest.mark.skipif(not (DATA / "cxr3").is_dir() or not (DATA / "nih").is_dir(),
                    reason="needs ../shared/data/cxr3 and nih (the training pool)")
def test_shipped_split_is_what_train_computes_from_the_pool():
    from xscreen.export._train import split_by_group
    from xscreen.runtime._labelled import read_labelled_folders

    images = read_labelled_folders([DATA / "cxr3", DATA / "nih"])
    splits = split_by_group(images, (0.8, 0.1, 0.1), 0)
    computed = {img.path.resolve().relative_to(DATA.resolve()).as_posix(): s for img, s in zip(images, splits)}
    assert computed == {r["file"]: r["split"] for r in shipped_rows()}
