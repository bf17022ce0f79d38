"""The model engine: one model instance's writer (its mailbox), log pipeline and snapshots,
the domain errors it raises, and the knobs and thread pools it is given."""
