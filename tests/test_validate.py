"""validate: the bad-input catalogue, warnings, drift, splits, the HTML report and the CLI contract.

Each catalogue case writes raw Parquet files directly (bypassing ingest, which would reject some
of them first) so that exactly one expectation fails. Most cases run the stage's ``main_raw`` in
this process (GX is imported once); a few run ``python -m stages.validate`` as DVC does, for the
exit code and the printed summary.
"""

from __future__ import annotations

import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import pandas as pd
import pytest

from stages import artifacts, validate
from stages.common import StageError, load_params
from stages.expectations import ValidateParams
from stages.io import read_parquet
from tests.conftest import REPO_ROOT, make_rows, run_stage, set_params

INTENTS = sorted(["refund_request", "cancel_subscription", "delivery_status", "login_problem",
                  "payment_failed", "change_address"])


def write_raw(root: Path, texts: list[dict] | pd.DataFrame, labels: list[dict] | pd.DataFrame,
              champion: dict | None = None) -> None:
    """Raw Parquet files as ingest would write them (string columns), plus the champion pointer."""
    for rows, rel in ((texts, artifacts.RAW_TEXTS), (labels, artifacts.LABELS)):
        df = rows if isinstance(rows, pd.DataFrame) else pd.DataFrame(rows)
        df = df.astype({c: "string" for c in df.columns if df[c].dtype == object})
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        df.to_parquet(root / rel, index=False)
    (root / "models").mkdir(exist_ok=True)
    (root / artifacts.CHAMPION_POINTER).write_text(json.dumps({"champion": champion}))


def new_dir(tmp_path_factory: pytest.TempPathFactory, name: str) -> Path:
    root = tmp_path_factory.mktemp(name)
    shutil.copy(REPO_ROOT / "params.yaml", root / "params.yaml")
    return root


def run_raw(root: Path, monkeypatch: pytest.MonkeyPatch) -> validate.Report:
    """The raw validation in-process (no report files: the CLI tests cover them)."""
    monkeypatch.chdir(root)
    params = load_params("validate", ValidateParams)
    texts = read_parquet(artifacts.RAW_TEXTS, "texts")
    labels = read_parquet(artifacts.LABELS, "labels")
    report, _ = validate.validate_raw(texts, labels, params, artifacts.champion_dir(require=False))
    return report


def only(report: validate.Report, check: str) -> validate.Outcome:
    """The one failing outcome; the stage would stop (StageError, exit 1) naming it."""
    assert report.failed_checks == [check]
    with pytest.raises(StageError, match=f"1 blocking data check\\(s\\) failed: {check}"):
        validate._finish(report, artifacts.RAW_VALIDATION_DIR)
    (outcome,) = [o for o in report.failed if o.check == check]
    return outcome


# ------------------------------------------------------------------ good data, subprocess


@pytest.fixture(scope="module")
def cli_runs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[Path, object]]:
    """Three real `python -m stages.validate` runs (one after the other: 2 cores, GX start-up)."""
    good, blank, leak = (new_dir(tmp_path_factory, n) for n in ("good", "blank", "leak"))
    write_raw(good, *make_rows(20))
    texts, labels = make_rows(20)
    texts[3]["text"] = "   "
    texts[7]["text"] = "\t\t"
    write_raw(blank, texts, labels)
    _splits(leak, _case_leak)
    jobs = {"good": (good, ()), "blank": (blank, ()), "leak": (leak, ("--splits",))}
    return {k: (root, run_stage("validate", root, *args)) for k, (root, args) in jobs.items()}


@pytest.fixture(scope="module")
def good_run(cli_runs):
    return cli_runs["good"]


@pytest.fixture(scope="module")
def blank_run(cli_runs):
    return cli_runs["blank"]


