"""gate: may this candidate replace the champion? Every check is a row; blocking failures stop DVC.

Reads metrics/eval.json, the paired test predictions and ``gate:`` in params.yaml; always writes
metrics/gate.json and reports/gate.md, then exits 1 when a blocking check failed, so `dvc repro`
stops before export and `promote` refuses. Champion checks use only rows neither model trained on.
Classification checks use the test rows of the model's classes; the out-of-scope checks read
eval.json's ``oos`` (stages.oos_metrics). This module decides; stages.gate_report renders gate.md.
More: docs/gates.md.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Literal

from stages import artifacts
from stages.common import (
    Fraction,
    NonNegativeInt,
    Range,
    Share,
    StageError,
    check_constraints,
    get_logger,
    load_params,
    params_section,
    read_params_file,
)
from stages.gate_report import render_markdown
from stages.io import read_json, read_parquet, sha256_file, write_json, write_text
from stages.metrics import macro_f1
from stages.report_format import num

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)


KINDS = ("min_macro_f1", "min_accuracy", "min_class_recall", "beats_tfidf", "paired_rows",
         "max_regression_macro_f1", "max_regression_slice", "significance",
         "min_oos_recall", "min_oos_auroc", "max_in_scope_flagged", "max_regression_oos_recall")
CHAMPION_KINDS = ("paired_rows", "max_regression_macro_f1", "max_regression_slice", "significance")
FLOORS = ("min_macro_f1", "min_accuracy", "min_class_recall")
# out-of-scope limits: param -> (figure in eval.json's oos.candidate, a floor (True) or a ceiling,
# whether measuring it needs out-of-scope test rows)
OOS_LIMITS = {"min_oos_recall": ("oos_recall", True, True),
              "min_oos_auroc": ("auroc", True, True),
              "max_in_scope_flagged": ("in_scope_flagged", False, False)}
EPS = 1e-9  # eval.json rounds to 6 decimals; a value equal to its threshold passes
STALE_TOLERANCE = 5e-6  # recomputed vs eval.json macro-F1 (eval.json rounds to 6 decimals)


@dataclass
class Significance:
    # not_worse: fail only if the candidate is significantly worse by more than the tolerance;
    # better: pass only if the candidate is significantly better (see significance_check)
    policy: Literal["not_worse", "better"] = "not_worse"
    alpha: Fraction = 0.05               # McNemar exact test level (two-sided)
    # paired bootstrap of the macro-F1 difference; fewer resamples make a CI too noisy to gate on
    bootstrap_resamples: Annotated[int, Range(ge=100)] = 1000
    seed: int = 42


@params_section("gate")
@dataclass
class GateParams:
    # every threshold is off (None) unless params.yaml sets it: defaults never pass a model silently
    min_macro_f1: Share | None = None
    min_accuracy: Share | None = None
    min_class_recall: Share | None = None          # applies to every class with test rows
    tfidf_margin: float | None = None              # candidate - tfidf macro-F1 must be >= this
    max_regression_macro_f1: Share | None = None   # vs champion; also not_worse's tolerance
    max_regression_slice: Share | None = None      # vs champion, macro-F1 of each slice
    min_slice_rows: NonNegativeInt = 30                       # smaller slices are reported, not gated
    # test rows neither model trained on, needed to compare with the champion at all
    min_paired_rows: NonNegativeInt = 50
    too_few_paired_rows: Literal["block", "absolute_only"] = "block"
    significance: Significance = field(default_factory=Significance)
    # out of scope (eval.json's oos; off when null). A limit that is set but cannot be measured
    # (no detector, no out-of-scope test rows) fails: it never passes a model unchecked
    min_oos_recall: Share | None = None            # share of out-of-scope test rows flagged
    min_oos_auroc: Share | None = None             # how well the score separates the two kinds
    max_in_scope_flagged: Share | None = None      # share of in-scope test rows answered "out of scope"
    max_regression_oos_recall: Share | None = None  # vs champion, on paired out-of-scope rows
    warn_only: list[str] = field(default_factory=list)  # check kinds that warn, not block


@dataclass
class Check:
    name: str
    value: float | None
    threshold: float | None
    delta_vs_champion: float | None = None
    ci95: list[float] | None = None
    passed: bool = True
    blocking: bool = True
    detail: str = ""

    @property
    def kind(self) -> str:
        return self.name.split("[", 1)[0]


def load_gate_params() -> GateParams:
    """The ``gate:`` section, refusing a missing or empty one (it would gate nothing)."""
    raw = read_params_file()
    if not raw.get("gate"):
        raise StageError("no gate thresholds configured: the 'gate:' section is missing or empty",
                         where="params.yaml",
                         fix="add a 'gate:' section with at least one floor "
                             "(min_macro_f1, min_accuracy, min_class_recall); see the README section 'Gates'")
    return load_params("gate", GateParams)


def validate_params(params: GateParams) -> None:
    if all(getattr(params, name) is None for name in FLOORS):
        raise StageError(f"no gate thresholds configured: all absolute floors {list(FLOORS)} "
                         "are null, so a first model would pass unchecked",
                         where="params.yaml:gate",
                         fix="set at least one floor, e.g. min_macro_f1: 0.80")
    unknown = sorted(set(params.warn_only) - set(KINDS))
    if unknown:
        raise StageError(f"gate.warn_only names unknown check kinds {unknown}",
                         where="params.yaml:gate.warn_only", fix=f"use some of {list(KINDS)}")
    # the bounds declared on the fields, also for params built in code (tests)
    check_constraints(params, "params.yaml:gate")


def load_inputs(eval_path: Path = artifacts.EVAL_METRICS,
                predictions_path: Path = artifacts.PREDICTIONS) -> tuple[dict[str, Any], pd.DataFrame]:
    """eval.json and the predictions, checked against each other (stale files are refused)."""
    ev = read_json(eval_path)
    if not predictions_path.is_file():
        raise StageError("predictions not found", where=str(predictions_path),
                         fix="run `dvc repro evaluate`")
    pred = read_parquet(predictions_path, "predictions", fix="run `dvc repro evaluate`")
    needed = ["label", "candidate_pred"] + (["champion_pred", "paired"] if ev.get("champion") else [])
    missing = [c for c in needed if c not in pred.columns]
    if missing or "candidate" not in ev or "labels" not in ev \
            or (ev.get("champion") and not ev.get("paired")):
        raise StageError(f"evaluate outputs lack {missing or ['candidate/labels in eval.json']}",
                         where=f"{eval_path}, {predictions_path}",
                         fix="re-run `dvc repro evaluate` (the gate needs evaluate's contract)")
    if len(pred) != ev.get("test_rows", len(pred)):
        raise StageError(f"{eval_path} says {ev['test_rows']} test rows but {predictions_path} "
                         f"has {len(pred)}: the two files are from different runs",
                         where=str(predictions_path), fix="re-run `dvc repro evaluate`")
    return ev, pred


def compare(pred: pd.DataFrame, labels: list[str], sig: Significance) -> dict[str, Any]:
    """Candidate vs champion on the same rows: bootstrap CIs (overall) and McNemar's test."""
    from stages import stats

    boot = stats.paired_bootstrap(pred["label"], pred["candidate_pred"], pred["champion_pred"],
                                  labels, sig.bootstrap_resamples, sig.seed)
    mc = stats.mcnemar_exact(pred["label"], pred["candidate_pred"], pred["champion_pred"])
    out: dict[str, Any] = {"n": boot["n"], "bootstrap_resamples": boot["n_resamples"],
                           "seed": boot["seed"]}
    for metric in ("macro_f1", "accuracy"):
        m = boot[metric]
        out[metric] = {"candidate": m["a"], "champion": m["b"], "diff": m["diff"],
                       "ci95": m["ci95"]}
    out["mcnemar"] = {"candidate_only_correct": mc["a_only"],
                      "champion_only_correct": mc["b_only"],
                      "discordant": mc["discordant"], "p_value": mc["p_value"]}
    return out


