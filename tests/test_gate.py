"""The gate stage on synthetic evaluate outputs: every check, every policy, in-process and fast."""

from __future__ import annotations

import json
from pathlib import Path

import pandas as pd
import pytest
import yaml

from stages.artifacts import GATE_METRICS as GATE_JSON
from stages.artifacts import GATE_REPORT as GATE_MD
from stages.common import StageError
from stages.gate import GateParams, Significance, load_gate_params, run_gate
from stages.metrics import classification_metrics
from tests.conftest import run_stage

LABELS = ["billing", "login", "shipping"]
N_PER_CLASS = 200
BUCKETS = ("short", "medium", "long")
# thresholds loose enough that the baseline scenario passes everything
LENIENT = dict(min_macro_f1=0.5, min_accuracy=0.5, min_class_recall=0.5, tfidf_margin=0.0,
               max_regression_macro_f1=0.05, max_regression_slice=0.10, min_slice_rows=50)


def wrong(label: str) -> str:
    return LABELS[(LABELS.index(label) + 1) % len(LABELS)]


def base_frame() -> pd.DataFrame:
    rows = []
    for c, label in enumerate(LABELS):
        for i in range(N_PER_CLASS):
            rows.append({"id": f"r{c}{i:04d}", "text": f"text {c} {i}", "label": label,
                         "length_bucket": BUCKETS[i % 3],
                         "source": "app_review" if i % 20 == 0 else "email"})
    return pd.DataFrame(rows)


def with_errors(df: pd.DataFrame, rows: list[int]) -> list[str]:
    """Predictions equal to the label except on ``rows`` (positions), where they are wrong."""
    pred = df["label"].tolist()
    for r in rows:
        pred[r] = wrong(pred[r])
    return pred


def every(step: int, offset: int = 0, n: int = 3 * N_PER_CLASS) -> list[int]:
    return list(range(offset, n, step))


def write_inputs(root: Path, candidate_errors: list[int], champion_errors: list[int] | None,
                 tfidf_errors: list[int] | None = None,
                 champion_trained_on: list[int] | None = None) -> pd.DataFrame:
    """Write metrics/eval.json and data/predictions/test.parquet the way evaluate does (with
    evaluate's own slice and pairing functions); ``champion_trained_on`` lists row positions the
    champion's training-data fingerprint contains."""
    from stages.evaluate import paired_summary, slice_metrics

    df = base_frame()
    df["candidate_pred"] = with_errors(df, candidate_errors)
    df["candidate_confidence"] = 0.9
    df["candidate_trained_on"] = False
    has_champion = champion_errors is not None
    if has_champion:
        df["champion_pred"] = with_errors(df, champion_errors)
        df["champion_trained_on"] = df.index.isin(champion_trained_on or [])
        df["paired"] = ~df["champion_trained_on"] & ~df["candidate_trained_on"]
    df["tfidf_pred"] = with_errors(df, tfidf_errors if tfidf_errors is not None else every(5))
    df["majority_pred"] = LABELS[0]
    ev = {
        "test_rows": len(df),
        "labels": LABELS,
        "candidate": classification_metrics(df["label"], df["candidate_pred"], LABELS),
        "champion": (classification_metrics(df["label"], df["champion_pred"], LABELS)
                     if has_champion else None),
        "paired": paired_summary(df, LABELS, champion_known=True) if has_champion else None,
        "baselines": {
            "majority": classification_metrics(df["label"], df["majority_pred"], LABELS),
            "tfidf_logreg": classification_metrics(df["label"], df["tfidf_pred"], LABELS),
        },
        "slices": {col: slice_metrics(df, col, LABELS, has_champion)
                   for col in ("length_bucket", "source")},
    }
    (root / "metrics").mkdir(exist_ok=True)
    (root / "metrics/eval.json").write_text(json.dumps(ev))
    (root / "data/predictions").mkdir(parents=True, exist_ok=True)
    df.to_parquet(root / "data/predictions/test.parquet", index=False)
    return df


def gate(**overrides) -> dict:
    sig = overrides.pop("significance", {})
    params = GateParams(**{**LENIENT, **overrides}, significance=Significance(**sig))
    return run_gate(params)


def by_name(result: dict) -> dict[str, dict]:
    return {c["name"]: c for c in result["checks"]}


def test_passing_candidate_writes_both_reports(workdir: Path) -> None:
    # candidate 90% right, champion 89% right: no check should object
    write_inputs(workdir, every(10), every(9))
    result = gate()
    assert result["passed"] and result["champion"] and result["failed"] == []
    on_disk = json.loads((workdir / GATE_JSON).read_text())
    assert on_disk["passed"] is True and on_disk["policy"] == "not_worse"
    names = {c["name"] for c in on_disk["checks"]}
    assert {"min_macro_f1", "min_accuracy", "beats_tfidf", "max_regression_macro_f1",
            "significance[not_worse]", "max_regression_slice[length_bucket=short]",
            "min_class_recall[login]"} <= names
    for row in on_disk["checks"]:
        assert set(row) == {"name", "value", "threshold", "delta_vs_champion", "ci95", "passed",
                            "blocking", "detail"}
    f1 = by_name(on_disk)["max_regression_macro_f1"]
    lo, hi = f1["ci95"]
    assert lo <= f1["delta_vs_champion"] <= hi
    report = (workdir / GATE_MD).read_text()
    assert report.startswith("# Gate: **PASSED**")
    assert "| macro-F1 |" in report and "95% CI" in report and "not_worse" in report


