"""Prefect flows only, thin: they orchestrate and hold no ML.

retrain.py (the pipeline through DVC, which stays the source of truth), monitoring.py (the drift
monitor over the service's prediction log), score.py and sweep.py (batch scoring and parameter
sweeps on Dask / a work pool), server.py (the temporary Prefect server of a run without one).
Deployments are in prefect.yaml. Commands that are not flows (promote, predict, notify, the PR
report) live in commands/.
"""
