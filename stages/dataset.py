"""The labelled dataset as ingest builds it: the user's source files plus the import batches.

Labels that come back from people are never edited into the source files: ``python -m
labelling.imports`` adds one new, append-only CSV per import under ``ingest.imports``
(``data/imports/`` by default; DVC hashes the directory as a dependency of ``ingest`` and git
keeps every batch, so each import is a new version of the data). A batch row is either

- a new text (an id not in the source): it adds the text and its label, or
- a correction (an id already there, with the same text): it replaces the label only, so the
  stable split keeps the row where it was.

Batches apply in file-name order (names start with the UTC time of the import), so a later
correction wins. A class an import accepted as new (``--accept-new-class``) trains only once it
has ``ingest.new_class_min_rows`` rows; labels are otherwise checked where every label is, in
validate.
ingest (the stage) and labelling.imports (the command) both build the dataset here, so the
command checks an import against exactly what the next ``dvc repro`` will train on.
More: docs/labelling.md.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from stages.artifacts import LABEL_COLUMNS, TEXT_COLUMNS
from stages.common import PositiveInt, StageError, get_logger, params_section, redact_url
from stages.data import normalise_text
from stages.input_checks import check_ids, check_label_spellings, select_columns
from stages.tables import read_table

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

# one import batch: what was labelled, by whom, when, and what the model had suggested
BATCH_COLUMNS = ("id", "text", "label", "annotator", "labelled_at", "suggested_label",
                 "suggested_score", "model_version", "origin", "new_class")
BATCH_REQUIRED = ["id", "text", "label", "annotator", "labelled_at", "new_class"]
BATCH_GLOB = "*.csv"


@dataclass
class Source:
    texts: str
    labels: str


@params_section("ingest")
@dataclass
class IngestParams:
    source: Source
    # texts without a label row: "drop" them with a warning, or "fail"
    unlabelled_texts: Literal["drop", "fail"] = "drop"
    # the directory of append-only label batches labelling.imports writes (a DVC dependency of
    # ingest, so it must exist; empty: no imports yet)
    imports: str = "data/imports"
    # a class that only imports brought waits for this many rows before it trains
    new_class_min_rows: PositiveInt = 10


def join_report(texts: pd.DataFrame, labels: pd.DataFrame, params: IngestParams) -> None:
    """Fail on labels without a text; drop or fail on texts without a label, per params."""
    orphan = ~labels["id"].isin(texts["id"])
    if orphan.any():
        raise StageError(
            f"labels: {int(orphan.sum())} label row(s) have no text with the same id, "
            f"e.g. {labels.loc[orphan, 'id'].head(5).tolist()}",
            where=redact_url(params.source.labels),
            fix="every label id must exist in the texts file; remove the rows or add the texts",
        )
    unlabelled = ~texts["id"].isin(labels["id"])
    if unlabelled.any():
        msg = (f"{int(unlabelled.sum())} text(s) have no label, "
               f"e.g. {texts.loc[unlabelled, 'id'].head(5).tolist()}")
        if params.unlabelled_texts == "fail":
            raise StageError(f"texts: {msg}", where=redact_url(params.source.texts),
                             fix="label them, or set ingest.unlabelled_texts: drop")
        log.warning("%s; they will be left out of the splits (ingest.unlabelled_texts: drop)", msg)


def read_source(params: IngestParams) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The source texts and labels, checked (columns, ids, spellings, joins), sorted by id."""
    texts_at, labels_at = redact_url(params.source.texts), redact_url(params.source.labels)
    texts = select_columns(read_table(params.source.texts, "texts"), TEXT_COLUMNS, "texts",
                           texts_at)
    labels = select_columns(read_table(params.source.labels, "labels"), LABEL_COLUMNS, "labels",
                            labels_at)
    check_ids(texts, "texts", texts_at)
    check_ids(labels, "labels", labels_at)
    check_label_spellings(labels, "labels", labels_at)
    join_report(texts, labels, params)
    return texts.sort_values("id", ignore_index=True), labels.sort_values("id", ignore_index=True)


