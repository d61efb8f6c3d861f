"""Production monitoring: the champion's reference, the prediction-log reader and drift detectors.

No torch here: everything works from what the service logs (probabilities, pooled embeddings,
token counts, hashes), so the monitor runs where the service runs and on hash-only logs.
Builds on stages/ only: never on serve/, scale/, commands/ or flows/ (tests/test_layering.py); the
flow that runs it on a schedule is flows/monitoring.py.
"""