def test_good_data_passes_and_writes_metrics(good_run) -> None:
    root, proc = good_run
    assert proc.returncode == 0, proc.stderr
    metrics = json.loads((root / artifacts.DATA_METRICS).read_text())
    assert metrics["rows"] == {"texts": 120, "labels": 120, "labelled": 120, "unlabelled": 0}
    assert metrics["classes"] == dict.fromkeys(INTENTS, 20)
    assert metrics["checks"]["failed_blocking"] == 0
    assert metrics["drift"]["note"] == "no reference profile, drift not checked"
    assert metrics["label_set"]["source"].startswith("observed")
    assert 0 < metrics["text_length"]["p50"] <= metrics["text_length"]["max"]
    summary = (root / artifacts.RAW_VALIDATION_DIR / "summary.md").read_text()
    assert summary.startswith("# Raw data validation: passed")
    assert "no reference profile, drift not checked" in summary


class _Text(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.chunks: list[str] = []

    def handle_data(self, data: str) -> None:
        self.chunks.append(data)


def html_text(path: Path) -> str:
    parser = _Text()
    parser.feed(path.read_text(encoding="utf-8"))
    return " ".join(parser.chunks)


def test_blocking_failure_exits_non_zero_with_summary(blank_run) -> None:
    root, proc = blank_run
    assert proc.returncode == 1
    assert "FAIL texts.text_not_blank: expect_column_values_to_not_match_regex on texts._normalised: " \
           "2 of 120 row(s) unexpected; e.g. t00004='   ', t00008='\\t\\t'" in proc.stderr
    assert "1 blocking data check(s) failed: texts.text_not_blank" in proc.stderr
    assert not (root / artifacts.DATA_METRICS).exists()
    assert not (root / "data/splits").exists()
    results = json.loads((root / artifacts.RAW_VALIDATION_DIR / "results.json").read_text())
    assert results["success"] is False and results["failed"] == ["texts.text_not_blank"]
    assert "**FAIL**" in (root / artifacts.RAW_VALIDATION_DIR / "summary.md").read_text()


def report_rows(page: Path) -> dict[str, tuple[str, str]]:
    """Rows of report.html: check name -> (status badge, details text), parsed from the HTML."""
    text = page.read_text(encoding="utf-8")
    rows = re.findall(r'<tr class="(\w+)"><td><span class="badge \w+"[^>]*>(\w+)</span></td>'
                      r"<td><code>([\w.]+)</code></td><td>[^<]*</td><td>(.*?)</td></tr>", text)
    return {check: (badge, " ".join(details.split())) for _, badge, check, details in rows}


def test_html_report_lists_checks_and_failures(good_run, blank_run) -> None:
    good = report_rows(good_run[0] / artifacts.RAW_VALIDATION_DIR / artifacts.VALIDATION_REPORT_HTML)
    assert good and {v[0] for v in good.values()} == {"pass"}
    page = blank_run[0] / artifacts.RAW_VALIDATION_DIR / artifacts.VALIDATION_REPORT_HTML
    bad = report_rows(page)
    assert set(bad) == set(good)
    assert [c for c, v in bad.items() if v[0] != "pass"] == ["texts.text_not_blank"]
    assert bad["texts.text_not_blank"][0] == "FAIL"
    assert "2 of 120 row(s) unexpected" in bad["texts.text_not_blank"][1]
    shown = html_text(page)
    assert "FAILED: 1 blocking check(s) failed" in " ".join(shown.split())
    assert "<script" not in page.read_text() and "://" not in page.read_text()  # offline


# ------------------------------------------------------------------ the catalogue, in-process


def _drop_column(t: list[dict], lab: list[dict]):
    return pd.DataFrame(t).drop(columns=["text"]), lab


def _int_source(t: list[dict], lab: list[dict]):
    return pd.DataFrame(t).assign(source=range(len(t))), lab


def _null_text_id(t: list[dict], lab: list[dict]):
    lab = [r for r in lab if r["id"] != t[0]["id"]]
    t[0]["id"] = None
    return t, lab


def _dup_text_id(t: list[dict], lab: list[dict]):
    return [*t, dict(t[5])], lab


def _set_text(i: int, value: str | None):
    def edit(t: list[dict], lab: list[dict]):
        t[i]["text"] = value
        return t, lab
    return edit


def _dup_label_id(t: list[dict], lab: list[dict]):
    return t, [*lab, dict(lab[2])]


def _null_label(t: list[dict], lab: list[dict]):
    lab[9]["label"] = None
    return t, lab


def _orphan_label(t: list[dict], lab: list[dict]):
    return t, [*lab, {"id": "t99999", "label": INTENTS[0]}]


def _conflict(t: list[dict], lab: list[dict]):
    other = next(r["label"] for r in lab if r["label"] != lab[0]["label"])
    t.append({"id": "t90000", "text": "  " + t[0]["text"].upper(), "source": "email"})
    lab.append({"id": "t90000", "label": other})
    return t, lab


def _small_class(t: list[dict], lab: list[dict]):
    drop = {r["id"] for r in lab if r["label"] == INTENTS[0]}
    drop = set(sorted(drop)[:15])
    return [r for r in t if r["id"] not in drop], [r for r in lab if r["id"] not in drop]


def _thin_class(t: list[dict], lab: list[dict]):
    """The first class keeps 12 of its 20 rows: 0.64x an equal share, still 10+ rows."""
    drop = {r["id"] for r in lab if r["label"] == INTENTS[0]}
    drop = set(sorted(drop)[:8])
    return [r for r in t if r["id"] not in drop], [r for r in lab if r["id"] not in drop]


def _new_class(t: list[dict], lab: list[dict]):
    for k in range(12):
        t.append({"id": f"n{k:03d}", "text": f"please send me an invoice copy {k}"})
        lab.append({"id": f"n{k:03d}", "label": "invoice_request"})
    return t, lab


CATALOGUE = [
    # (id, edit, params, failing check, message fragment, example id or None)
    ("missing-column", _drop_column, {}, "texts.columns", "missing column(s) ['text']", None),
    ("wrong-type", _int_source, {}, "texts.types", "texts.source: dtype int64", None),
    ("null-text-id", _null_text_id, {}, "texts.id_not_null", "1 of 120 row(s)", None),
    ("duplicate-text-id", _dup_text_id, {}, "texts.id_unique", "2 of 121 row(s)", "t00006"),
    ("null-text", _set_text(4, None), {}, "texts.text_not_null", "1 of 120 row(s)", "t00005"),
    ("too-long", _set_text(4, "x" * 6000), {}, "texts.text_length",
     "expect_column_value_lengths_to_be_between on texts.text: 1 of 120", "t00005"),
    ("too-short", _set_text(6, "a"), {}, "texts.text_length", "1 of 120 row(s)", "t00007"),
    ("unlabelled-fail", lambda t, lab: (t, lab[1:]), {"unlabelled_texts": "fail"},
     "texts.unlabelled", "texts._label: 1 of 120 row(s)", "t00001"),
    ("duplicate-label-id", _dup_label_id, {}, "labels.id_unique", "2 of 121 row(s)", "t00003"),
    ("null-label", _null_label, {}, "labels.label_not_null", "1 of 120 row(s)", "t00010"),
    ("orphan-label", _orphan_label, {}, "labels.joins_text", "1 of 121 row(s)", "t99999"),
    ("new-class", _new_class, {"labels": INTENTS}, "labels.label_set", "12 of 132 row(s)",
     "n000"),
    ("too-few-rows", lambda t, lab: (t, lab), {"min_rows": 500}, "data.row_count",
     "observed 120", None),
    ("conflicting-labels", _conflict, {}, "data.conflicting_labels", "2 of 121 row(s)",
     "t90000"),
    ("small-class", _small_class, {}, "classes.min_rows", "1 of 6 class(es)", INTENTS[0]),
    ("class-share", _thin_class, {"class_share": {"min_vs_uniform": 0.9}},
     "classes.share", "1 of 6 class(es)", INTENTS[0]),
]


@pytest.mark.parametrize("case", CATALOGUE, ids=[c[0] for c in CATALOGUE])
def test_catalogue_case_fails_alone(case, tmp_path: Path, monkeypatch) -> None:
    _, edit, overrides, check, fragment, example = case
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    if overrides:
        set_params(tmp_path, {"validate": overrides})
    write_raw(tmp_path, *edit(*make_rows(20)))
    outcome = only(run_raw(tmp_path, monkeypatch), check)
    assert fragment in outcome.message
    if example is not None:
        assert any(str(i).startswith(example) for i, _ in outcome.examples), outcome.examples


def test_new_class_against_champion_labels(tmp_path: Path, monkeypatch) -> None:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    champ = tmp_path / "models/champion"
    champ.mkdir(parents=True)
    (champ / "labels.json").write_text(json.dumps(INTENTS[:-1]))  # the champion lacks one class
    write_raw(tmp_path, *make_rows(20), champion={"path": "models/champion", "forced": False})
    outcome = only(run_raw(tmp_path, monkeypatch), "labels.label_set")
    assert "20 of 120 row(s)" in outcome.message
    report = run_raw(tmp_path, monkeypatch)
    assert f"NEW CLASS(ES) not in the known label set: ['{INTENTS[-1]}']" in report.notes
    assert "label set: champion (models/champion/labels.json)" in report.notes


def test_warning_mode_passes_and_records_the_warning(tmp_path: Path, monkeypatch) -> None:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path, {"validate": {"warn_only": ["texts.text_not_blank"]}})
    texts, labels = make_rows(20)
    texts[3]["text"] = "  "
    texts, labels = texts, labels[1:]  # an unlabelled text: a warning under the default "drop"
    write_raw(tmp_path, texts, labels)
    monkeypatch.chdir(tmp_path)
    validate.main_raw(load_params("validate", ValidateParams))  # no StageError: it passes
    results = json.loads((tmp_path / artifacts.RAW_VALIDATION_DIR / "results.json").read_text())
    assert results["failed"] == []
    assert results["warnings"] == ["texts.text_not_blank", "texts.unlabelled"]
    metrics = json.loads((tmp_path / artifacts.DATA_METRICS).read_text())
    assert metrics["checks"]["warnings"] == 2
    assert any(w.startswith("WARN texts.text_not_blank:") and "t00004='  '" in w
               for w in metrics["warnings"]), metrics["warnings"]
    assert metrics["rows"]["unlabelled"] == 1