# ---------------------------------------------------------------- import batches


def batch_files(imports: str | Path | None) -> list[Path]:
    """The import batches, oldest first (names start with the import's UTC time)."""
    if imports is None or not Path(imports).is_dir():
        return []
    return sorted(Path(imports).glob(BATCH_GLOB))


def read_batches(imports: str | Path | None) -> pd.DataFrame:
    """Every batch's rows, in order, with a ``batch`` column naming its file."""
    import pandas as pd

    frames = []
    for path in batch_files(imports):
        rows = read_table(str(path), "import batch")
        missing = [c for c in BATCH_REQUIRED if c not in rows.columns]
        if missing:
            raise StageError(f"import batch: column(s) {missing} missing", where=str(path),
                             fix="batches are written by `python -m labelling.imports`; restore "
                                 "this file from git (`git checkout -- <file>`)")
        rows = rows.reindex(columns=list(BATCH_COLUMNS)).astype("string")
        check_ids(rows, "import batch", str(path))
        frames.append(rows.assign(batch=path.name))
    if not frames:
        return pd.DataFrame(columns=[*BATCH_COLUMNS, "batch"], dtype="string")
    return pd.concat(frames, ignore_index=True)


def check_batch_texts(texts: pd.DataFrame, batches: pd.DataFrame) -> None:
    """A batch row for a known id must carry that id's text (a correction never moves a text)."""
    import pandas as pd

    known = batches.merge(texts[["id", "text"]], on="id", how="inner", suffixes=("", "_source"))
    if known.empty:
        return
    differs = [normalise_text(a) != normalise_text(b)
               for a, b in zip(known["text"], known["text_source"], strict=True)]
    bad = known[pd.Series(differs, index=known.index, dtype=bool)]
    if len(bad):
        first = bad.iloc[0]
        raise StageError(f"import batch {first['batch']}: {len(bad)} row(s) carry another text "
                         f"than the dataset for the same id, e.g. id {first['id']!r}",
                         where=f"{first['batch']} (id {first['id']})",
                         fix="an id names one text forever: give a new text a new id")


def apply_batches(texts: pd.DataFrame, labels: pd.DataFrame, batches: pd.DataFrame,
                  new_class_min_rows: int) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """Source texts and labels with the batches applied; also the held-back new classes
    ({label: rows so far})."""
    import pandas as pd

    if batches.empty:
        return texts, labels, {}
    check_batch_texts(texts, batches)
    source_classes = set(labels["label"].dropna())
    accepted = set(batches.loc[batches["new_class"].str.lower() == "true", "label"])
    latest = batches.drop_duplicates("id", keep="last")
    new_texts = latest.loc[~latest["id"].isin(texts["id"]), ["id", "text"]]
    texts = pd.concat([texts, new_texts.astype("string")], ignore_index=True)
    labels = pd.concat([labels[~labels["id"].isin(latest["id"])],
                        latest[["id", "label", "annotator"]].astype("string")], ignore_index=True)
    counts = labels["label"].value_counts()
    held = {c: int(counts.get(c, 0)) for c in sorted(accepted - source_classes)
            if counts.get(c, 0) < new_class_min_rows}
    if held:
        labels = labels[~labels["label"].isin(held)]
    return (texts.sort_values("id", ignore_index=True),
            labels.sort_values("id", ignore_index=True), held)


def build_dataset(params: IngestParams) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
    """What ingest writes: the source with every import batch applied, and the new classes
    held back until they have ``new_class_min_rows`` rows."""
    texts, labels = read_source(params)
    batches = read_batches(params.imports)
    texts, labels, held = apply_batches(texts, labels, batches, params.new_class_min_rows)
    if len(batches):
        log.info("applied %d import batch(es) from %s: %d row(s)", batches["batch"].nunique(),
                 params.imports, len(batches))
    for label, rows in held.items():
        log.warning("new class %r has %d of the %d rows it needs to train "
                    "(ingest.new_class_min_rows): held back until more are labelled", label, rows,
                    params.new_class_min_rows)
    return texts, labels, held
