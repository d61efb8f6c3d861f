"""Orchestration around the DVC pipeline: the Prefect `retrain` flow (retrain.py), its deployments
(prefect.yaml), the data-arrived event (notify.py) and the pull-request report
(report.py). Flows hold no ML and this package imports nothing heavy: DVC stays the source of truth.
"""