def slice_cis(pred: pd.DataFrame, column: str, labels: list[str],
              sig: Significance, min_rows: int) -> dict[str, list[float]]:
    """95% CI of the macro-F1 difference within each slice of ``column`` big enough to gate."""
    from stages import stats

    out = {}
    if column not in pred.columns:
        return out
    for value, part in pred.groupby(column, sort=True):
        if len(part) >= min_rows:
            boot = stats.paired_bootstrap(part["label"], part["candidate_pred"],
                                          part["champion_pred"], labels,
                                          sig.bootstrap_resamples, sig.seed)
            out[str(value)] = boot["macro_f1"]["ci95"]
    return out


def significance_check(comparison: dict[str, Any], params: GateParams) -> Check:
    """The significance policy, as one check on the macro-F1 difference (candidate - champion).

    - ``not_worse`` (default): FAIL only when both tests agree the candidate is worse:
      (a) the 95% CI lower bound of the difference is below ``-tolerance``
      (``tolerance`` = ``max_regression_macro_f1``, 0 when that is null), and
      (b) McNemar's exact test is significant (p < alpha) with more rows only the champion gets
      right. A wide CI on a small test set alone does not fail a candidate, and neither does a
      "significant" but tiny regression that the CI bounds within the tolerance.
    - ``better``: PASS only when the candidate is significantly better: the CI lower bound is
      above 0 AND McNemar p < alpha with more rows only the candidate gets right.

    ``value`` is the CI lower bound, ``threshold`` the bound it is held to.
    """
    sig = params.significance
    f1, mc = comparison["macro_f1"], comparison["mcnemar"]
    lo = f1["ci95"][0]
    p = mc["p_value"]
    cand, champ = mc["candidate_only_correct"], mc["champion_only_correct"]
    mc_text = (f"McNemar p={p:.3g} (only candidate right on {cand} rows, only champion on "
               f"{champ})")
    if sig.policy == "not_worse":
        tol = params.max_regression_macro_f1 or 0.0
        ci_worse = lo < -tol - EPS
        mc_worse = p < sig.alpha and champ > cand
        passed = not (ci_worse and mc_worse)
        verdict = ("significantly worse" if not passed else "not significantly worse")
        detail = (f"{verdict}: CI lower bound {lo:+.4f} {'<' if ci_worse else '>='} "
                  f"{-tol:+.4f}; {mc_text}{' < ' if p < sig.alpha else ' >= '}{sig.alpha}")
        threshold = -tol
    else:
        mc_better = p < sig.alpha and cand > champ
        passed = lo > EPS and mc_better
        detail = (f"{'significantly better' if passed else 'not significantly better'}: "
                  f"CI lower bound {lo:+.4f} {'>' if lo > EPS else '<='} 0; {mc_text}"
                  f"{' < ' if p < sig.alpha else ' >= '}{sig.alpha}")
        threshold = 0.0
    return Check(f"significance[{sig.policy}]", lo, threshold, f1["diff"], f1["ci95"], passed,
                 detail=detail)


