"""Open a ``.tflite`` file once in a child process before this process trusts it.

The structural check (``_tflite_check.py``) catches the damage it knows of; the TFLite runtime can still
abort inside native code on damage it does not (``benchmarks/fuzz.py``: ``scoped_int8.tflite`` with one
operator's options type changed loads, then aborts with SIGABRT in ``allocate_tensors`` at batch 1). A crash
there kills the whole process with no message. So the first time a file is opened, a child process opens it
with the same runtime and threads, resizes it to batch 1 and to the pipeline's batch, and runs one blank
batch each; a child killed by a signal, or one that hangs, is one ``ModelContractError`` line in the parent.

A file that passed is remembered by its SHA-256 (and the runtime's version) in a small cache file, so each
file pays the check (0.3 to 0.4 s on a 2-core x86 machine, mostly the child's imports) once per machine: Ray actors and
``xscreen serve`` load through ``load_model`` after the driver has, and find it there. The bundled models
are never probed. ``XSCREEN_NO_MODEL_PROBE=1`` turns the check off; ``XSCREEN_CACHE_DIR`` moves the cache
(default ``$XDG_CACHE_HOME/xscreen``, else ``~/.cache/xscreen``). A cache that cannot be read or written
never fails a load: the file is simply checked again next time. ``.onnx`` files are not probed:
onnxruntime turned every one of 16,878 damaged files into a clear error or a result (``benchmarks/fuzz.py``).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from ._contract import ModelContractError

NO_PROBE_ENV = "XSCREEN_NO_MODEL_PROBE"
CACHE_DIR_ENV = "XSCREEN_CACHE_DIR"
CACHE_FILE_NAME = "checked-models.txt"
PROBE_TIMEOUT_S = 120  # a damaged shape can make allocate_tensors stall; a sound chest film model opens in seconds
_CLEAR_ERROR_EXIT = 3  # the child met an ordinary error: its last stderr line is the message
_ADVICE = "re-export it with `xscreen export`, or get an undamaged copy of the file"
PACKAGE_ROOT = Path(__file__).resolve().parents[2]  # the folder holding this xscreen package
# The child runs this module's main() with the parent's xscreen first on its path.
_CHILD = "import sys; sys.path.insert(0, sys.argv[1]); from xscreen.runtime._probe import main; main(sys.argv[2:])"


def probe_disabled() -> bool:
    return os.environ.get(NO_PROBE_ENV, "").strip().lower() not in ("", "0", "false", "no")


def cache_file() -> Path:
    folder = os.environ.get(CACHE_DIR_ENV)
    if not folder:
        base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
        folder = os.path.join(base, "xscreen")
    return Path(folder) / CACHE_FILE_NAME


def _cache_key(sha256: str, runtime: str) -> str:
    return f"{sha256} {runtime}"


def already_checked(sha256: str, runtime: str) -> bool:
    try:
        lines = cache_file().read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError):
        return False
    return _cache_key(sha256, runtime) in lines


def remember_checked(sha256: str, runtime: str) -> None:
    """Add a line to the cache; any failure (read-only home, full disk) is ignored: the file is checked again."""
    path = cache_file()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "a", encoding="utf-8") as cache:  # one short append: concurrent writers do not mix lines
            cache.write(_cache_key(sha256, runtime) + "\n")
    except OSError:
        pass


def probe_model(path: Path, sha256: str, runtime: str, threads: int, backend: str | None) -> None:
    """Open ``path`` in a child process unless this file was checked with this runtime before.

    ``runtime``: the backend's "name version" the parent will open it with (part of the cache key: another
    runtime version may crash where this one does not). Raises ``ModelContractError`` in one line when the child
    dies by a signal, hangs, or meets an ordinary load error (the parent then never opens the file itself).
    """
    if already_checked(sha256, runtime):
        return
    command = [sys.executable, "-c", _CHILD, str(PACKAGE_ROOT), str(path), str(threads), backend or ""]
    env = {**os.environ, NO_PROBE_ENV: "1"}
    try:
        done = subprocess.run(command, capture_output=True, text=True, errors="replace", env=env,
                              timeout=PROBE_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise ModelContractError(
            f"{path}: the TFLite runtime took more than {PROBE_TIMEOUT_S} s to open it in a check process "
            f"(a damaged file can make it stall): {_ADVICE}") from None
    if done.returncode == 0:
        remember_checked(sha256, runtime)
        return
    last = last_stderr_line(done.stderr)
    if done.returncode < 0:
        name = signal_name(done.returncode)
        verb = "aborted" if name == "SIGABRT" else "crashed"
        said = f": {last[:200]}" if last else ""  # e.g. "double free or corruption", when the runtime says why
        raise ModelContractError(f"{path}: the TFLite runtime {verb} ({name}{said}) while opening it in a check "
                                 f"process, so this file would take xscreen down: {_ADVICE}")
    if done.returncode == _CLEAR_ERROR_EXIT and last:
        raise ModelContractError(last)
    # Anything else (an unexpected exception in the child): not a crash; this process opens the file itself
    # and says what is wrong in its own words. Not remembered, so checked again next time.


def last_stderr_line(stderr: str) -> str:
    """A child's last line on stderr that is not the TFLite runtime's XNNPACK banner ('' when none)."""
    lines = [line.strip() for line in stderr.splitlines() if line.strip() and "XNNPACK delegate for CPU" not in line]
    return lines[-1] if lines else ""


def signal_name(returncode: int) -> str:
    """The name of the signal that killed a child with this (negative) return code, e.g. ``SIGABRT``."""
    try:
        return signal.Signals(-returncode).name
    except ValueError:
        return f"signal {-returncode}"


def main(argv: list[str]) -> None:
    """The child: open the file, run a blank batch of 1 and of the pipeline's batch size; exit 0 when all ran."""
    import numpy as np

    from ._backends import open_engine
    from ._pipeline import DEFAULT_BATCH_SIZE

    path, threads, backend = Path(argv[0]), int(argv[1]), argv[2] or None
    try:
        engine, _ = open_engine(path, "tflite", threads, backend)
        spec = engine.input
        if spec.shape[0] in (None, 1) and all(d is not None for d in spec.shape[1:]):
            for batch in ((1,) if spec.shape[0] == 1 else (1, DEFAULT_BATCH_SIZE)):
                engine.run(np.zeros((batch, *spec.shape[1:]), spec.dtype))
    except (ModelContractError, ValueError) as exc:
        print(" ".join(str(exc).split()), file=sys.stderr)
        sys.exit(_CLEAR_ERROR_EXIT)


if __name__ == "__main__":
    main(sys.argv[1:])
