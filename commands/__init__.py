"""Commands that are not DVC stages: promote, predict, summary, notify (and the PR report).

``python -m commands.<name>``. They read the pipeline's outputs through stages.artifacts and call
git/dvc through stages.vcs; none of them is in dvc.yaml (promote would close a cycle: it writes the
champion pointer evaluate reads).
"""

from stages.analytics import default_analytics_off

# before any flow or command imports prefect or dvc: a clean run logs no telemetry ERROR
default_analytics_off()
