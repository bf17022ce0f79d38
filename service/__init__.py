"""adaserve's REST service over :mod:`optim` (built in the service issue)."""
