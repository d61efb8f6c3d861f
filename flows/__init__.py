"""Prefect flows only: the `retrain` flow (retrain.py) and its deployments (prefect.yaml).

Flows orchestrate DVC (which stays the source of truth) and hold no ML; this package imports
nothing heavy. Commands that are not flows (promote, predict, notify, the PR report) live in
commands/.
"""