def paired_rows_check(paired: dict[str, Any], params: GateParams) -> Check:
    """Enough test rows that neither model trained on? Below the minimum, the policy decides."""
    n, total = paired["rows"], paired["test_rows"]
    why = []
    if paired["excluded_champion_trained_on"]:
        why.append(f"{paired['excluded_champion_trained_on']} excluded: the champion trained on them")
    if paired["excluded_candidate_trained_on"]:
        why.append(f"{paired['excluded_candidate_trained_on']} excluded: the candidate trained on them")
    if paired["champion_training_data"] == "unknown":
        why.append("champion training data unknown (promoted without a fingerprint): no row "
                   "could be excluded")
    enough = n >= params.min_paired_rows
    detail = f"{n} of {total} test rows paired" + (f"; {'; '.join(why)}" if why else "")
    if not enough:
        detail += (f"; fewer than min_paired_rows={params.min_paired_rows}: "
                   + ("champion comparisons skipped (too_few_paired_rows: absolute_only)"
                      if params.too_few_paired_rows == "absolute_only"
                      else "blocked (too_few_paired_rows: block); promote --force to override"))
    return Check("paired_rows", n, params.min_paired_rows, None, None, enough,
                 blocking=params.too_few_paired_rows == "block", detail=detail)


def floor_checks(ev: dict[str, Any], params: GateParams,
                 comparison: dict[str, Any] | None) -> tuple[list[Check], list[str]]:
    cand = ev["candidate"]
    # deltas vs the champion come from the paired rows only (neither model trained on them)
    paired = ev.get("paired") if comparison else None
    champ = paired["champion"] if paired else None
    checks, skipped = [], []
    for metric in ("macro_f1", "accuracy"):
        floor = getattr(params, f"min_{metric}")
        if floor is None:
            continue
        value = cand[metric]
        delta = comparison[metric]["diff"] if comparison else None
        ci = comparison[metric]["ci95"] if comparison else None
        detail = (f"champion {champ[metric]:.4f} on {paired['rows']} paired rows" if champ
                  else "no champion comparison")
        checks.append(Check(f"min_{metric}", value, floor, delta, ci, value >= floor - EPS,
                            detail=detail))
    if params.min_class_recall is not None:
        floor = params.min_class_recall
        for label, pc in cand["per_class"].items():
            if not pc.get("support"):
                skipped.append(f"min_class_recall[{label}] (no test rows of this class)")
                continue
            champ_pc = champ["per_class"].get(label) if champ else None
            cand_pc = paired["candidate"]["per_class"].get(label) if paired else None
            delta = cand_pc["recall"] - champ_pc["recall"] if champ_pc and champ_pc["support"] else None
            checks.append(Check(f"min_class_recall[{label}]", pc["recall"], floor, delta, None,
                                pc["recall"] >= floor - EPS,
                                detail=f"recall on {pc['support']} test rows"))
    if params.tfidf_margin is not None:
        tfidf = (ev.get("baselines") or {}).get("tfidf_logreg")
        if not tfidf:
            raise StageError("gate.tfidf_margin is set but eval.json has no tfidf_logreg baseline",
                             where=str(artifacts.EVAL_METRICS), fix="re-run `dvc repro evaluate`")
        value, threshold = cand["macro_f1"], tfidf["macro_f1"] + params.tfidf_margin
        delta = comparison["macro_f1"]["diff"] if comparison else None
        checks.append(Check("beats_tfidf", value, threshold, delta,
                            comparison["macro_f1"]["ci95"] if comparison else None,
                            value >= threshold - EPS,
                            detail=f"TF-IDF macro-F1 {tfidf['macro_f1']:.4f} + margin "
                                   f"{params.tfidf_margin:.4f}"))
    return checks, skipped