COMMON = every(20)  # rows both models get wrong
SHORT = [c * N_PER_CLASS + i for c in range(3) for i in range(0, N_PER_CLASS, 3) if i % 20]

FAIL_ALONE = {
    # kind: (candidate errors, champion errors, tfidf errors, param overrides)
    "min_macro_f1": (every(10), every(10), None, {"min_macro_f1": 0.95}),
    "min_accuracy": (every(10), every(10), None, {"min_accuracy": 0.95}),
    # all candidate errors on "shipping" (rows 400..599): its recall is 0.6
    "min_class_recall[shipping]": (every(2, 400)[:80], every(2, 400)[:80], None,
                                   {"min_class_recall": 0.7, "min_macro_f1": 0.5}),
    "beats_tfidf": (every(10), every(10), [], {}),
    # champion better by a net 10 rows (~0.017 F1), but McNemar (20 vs 10 discordant rows,
    # p ~ 0.1) says that may be chance: the regression limit fails, the not_worse policy does not
    "max_regression_macro_f1": (COMMON + every(30, 7)[:20], COMMON + every(30, 13)[:10],
                                None, {"max_regression_macro_f1": 0.01}),
    # candidate wrong on every 6th "short" text as well: the short slice drops ~0.17
    "max_regression_slice[length_bucket=short]": (COMMON + SHORT[::6], COMMON, None,
                                                  {"max_regression_macro_f1": 0.2}),
    # champion far better, regression limit switched off: only the significance policy objects
    "significance[not_worse]": (every(6), every(60), None,
                                {"max_regression_macro_f1": None, "max_regression_slice": None}),
}


@pytest.mark.parametrize("expected", sorted(FAIL_ALONE))
def test_each_check_fails_alone(workdir: Path, expected: str) -> None:
    cand, champ, tfidf, overrides = FAIL_ALONE[expected]
    write_inputs(workdir, cand, champ, tfidf)
    result = gate(**overrides)
    assert result["failed"] == [expected], by_name(result)
    assert result["passed"] is False
    row = by_name(result)[expected]
    assert row["passed"] is False and row["blocking"] is True
    assert "# Gate: **FAILED**" in (workdir / GATE_MD).read_text()


def test_champion_better_than_candidate_fails(workdir: Path) -> None:
    write_inputs(workdir, every(5), every(50))  # candidate 80%, champion 98% right
    result = gate()
    assert not result["passed"]
    assert "max_regression_macro_f1" in result["failed"]
    assert "significance[not_worse]" in result["failed"]
    comp = result["comparison"]
    assert comp["macro_f1"]["diff"] < 0 and comp["macro_f1"]["ci95"][1] < 0
    assert comp["mcnemar"]["champion_only_correct"] > comp["mcnemar"]["candidate_only_correct"]
    assert comp["mcnemar"]["p_value"] < 0.05


@pytest.mark.parametrize("policy, passes", [("not_worse", True), ("better", False)])
def test_identical_models(workdir: Path, policy: str, passes: bool) -> None:
    write_inputs(workdir, every(10), every(10))
    result = gate(significance={"policy": policy})
    sig = by_name(result)[f"significance[{policy}]"]
    assert sig["delta_vs_champion"] == 0 and sig["ci95"] == [0, 0]
    assert result["comparison"]["mcnemar"]["p_value"] == 1.0
    assert sig["passed"] is passes and result["passed"] is passes


def test_better_policy_passes_a_clearly_better_candidate(workdir: Path) -> None:
    write_inputs(workdir, every(50), every(5))
    result = gate(significance={"policy": "better"})
    assert result["passed"], result["failed"]
    assert by_name(result)["significance[better]"]["ci95"][0] > 0


def test_no_champion_runs_absolute_checks_only(workdir: Path) -> None:
    write_inputs(workdir, every(10), None)
    result = gate()
    assert result["passed"] and result["champion"] is False
    assert result["policy"] == "first_run_absolute_only" and result["comparison"] is None
    kinds = {c["name"].split("[")[0] for c in result["checks"]}
    assert kinds == {"min_macro_f1", "min_accuracy", "min_class_recall", "beats_tfidf"}
    assert all(c["delta_vs_champion"] is None for c in result["checks"])
    report = (workdir / GATE_MD).read_text()
    assert "No champion yet" in report and "absolute checks" in report


def test_no_thresholds_refuses(workdir: Path) -> None:
    write_inputs(workdir, every(10), None)
    params = yaml.safe_load((workdir / "params.yaml").read_text())
    params["gate"] = {}  # an empty section
    (workdir / "params.yaml").write_text(yaml.safe_dump(params))
    with pytest.raises(StageError, match="no gate thresholds"):
        load_gate_params()
    with pytest.raises(StageError, match="no gate thresholds"):
        gate(min_macro_f1=None, min_accuracy=None, min_class_recall=None)
    assert not (workdir / GATE_JSON).exists()


