"""validate: Great Expectations guards the data, so bad data never reaches training.

``python -m stages.validate`` checks raw texts and labels against the suites from params.yaml's
``validate`` (stages/expectations.py) and for drift, writes reports/validation/raw/, and writes
metrics/data.json only when no blocking check failed. ``python -m stages.validate --splits``
checks the splits. GX is imported inside :func:`run_suites` only.
More: docs/validation.md.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from stages import artifacts
from stages.artifacts import SPLIT_NAMES, data_profile, split_path
from stages.common import StageError, get_logger, load_params, run_cli
from stages.drift_stats import aligned_counts, js_divergence, ks_statistic
from stages.expectations import (
    RAW_CHECK_NAMES,
    SPLIT_CHECK_NAMES,
    SPLIT_COLUMNS,
    Check,
    ValidateParams,
    raw_checks,
    raw_frames,
    split_checks,
    split_frames,
)
from stages.io import atomic_path, read_json, read_parquet, write_json
from stages.oos_params import OosParams, check_label_collision
from stages.report_format import md_table
from stages.validation_report import Outcome, Report, report_html

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

EXAMPLES = 5
INGEST_FIX = "run `dvc repro ingest` first"
RESULT_FORMAT = {"result_format": "SUMMARY", "partial_unexpected_count": 20,
                 "unexpected_index_column_names": ["id"]}


# ---------------------------------------------------------------- profile and drift


def drift_scores(current: dict[str, Any], reference: dict[str, Any]) -> dict[str, float | None]:
    """The data's drift from the last accepted profile: class mix (Jensen-Shannon), text lengths
    (Kolmogorov-Smirnov) and the median length's relative change."""
    cur_med = current["text_length"]["quantiles"]["p50"]
    ref_med = reference["text_length"]["quantiles"]["p50"]
    classes = aligned_counts(current["classes"], reference["classes"])
    lengths = aligned_counts(current["text_length"]["counts"], reference["text_length"]["counts"],
                             order=int)
    return {
        "label_js_divergence": round(js_divergence(*classes), 6),
        "text_length_ks": round(ks_statistic(*lengths), 6),
        "text_length_median_change": round((cur_med - ref_med) / ref_med, 6)
        if cur_med is not None and ref_med else None,
    }


# ---------------------------------------------------------------- inputs


def resolve_label_set(params: ValidateParams,
                      champion: Path | None) -> tuple[list[str] | None, str]:
    """The known labels and where they came from: params, the champion, or none (first run)."""
    if params.labels:
        return sorted(params.labels), "params (validate.labels)"
    if champion is not None:
        path = champion / "labels.json"
        if not path.is_file():
            absent = not champion.is_dir()
            raise StageError(f"the champion ({champion}) is not in this workspace, though "
                             f"{artifacts.CHAMPION_POINTER} names it" if absent else
                             "the champion has no labels.json", where=str(path),
                             fix=artifacts.restore_fix(champion) + ("" if absent else
                                 "; or set validate.labels in params.yaml"))
        labels = read_json(path)
        labels = labels.get("labels", labels) if isinstance(labels, dict) else labels
        return sorted(str(x) for x in labels), f"champion ({path})"
    return None, "observed (no validate.labels and no champion: the classes in the data accepted)"


def resolve_reference(params: ValidateParams,
                      champion: Path | None) -> tuple[dict | None, str | None]:
    """The last accepted data profile: the champion's, else validate.reference_profile."""
    candidates = [champion / artifacts.PROFILE_FILE] if champion is not None else []
    candidates.append(Path(params.reference_profile))
    for path in candidates:
        if path.is_file():
            return read_json(path), str(path)
    return None, None


def check_warn_names(params: ValidateParams) -> None:
    unknown = sorted(set(params.warn_only) - set(RAW_CHECK_NAMES) - set(SPLIT_CHECK_NAMES))
    if unknown:
        raise StageError(f"validate.warn_only names unknown check(s) {unknown}",
                         where="params.yaml:validate.warn_only",
                         fix=f"use names from {RAW_CHECK_NAMES + SPLIT_CHECK_NAMES}")


