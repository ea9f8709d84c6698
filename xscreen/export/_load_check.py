"""Open each exported file in a child process before it counts.

A runtime can die inside native code while it sets a model up (ai-edge-litert 2.3.0 aborts with
"double free or corruption" when XNNPACK refuses an op). In a child process that is one line in the
export report and a file not shipped, instead of an export (or a later ``xscreen run``) killed with
no message.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from ..runtime._probe import PACKAGE_ROOT, last_stderr_line, signal_name

LOAD_CHECK_TIMEOUT_S = 300
# Loads the file as `xscreen run` does and screens one black film (the first inference is where
# some delegates set up); an ordinary failure prints its message and exits 1.
_CHILD = """
import sys
sys.path.insert(0, sys.argv[1])
import numpy as np
from xscreen.runtime import load_model
try:
    model = load_model(sys.argv[2])
    height, width = model.input_size
    model.predict_outputs(np.zeros((1, height, width, 1), np.uint8))
except Exception as exc:
    print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
    sys.exit(1)
"""


def load_check(path: Path) -> str | None:
    """None when the runtime opens ``path`` and screens a film with it in a child process; else why not, in one line."""
    try:
        done = subprocess.run([sys.executable, "-c", _CHILD, str(PACKAGE_ROOT), str(path)],
                              capture_output=True, text=True, errors="replace",
                              timeout=LOAD_CHECK_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        return f"opening it in a child process took more than {LOAD_CHECK_TIMEOUT_S} s"
    if done.returncode == 0:
        return None
    last = last_stderr_line(done.stderr)
    if done.returncode < 0:
        return f"the runtime crashed opening it ({signal_name(done.returncode)}{': ' + last if last else ''})"
    return f"the runtime cannot open it: {last or f'exit status {done.returncode}'}"
