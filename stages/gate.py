"""gate: may this candidate replace the champion? Every check is a row; blocking failures stop DVC.

Reads what evaluate wrote (metrics/eval.json and the paired test predictions) and the thresholds
under ``gate:`` in params.yaml. Writes metrics/gate.json (one row per check) and reports/gate.md
(a verdict a person can read) *always*, then exits 1 when a blocking check failed, so `dvc repro`
stops before export and `promote` refuses.

Check kinds (names in gate.json are ``kind`` or ``kind[subject]``):

- ``min_macro_f1``, ``min_accuracy``, ``min_class_recall[<class>]``: absolute floors;
- ``beats_tfidf``: candidate macro-F1 >= TF-IDF + logistic-regression macro-F1 + margin;
- with a champion only: ``paired_rows`` (enough test rows that neither model trained on),
  ``max_regression_macro_f1``, ``max_regression_slice[<column>=<value>]`` (absolute drop allowed)
  and ``significance`` (paired bootstrap CI + McNemar, see :func:`significance_check` for the
  exact rule of each policy).

Candidate and champion are compared only on the test rows neither trained on (evaluate flags the
rest from each model's training-data fingerprint). With fewer than ``min_paired_rows`` such rows,
``too_few_paired_rows`` decides: ``block`` fails the gate (a person decides, e.g. promote --force),
``absolute_only`` skips the champion comparisons with a warning. Never a silent pass.

No champion yet: only the absolute checks run, and the report says so. No floor configured: the
stage refuses to run, because a gate that checks nothing would pass anything.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from stages import artifacts
from stages.common import (
    Fraction,
    NonNegativeInt,
    PositiveInt,
    Share,
    StageError,
    get_logger,
    load_params,
    read_params_file,
    run_cli,
)
from stages.io import read_json, read_parquet, sha256_file, write_json, write_text
from stages.metrics import macro_f1
from stages.report_format import ci, md_table, num, signed

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)


KINDS = ("min_macro_f1", "min_accuracy", "min_class_recall", "beats_tfidf", "paired_rows",
         "max_regression_macro_f1", "max_regression_slice", "significance")
CHAMPION_KINDS = ("paired_rows", "max_regression_macro_f1", "max_regression_slice", "significance")
FLOORS = ("min_macro_f1", "min_accuracy", "min_class_recall")
EPS = 1e-9  # eval.json rounds to 6 decimals; a value equal to its threshold passes
STALE_TOLERANCE = 5e-6  # recomputed vs eval.json macro-F1 (eval.json rounds to 6 decimals)


@dataclass
class Significance:
    # not_worse: fail only if the candidate is significantly worse by more than the tolerance;
    # better: pass only if the candidate is significantly better (see significance_check)
    policy: Literal["not_worse", "better"] = "not_worse"
    alpha: Fraction = 0.05               # McNemar exact test level (two-sided)
    bootstrap_resamples: PositiveInt = 1000   # paired bootstrap of the macro-F1 difference
    seed: int = 42


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
    sig = params.significance
    if not 0 < sig.alpha < 1:
        raise StageError(f"significance.alpha must be in (0, 1), got {sig.alpha}",
                         where="params.yaml:gate.significance.alpha", fix="e.g. 0.05")
    if sig.bootstrap_resamples < 100:
        raise StageError("significance.bootstrap_resamples must be at least 100",
                         where="params.yaml:gate.significance", fix="the default is 1000")


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


def run_checks(ev: dict[str, Any], pred: pd.DataFrame, params: GateParams) -> dict[str, Any]:
    """All checks and the verdict, as the dict written to metrics/gate.json."""
    validate_params(params)
    labels = list(ev["labels"])
    has_champion = bool(ev.get("champion"))
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
    checks, floor_skipped = floor_checks(ev, params, comparison)
    skipped += floor_skipped
    if rows_check is not None:
        checks.append(rows_check)
    if comparison is not None:
        more, more_skipped = champion_checks(ev, paired, params, comparison)
        checks += more
        skipped += more_skipped
    disabled = [name for name in ("min_macro_f1", "min_accuracy", "min_class_recall",
                                  "tfidf_margin", "max_regression_macro_f1",
                                  "max_regression_slice") if getattr(params, name) is None]
    for check in checks:
        if check.kind in params.warn_only:
            check.blocking = False
    policy = ("first_run_absolute_only" if not has_champion else params.significance.policy
              if comparison is not None else f"too_few_paired_rows_{params.too_few_paired_rows}")
    failed = [c.name for c in checks if not c.passed and c.blocking]
    warnings = [c.name for c in checks if not c.passed and not c.blocking]
    tfidf = (ev.get("baselines") or {}).get("tfidf_logreg")
    return {
        "passed": not failed,
        "policy": policy,
        "champion": has_champion,
        "failed": failed,
        "warnings": warnings,
        "checks": [_rounded(asdict(c)) for c in checks],
        "skipped": skipped,
        "disabled": disabled,
        "headline": {
            "test_rows": len(pred),
            "candidate": {k: ev["candidate"][k] for k in ("macro_f1", "accuracy")},
            "champion": ({k: comparison[k]["champion"] for k in ("macro_f1", "accuracy")}
                         if comparison else None),
            "paired": ({k: ev["paired"][k] for k in ("test_rows", "rows", "excluded_champion_trained_on",
                                                     "excluded_candidate_trained_on",
                                                     "champion_training_data")}
                       if has_champion else None),
            "tfidf_logreg": {k: tfidf[k] for k in ("macro_f1", "accuracy")} if tfidf else None,
        },
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


def _verdict(result: dict[str, Any]) -> list[str]:
    """The title and one sentence: passed or not, and which checks failed or warned."""
    verdict = "PASSED" if result["passed"] else "FAILED"
    if result["passed"]:
        summary = "every blocking check passed"
        if result["warnings"]:
            summary += f"; {len(result['warnings'])} warning(s): {', '.join(result['warnings'])}"
    else:
        summary = f"{len(result['failed'])} blocking check(s) failed: {', '.join(result['failed'])}"
    lines = [f"# Gate: **{verdict}**", "", f"{summary.capitalize()}.", ""]
    if not result["champion"]:
        lines += ["> **No champion yet** (first run): only the absolute checks ran. The champion "
                  "comparisons (regression, slices, significance) start after the first "
                  "`python -m commands.promote`.", ""]
    return lines


def _paired_rows(paired: dict[str, Any]) -> str:
    """Which test rows the comparison used, and why the others were left out."""
    excluded = paired["excluded_champion_trained_on"] + paired["excluded_candidate_trained_on"]
    known = paired["champion_training_data"] != "unknown"
    if not known:
        why = ("The champion's training data is unknown (it was promoted without a training-data "
               "fingerprint), so rows it trained on could not be left out.")
    else:
        why = (f"{paired['excluded_champion_trained_on']} row(s) left out because the champion "
               f"trained on them, {paired['excluded_candidate_trained_on']} because the candidate "
               "did." + (" The comparison uses only rows neither model has seen." if excluded
                         else ""))
    return f"**Paired comparison on {paired['rows']} of {paired['test_rows']} test rows.** {why}"


def _headline(result: dict[str, Any]) -> list[str]:
    """The headline numbers: candidate (and champion, paired, with CIs and McNemar's test)."""
    h, comp = result["headline"], result["comparison"]
    lines = [f"## Headline ({h['test_rows']} test rows)", ""]
    if h.get("paired"):
        lines += [_paired_rows(h["paired"]), ""]
    metrics = (("macro_f1", "macro-F1"), ("accuracy", "accuracy"))
    if comp:
        lines += md_table(
            ["metric", f"candidate (all {h['test_rows']} rows)", "candidate (paired)",
             "champion (paired)", "Δ paired", "95% CI"],
            [[title, num(h["candidate"][m]), num(comp[m]["candidate"]), num(comp[m]["champion"]),
              signed(comp[m]["diff"]), ci(comp[m]["ci95"])] for m, title in metrics])
        mc = comp["mcnemar"]
        lines += ["", f"McNemar exact test: only the candidate is right on "
                      f"{mc['candidate_only_correct']} rows, only the champion on "
                      f"{mc['champion_only_correct']}; p = {mc['p_value']:.3g}. CIs: paired "
                      f"bootstrap, {comp['bootstrap_resamples']} resamples, seed {comp['seed']}."]
    else:
        lines += md_table(["metric", "candidate"],
                          [[title, num(h["candidate"][m])] for m, title in metrics])
    if h["tfidf_logreg"]:
        lines += ["", f"TF-IDF + logistic regression baseline: macro-F1 "
                      f"{num(h['tfidf_logreg']['macro_f1'])}, accuracy "
                      f"{num(h['tfidf_logreg']['accuracy'])}."]
    return lines


def _check_status(check: dict[str, Any]) -> str:
    if check["passed"]:
        return "pass" if check["blocking"] else "pass (non-blocking)"
    return "**FAIL**" if check["blocking"] else "warn"


def _checks(result: dict[str, Any]) -> list[str]:
    """One row per check: value, threshold, the difference to the champion, the verdict."""
    return ["", "## Checks", "", *md_table(
        ["check", "value", "threshold", "Δ vs champion", "95% CI of Δ", "result", "detail"],
        [[f"`{c['name']}`", num(c["value"]), num(c["threshold"]), signed(c["delta_vs_champion"]),
          ci(c["ci95"]), _check_status(c), c["detail"]] for c in result["checks"]],
        align="lrrrrll")]


def _significance_rule(policy: str, alpha: float, tolerance: float) -> str:
    if policy == "not_worse":
        return (f"**not_worse**: the candidate fails only if it is significantly worse, i.e. the "
                f"95% CI lower bound of candidate − champion macro-F1 is below {-tolerance:+.4f} "
                f"*and* McNemar's exact test gives p < {alpha} with more rows only the champion "
                "gets right.")
    return (f"**better**: the candidate passes only if it is significantly better, i.e. the 95% "
            f"CI lower bound of candidate − champion macro-F1 is above 0 *and* McNemar's exact "
            f"test gives p < {alpha} with more rows only the candidate gets right.")


def _policy(result: dict[str, Any]) -> list[str]:
    """The rules this verdict was reached by, as params.yaml set them."""
    p = result["params"]
    lines = ["", "## Policy", ""]
    if result["champion"]:
        lines.append(f"- Candidate and champion are compared only on test rows neither trained on "
                     f"(at least {p['min_paired_rows']}; fewer: {p['too_few_paired_rows']}).")
    if result["comparison"]:
        sig = p["significance"]
        rule = _significance_rule(sig["policy"], sig["alpha"], p["max_regression_macro_f1"] or 0.0)
        lines.append(f"- Significance policy {rule}")
    elif result["champion"]:
        lines.append("- Too few paired rows: the champion comparisons did not run.")
    else:
        lines.append("- First-run policy: no champion to compare with, absolute checks only.")
    floors = [f"{k} {p[k]}" for k in FLOORS if p[k] is not None]
    lines.append(f"- Absolute floors: {', '.join(floors)}.")
    if p["tfidf_margin"] is not None:
        lines.append(f"- Baseline: candidate macro-F1 ≥ TF-IDF macro-F1 + {p['tfidf_margin']}.")
    if result["comparison"]:
        lines.append(f"- Max regression vs champion: macro-F1 {p['max_regression_macro_f1']}, "
                     f"each slice {p['max_regression_slice']} (slices under "
                     f"{p['min_slice_rows']} rows are reported, not gated).")
    for items, what in ((p["warn_only"], "Non-blocking (warn only)"),
                        (result["disabled"], "Disabled (null in params.yaml)")):
        if items:
            lines.append(f"- {what}: {', '.join(items)}.")
    if result["skipped"]:
        lines.append(f"- Not checked: {'; '.join(result['skipped'])}.")
    return lines


def render_markdown(result: dict[str, Any]) -> str:
    """reports/gate.md: verdict first, then the numbers, the checks and the policy used."""
    return "\n".join(_verdict(result) + _headline(result) + _checks(result)
                     + _policy(result)) + "\n"


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
    write_text(md_out, render_markdown(result))
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
    run_cli(main)
