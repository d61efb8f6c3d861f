"""Commands that are not DVC stages: promote, predict, summary, notify (and the PR report).

``python -m commands.<name>``. They read the pipeline's outputs through stages.artifacts and call
git/dvc through stages.vcs; none of them is in dvc.yaml (promote would close a cycle: it writes the
champion pointer evaluate reads).
"""
