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
        # the second text is out of scope, answered with the detector's null label
        flags, scores = np.array([False, True]), np.array([0.125, 0.75 + i])
        labels = [f"class{probs[0].argmax()}", None]
        writer.append(ts, f"req-{i}", ids, texts, labels, probs, "abc-123", 4.5, [i == 1, False],
                      [7, 2], embedding, flags, scores)
        sent += [{"ts": ts, "request_id": f"req-{i}", "id": ids[k], "text": texts[k],
                  "text_sha256": text_sha256(texts[k]), "label": labels[k],
                  "confidence": probs[k].max(), "probs": probs[k], "model_version": "abc-123",
                  "latency_ms": 4.5, "truncated": [i == 1, False][k], "n_tokens": [7, 2][k],
                  "embedding": embedding[k], "out_of_scope": flags[k], "oos_score": scores[k]}
                 for k in range(2)]
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
                     "truncated", "n_tokens", "out_of_scope"):
            if expected[name] is None:  # a null (pandas reads a null string as NaN)
                assert pd.isna(row[name]), name
            else:
                assert row[name] == expected[name], name
        for name in ("confidence", "latency_ms", "oos_score"):
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
    written = write_log_file(tmp_path, rows)  # no out-of-scope columns: written as nulls
    assert log_files(tmp_path) == written and len(written) == 2
    assert all(pq.read_schema(f).equals(log_schema()) for f in written)
    table = read_log(tmp_path)
    assert table.column("request_id").to_pylist() == ["r0", "r1"]
    assert table.column("out_of_scope").to_pylist() == [None, None]


def test_a_log_written_before_out_of_scope_detection_still_reads(tmp_path: Path) -> None:
    """Files of the 13-column schema (label never null, no out_of_scope/oos_score) beside new
    ones: the reader takes both, the old rows with null flags, and the monitor's out-of-scope
    share is over the rows that logged a flag."""
    import pyarrow as pa

    from monitor.log import read_window
    from serve.metrics import ServeMetrics
    from serve.predlog import PredictionLog
    from stages.prediction_log import log_schema, partition_dir, read_log, write_part

    old_fields = [f.with_nullable(False) if f.name == "label" else f for f in log_schema()
                  if f.name not in ("out_of_scope", "oos_score")]
    old_row = {"ts": START, "request_id": "old", "id": None, "text": "refund", "text_sha256": "0" * 64,
               "label": "class0", "confidence": 0.9, "probs": [0.9, 0.1], "model_version": "v0",
               "latency_ms": 2.0, "truncated": False, "n_tokens": 3, "embedding": None}
    write_part(partition_dir(tmp_path, START), pa.Table.from_pylist([old_row],
                                                                    schema=pa.schema(old_fields)))
    window = read_window(tmp_path, START - timedelta(hours=1), START + timedelta(hours=1), 2)
    assert len(window) == 1 and window.out_of_scope() is None  # no flags at all: unavailable

    writer = PredictionLog(tmp_path, log_text=False, flush_every=100, flush_interval_s=60.0,
                           metrics=ServeMetrics())
    probs = np.float32([[0.2, 0.8], [0.5, 0.5], [0.6, 0.4]])
    writer.append(START + timedelta(seconds=1), "new", [None] * 3, ["a", "b", "c"],
                  ["class1", "out_of_scope", None], probs, "v1", 3.0, [False] * 3, [3] * 3, None,
                  np.array([False, True, True]), np.array([0.1, 0.9, 0.95]))
    assert writer.flush() == 3
    table = read_log(tmp_path).to_pylist()
    assert [r["out_of_scope"] for r in table] == [None, False, True, True]
    assert [r["label"] for r in table] == ["class0", "class1", "out_of_scope", None]
    window = read_window(tmp_path, START - timedelta(hours=1), START + timedelta(hours=1), 2)
    assert window.out_of_scope().tolist() == [False, True, True]