def test_missing_gate_section_refuses_on_the_cli(workdir: Path) -> None:
    write_inputs(workdir, every(10), None)
    params = (workdir / "params.yaml").read_text()
    (workdir / "params.yaml").write_text(params.split("\ngate:")[0] + "\n")
    proc = run_stage("gate", workdir)
    assert proc.returncode == 1 and "no gate thresholds configured" in proc.stderr
    assert not (workdir / GATE_JSON).exists() and not (workdir / GATE_MD).exists()


def test_cli_failed_gate_writes_reports_then_exits_1(workdir: Path) -> None:
    write_inputs(workdir, every(4), None)  # 75% right: below the project's default floors
    proc = run_stage("gate", workdir)
    assert proc.returncode == 1, proc.stderr
    assert "gate FAILED" in proc.stderr and "min_macro_f1" in proc.stderr
    assert json.loads((workdir / GATE_JSON).read_text())["passed"] is False
    assert (workdir / GATE_MD).read_text().startswith("# Gate: **FAILED**")


def test_cli_passing_gate_exits_0(workdir: Path) -> None:
    write_inputs(workdir, every(20), every(20))
    proc = run_stage("gate", workdir)
    assert proc.returncode == 0, proc.stderr
    assert json.loads((workdir / GATE_JSON).read_text())["passed"] is True


def test_warn_only_turns_a_failure_into_a_warning(workdir: Path) -> None:
    write_inputs(workdir, every(10), every(10), [])
    result = gate(warn_only=["beats_tfidf"])
    assert result["passed"] and result["warnings"] == ["beats_tfidf"]
    assert by_name(result)["beats_tfidf"]["blocking"] is False
    with pytest.raises(StageError, match="unknown check kinds"):
        gate(warn_only=["beats_bert"])


def test_small_slices_are_reported_not_gated(workdir: Path) -> None:
    # app_review has 30 rows; candidate is wrong on 15 of them (rows with i % 20 == 0)
    app_rows = [c * N_PER_CLASS + i for c in range(3) for i in range(0, N_PER_CLASS, 20)]
    write_inputs(workdir, every(30) + app_rows[:15], every(30))
    result = gate(min_slice_rows=31, max_regression_macro_f1=0.2)
    row = by_name(result)["max_regression_slice[source=app_review]"]
    assert row["passed"] is False and row["blocking"] is False and row["ci95"] is None
    assert result["passed"] and "max_regression_slice[source=app_review]" in result["warnings"]


def test_stale_eval_json_is_refused(workdir: Path) -> None:
    write_inputs(workdir, every(10), None)
    df = pd.read_parquet(workdir / "data/predictions/test.parquet")
    df["candidate_pred"] = with_errors(df, every(4))
    df.to_parquet(workdir / "data/predictions/test.parquet", index=False)
    with pytest.raises(StageError, match="stale"):
        gate()


def test_rows_the_champion_trained_on_are_left_out_of_the_comparison(workdir: Path) -> None:
    # the champion is right on every row it trained on (it memorised them) and wrong on 1 in 5
    # of the others; the candidate is wrong on 1 in 10 everywhere. Scored on all rows the
    # memorised half flatters the champion; on the paired rows the candidate is clearly better.
    memorised = every(2)
    champion_errors = [r for r in every(5) if r not in memorised]
    write_inputs(workdir, every(10), champion_errors, champion_trained_on=memorised)
    result = gate(significance={"policy": "better"})
    rows = by_name(result)["paired_rows"]
    assert rows["value"] == 300 and rows["passed"] and "300 excluded: the champion trained on them" \
        in rows["detail"]
    assert result["comparison"]["n"] == 300
    assert result["headline"]["paired"]["excluded_champion_trained_on"] == 300
    assert result["passed"], result["failed"]
    report = (workdir / GATE_MD).read_text()
    assert "Paired comparison on 300 of 600 test rows" in report
    assert "300 row(s) left out because the champion trained on them" in report


@pytest.mark.parametrize("policy, passed", [("block", False), ("absolute_only", True)])
def test_too_few_paired_rows_follow_the_policy(workdir: Path, policy: str, passed: bool) -> None:
    write_inputs(workdir, every(10), every(10), champion_trained_on=list(range(580)))
    result = gate(min_paired_rows=50, too_few_paired_rows=policy)
    rows = by_name(result)["paired_rows"]
    assert rows["value"] == 20 and rows["passed"] is False
    assert rows["blocking"] is (policy == "block")
    assert result["passed"] is passed and result["comparison"] is None
    assert result["policy"] == f"too_few_paired_rows_{policy}"
    assert not any(c["name"].startswith(("significance", "max_regression")) for c in result["checks"])
    assert any("too few paired rows" in s for s in result["skipped"])
    if policy == "absolute_only":
        assert result["warnings"] == ["paired_rows"]
