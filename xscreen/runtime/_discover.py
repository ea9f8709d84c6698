"""Which files a screening run reads: a folder (recursive), one file, or a list of paths.

A list is a ``.txt`` file (one path per line), a ``.csv`` file with a ``path`` column (an xscreen
result file is one), or ``-`` for a list on standard input.

Discovery streams paths in a deterministic order (each folder's entries sorted by name, depth
first) and never opens more than the first bytes of a file, so a folder of 100k images costs
names, not pixels.
"""

from __future__ import annotations

import csv
import errno
import os
import sys
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Callable

from ._decode import FORMAT_NAMES, IMAGE_EXTENSIONS, sniff_format

LIST_SUFFIX = ".txt"
CSV_LIST_SUFFIX = ".csv"
STDIN = "-"  # a list of paths on standard input

# Why a file in a folder was not screened; reported in the run summary, never silent.
HIDDEN = "hidden"
NOT_AN_IMAGE = f"not a {FORMAT_NAMES} file"
BROKEN_SYMLINK = "broken symlink (its target does not exist)"
SYMLINK_OUT = "symlink out of the folder (pass --follow-symlinks)"
SYMLINK_DIR = "symlinked folder (pass --follow-symlinks)"

OnIgnored = Callable[[Path, str], None]


class ListFileError(ValueError):
    """A list of paths xscreen cannot read as one (a CSV without a ``path`` column)."""


def discover_inputs(
    target: str | os.PathLike,
    *,
    follow_symlinks: bool = False,
    on_ignored: OnIgnored | None = None,
) -> Iterator[Path]:
    """The files to screen under ``target``, in a deterministic order, as a lazy iterator.

    ``target`` is a folder (searched recursively; hidden entries skipped; files with an image
    extension, plus any other file whose content is PNG, JPEG, TIFF, BMP or DICOM, such as DICOM files
    without an extension), a single file (taken as it is), or a list: a ``.txt`` file with one
    path per line (blank lines and ``#`` comments skipped), a ``.csv`` file with a ``path``
    column, or ``-`` for lines on standard input. Relative paths in a list file are relative to
    the list (to the working folder for ``-``); each listed file is taken as it is, listed
    folders are searched. Without ``follow_symlinks``, symlinked folders are not entered and
    symlinked files are taken only when they point inside the folder. ``on_ignored(path,
    reason)`` hears about every entry of a folder that is not screened. Raises
    FileNotFoundError naming what is wrong when ``target`` does not exist or is a symlink loop,
    and ListFileError for a ``.csv`` without a ``path`` column.
    """
    if str(target) == STDIN:
        return _read_lines(sys.stdin, Path("."), follow_symlinks, on_ignored)
    target = Path(target)
    check_target(target)
    if target.is_dir():
        return _walk_root(target, follow_symlinks, on_ignored)
    suffix = target.suffix.lower()
    if suffix == LIST_SUFFIX:
        return _read_list(target, follow_symlinks, on_ignored)
    if suffix == CSV_LIST_SUFFIX:
        return _read_csv_list(target, follow_symlinks, on_ignored)
    return iter([target])


def check_target(target: str | os.PathLike) -> None:
    """FileNotFoundError saying what ``target`` is when it cannot be read: missing, a loop, a broken link."""
    target = Path(target)
    if str(target) == STDIN or target.exists():
        return
    if target.is_symlink():
        try:
            os.stat(target)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise FileNotFoundError(f"{target} is a symlink loop (it leads back to itself)") from None
        raise FileNotFoundError(f"{target} is a broken symlink (to {os.readlink(target)}, which does not exist)")
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
        if link and _is_loop(path):
            yield path  # one file's error row ("symlink loop"), not the end of the run
            continue
        if link and not os.path.exists(path):
            on_ignored(path, BROKEN_SYMLINK)
            continue
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


def _is_loop(path: Path) -> bool:
    try:
        os.stat(path)
    except OSError as exc:
        return exc.errno == errno.ELOOP
    return False


def _inside(real_path: str, real_root: str) -> bool:
    return real_path == real_root or real_path.startswith(real_root.rstrip(os.sep) + os.sep)


def _read_list(listing: Path, follow_symlinks: bool, on_ignored: OnIgnored | None) -> Iterator[Path]:
    with open(listing, encoding="utf-8", errors="surrogateescape") as fh:
        yield from _read_lines(fh, listing.parent, follow_symlinks, on_ignored)


def _read_lines(lines: Iterable[str], base: Path, follow_symlinks: bool,
                on_ignored: OnIgnored | None) -> Iterator[Path]:
    names = (line.strip() for line in lines)
    yield from _listed(base, (n for n in names if n and not n.startswith("#")), follow_symlinks, on_ignored)


def _read_csv_list(listing: Path, follow_symlinks: bool, on_ignored: OnIgnored | None) -> Iterator[Path]:
    fh = open(listing, newline="", encoding="utf-8-sig", errors="surrogateescape")
    reader = csv.DictReader(fh)
    if "path" not in (reader.fieldnames or ()):
        fh.close()
        raise ListFileError(f"{listing} is a CSV list without a 'path' column (its columns: "
                         f"{', '.join(reader.fieldnames or []) or 'none'}): name the column of file paths 'path'")
    return _closing_after(fh, _listed(listing.parent, (row["path"].strip() for row in reader if row["path"]),
                                      follow_symlinks, on_ignored))


def _closing_after(fh, paths: Iterator[Path]) -> Iterator[Path]:
    with fh:
        yield from paths


def _listed(base: Path, names: Iterable[str], follow_symlinks: bool,
            on_ignored: OnIgnored | None) -> Iterator[Path]:
    for name in names:
        path = base / name  # an absolute name replaces base
        if path.is_dir():
            yield from _walk_root(path, follow_symlinks, on_ignored)
        else:
            yield path  # missing or unreadable files get an error row, not silence


def _ignore(path: Path, reason: str) -> None:
    pass
