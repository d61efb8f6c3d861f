"""Commands that are not DVC stages: promote, predict, summary, notify, the PR report."""
