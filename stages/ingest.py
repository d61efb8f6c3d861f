"""ingest: read the user's texts and labels (CSV, JSONL or Parquet; path or fsspec URL), plus
the label batches people imported (``ingest.imports``, see stages/dataset.py).

Writes data/raw/texts.parquet and data/labels/labels.parquet as two separate outputs, so that a
relabelling is a labels-only change that DVC (and the PR report) can see as such. Checks only what
makes the files unusable: readability, encoding, required columns, ids. Content checks (blank
texts, unknown labels, class balance, drift) belong to the validate stage.
"""

from __future__ import annotations

from stages import artifacts
from stages.common import get_logger, load_params, redact_url
from stages.dataset import IngestParams, build_dataset
from stages.io import write_parquet

log = get_logger(__name__)


def main() -> None:
    params = load_params("ingest", IngestParams)
    texts, labels, _ = build_dataset(params)
    log.info("read %d texts from %s and %d labels from %s", len(texts),
             redact_url(params.source.texts), len(labels), redact_url(params.source.labels))
    write_parquet(artifacts.RAW_TEXTS, texts)
    write_parquet(artifacts.LABELS, labels)
    log.info("wrote %s and %s", artifacts.RAW_TEXTS, artifacts.LABELS)


if __name__ == "__main__":
    from stages.stage_cli import run_stage

    run_stage(main, "stages.ingest", __doc__)