def test_unknown_warn_name_is_rejected(tmp_path: Path, monkeypatch) -> None:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    set_params(tmp_path, {"validate": {"warn_only": ["texts.no_such_check"]}})
    write_raw(tmp_path, *make_rows(20))
    monkeypatch.chdir(tmp_path)
    with pytest.raises(StageError, match="unknown check"):
        validate.main_raw(load_params("validate", ValidateParams))


# ------------------------------------------------------------------ drift


def _reference(tmp_path: Path, texts: list[dict], labels: list[dict]) -> None:
    profile = artifacts.data_profile(pd.DataFrame(texts).astype("string"),
                                    pd.DataFrame(labels).astype("string"))
    (tmp_path / "data").mkdir(exist_ok=True)
    (tmp_path / "data/reference_profile.json").write_text(json.dumps(profile))


def test_label_drift_fails(tmp_path: Path, monkeypatch) -> None:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    texts, labels = make_rows(20)
    skewed = [{**r, "label": INTENTS[0] if i % 3 else r["label"]} for i, r in enumerate(labels)]
    _reference(tmp_path, texts, skewed)
    write_raw(tmp_path, texts, labels)
    outcome = only(run_raw(tmp_path, monkeypatch), "drift.label_distribution")
    assert "drift.label_js_divergence" in outcome.message
    (i, value), = outcome.examples
    assert i == "current" and value > 0.1


