"""Scale-out past one machine on existing engines: batch scoring (Dask) and sweeps (Prefect + DVC).

Builds on stages/ only: never on serve/, monitor/, commands/ or flows/ (tests/test_layering.py).
"""
