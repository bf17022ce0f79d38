"""pytest collection: the walkthrough is a script (it learns when run), not a doctest module."""

collect_ignore = ["optim/walkthrough.py"]
