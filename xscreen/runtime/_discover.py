"""Which files a screening run reads: a folder (recursive), one file, or a ``.txt`` list of paths.

Discovery streams paths in a deterministic order (each folder's entries sorted by name, depth
first) and never opens more than the first bytes of a file, so a folder of 100k images costs
names, not pixels.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Callable

from ._decode import IMAGE_EXTENSIONS, sniff_format

LIST_SUFFIX = ".txt"

# Why a file in a folder was not screened; reported in the run summary, never silent.
HIDDEN = "hidden"
NOT_AN_IMAGE = "not a PNG, JPEG or DICOM file"
SYMLINK_OUT = "symlink out of the folder (pass --follow-symlinks)"
SYMLINK_DIR = "symlinked folder (pass --follow-symlinks)"

OnIgnored = Callable[[Path, str], None]


def discover_inputs(
    target: str | os.PathLike,
    *,
    follow_symlinks: bool = False,
    on_ignored: OnIgnored | None = None,
) -> Iterator[Path]:
    """The files to screen under ``target``, in a deterministic order, as a lazy iterator.

    ``target`` is a folder (searched recursively; hidden entries skipped; files with an image
    extension, plus any other file whose content is PNG, JPEG or DICOM, such as DICOM files
    without an extension), a single file (taken as it is), or a ``.txt`` file listing one path
    per line (relative paths are relative to the list; blank lines and ``#`` comments skipped;
    each listed file is taken as it is, listed folders are searched). Without
    ``follow_symlinks``, symlinked folders are not entered and symlinked files are taken only when
    they point inside the folder. ``on_ignored(path, reason)`` hears about every entry of a
    folder that is not screened. Raises FileNotFoundError when ``target`` does not exist.
    """
    target = Path(target)
    if target.is_dir():
        return _walk_root(target, follow_symlinks, on_ignored)
    if target.is_file():
        if target.suffix.lower() == LIST_SUFFIX:
            return _read_list(target, follow_symlinks, on_ignored)
        return iter([target])
    raise FileNotFoundError(f"{target} does not exist")


def _walk_root(root: Path, follow_symlinks: bool, on_ignored: OnIgnored | None) -> Iterator[Path]:
    real_root = os.path.realpath(root)
    yield from _walk(root, real_root, follow_symlinks, on_ignored or _ignore, {real_root})


def _walk(folder: Path, real_root: str, follow_symlinks: bool, on_ignored: OnIgnored,
          entered: set[str]) -> Iterator[Path]:
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda entry: entry.name)
    except OSError as exc:
        if os.path.realpath(folder) == real_root:
            raise
        on_ignored(folder, f"folder cannot be read ({exc.strerror})")
        return
    for entry in entries:
        path = folder / entry.name
        if entry.name.startswith("."):
            on_ignored(path, HIDDEN)
            continue
        link = entry.is_symlink()
        if entry.is_dir():
            if link and not follow_symlinks:
                on_ignored(path, SYMLINK_DIR)
                continue
            real = os.path.realpath(path)
            if real in entered:  # a symlink loop, or a folder reached twice through links
                continue
            entered.add(real)
            yield from _walk(path, real_root, follow_symlinks, on_ignored, entered)
        elif link and not follow_symlinks and not _inside(os.path.realpath(path), real_root):
            on_ignored(path, SYMLINK_OUT)
        elif path.suffix.lower() in IMAGE_EXTENSIONS or (entry.is_file() and _sniffs_as_image(path)):
            yield path
        else:
            on_ignored(path, NOT_AN_IMAGE)


def _sniffs_as_image(path: Path) -> bool:
    try:
        return sniff_format(path) is not None
    except OSError:
        return True  # cannot read it to tell: screen it, and the row will say why it failed


def _inside(real_path: str, real_root: str) -> bool:
    return real_path == real_root or real_path.startswith(real_root.rstrip(os.sep) + os.sep)


def _read_list(listing: Path, follow_symlinks: bool, on_ignored: OnIgnored | None) -> Iterator[Path]:
    base = listing.parent
    with open(listing, encoding="utf-8", errors="surrogateescape") as fh:
        for line in fh:
            name = line.strip()
            if not name or name.startswith("#"):
                continue
            path = base / name  # an absolute name replaces base
            if path.is_dir():
                yield from _walk_root(path, follow_symlinks, on_ignored)
            else:
                yield path  # missing or unreadable files get an error row, not silence


def _ignore(path: Path, reason: str) -> None:
    pass