# ---------------------------------------------------------------- running GX


def run_suites(frames: dict[str, pd.DataFrame], checks: list[Check],
               prefix: str) -> tuple[list[Outcome], dict[str, Any]]:
    """Run one GX suite per frame (a checkpoint each).

    GX's own Data Docs are not built: they write failing values into HTML unescaped (a text
    ``<script>...</script>`` would run in the reviewer's browser) and load their CSS and scripts
    from a CDN (a blank page offline). stages/validation_report.py writes the HTML instead.
    """
    os.environ.setdefault("GX_ANALYTICS_ENABLED", "False")
    import great_expectations as gx
    from great_expectations.data_context.types.base import ProgressBarsConfig
    from tqdm import tqdm

    outcomes: list[Outcome] = []
    results: dict[str, Any] = {}
    order = list(dict.fromkeys(c.frame for c in checks))
    # an ephemeral context: nothing of GX's own config is written
    ctx = gx.get_context(mode="ephemeral")
    ctx.variables.progress_bars = ProgressBarsConfig(globally=False)
    source = ctx.data_sources.add_pandas("retrainer")
    for frame in tqdm(order, desc="suites", unit="suite", disable=None):
        mine = [c for c in checks if c.frame == frame]
        suite = ctx.suites.add(gx.ExpectationSuite(name=f"{prefix}.{frame}"))
        for c in mine:
            suite.add_expectation(getattr(gx.expectations, c.expectation)(
                **c.kwargs, description=c.description,
                severity="critical" if c.blocking else "warning",
                meta={"check": c.name, "blocking": c.blocking}))
        batch = source.add_dataframe_asset(frame).add_batch_definition_whole_dataframe("all")
        vd = ctx.validation_definitions.add(
            gx.ValidationDefinition(name=suite.name, data=batch, suite=suite))
        cp = ctx.checkpoints.add(gx.Checkpoint(name=suite.name, validation_definitions=[vd],
                                               result_format=RESULT_FORMAT))
        run = cp.run(batch_parameters={"dataframe": frames[frame]})
        for vr in run.run_results.values():
            results[suite.name] = vr.to_json_dict()
            by_name = {c.name: c for c in mine}
            for r in vr.results:
                outcomes.append(_outcome(r, by_name[r.expectation_config.meta["check"]],
                                         frames[frame]))
    rank = {c.name: i for i, c in enumerate(checks)}
    outcomes.sort(key=lambda o: rank[o.check])
    return outcomes, results


def _outcome(r: Any, check: Check, frame: pd.DataFrame) -> Outcome:
    cfg = r.expectation_config
    res = dict(r.result or {})
    kind, col = cfg.type, cfg.kwargs.get("column")
    where = f"{check.frame}.{col}" if col else check.frame
    out = Outcome(check.name, kind, check.frame, check.blocking, bool(r.success), "")
    error = (r.exception_info or {}).get("exception_message") if r.exception_info else None
    if error or (not r.success and not res):
        out.message = f"{kind} on {where} could not run: {error or r.exception_info}"
    elif "unexpected_count" in res:
        out.unexpected_count = int(res["unexpected_count"])
        out.examples = _examples(res, col, check.show, frame)
        rows = "class(es)" if check.frame in ("classes", "split_classes") else "row(s)"
        out.message = (f"{kind} on {where}: {out.unexpected_count} of {res.get('element_count')} "
                       f"{rows} unexpected")
    elif kind == "expect_table_columns_to_match_set":
        missing = res.get("details", {}).get("mismatched", {}).get("missing", [])
        found = [c for c in res.get("observed_value") or [] if not str(c).startswith("_")]
        out.message = f"{kind} on {where}: missing column(s) {missing}; found {found}"
    elif kind == "expect_column_values_to_be_of_type":
        out.message = f"{kind} on {where}: dtype {res.get('observed_value')}, expected strings"
    else:
        out.message = f"{kind} on {where}: observed {res.get('observed_value')}"
        if not r.success:  # a bare count says little: say what was expected, and why
            out.message += f"; expected {check.description}"
    return out


