"""One key for all of adaserve's compiled code, and the folder it is cached in.

numba's ``cache=True`` checks a function's own source file only: a kernel whose compiled code
inlines a helper of another file (the parsers share their number readers; each generated learning
module inlines an optimizer, the prefetch intrinsic and the batch checks) would load, from its
cache, code compiled against the helper's old version. So the cache lives in a folder named by
:data:`CACHE_KEY`, a digest of every Python source file of the ``optim`` package and of the
versions of Python, numba, llvmlite and NumPy: a changed source file (an upgrade, a local edit)
gives a new, empty folder, and nothing compiled from other sources can load. Processes running
different versions keep their own folders side by side.

The folder is ``<kernel directory>/<key>``: ``ADASERVE_KERNEL_DIR``, else
``~/.cache/adaserve/kernels``, else a per-user temporary folder (the first writable). It holds
the generated learning modules (:mod:`optim.kernels`) and numba's cache of every compiled
function: importing this module points ``numba.config.CACHE_DIR`` at it, before any function of
``optim`` is decorated (a function finds its cache folder when it is decorated). A folder the
user gave numba (``NUMBA_CACHE_DIR``) is kept as the parent: numba's cache then goes to
``$NUMBA_CACHE_DIR/adaserve-<key>``.
"""

from __future__ import annotations

import hashlib
import os
import sys
import tempfile
from pathlib import Path

import llvmlite
import numba
import numba.core.config
import numpy as np

_PACKAGE = Path(__file__).parent


def _cache_key() -> str:
    digest = hashlib.sha256(
        f"{sys.version} numba {numba.__version__} llvmlite {llvmlite.__version__} "
        f"numpy {np.__version__}".encode()
    )
    # every source file, named: a moved or renamed module changes the key too
    for path in sorted(_PACKAGE.rglob("*.py")):
        digest.update(path.relative_to(_PACKAGE).as_posix().encode() + b"\0")
        digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()[:16]


CACHE_KEY = _cache_key()


def _kernel_directory() -> Path:
    configured = os.environ.get("ADASERVE_KERNEL_DIR")
    candidates = [Path(configured)] if configured else []
    candidates += [Path.home() / ".cache" / "adaserve" / "kernels",
                   Path(tempfile.gettempdir()) / f"adaserve-kernels-{os.getuid()}"]  # fmt: skip
    for directory in candidates:
        try:
            (directory / CACHE_KEY).mkdir(parents=True, exist_ok=True)
            if os.access(directory / CACHE_KEY, os.W_OK):
                return directory / CACHE_KEY
        except OSError:
            continue
    raise OSError(f"no writable directory for compiled kernels among {candidates}")


COMPILED_DIRECTORY = _kernel_directory()
"""Where the generated learning modules and numba's cache of this source version live."""

_user_numba_directory = os.environ.get("NUMBA_CACHE_DIR")
NUMBA_CACHE_DIRECTORY = (
    Path(_user_numba_directory) / f"adaserve-{CACHE_KEY}"
    if _user_numba_directory
    else COMPILED_DIRECTORY
)
numba.core.config.CACHE_DIR = os.fspath(NUMBA_CACHE_DIRECTORY)