def champion_checks(ev: dict[str, Any], pred: pd.DataFrame, params: GateParams,
                    comparison: dict[str, Any]) -> tuple[list[Check], list[str]]:
    checks, skipped = [], []
    f1 = comparison["macro_f1"]
    if params.max_regression_macro_f1 is not None:
        delta = f1["diff"]
        checks.append(Check("max_regression_macro_f1", delta, -params.max_regression_macro_f1,
                            delta, f1["ci95"], delta >= -params.max_regression_macro_f1 - EPS,
                            detail=f"candidate {f1['candidate']:.4f} vs champion "
                                   f"{f1['champion']:.4f} on {comparison['n']} paired rows"))
    if params.max_regression_slice is not None:
        limit = params.max_regression_slice
        for column, slices in (ev.get("slices") or {}).items():
            cis = slice_cis(pred, column, ev["labels"], params.significance,
                            params.min_slice_rows)
            for value, s in slices.items():
                name = f"max_regression_slice[{column}={value}]"
                if not s.get("champion"):
                    skipped.append(f"{name} (no paired rows in this slice)")
                    continue
                c, h = s["candidate_paired"], s["champion"]
                delta = c["macro_f1"] - h["macro_f1"]
                big = c["n"] >= params.min_slice_rows
                detail = f"macro-F1 {c['macro_f1']:.4f} vs champion {h['macro_f1']:.4f}, n={c['n']}"
                if not big:
                    detail += f" < min_slice_rows={params.min_slice_rows}: reported, not gated"
                checks.append(Check(name, delta, -limit, delta, cis.get(value),
                                    delta >= -limit - EPS, blocking=big, detail=detail))
    checks.append(significance_check(comparison, params))
    return checks, skipped


def _share(flags: Any) -> float | None:
    return round(float(flags.mean()), 6) if len(flags) else None