def _examples(res: dict, col: str | None, show: str | None, frame: pd.DataFrame) -> list:
    """Up to 5 (id, value) pairs for a failing per-row expectation."""
    rows = res.get("partial_unexpected_index_list") or []
    lookup = None
    if show and "id" in frame.columns and show in frame.columns:
        lookup = frame.dropna(subset=["id"]).drop_duplicates("id").set_index("id")[show]
    pairs, seen = [], set()
    for row in rows:
        if not isinstance(row, dict):
            continue
        rid = row.get("id")
        value = row.get(col) if col else None
        if lookup is not None and rid in lookup.index:
            value = lookup[rid]
        if (rid, str(value)) in seen:
            continue
        seen.add((rid, str(value)))
        pairs.append((rid, value))
        if len(pairs) == EXAMPLES:
            break
    return pairs


# ---------------------------------------------------------------- reports


def _short(value: Any, width: int = 60) -> str:
    text = repr(value) if not isinstance(value, float) else f"{value:.4g}"
    return text if len(text) <= width else text[: width - 3] + "..."


def outcome_line(o: Outcome) -> str:
    status = "PASS" if o.success else ("FAIL" if o.blocking else "WARN")
    line = f"{status} {o.check}: {o.message}"
    if o.examples and not o.success:
        line += "; e.g. " + ", ".join(f"{i}={_short(v)}" for i, v in o.examples)
    return line


def human_summary(report: Report, out_dir: Path) -> str:
    """The few lines a person reads first: what failed, how many rows, which ids."""
    verdict = "FAILED" if report.failed else "passed"
    lines = [f"data validation {verdict}: {len(report.failed_checks)} blocking check(s) failed, "
             f"{len(report.warned_checks)} warning(s), {len(report.outcomes)} expectations"]
    lines += ["  " + outcome_line(o) for o in report.failed + report.warnings]
    lines += [f"  note: {n}" for n in report.notes]
    lines.append(f"  full results: {out_dir / 'results.json'}; report: "
                 f"{out_dir / artifacts.VALIDATION_REPORT_HTML}")
    return "\n".join(lines)


def markdown_literal(text: str) -> str:
    """Text that renders as itself in markdown: no HTML, no formatting, no mentions (in a table,
    md_table escapes the pipes)."""
    import html

    text = html.escape(" ".join(text.split()), quote=False)
    for ch in "`*_[]@!#~":
        text = text.replace(ch, "\\" + ch)
    return text


def summary_markdown(report: Report, title: str) -> str:
    verdict = "FAILED" if report.failed else "passed"
    lines = [f"# {title}: {verdict}", "",
             f"{len(report.failed_checks)} blocking check(s) failed, {len(report.warned_checks)} "
             f"warning(s), {len(report.outcomes)} expectations evaluated. Full results: "
             f"`results.json`; report: `{artifacts.VALIDATION_REPORT_HTML}`.", ""]
    if report.notes:
        lines += [f"- {markdown_literal(n)}" for n in report.notes] + [""]
    rows = [(f"`{o.check}`", "pass" if o.success else ("**FAIL**" if o.blocking else "warn"),
             "yes" if o.blocking else "no", markdown_literal(outcome_line(o).split(": ", 1)[1]))
            for o in report.outcomes]
    lines += md_table(["check", "result", "blocking", "details"], rows, align="llll")
    return "\n".join(lines) + "\n"


# GX stamps every run with ids and times: left out of results.json, so the same data gives the
# same bytes (and the same dvc.lock).
VOLATILE_RESULT_KEYS = {"id", "run_id", "run_time", "validation_time", "ge_load_time",
                        "checkpoint_id", "validation_id"}


def stable_results(obj: Any) -> Any:
    """``obj`` without GX's per-run ids and timestamps, recursively."""
    if isinstance(obj, dict):
        return {k: stable_results(v) for k, v in obj.items() if k not in VOLATILE_RESULT_KEYS}
    if isinstance(obj, list):
        return [stable_results(v) for v in obj]
    return obj


