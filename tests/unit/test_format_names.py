"""``adaserve_cli.formats``: the formats' names and media types, importable without numba (the
CLI's ``--help`` and the client do not wait for it), and the same as the parsers'."""

from __future__ import annotations

import json
import subprocess
import sys

from adaserve_cli.formats import FORMAT_OF_MEDIA_TYPE, FORMATS, MEDIA_TYPES
from optim import formats as parsers
from service.client import CONTENT_TYPES
from service.routers import streams


def test_importing_the_names_imports_neither_numba_nor_numpy() -> None:
    program = (
        "import json, sys\n"
        "import adaserve_cli.formats\n"
        "print(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in "
        "('numba', 'numpy', 'llvmlite', 'scipy', 'optim'))))\n"
    )
    out = subprocess.run([sys.executable, "-c", program], capture_output=True, text=True,
                         check=True).stdout  # fmt: skip
    assert json.loads(out) == []


def test_the_names_are_the_parsers_and_the_routes() -> None:
    assert parsers.FORMATS == FORMATS
    assert tuple(MEDIA_TYPES) == FORMATS
    assert {FORMAT_OF_MEDIA_TYPE[m] for m in MEDIA_TYPES.values()} == set(FORMATS)
    assert CONTENT_TYPES == MEDIA_TYPES
    assert streams.FORMATS == FORMAT_OF_MEDIA_TYPE