def oos_comparison(ev: dict[str, Any], pred: pd.DataFrame) -> dict[str, Any] | None:
    """Both models' detectors on the paired rows (neither model trained on them), as the other
    champion checks: out-of-scope recall, in-scope rows flagged and AUROC of each.

    None unless both models have a detector and the predictions carry their flags and scores."""
    import numpy as np

    oos = ev.get("oos") or {}
    cand, champ = oos.get("candidate"), oos.get("champion")
    columns = {f"{who}_{c}" for who in ("candidate", "champion") for c in ("oos_score", "out_of_scope")}
    if not cand or not champ or not columns <= set(pred.columns):
        return None
    rows = pred[pred["paired"].astype(bool)]
    label = cand.get("label")
    is_oos = (rows["label"].astype(str) == label).to_numpy() if label is not None \
        else np.zeros(len(rows), dtype=bool)
    out: dict[str, Any] = {"rows": len(rows), "oos_rows": int(is_oos.sum())}
    for who in ("candidate", "champion"):
        flags = rows[f"{who}_out_of_scope"].to_numpy(dtype=bool)
        scores = rows[f"{who}_oos_score"].to_numpy(dtype=np.float64)
        area = None
        if is_oos.any() and (~is_oos).any():
            from stages.oos_detector import auroc  # scipy: imported only when there is a pair

            area = round(auroc(scores[~is_oos], scores[is_oos]), 6)
        out[who] = {"oos_recall": _share(flags[is_oos]), "in_scope_flagged": _share(flags[~is_oos]),
                    "auroc": area}
    return out


def unmeasured(cand: dict[str, Any] | None, figure: str, needs_oos_rows: bool) -> str | None:
    """Why an out-of-scope limit cannot be measured and how to make it measurable; None if it can."""
    if cand is None:
        return ("the candidate has no out-of-scope detector (evaluate found none beside it): run "
                "`dvc repro oos evaluate` to fit one, or set this limit to null")
    if needs_oos_rows and not cand.get("oos_rows"):
        if cand.get("label") is None:
            return ("the detector's label is null, so no test row is an out-of-scope example: set "
                    "oos.label (e.g. out_of_scope), label out-of-scope texts with it in the data "
                    "and re-run `dvc repro`")
        return (f"no out-of-scope rows in the test split to measure it on: add texts labelled "
                f"`{cand['label']}` to the labelled data (split puts a share of them in the test "
                "split) and re-run `dvc repro`")
    if cand.get(figure) is None:
        return f"eval.json's oos.candidate has no {figure}: re-run `dvc repro evaluate`"
    return None


def oos_limit_checks(ev: dict[str, Any], params: GateParams,
                     paired: dict[str, Any] | None) -> list[Check]:
    """min_oos_recall, min_oos_auroc, max_in_scope_flagged on the candidate's eval.json figures;
    the difference to the champion from the paired rows (``paired``: oos_comparison)."""
    cand = (ev.get("oos") or {}).get("candidate")
    checks = []
    for name, (figure, floor, needs_oos_rows) in OOS_LIMITS.items():
        limit = getattr(params, name)
        if limit is None:
            continue
        why = unmeasured(cand, figure, needs_oos_rows)
        if why:
            checks.append(Check(name, None, limit, passed=False, detail=f"not measured: {why}"))
            continue
        value = cand[figure]
        passed = value >= limit - EPS if floor else value <= limit + EPS
        delta = None
        if paired and None not in (paired["candidate"][figure], paired["champion"][figure]):
            delta = paired["candidate"][figure] - paired["champion"][figure]
        rows = {"oos_recall": f"{cand['oos_rows']} out-of-scope",
                "in_scope_flagged": f"{cand['in_scope_rows']} in-scope"}.get(
            figure, f"{cand['in_scope_rows']} in-scope vs {cand['oos_rows']} out-of-scope")
        detail = f"{cand['method']} score, threshold {cand['threshold']:.4g}, on {rows} test rows"
        if delta is not None:
            detail += f"; champion {paired['champion'][figure]:.4f} on {paired['rows']} paired rows"
        checks.append(Check(name, value, limit, delta, None, passed, detail=detail))
    return checks


def _no_oos_comparison(ev: dict[str, Any], paired: dict[str, Any] | None) -> str | None:
    """Why the two detectors cannot be compared (None: they can)."""
    oos = ev.get("oos") or {}
    if not oos.get("candidate"):
        return "the candidate has no out-of-scope detector"
    if not oos.get("champion"):
        return "the champion has no out-of-scope detector (promoted before detectors)"
    if paired is None:
        return "re-run `dvc repro evaluate`: the predictions lack the detectors' flags"
    if not paired["oos_rows"]:
        return "no out-of-scope test rows neither model trained on"
    return None