def write_reports(out_dir: Path, title: str, report: Report) -> None:
    """Write results.json, summary.md and report.html as one atomic directory.

    All three are DVC outputs and deterministic (no run ids or times), so the same data gives the
    same bytes. report.html is the page a reviewer opens: self-contained, every value escaped.
    """
    with atomic_path(out_dir) as tmp:
        tmp.mkdir()
        payload = {"success": not report.failed, "failed": report.failed_checks,
                   "warnings": report.warned_checks, "notes": report.notes,
                   "validations": stable_results(report.results)}
        (tmp / "results.json").write_text(json.dumps(payload, indent=2, default=str) + "\n",
                                          encoding="utf-8")
        (tmp / "summary.md").write_text(summary_markdown(report, title), encoding="utf-8")
        (tmp / artifacts.VALIDATION_REPORT_HTML).write_text(report_html(report, title), encoding="utf-8")


def _finish(report: Report, out_dir: Path) -> None:
    summary = human_summary(report, out_dir)
    if report.failed:
        print(summary, file=sys.stderr)
        raise StageError(
            f"{len(report.failed_checks)} blocking data check(s) failed: "
            f"{', '.join(report.failed_checks)}",
            where=str(out_dir / "summary.md"),
            fix="fix the data at its source and re-run `dvc repro`; to accept a check's failures "
            "as warnings, add its name to validate.warn_only in params.yaml",
        )
    for line in summary.splitlines():
        log.info("%s", line.strip())


# ---------------------------------------------------------------- the two validations


class RawValidation(NamedTuple):
    """What validating the raw data found: the report, and metrics/data.json's content."""

    report: Report
    metrics: dict[str, Any]


def validate_raw(texts: pd.DataFrame, labels: pd.DataFrame, params: ValidateParams,
                 champion: Path | None, oos: OosParams | None = None) -> RawValidation:
    """Validate raw texts + labels; the caller writes the reports and the metrics.

    Rows labelled ``oos.label`` are out-of-scope examples, not a new class: with a known label set
    they are accepted beside it, and that label may not also be one of its classes."""
    check_warn_names(params)
    label_set, label_source = resolve_label_set(params, champion)
    oos = oos or OosParams()
    check_label_collision(oos, label_set, f"known label set ({label_source})")
    accepted = label_set
    if label_set is not None and oos.label is not None and oos.label not in label_set:
        accepted = sorted([*label_set, oos.label])
    frames = raw_frames(texts, labels)
    notes = [f"label set: {label_source}"]
    profile = data_profile(texts, labels) if "records" in frames else None
    reference, ref_path = resolve_reference(params, champion)
    drift: dict[str, Any] = {"reference": ref_path}
    if profile is not None and reference is not None:
        drift.update(drift_scores(profile, reference))
        frames["drift"] = _drift_frame(drift)
        notes.append(f"drift measured against {ref_path}")
    else:
        drift["note"] = ("no reference profile, drift not checked" if reference is None
                         else "drift not checked: the data could not be joined")
        notes.append(drift["note"] + f" (looked for: {params.reference_profile}"
                     + (f", {champion / artifacts.PROFILE_FILE}" if champion else "") + ")")
    checks = raw_checks(params, frames, accepted, drift if "drift" in frames else None)
    outcomes, results = run_suites(frames, checks, "raw")
    report = Report(outcomes, notes, results)
    new = []
    if label_set is not None and "label" in labels.columns:
        new = sorted(set(labels["label"].dropna().astype(str)) - set(accepted))
        if new:
            report.notes.append(f"NEW CLASS(ES) not in the known label set: {new}")
    metrics = _metrics(texts, labels, frames, profile, drift, report, label_set, label_source, new)
    return RawValidation(report, metrics)


def _drift_frame(drift: dict[str, Any]) -> pd.DataFrame:
    import pandas as pd

    return pd.DataFrame({"id": ["current"], "label_js_divergence": [drift["label_js_divergence"]],
                         "text_length_ks": [drift["text_length_ks"]]})


