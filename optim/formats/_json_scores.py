"""Template of predict's fused JSON path (see :func:`optim.formats.json_csr.scores_of_json`).

Not used directly: :func:`optim.kernels.kernels_for` appends the code below to each optimizer's
generated module, after the template of the learning loops (:mod:`optim._loop`), so it composes
the JSON CSR reader with that optimizer's compiled ``margins`` and numba can cache the result.
"""

import numba as nb
import numpy as np

margins = None  # the generated module's (optim._loop's template)
# --- template body: everything below is copied into the generated module ---
from optim.batch import CANONICAL, _csr_status  # noqa: E402
from optim.formats.json_csr import CSR_ARRAYS_ONLY, csr_body  # noqa: E402


@nb.njit(cache=True, error_model="numpy")
def scores_of_json(table, counters, hp, t, exact, fit_intercept, buf, max_rows, max_nnz):
    # Read, check, score and squash in one call: for a row or a few, each call from Python (and
    # each array it returns) costs more than the work, several times more on a server where the
    # code between requests has pushed NumPy's out of the caches. It keeps the GIL: it runs on
    # the event loop, and a thread that took the GIL meanwhile could keep it up to the switch
    # interval. Anything but a plain valid body of sorted rows within the limits, with finite
    # margins, is left to the general path, which reports or canonicalizes it.
    nothing = np.empty((2, 0))
    handled, indptr, indices, values, _, _, present, fixes = csr_body(buf)
    if not handled or present != CSR_ARRAYS_ONLY or fixes.shape[0] != 0:
        return False, nothing
    n_rows = indptr.shape[0] - 1
    if n_rows > max_rows or values.shape[0] > max_nnz:
        return False, nothing
    if _csr_status(indptr, indices, values, table.shape[0] - 1) != CANONICAL:
        return False, nothing
    out = np.empty((2, n_rows))  # margins, probabilities
    margins(
        table, counters, hp, t, exact, fit_intercept,
        indptr.view(np.uint64), indices.view(np.uint64), values, out[0],
    )  # fmt: skip
    for i in range(n_rows):
        if not np.isfinite(out[0, i]):
            return False, nothing
        out[1, i] = 1.0 / (1.0 + np.exp(-out[0, i]))  # scipy's expit, as probabilities()
    return True, out