def test_length_drift_fails_and_no_drift_passes(tmp_path: Path, monkeypatch) -> None:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    texts, labels = make_rows(20)
    longer = [{**r, "text": r["text"] + " and some more words" * 5} for r in texts]
    _reference(tmp_path, longer, labels)
    write_raw(tmp_path, texts, labels)
    outcome = only(run_raw(tmp_path, monkeypatch), "drift.text_length")
    assert outcome.examples == [("current", 1.0)]
    _reference(tmp_path, texts, labels)  # the same data: no drift
    params = load_params("validate", ValidateParams)
    report, metrics = validate.validate_raw(*map(pd.DataFrame, make_rows(20)), params, None)
    assert report.failed_checks == []
    drift = metrics["drift"]
    assert drift["label_js_divergence"] == 0 and drift["text_length_ks"] == 0
    assert drift["reference"] == "data/reference_profile.json"


def profile(classes: dict[str, int], lengths: dict[str, int]) -> dict:
    return {"classes": classes, "text_length": {"counts": lengths, "quantiles": {"p50": 10}}}


def js_divergence(p: dict[str, int], q: dict[str, int]) -> float:
    return validate.drift_scores(profile(p, {"1": 1}), profile(q, {"1": 1}))["label_js_divergence"]


def ks_statistic(a: dict[str, int], b: dict[str, int]) -> float:
    return validate.drift_scores(profile({"x": 1}, a), profile({"x": 1}, b))["text_length_ks"]


