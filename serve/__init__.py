"""The HTTP service for the champion: ONNX Runtime, micro-batching, hot reload, metrics, a log.

    python -m serve                 # params.yaml `serve:`; docs/serving.md

Imports no torch and no transformers (tests/test_serve.py checks the running process): a serving
image needs onnxruntime, tokenizers, numpy, pyarrow, FastAPI, uvicorn and prometheus-client.
Builds on stages/ only: never on monitor/, scale/, commands/ or flows/ (tests/test_layering.py).
"""
