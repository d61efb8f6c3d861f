"""The validation catalogue: params.yaml's ``validate`` section turned into named checks.

Great Expectations validates one table per suite with built-in, per-row or per-table
expectations. Checks that span tables (label rows joining texts, conflicting labels, leakage
between splits, drift) are therefore computed here as plain columns of small derived tables
("frames"), and a built-in expectation asserts on that column. Every frame has an ``id`` column,
so every failure reports row ids, and every check has a stable name (``texts.text_not_blank``)
that params use to turn it into a warning, tests assert on, and the summary prints.

No Great Expectations import here: this module is pure pandas, cheap to import and to test.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal

from stages import artifacts
from stages.artifacts import LABEL_COLUMNS, SPLIT_COLUMNS, SPLIT_NAMES, TEXT_COLUMNS
from stages.common import (
    NonNegativeFloat,
    NonNegativeInt,
    PositiveFloat,
    Share,
    StageError,
    params_section,
)
from stages.data import normalise_text

if TYPE_CHECKING:
    import pandas as pd


@dataclass
class Bounds:
    min: NonNegativeFloat
    max: PositiveFloat

    def check_params(self, where: str) -> None:
        if self.min > self.max:
            raise StageError(f"min {self.min} is above max {self.max}", where=where,
                             fix="set min <= max, e.g. {min: 2, max: 5000}")


@dataclass
class ClassShare:
    # a class's share of the rows, relative to the share it would have if all classes were equal
    # (1 / number of classes): the same default fits 3 classes and 200. These relative shares
    # average exactly 1, so a floor above 1 fails every dataset: a params error, not a data one
    min_vs_uniform: Share = 0.2


@dataclass
class Drift:
    label_js_max: Share = 0.1          # Jensen-Shannon divergence (base 2, 0..1) of class shares
    text_length_ks_max: Share = 0.25   # Kolmogorov-Smirnov statistic of text lengths (0..1)


@params_section("validate")
@dataclass
class ValidateParams:
    # declared label set; empty: the champion's labels.json, or (no champion) the observed set
    labels: list[str] = field(default_factory=list)
    unlabelled_texts: Literal["drop", "fail"] = "drop"   # drop: a warning; fail: blocking
    text_length: Bounds = field(default_factory=lambda: Bounds(2, 5000))  # characters
    min_rows: NonNegativeInt = 50                  # labelled rows
    min_rows_per_class: NonNegativeInt = 10
    class_share: ClassShare = field(default_factory=ClassShare)
    max_conflicting_share: Share = 0.0  # share of rows whose normalised text has 2+ labels
    reference_profile: str = str(artifacts.REFERENCE_PROFILE)  # drift reference without a champion
    drift: Drift = field(default_factory=Drift)
    warn_only: list[str] = field(default_factory=list)  # check names that only warn


@dataclass
class Check:
    """One named check: a GX expectation (class name + kwargs) on one frame."""

    name: str
    frame: str
    expectation: str
    kwargs: dict[str, Any]
    description: str
    blocking: bool = True
    show: str | None = None  # column whose value the summary prints beside each failing id


def _checks_for_table(table: str, df: pd.DataFrame, columns: dict[str, list[str]]) -> list[Check]:
    """Schema, type, null and uniqueness checks shared by the texts and labels tables."""
    value_col = columns["required"][1]
    checks = [Check(f"{table}.columns", table, "ExpectTableColumnsToMatchSet",
                    {"column_set": columns["required"], "exact_match": False},
                    f"{table} has the required columns {columns['required']}")]
    for col in columns["required"] + columns["optional"]:
        if col in df.columns:
            checks.append(Check(f"{table}.types", table, "ExpectColumnValuesToBeOfType",
                                {"column": col, "type_": "str"}, f"{table}.{col} holds strings"))
    if "id" in df.columns:
        checks += [
            Check(f"{table}.id_not_null", table, "ExpectColumnValuesToNotBeNull",
                  {"column": "id"}, f"every {table} row has an id", show=value_col),
            Check(f"{table}.id_unique", table, "ExpectColumnValuesToBeUnique",
                  {"column": "id"}, f"{table} ids are unique", show=value_col),
        ]
    if value_col in df.columns:
        checks.append(Check(f"{table}.{value_col}_not_null", table, "ExpectColumnValuesToNotBeNull",
                            {"column": value_col}, f"every {table} row has a {value_col}"))
    return checks


def _as_object(series: pd.Series) -> pd.Series:
    """Arrow-backed strings are slow in isin/map with 100k keys; plain objects are not."""
    return series.set_axis(series.index.astype(object)).astype(object)


def raw_frames(texts: pd.DataFrame, labels: pd.DataFrame) -> dict[str, pd.DataFrame]:
    """The tables the raw-data suites run on, with the cross-table facts as columns."""
    import pandas as pd

    texts, labels = texts.copy(), labels.copy()
    frames: dict[str, pd.DataFrame] = {}
    if "text" in texts.columns:
        # the one normaliser (stages.data): blank under it means no content at all (only
        # whitespace, zero-width or direction marks, control characters or punctuation)
        texts["_normalised"] = texts["text"].astype(object).map(
            lambda t: normalise_text(t) if isinstance(t, str) else None)
    if {"id", "label"} <= set(labels.columns):
        first_label = labels.dropna(subset=["id"]).drop_duplicates("id").set_index("id")["label"]
        if "id" in texts.columns:
            texts["_label"] = texts["id"].astype(object).map(_as_object(first_label))
    if {"id", "text"} <= set(texts.columns):
        first_text = texts.dropna(subset=["id"]).drop_duplicates("id").set_index("id")["text"]
        if "id" in labels.columns:
            labels["_text_found"] = labels["id"].astype(object).isin(
                set(first_text.index.astype(object)))
    frames["texts"], frames["labels"] = texts, labels
    if "_label" in texts.columns and "_text_found" in labels.columns:
        rec = texts.dropna(subset=["id"]).drop_duplicates("id")[["id", "text", "_normalised"]]
        rec = rec.merge(first_label.rename("label").reset_index(), on="id", how="inner")
        rec = rec.dropna(subset=["text", "label"]).reset_index(drop=True)
        rec["_conflicting_labels"] = _values_elsewhere(rec.pop("_normalised"), rec["label"], " | ")
        frames["records"] = rec
        counts = rec["label"].value_counts().sort_index()
        frames["classes"] = pd.DataFrame({
            "id": counts.index.astype(str), "rows": counts.to_numpy(),
            "share": (counts / max(len(rec), 1)).to_numpy(),
            "share_vs_uniform": (counts * len(counts) / max(len(rec), 1)).to_numpy()})
    return frames


def raw_checks(params: ValidateParams, frames: dict[str, pd.DataFrame], label_set: list[str] | None,
               drift: dict[str, Any] | None) -> list[Check]:
    """Every check of the raw data, built from params; ``warn_only`` applied."""
    texts, labels = frames["texts"], frames["labels"]
    checks = _checks_for_table("texts", texts, TEXT_COLUMNS)
    if "text" in texts.columns:
        lo, hi = int(params.text_length.min), int(params.text_length.max)
        checks += [
            Check("texts.text_not_blank", "texts", "ExpectColumnValuesToNotMatchRegex",
                  {"column": "_normalised", "regex": r"^$"},
                  "text is not blank after normalisation (whitespace, zero-width and direction "
                  "marks, control characters and punctuation removed)", show="text"),
            Check("texts.text_length", "texts", "ExpectColumnValueLengthsToBeBetween",
                  {"column": "text", "min_value": lo, "max_value": hi},
                  f"text length within [{lo}, {hi}] characters (validate.text_length)"),
        ]
    if "_label" in texts.columns:
        checks.append(Check("texts.unlabelled", "texts", "ExpectColumnValuesToNotBeNull",
                            {"column": "_label"},
                            "every text has a label row (validate.unlabelled_texts: "
                            f"{params.unlabelled_texts})", show="text",
                            blocking=params.unlabelled_texts == "fail"))
    checks += _checks_for_table("labels", labels, LABEL_COLUMNS)
    if "_text_found" in labels.columns:
        checks.append(Check("labels.joins_text", "labels", "ExpectColumnValuesToBeInSet",
                            {"column": "_text_found", "value_set": [True]},
                            "every label row joins to a text with the same id", show="label"))
    if label_set is not None and "label" in labels.columns:
        checks.append(Check("labels.label_set", "labels", "ExpectColumnValuesToBeInSet",
                            {"column": "label", "value_set": sorted(label_set)},
                            f"label in the known label set {sorted(label_set)}"))
    if "records" in frames:
        share = params.max_conflicting_share
        checks += [
            Check("data.row_count", "records", "ExpectTableRowCountToBeBetween",
                  {"min_value": params.min_rows},
                  f"at least {params.min_rows} labelled texts (validate.min_rows)"),
            Check("data.conflicting_labels", "records", "ExpectColumnValuesToBeNull",
                  {"column": "_conflicting_labels", "mostly": 1.0 - share},
                  f"the same normalised text never carries two labels (tolerated share {share})",
                  show="text"),
            Check("classes.count", "classes", "ExpectTableRowCountToBeBetween",
                  {"min_value": 2},
                  "at least 2 classes: a classifier learns to tell classes apart, and a single "
                  "class leaves nothing to learn (add labelled texts of the other classes)"),
            Check("classes.min_rows", "classes", "ExpectColumnValuesToBeBetween",
                  {"column": "rows", "min_value": params.min_rows_per_class},
                  f"every class has at least {params.min_rows_per_class} rows"),
            Check("classes.share", "classes", "ExpectColumnValuesToBeBetween",
                  {"column": "share_vs_uniform", "min_value": params.class_share.min_vs_uniform},
                  f"every class has at least {params.class_share.min_vs_uniform}x the share it "
                  "would have if all classes were equal (validate.class_share.min_vs_uniform)"),
        ]
    if drift is not None:
        checks += [
            Check("drift.label_distribution", "drift", "ExpectColumnValuesToBeBetween",
                  {"column": "label_js_divergence", "max_value": params.drift.label_js_max},
                  "label distribution Jensen-Shannon divergence from the reference at most "
                  f"{params.drift.label_js_max}"),
            Check("drift.text_length", "drift", "ExpectColumnValuesToBeBetween",
                  {"column": "text_length_ks", "max_value": params.drift.text_length_ks_max},
                  "text length Kolmogorov-Smirnov statistic against the reference at most "
                  f"{params.drift.text_length_ks_max}"),
        ]
    return apply_warn(checks, params.warn_only)


def split_frames(splits: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """One row per split row with leakage columns, and one row per class with missing splits."""
    import pandas as pd

    rows = pd.concat([df[SPLIT_COLUMNS].assign(split=name) for name, df in splits.items()],
                     ignore_index=True)
    rows["_normalised"] = rows["text"].map(normalise_text)
    for col, key in (("_exact_leak", "text"), ("_normalised_leak", "_normalised")):
        rows[col] = _values_elsewhere(rows[key], rows["split"], ",")
    present = rows.groupby("label")["split"].agg(set)
    classes = pd.DataFrame({"id": present.index.astype(str)})
    missing = [",".join(n for n in SPLIT_NAMES if n in splits and n not in s) for s in present]
    classes["_missing_from"] = pd.Series(missing, dtype=object).where(
        pd.Series(missing, dtype=object) != "")
    return {"splits": rows, "split_classes": classes}


def _values_elsewhere(key: pd.Series, value: pd.Series, sep: str) -> pd.Series:
    """Per row: the distinct values its key group carries when there are 2+, else null.

    Only the (few) groups with several values are joined in Python, so 100k rows stay fast.
    """
    key, value = key.astype(object), value.astype(object)
    n_values = value.groupby(key.to_numpy()).nunique()
    hit = key.isin(set(n_values.index[n_values > 1]))
    joined = value[hit].groupby(key[hit].to_numpy()).agg(lambda s: sep.join(sorted(set(s))))
    return key.map(joined).astype(object).where(hit, None)


def split_checks(params: ValidateParams) -> list[Check]:
    checks = [
        Check("splits.exact_leakage", "splits", "ExpectColumnValuesToBeNull",
              {"column": "_exact_leak"}, "no identical text in two splits", show="text"),
        Check("splits.normalised_leakage", "splits", "ExpectColumnValuesToBeNull",
              {"column": "_normalised_leak"},
              "no text in two splits after normalisation (NFKC, zero-width and control "
              "characters removed, punctuation and whitespace runs collapsed, case-folded)",
              show="text"),
        Check("splits.class_coverage", "split_classes", "ExpectColumnValuesToBeNull",
              {"column": "_missing_from"}, "every class is present in every split"),
        Check("splits.class_count", "split_classes", "ExpectTableRowCountToBeBetween",
              {"min_value": 2}, "the splits hold at least 2 classes"),
    ]
    return apply_warn(checks, params.warn_only)


def apply_warn(checks: list[Check], warn: list[str]) -> list[Check]:
    """Checks named in ``validate.warn_only`` only warn (the names are checked in validate.py)."""
    for check in checks:
        if check.name in warn:
            check.blocking = False
    return checks


RAW_CHECK_NAMES = [
    "texts.columns", "texts.types", "texts.id_not_null", "texts.id_unique", "texts.text_not_null",
    "texts.text_not_blank", "texts.text_length", "texts.unlabelled", "labels.columns",
    "labels.types", "labels.id_not_null", "labels.id_unique", "labels.label_not_null",
    "labels.joins_text", "labels.label_set", "data.row_count", "data.conflicting_labels",
    "classes.count", "classes.min_rows", "classes.share", "drift.label_distribution",
    "drift.text_length",
]
SPLIT_CHECK_NAMES = ["splits.exact_leakage", "splits.normalised_leakage", "splits.class_coverage",
                     "splits.class_count"]
