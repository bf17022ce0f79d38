"""The offline commands of ``adaserve`` that work on files, with no server: ``train`` and
``predict`` (:mod:`adaserve_cli.train`) and ``compare`` (:mod:`adaserve_cli.compare`).

They use :mod:`optim` alone (no module of :mod:`service`) and import it only when a command runs,
so ``adaserve --help`` does not wait for numba. :mod:`service.cli` adds them to the ``adaserve``
command beside ``serve``.
"""
