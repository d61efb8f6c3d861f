"""Scale-out past one machine on existing engines: batch scoring (Dask) and sweeps (Prefect + DVC)."""
