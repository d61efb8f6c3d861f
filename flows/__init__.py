"""Prefect flows only, thin: they orchestrate and hold no ML.

retrain.py (the pipeline through DVC, which stays the source of truth; dvc_pipeline.py asks DVC
for its stage graph, what changed and ``-S`` overrides), monitoring.py (the drift monitor over the
service's prediction log), score.py and sweep.py (batch scoring and parameter
sweeps on Dask / a work pool), server.py (the temporary Prefect server of a run without one),
refusal.py (a run a user error stopped: its artifact and Failed state).
Deployments are in prefect.yaml. Commands that are not flows (promote, predict, notify, the PR
report) live in commands/.
"""

from stages.analytics import default_analytics_off

# before any flow or command imports prefect or dvc: a clean run logs no telemetry ERROR
default_analytics_off()
