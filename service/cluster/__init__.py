"""adaserve on a Ray cluster (``adaserve serve --ray ADDRESS``): the same app served by Ray
Serve, each model owned by one Ray actor. Imported only when a Ray address is configured."""
