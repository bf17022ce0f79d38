"""numba's start-up without its BLAS probe: about 0.15 s off every process's first kernel.

The first compiled function a process loads (from numba's cache too) makes numba import its
NumPy implementations, and one of them, ``numba.np.arraymath``, probes at import for a BLAS by
importing ``scipy.linalg`` (with ``numpy.f2py`` and SciPy's array-API layer): about as long as
importing numba itself, for a yes/no answer. adaserve's kernels use no BLAS, and SciPy is a
dependency, so the answer is yes: the module is imported here with the probe answering so
without the import. Every later BLAS use still goes through numba's own check (which imports
``scipy.linalg`` then). With another numba whose module differs, nothing is changed.
"""

from __future__ import annotations

import contextlib


def _import_arraymath_without_blas_probe() -> None:
    with contextlib.suppress(ImportError, AttributeError):
        import numba.np.linalg as linalg

        probe = linalg.ensure_blas
        linalg.ensure_blas = lambda: None
        try:
            import numba.np.arraymath as arraymath
        finally:
            linalg.ensure_blas = probe
        arraymath.ensure_blas = probe


_import_arraymath_without_blas_probe()