def oos_regression_check(ev: dict[str, Any], params: GateParams, paired: dict[str, Any] | None,
                         no_comparison: str | None) -> tuple[list[Check], list[str]]:
    """max_regression_oos_recall: candidate − champion out-of-scope recall on the paired
    out-of-scope rows; skipped (and said why) when there is nothing to compare."""
    name, limit = "max_regression_oos_recall", params.max_regression_oos_recall
    if limit is None:
        return [], []
    why = no_comparison or _no_oos_comparison(ev, paired)
    if why:
        return [], [f"{name} ({why})"]
    cand, champ = paired["candidate"]["oos_recall"], paired["champion"]["oos_recall"]
    delta = cand - champ
    return [Check(name, delta, -limit, delta, None, delta >= -limit - EPS,
                  detail=f"out-of-scope recall {cand:.4f} vs champion {champ:.4f} on "
                         f"{paired['oos_rows']} paired out-of-scope rows")], []


def oos_headline(ev: dict[str, Any], paired: dict[str, Any] | None) -> dict[str, Any] | None:
    """gate.json's headline.oos: the candidate's detector figures, the champion's, and both on
    the paired rows; None without a candidate detector."""
    oos = ev.get("oos") or {}
    if not oos.get("candidate"):
        return None
    keys = ("method", "threshold", "label", "in_scope_rows", "oos_rows", "in_scope_flagged",
            "accuracy_with_abstention", "oos_recall", "oos_precision", "auroc", "fpr_at_95_tpr")
    pick = lambda side: {k: side.get(k) for k in keys} if side else None  # noqa: E731
    return {"candidate": pick(oos["candidate"]), "champion": pick(oos.get("champion")),
            "paired": paired}


def run_checks(ev: dict[str, Any], pred: pd.DataFrame, params: GateParams) -> dict[str, Any]:
    """All checks and the verdict, as the dict written to metrics/gate.json."""
    validate_params(params)
    labels = list(ev["labels"])
    has_champion = bool(ev.get("champion"))
    # out-of-scope test rows (labelled with the detector's label) are measured under eval.json's
    # oos; the classification checks use the rows of the model's classes, as evaluate did
    everything, pred = pred, pred[pred["label"].isin(labels)]
    recomputed = macro_f1(pred["label"], pred["candidate_pred"], labels)
    if abs(recomputed - ev["candidate"]["macro_f1"]) > STALE_TOLERANCE:
        raise StageError(f"candidate macro-F1 in {artifacts.EVAL_METRICS} "
                         f"({ev['candidate']['macro_f1']:.6f}) does not match "
                         f"{artifacts.PREDICTIONS} ({recomputed:.6f}): stale files",
                         where=f"{artifacts.EVAL_METRICS}, {artifacts.PREDICTIONS}",
                         fix="re-run `dvc repro evaluate`")
    comparison, skipped, rows_check = None, [], None
    if has_champion:
        paired = pred[pred["paired"].astype(bool)]
        rows_check = paired_rows_check(ev["paired"], params)
        if rows_check.passed:
            comparison = compare(paired, labels, params.significance)
        else:
            skipped.append(f"{', '.join(CHAMPION_KINDS[1:])} (too few paired rows: "
                           f"too_few_paired_rows: {params.too_few_paired_rows})")
    else:
        skipped.append(f"{', '.join(CHAMPION_KINDS)} (no champion yet: first-run policy)")
    oos_paired = oos_comparison(ev, everything) if comparison is not None else None
    checks, floor_skipped = floor_checks(ev, params, comparison)
    checks += oos_limit_checks(ev, params, oos_paired)
    skipped += floor_skipped
    if rows_check is not None:
        checks.append(rows_check)
    if comparison is not None:
        more, more_skipped = champion_checks(ev, paired, params, comparison)
        checks += more
        skipped += more_skipped
    more, more_skipped = oos_regression_check(
        ev, params, oos_paired, None if comparison is not None else
        "no champion yet" if not has_champion else "too few paired rows")
    checks += more
    skipped += more_skipped
    disabled = [name for name in ("min_macro_f1", "min_accuracy", "min_class_recall",
                                  "tfidf_margin", "max_regression_macro_f1",
                                  "max_regression_slice", *OOS_LIMITS, "max_regression_oos_recall")
                if getattr(params, name) is None]
    for check in checks:
        if check.kind in params.warn_only:
            check.blocking = False
    policy = ("first_run_absolute_only" if not has_champion else params.significance.policy
              if comparison is not None else f"too_few_paired_rows_{params.too_few_paired_rows}")
    failed = [c.name for c in checks if not c.passed and c.blocking]
    warnings = [c.name for c in checks if not c.passed and not c.blocking]
    tfidf = (ev.get("baselines") or {}).get("tfidf_logreg")
    headline = {
        "test_rows": len(pred),
        "candidate": {k: ev["candidate"][k] for k in ("macro_f1", "accuracy")},
        "champion": ({k: comparison[k]["champion"] for k in ("macro_f1", "accuracy")}
                     if comparison else None),
        "paired": ({k: ev["paired"][k] for k in ("test_rows", "rows", "excluded_champion_trained_on",
                                                 "excluded_candidate_trained_on",
                                                 "champion_training_data")}
                   if has_champion else None),
        "tfidf_logreg": {k: tfidf[k] for k in ("macro_f1", "accuracy")} if tfidf else None,
    }
    oos = oos_headline(ev, oos_paired)
    if oos is not None:  # only with a detector: gate.json stays as it was without one
        headline["oos"] = oos
    return {
        "passed": not failed,
        "policy": policy,
        "champion": has_champion,
        "failed": failed,
        "warnings": warnings,
        "checks": [_rounded(asdict(c)) for c in checks],
        "skipped": skipped,
        "disabled": disabled,
        "headline": headline,
        "comparison": _rounded(comparison) if comparison else None,
        "params": _rounded(asdict(params)),
    }