def test_drift_scores() -> None:
    assert js_divergence({"a": 1}, {"b": 1}) == 1.0
    assert js_divergence({"a": 1, "b": 1}, {"a": 5, "b": 5}) == 0.0
    assert 0 < js_divergence({"a": 3, "b": 1}, {"a": 1, "b": 3}) < 1
    assert ks_statistic({"1": 5, "2": 5}, {"1": 5, "2": 5}) == 0.0
    assert ks_statistic({"1": 10}, {"2": 10}) == 1.0
    assert ks_statistic({"1": 1, "3": 1}, {"2": 2}) == 0.5
    # bins sort as numbers, not strings ("10" after "9")
    assert ks_statistic({"9": 1, "10": 1}, {"10": 2}) == 0.5


# ------------------------------------------------------------------ malformed files, subprocess


def test_unreadable_parquet_fails_with_a_message(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    write_raw(tmp_path, *make_rows(20))
    (tmp_path / artifacts.RAW_TEXTS).write_bytes(b"id,text\nnot,parquet\n")
    proc = run_stage("validate", tmp_path)
    assert proc.returncode == 1
    assert "texts file could not be read as Parquet" in proc.stderr
    assert "where: data/raw/texts.parquet" in proc.stderr
    assert not (tmp_path / artifacts.DATA_METRICS).exists()


def test_missing_labels_file_fails(tmp_path: Path) -> None:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    write_raw(tmp_path, *make_rows(20))
    (tmp_path / artifacts.LABELS).unlink()
    proc = run_stage("validate", tmp_path)
    assert proc.returncode == 1 and "labels file not found" in proc.stderr


# ------------------------------------------------------------------ splits


def _splits(root: Path, edit=None) -> None:
    texts, labels = make_rows(20)
    df = pd.DataFrame(texts).merge(pd.DataFrame(labels), on="id")
    parts = {"train": df.iloc[0::3], "val": df.iloc[1::3], "test": df.iloc[2::3]}
    parts = {k: v.reset_index(drop=True) for k, v in parts.items()}
    if edit:
        edit(parts)
    (root / "data/splits").mkdir(parents=True)
    for name, part in parts.items():
        part.astype("string").to_parquet(root / f"data/splits/{name}.parquet", index=False)


def _exact_leak(parts) -> None:
    parts["test"] = pd.concat([parts["test"], parts["train"].iloc[[0]].assign(id="x1")])


def _case_leak(parts) -> None:
    row = parts["train"].iloc[[0]].assign(id="x1")
    row["text"] = row["text"].str.upper() + "  "
    parts["val"] = pd.concat([parts["val"], row])


def _missing_class(parts) -> None:
    parts["val"] = parts["val"][parts["val"]["label"] != INTENTS[1]]


@pytest.mark.parametrize("edit, failed", [
    (None, []),
    (_exact_leak, ["splits.exact_leakage", "splits.normalised_leakage"]),
    (_case_leak, ["splits.normalised_leakage"]),
    (_missing_class, ["splits.class_coverage"]),
], ids=["good", "exact-leak", "normalised-leak", "missing-class"])
def test_split_checks(edit, failed, tmp_path: Path, monkeypatch) -> None:
    _splits(tmp_path, edit)
    monkeypatch.chdir(tmp_path)
    report = validate.validate_splits(validate.load_splits(), ValidateParams())
    assert report.failed_checks == failed
    if edit is _exact_leak:
        (o,) = [o for o in report.failed if o.check == "splits.exact_leakage"]
        assert o.unexpected_count == 2 and {i for i, _ in o.examples} == {"t00001", "x1"}
    if edit is _missing_class:
        (o,) = report.failed
        assert o.examples == [(INTENTS[1], "val")]


def test_splits_cli_fails_on_leakage(cli_runs) -> None:
    root, proc = cli_runs["leak"]
    assert proc.returncode == 1
    assert "FAIL splits.normalised_leakage" in proc.stderr
    assert "1 blocking data check(s) failed: splits.normalised_leakage" in proc.stderr
    rows = report_rows(root / artifacts.SPLIT_VALIDATION_DIR / artifacts.VALIDATION_REPORT_HTML)
    assert {c: v[0] for c, v in rows.items()} == {"splits.normalised_leakage": "FAIL",
                                                  "splits.exact_leakage": "pass",
                                                  "splits.class_coverage": "pass",
                                                  "splits.class_count": "pass"}


def test_gx_not_imported_by_profile_or_module_import() -> None:
    import subprocess
    import sys

    code = ("import sys, pandas as pd; from stages.artifacts import data_profile; "
            "p = data_profile(pd.DataFrame({'id': ['a'], 'text': ['hi']}), "
            "pd.DataFrame({'id': ['a'], 'label': ['x']})); "
            "assert p['classes'] == {'x': 1}, p; "
            "assert 'great_expectations' not in sys.modules")
    subprocess.run([sys.executable, "-c", code], cwd=REPO_ROOT, check=True)


def _class_rows(counts: dict[str, int]) -> tuple[list[dict], list[dict]]:
    texts, labels = [], []
    for label, n in counts.items():
        for k in range(n):
            i = len(texts)
            texts.append({"id": f"r{i:06d}", "text": f"message {i} about {label} number {k}"})
            labels.append({"id": f"r{i:06d}", "label": label})
    return texts, labels


@pytest.mark.parametrize("counts, fails", [
    ({f"intent_{c:03d}": 12 for c in range(150)}, None),           # 150 balanced classes
    ({"neutral": 610, "positive": 240, "negative": 150}, None),    # a 61% majority class
    ({"a": 300, "b": 300, "c": 300, "rare": 30}, "rare"),          # rare: 0.13x uniform
])
def test_class_share_defaults_fit_the_number_of_classes(counts: dict[str, int], fails: str | None,
                                                        tmp_path: Path, monkeypatch) -> None:
    shutil.copy(REPO_ROOT / "params.yaml", tmp_path / "params.yaml")
    write_raw(tmp_path, *_class_rows(counts))
    report = run_raw(tmp_path, monkeypatch)
    if fails is None:
        assert "classes.share" not in report.failed_checks, report.failed_checks
    else:
        outcome = only(report, "classes.share")
        assert any(i == fails for i, _ in outcome.examples), outcome.examples
