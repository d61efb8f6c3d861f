"""The ``oos`` section of params.yaml: how out-of-scope texts are found, in a module of its own.

The ``oos`` stage reads all of it; train and validate read only ``label`` and ``train_as_class``
(which rows are out-of-scope examples), so a new method or threshold target never re-runs
training. More: docs/out_of_scope.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Literal

from stages.common import PositiveInt, Range, StageError, get_logger, params_section

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)


@params_section("oos")
@dataclass
class OosParams:
    # msp | energy | mahalanobis | knn: the score that decides (stages/oos_detector.py); every
    # method's threshold is fitted and evaluated, so the PR report compares them
    method: Literal["msp", "energy", "mahalanobis", "knn"] = "knn"
    # the threshold keeps this share of in-scope val texts in scope
    keep_in_scope: Annotated[float, Range(gt=0, lt=1)] = 0.95
    # rows labelled this are out-of-scope examples, and an out-of-scope answer carries it
    # (null: the answer's label is null, and no row is an out-of-scope example)
    label: str | None = "out_of_scope"
    train_as_class: bool = False      # true: train learns `label` as one more class
    knn_k: PositiveInt = 1            # knn: distance to the k-th nearest training text
    knn_bank_rows: PositiveInt = 20000  # training embeddings kept for knn (a seeded sample beyond)
    batch_size: PositiveInt = 128
    seed: int = 0

    def check_params(self, where: str) -> None:
        if self.label is not None and not self.label.strip():
            raise StageError("oos.label is empty", where=f"{where}.label",
                             fix="name the out-of-scope label (e.g. out_of_scope), or null")


def check_label_collision(params: OosParams, classes: list[str] | None, source: str) -> None:
    """oos.label must not be one of the classes the model is meant to learn, unless out-of-scope
    examples are trained as a class: its rows would be left out of training."""
    if params.label is None or params.train_as_class or not classes:
        return
    if params.label in classes:
        raise StageError(f"oos.label {params.label!r} is also a class of the {source}: its rows "
                         "would be left out of training as out-of-scope examples",
                         where="params.yaml:oos.label",
                         fix="name out-of-scope examples with a label no class uses, or set "
                             "oos.train_as_class: true to learn them as a class")


def drop_out_of_scope_rows(frame: pd.DataFrame, params: OosParams, what: str) -> pd.DataFrame:
    """``frame`` without its out-of-scope examples, unless they are trained as a class."""
    if params.label is None or params.train_as_class:
        return frame
    oos = frame["label"] == params.label
    if oos.any():
        log.info("%s: %d row(s) labelled %r are out-of-scope examples, left out (they set the "
                 "out-of-scope threshold; oos.train_as_class: true learns them)", what,
                 int(oos.sum()), params.label)
    return frame[~oos].reset_index(drop=True)
