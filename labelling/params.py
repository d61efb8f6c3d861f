"""``labelling:`` in params.yaml: which logged texts to label and where they wait for people."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from stages.common import NonNegativeInt, PositiveInt, params_section

if TYPE_CHECKING:
    from stages.dataset import IngestParams


@params_section("labelling")
@dataclass
class LabellingParams:
    strategy: Literal["random", "uncertainty", "novelty", "hybrid"] = "uncertainty"
    batch_size: PositiveInt = 50          # texts per labelling batch
    uncertainty: Literal["margin", "entropy"] = "margin"
    hybrid_candidates: PositiveInt = 5    # hybrid spreads a batch of n over the n x this most
    #                                       uncertain or novel texts
    window_hours: PositiveInt = 24        # select from this many hours of the prediction log
    log_dir: str = "logs/predictions"     # the service's prediction log (serve.log_dir)
    queue: str = "data/queue"             # selected batches waiting for labels (git-ignored)
    project: str = "retrainer"            # the Label Studio project's title
    seed: NonNegativeInt = 0


def repo_path(repo: Path, path: str) -> str:
    """``path`` from params.yaml as seen from ``repo`` (URLs and absolute paths unchanged)."""
    return path if "://" in path or Path(path).is_absolute() else str(repo / path)


def ingest_params(repo: Path) -> IngestParams:
    """``ingest:`` of ``repo``'s params.yaml, its paths resolved from ``repo`` (the commands may
    run from another directory than the checkout they read)."""
    from stages.common import load_params
    from stages.dataset import IngestParams

    params = load_params("ingest", IngestParams, repo / "params.yaml")
    params.source.texts = repo_path(repo, params.source.texts)
    params.source.labels = repo_path(repo, params.source.labels)
    params.imports = repo_path(repo, params.imports)
    return params
