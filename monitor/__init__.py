"""Production monitoring: the champion's reference, the prediction-log reader and drift detectors.

No torch here: everything works from what the service logs (probabilities, pooled embeddings,
token counts, hashes), so the monitor runs where the service runs and on hash-only logs.
"""
