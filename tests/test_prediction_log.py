"""The prediction log's one schema: what the service's writer writes, the monitor's reader reads.

Both sides take the schema, the partition layout and the file listing from stages.prediction_log;
these tests tie the writer (serve.predlog) to the reader (monitor.log) through it, column by column.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

START = datetime(2026, 12, 1, 8, 59, 58, 123456, tzinfo=UTC)  # rows on both sides of an hour


def test_the_service_log_is_read_by_the_monitor_with_every_column_intact(tmp_path: Path) -> None:
    import pandas as pd

    from monitor.log import read_window
    from serve.metrics import ServeMetrics
    from serve.predlog import PredictionLog
    from stages.prediction_log import COLUMNS, log_files, log_schema, partition_dir, text_sha256

    rng = np.random.default_rng(0)
    writer = PredictionLog(tmp_path, log_text=True, flush_every=100, flush_interval_s=60.0,
                           metrics=ServeMetrics())
    sent = []
    for i, ts in enumerate([START, START + timedelta(seconds=3)]):  # 08:59 and 09:00
        texts, ids = [f"where is parcel {i}", ""], [f"q{i}", None]
        probs = rng.dirichlet(np.ones(4), size=2).astype(np.float32)
        embedding = rng.normal(size=(2, 8)).astype(np.float32)
        labels = [f"class{j}" for j in probs.argmax(axis=1)]
        writer.append(ts, f"req-{i}", ids, texts, labels, probs, "abc-123", 4.5, [i == 1, False],
                      [7, 2], embedding)
        sent += [{"ts": ts, "request_id": f"req-{i}", "id": ids[k], "text": texts[k],
                  "text_sha256": text_sha256(texts[k]), "label": labels[k],
                  "confidence": probs[k].max(), "probs": probs[k], "model_version": "abc-123",
                  "latency_ms": 4.5, "truncated": [i == 1, False][k], "n_tokens": [7, 2][k],
                  "embedding": embedding[k]} for k in range(2)]
    assert writer.flush() == 4

    files = log_files(tmp_path)
    assert [f.parent for f in files] == [partition_dir(tmp_path, START),
                                         partition_dir(tmp_path, START + timedelta(seconds=3))]
    assert all(pq.read_schema(f).equals(log_schema()) for f in files)
    window = read_window(tmp_path, START - timedelta(hours=1), START + timedelta(hours=1), 4)
    assert (window.files, window.skipped) == (2, [])
    assert sorted(window.frame.columns) == sorted(COLUMNS)
    assert window.empty_mask().tolist() == [False, True, False, True]
    for row, expected in zip(window.frame.to_dict("records"), sent, strict=True):
        assert row["ts"] == expected["ts"].replace(microsecond=123000)  # stored in milliseconds
        for name in ("request_id", "id", "text", "text_sha256", "label", "model_version",
                     "truncated", "n_tokens"):
            if expected[name] is None:  # a null (pandas reads a null string as NaN)
                assert pd.isna(row[name]), name
            else:
                assert row[name] == expected[name], name
        for name in ("confidence", "latency_ms"):
            assert np.float32(row[name]) == np.float32(expected[name]), name
        for name in ("probs", "embedding"):
            np.testing.assert_array_equal(np.asarray(row[name], np.float32), expected[name])


def test_the_monitors_synthetic_log_has_the_service_schema(tmp_path: Path) -> None:
    import pandas as pd

    from monitor.log import write_log_file
    from stages.prediction_log import log_files, log_schema, read_log

    rows = pd.DataFrame({
        "ts": [pd.Timestamp(START), pd.Timestamp(START + timedelta(hours=1))],
        "request_id": ["r0", "r1"], "id": [None, "b"], "text": [None, "refund"],
        "text_sha256": ["0" * 64, "1" * 64], "label": ["a", "b"],
        "confidence": np.float32([0.6, 0.7]), "probs": [[0.6, 0.4], [0.3, 0.7]],
        "model_version": "v1", "latency_ms": np.float32(3.0), "truncated": [False, True],
        "n_tokens": [3, 4], "embedding": [None, [0.5, 0.25]]})
    written = write_log_file(tmp_path, rows)
    assert log_files(tmp_path) == written and len(written) == 2
    assert all(pq.read_schema(f).equals(log_schema()) for f in written)
    assert read_log(tmp_path).column("request_id").to_pylist() == ["r0", "r1"]