def _metrics(texts, labels, frames, profile, drift, report, label_set, label_source, new) -> dict:
    rec = frames.get("records")
    texts_frame = frames["texts"]
    unlabelled = int(texts_frame["_label"].isna().sum()) if "_label" in texts_frame else None
    metrics: dict[str, Any] = {
        "rows": {"texts": len(texts), "labels": len(labels),
                 "labelled": None if rec is None else len(rec), "unlabelled": unlabelled},
        "classes": profile["classes"] if profile else {},
        "class_share": profile["class_share"] if profile else {},
        "text_length": {**profile["text_length"]["quantiles"],
                        "mean": profile["text_length"]["mean"]} if profile else {},
        "label_set": {"source": label_source, "labels": label_set, "new": new},
        "drift": drift,
        "checks": {"expectations": len(report.outcomes),
                   "failed_blocking": len(report.failed_checks),
                   "warnings": len(report.warned_checks)},
        "warnings": [outcome_line(o) for o in report.warnings],
    }
    return metrics


def validate_splits(splits: dict[str, pd.DataFrame], params: ValidateParams,
                    ) -> Report:
    check_warn_names(params)
    frames = split_frames(splits)
    outcomes, results = run_suites(frames, split_checks(params), "splits")
    sizes = ", ".join(f"{n} {len(df)} rows" for n, df in splits.items())
    return Report(outcomes, [f"splits: {sizes}"], results)


def load_splits() -> dict[str, pd.DataFrame]:
    splits = {}
    for name in SPLIT_NAMES:
        df = read_parquet(split_path(name), f"split '{name}'", fix="run `dvc repro split` first")
        missing = [c for c in SPLIT_COLUMNS if c not in df.columns]
        if missing:
            raise StageError(f"split '{name}' lacks column(s) {missing}",
                             where=str(split_path(name)), fix="re-run `dvc repro split`")
        splits[name] = df
    return splits


def main_raw(params: ValidateParams) -> None:
    texts = read_parquet(artifacts.RAW_TEXTS, "texts", fix=INGEST_FIX)
    labels = read_parquet(artifacts.LABELS, "labels", fix=INGEST_FIX)
    log.info("read %d texts from %s and %d labels from %s", len(texts), artifacts.RAW_TEXTS,
             len(labels), artifacts.LABELS)
    champion = artifacts.champion_dir(require=False)
    log.info("champion: %s", champion or "none (first run)")
    report, metrics = validate_raw(texts, labels, params, champion, load_params("oos", OosParams))
    write_reports(artifacts.RAW_VALIDATION_DIR, "Raw data validation", report)
    log.info("wrote %s (results.json, summary.md, %s)", artifacts.RAW_VALIDATION_DIR,
             artifacts.VALIDATION_REPORT_HTML)
    _finish(report, artifacts.RAW_VALIDATION_DIR)
    write_json(artifacts.DATA_METRICS, metrics)
    log.info("wrote %s", artifacts.DATA_METRICS)


def main_splits(params: ValidateParams) -> None:
    splits = load_splits()
    log.info("read splits: %s", ", ".join(f"{n} {len(df)}" for n, df in splits.items()))
    report = validate_splits(splits, params)
    write_reports(artifacts.SPLIT_VALIDATION_DIR, "Split validation", report)
    log.info("wrote %s (results.json, summary.md, %s)", artifacts.SPLIT_VALIDATION_DIR,
             artifacts.VALIDATION_REPORT_HTML)
    _finish(report, artifacts.SPLIT_VALIDATION_DIR)


def main() -> None:
    from stages.stage_cli import stage_parser

    parser = stage_parser("stages.validate", __doc__)
    parser.add_argument("--splits", action="store_true", help="validate data/splits instead")
    parser.add_argument("--write-profile", metavar="PATH",
                        help="write the raw data's profile to PATH (a drift reference) and exit")
    args = parser.parse_args()
    params = load_params("validate", ValidateParams)
    if args.write_profile:
        profile = data_profile(read_parquet(artifacts.RAW_TEXTS, "texts", fix=INGEST_FIX),
                               read_parquet(artifacts.LABELS, "labels", fix=INGEST_FIX))
        write_json(args.write_profile, profile)
        log.info("wrote the data profile of %d rows to %s", profile["rows"], args.write_profile)
    elif args.splits:
        main_splits(params)
    else:
        main_raw(params)


if __name__ == "__main__":
    run_cli(main)