def _rounded(obj: Any) -> Any:
    if isinstance(obj, float):
        return None if math.isnan(obj) else round(obj, 6)
    if isinstance(obj, dict):
        return {k: _rounded(v) for k, v in obj.items()}
    if isinstance(obj, list):
        return [_rounded(v) for v in obj]
    return obj


def run_gate(params: GateParams, eval_path: Path = artifacts.EVAL_METRICS,
             predictions_path: Path = artifacts.PREDICTIONS, json_out: Path = artifacts.GATE_METRICS,
             md_out: Path = artifacts.GATE_REPORT) -> dict[str, Any]:
    """Decide, then write gate.json and gate.md (atomically) whatever the verdict."""
    ev, pred = load_inputs(eval_path, predictions_path)
    log.info("checking candidate on %d test rows (%s)", len(pred),
             "vs champion" if ev.get("champion") else "no champion: absolute checks only")
    result = run_checks(ev, pred, params)
    result["inputs"] = {"eval_json_sha256": sha256_file(eval_path),
                        "predictions_sha256": sha256_file(predictions_path)}
    write_json(json_out, result)
    write_text(md_out, render_markdown(result, FLOORS))
    log.info("gate %s: %d checks, %d failed, %d warnings; wrote %s, %s",
             "PASSED" if result["passed"] else "FAILED", len(result["checks"]),
             len(result["failed"]), len(result["warnings"]), json_out, md_out)
    return result


def main() -> None:
    params = load_gate_params()
    result = run_gate(params)
    if not result["passed"]:
        rows = {c["name"]: c for c in result["checks"]}
        lines = [f"  - {name}: value {num(rows[name]['value'])} vs threshold "
                 f"{num(rows[name]['threshold'])} ({rows[name]['detail']})"
                 for name in result["failed"]]
        raise StageError(f"gate FAILED: {len(result['failed'])} blocking check(s) failed\n"
                         + "\n".join(lines),
                         where=f"{artifacts.GATE_REPORT} (full report), {artifacts.GATE_METRICS}",
                         fix="improve the model or data; or, if the change is intended, adjust "
                             "the thresholds under 'gate:' in params.yaml")


if __name__ == "__main__":
    from stages.stage_cli import run_stage

    run_stage(main, "stages.gate", __doc__)
