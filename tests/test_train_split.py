from pathlib import Path

import pytest

from xscreen.export._train import split_by_group
from xscreen.runtime._labelled import LabelledFolderError, LabelledImage, read_labelled_folder


def make_images(n_groups=60, per_group=3):
    images = []
    for g in range(n_groups):
        label = ["covid", "healthy", "pneumonia"][g % 3]
        for k in range(per_group):
            images.append(LabelledImage(Path(f"{label}/p{g}_{k}.png"), label, f"patient{g}"))
    return images


def test_no_patient_crosses_splits_and_fractions_hold():
    images = make_images()
    splits = split_by_group(images, (0.8, 0.1, 0.1), seed=1)
    by_group = {}
    for img, split in zip(images, splits):
        by_group.setdefault(img.group, set()).add(split)
    assert all(len(s) == 1 for s in by_group.values())
    for label in ("covid", "healthy", "pneumonia"):
        chosen = [s for img, s in zip(images, splits) if img.label == label]
        assert chosen.count("test") >= 3 and chosen.count("val") >= 3
        assert chosen.count("train") >= 0.7 * len(chosen)


def test_split_is_seeded():
    images = make_images()
    assert split_by_group(images, (0.8, 0.1, 0.1), 3) == split_by_group(images, (0.8, 0.1, 0.1), 3)
    assert split_by_group(images, (0.8, 0.1, 0.1), 3) != split_by_group(images, (0.8, 0.1, 0.1), 4)


def test_folder_split_is_kept(tmp_path):
    images = [LabelledImage(Path("a.png"), "x", "a.png", "test"), LabelledImage(Path("b.png"), "y", "b.png", "train")]
    assert split_by_group(images, (0.8, 0.1, 0.1), 0) == ["test", "train"]


def touch_png(path):
    from PIL import Image

    path.parent.mkdir(parents=True, exist_ok=True)
    Image.new("L", (8, 8), 100).save(path)


def test_layouts_and_manifest_groups(tmp_path):
    for split in ("train", "valid", "test"):
        for label in ("healthy", "covid"):
            touch_png(tmp_path / "roboflow" / split / label / f"{split}-{label}.png")
    images = read_labelled_folder(tmp_path / "roboflow")
    assert {img.split for img in images} == {"train", "val", "test"}
    assert {img.label for img in images} == {"healthy", "covid"}

    flat = tmp_path / "flat"
    for name in ("a", "b"):
        touch_png(flat / "healthy" / f"{name}.png")
        touch_png(flat / "covid" / f"{name}.png")
    (flat / "manifest.csv").write_text(
        "file,label,group\nhealthy/a.png,healthy,person1\nhealthy/b.png,healthy,person1\n"
    )
    groups = {img.path.name + img.label: img.group for img in read_labelled_folder(flat)}
    assert groups["a.pnghealthy"] == groups["b.pnghealthy"] == "person1"
    assert groups["a.pngcovid"] != groups["b.pngcovid"]


def test_bad_folders_say_what_is_wrong(tmp_path):
    touch_png(tmp_path / "one" / "healthy" / "a.png")
    with pytest.raises(LabelledFolderError, match="single class"):
        read_labelled_folder(tmp_path / "one")
    (tmp_path / "empty" / "covid").mkdir(parents=True)
    touch_png(tmp_path / "empty" / "healthy" / "a.png")
    with pytest.raises(LabelledFolderError, match="has no images"):
        read_labelled_folder(tmp_path / "empty")
    with pytest.raises(LabelledFolderError, match="not a folder"):
        read_labelled_folder(tmp_path / "missing")


def test_tied_group_does_not_follow_string_hashing():
    """A patient with one film of each of two labels is assigned by the sorted label, in every process."""
    import json
    import os
    import subprocess
    import sys

    code = (
        "import json; from pathlib import Path; from xscreen.export._train import split_by_group; "
        "from xscreen.runtime._labelled import LabelledImage as L; "
        "imgs = [L(Path(f'{lab}/g{g}_{k}.png'), lab, f'g{g}') for g in range(40) for k, lab in "
        "enumerate(['healthy', 'pneumonia'] if g % 4 == 0 else ['healthy' if g % 2 else 'pneumonia'] * 2)]; "
        "print(json.dumps(split_by_group(imgs, (0.8, 0.1, 0.1), 0)))"
    )
    runs = set()
    for seed in ("0", "1", "2", "3", "4", "5"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
        runs.add(tuple(json.loads(out.stdout)))
    assert len(runs) == 1
