"""Prometheus metrics of one service instance (its own registry, so tests can run several)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, Info

LATENCY_BUCKETS = (0.002, 0.005, 0.01, 0.02, 0.035, 0.05, 0.075, 0.1, 0.15, 0.25, 0.5, 1, 2.5, 5)
BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256)


class ServeMetrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        r = self.registry
        self.requests = Counter("serve_requests", "HTTP requests by endpoint and status",
                                ["endpoint", "status"], registry=r)
        self.latency = Histogram("serve_request_latency_seconds",
                                 "HTTP request latency by endpoint and status",
                                 ["endpoint", "status"], buckets=LATENCY_BUCKETS, registry=r)
        self.batch_size = Histogram("serve_batch_size", "texts per ONNX call",
                                    buckets=BATCH_BUCKETS, registry=r)
        self.inference = Histogram("serve_inference_seconds", "time of one ONNX call (pad, run, "
                                   "softmax)", buckets=LATENCY_BUCKETS, registry=r)
        self.queue_depth = Gauge("serve_queue_depth", "texts waiting for an ONNX call",
                                 registry=r)
        self.predictions = Counter("serve_predictions", "predicted texts by answered label "
                                   "(null: an out-of-scope answer without a label)", ["label"],
                                   registry=r)
        self.truncated = Counter("serve_truncated_texts", "texts cut to the model's max_length",
                                 registry=r)
        self.out_of_scope = Counter("serve_out_of_scope_texts", "texts answered out of scope by "
                                    "the champion's detector", registry=r)
        self.model = Info("serve_model", "the model being served", registry=r)
        self.ready = Gauge("serve_ready", "1 while a model is loaded and warm", registry=r)
        self.reloads = Counter("serve_reloads", "reload attempts by result (loaded, unchanged, "
                               "refused) and trigger", ["result", "trigger"], registry=r)
        self.log_rows = Counter("serve_prediction_log_rows", "rows written to the prediction log",
                                registry=r)
        self.log_errors = Counter("serve_prediction_log_errors", "failed prediction log writes",
                                  registry=r)
        self.log_buffered = Gauge("serve_prediction_log_buffered_rows",
                                  "rows not yet written (lost on a crash)", registry=r)
