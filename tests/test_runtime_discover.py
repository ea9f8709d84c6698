"""discover_inputs: which files a run screens, in which order, and what it leaves out (and says so)."""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pytest
from conftest import DICOM_RAW, grey, png_bytes, save_png, write_dicom

from xscreen.runtime import discover_inputs
from xscreen.runtime._discover import HIDDEN, NOT_AN_IMAGE, SYMLINK_DIR, SYMLINK_OUT


def names(paths, root: Path) -> list[str]:
    return [str(Path(p).relative_to(root)) for p in paths]


@pytest.fixture
def tree(tmp_path) -> Path:
    root = tmp_path / "scans"
    for rel in ["b.png", "a.JPG", "c.jpeg", "sub/z.dcm", "sub/inner/y.png", "A_upper.png", "sub/x.dicom"]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(png_bytes(grey(10)))  # discovery goes by name here, not content
    (root / "notes.txt").write_text("not an image")
    (root / ".hidden.png").write_bytes(b"x")
    (root / ".cache").mkdir()
    (root / ".cache" / "thumb.png").write_bytes(b"x")
    return root


def test_folder_is_walked_recursively_in_a_stable_order(tree):
    found = names(discover_inputs(tree), tree)
    assert found == ["A_upper.png", "a.JPG", "b.png", "c.jpeg", "sub/inner/y.png", "sub/x.dicom", "sub/z.dcm"]
    assert names(discover_inputs(tree), tree) == found  # deterministic


def test_discovery_is_lazy(tree):
    paths = discover_inputs(tree)
    assert next(iter(paths)).name == "A_upper.png"


def test_left_out_entries_are_reported_with_a_reason(tree):
    ignored = []
    list(discover_inputs(tree, on_ignored=lambda path, reason: ignored.append((path.name, reason))))
    assert sorted(ignored) == [(".cache", HIDDEN), (".hidden.png", HIDDEN), ("notes.txt", NOT_AN_IMAGE)]


@pytest.mark.skipif(not __import__("importlib.util").util.find_spec("pydicom"), reason="needs pydicom")
def test_dicom_without_extension_is_found_by_content(tmp_path):
    write_dicom(tmp_path / "IM000001", DICOM_RAW)
    write_dicom(tmp_path / "1.2.840.10008.99", DICOM_RAW)  # UID-style name: its "suffix" is .99
    (tmp_path / "README").write_text("x" * 200)
    assert names(discover_inputs(tmp_path), tmp_path) == ["1.2.840.10008.99", "IM000001"]


def test_pipes_are_not_opened(tmp_path):
    os.mkfifo(tmp_path / "pipe")  # opening it to sniff its content would block forever
    os.mkfifo(tmp_path / "pipe.png")  # screened, and its row says why it failed
    ignored = []
    found = names(discover_inputs(tmp_path, on_ignored=lambda p, r: ignored.append(p.name)), tmp_path)
    assert found == ["pipe.png"] and ignored == ["pipe"]


def test_image_content_under_another_extension_is_found(tmp_path):
    save_png(tmp_path / "scan.png", grey(1))
    os.rename(tmp_path / "scan.png", tmp_path / "scan.image")
    assert names(discover_inputs(tmp_path), tmp_path) == ["scan.image"]


def test_symlinks_do_not_lead_out_of_the_folder_by_default(tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    save_png(outside / "elsewhere.png", grey(1))
    root = tmp_path / "scans"
    root.mkdir()
    save_png(root / "real.png", grey(1))
    (root / "inside_link.png").symlink_to(root / "real.png")
    (root / "outside_link.png").symlink_to(outside / "elsewhere.png")
    (root / "linked_dir").symlink_to(outside)
    (root / "loop").symlink_to(root)
    ignored = {}
    found = names(discover_inputs(root, on_ignored=lambda p, r: ignored.update({p.name: r})), root)
    assert found == ["inside_link.png", "real.png"]
    assert ignored == {"outside_link.png": SYMLINK_OUT, "linked_dir": SYMLINK_DIR, "loop": SYMLINK_DIR}

    followed = names(discover_inputs(root, follow_symlinks=True), root)
    assert followed == ["inside_link.png", "linked_dir/elsewhere.png", "outside_link.png", "real.png"]


def test_an_unreadable_subfolder_is_reported_and_the_rest_screened():
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        root.chmod(0o755)
        (root / "locked").mkdir()
        save_png(root / "locked" / "inside.png", grey(1))
        save_png(root / "open.png", grey(1))
        (root / "locked").chmod(0)
        ignored = []
        as_root = os.geteuid() == 0
        if as_root:  # root reads every folder: look as an unprivileged user
            os.seteuid(65534)
        try:
            found = names(discover_inputs(root, on_ignored=lambda p, r: ignored.append((p.name, r))), root)
        finally:
            if as_root:
                os.seteuid(0)
    assert found == ["open.png"]
    assert ignored == [("locked", "folder cannot be read (Permission denied)")]


def test_single_file_is_taken_whatever_it_is(tmp_path):
    path = tmp_path / "scan.bmp"
    path.write_bytes(b"BM")
    assert list(discover_inputs(path)) == [path]


def test_text_list_names_files_relative_to_itself(tmp_path):
    (tmp_path / "folder").mkdir()
    save_png(tmp_path / "folder" / "in_folder.png", grey(1))
    save_png(tmp_path / "one.png", grey(1))
    absolute = save_png(tmp_path / "absolute.png", grey(1))
    listing = tmp_path / "lists" / "todo.txt"
    listing.parent.mkdir()
    listing.write_text(f"# to screen\n../one.png\n\n  {absolute}  \n../folder\n../missing.png\n")
    found = [str(p) for p in discover_inputs(listing)]
    assert [Path(p).name for p in found] == ["one.png", "absolute.png", "in_folder.png", "missing.png"]
    assert found[3].endswith("missing.png")  # missing files are kept: they get an error row


def test_missing_target_is_an_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        discover_inputs(tmp_path / "nowhere")


def test_files_with_an_image_extension_are_not_opened(tmp_path, monkeypatch):
    root = tmp_path / "many"
    root.mkdir()
    for i in range(300):
        (root / f"{i:05d}.png").write_bytes(b"not opened by discovery")

    def sniff(path):
        raise AssertionError(f"discovery opened {path}")

    monkeypatch.setattr("xscreen.runtime._discover.sniff_format", sniff)
    found = list(discover_inputs(root))
    assert len(found) == 300 and found[0].name == "00000.png" and found[-1].name == "00299.png"
