"""The gate's report: the decision stages.gate wrote (gate.json's dict) rendered as reports/gate.md.

Verdict first, then the headline numbers (candidate, and champion on the paired rows with CIs and
McNemar's test; the out-of-scope detector's figures when the candidate has one), one row per
check, and the policy the verdict was reached by. Rendering only: every number and verdict here
was decided by stages.gate.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from stages.report_format import ci, md_table, num, signed


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
    return lines + _out_of_scope(h.get("oos"))


OOS_ROWS = (("in_scope_flagged", "in-scope rows flagged"),
            ("accuracy_with_abstention", "accuracy with abstention"),
            ("oos_recall", "out-of-scope recall"), ("oos_precision", "out-of-scope precision"),
            ("auroc", "AUROC"), ("fpr_at_95_tpr", "FPR at 95% TPR"))


def _out_of_scope(oos: dict[str, Any] | None) -> list[str]:
    """The detectors' figures on the test split (headline.oos), candidate and champion."""
    if not oos:
        return []
    cand, champ = oos["candidate"], oos.get("champion")
    # the label comes from params.yaml (oos.label); no backtick may end its code span early
    label = "null" if cand["label"] is None else f"`{str(cand['label']).replace('`', '')}`"
    lines = ["", "### Out of scope", "",
             f"Candidate detector: **{cand['method']}**, threshold {num(cand['threshold'])}; "
             f"{cand['in_scope_rows']} in-scope and {cand['oos_rows']} out-of-scope test rows "
             f"(labelled {label})."
             + ("" if cand["oos_rows"] else " With no out-of-scope rows, recall, precision, AUROC "
                "and FPR cannot be measured."), ""]
    headers = ["figure", "candidate"] + ([f"champion ({champ['method']})"] if champ else [])
    rows = [[title, num(cand.get(key))] + ([num(champ.get(key))] if champ else [])
            for key, title in OOS_ROWS if cand.get(key) is not None or (champ or {}).get(key) is not None]
    lines += md_table(headers, rows)
    paired = oos.get("paired")
    if paired:
        lines += ["", f"On the {paired['rows']} paired rows ({paired['oos_rows']} out of scope): "
                      f"out-of-scope recall {num(paired['candidate']['oos_recall'])} vs champion "
                      f"{num(paired['champion']['oos_recall'])}, in-scope flagged "
                      f"{num(paired['candidate']['in_scope_flagged'])} vs "
                      f"{num(paired['champion']['in_scope_flagged'])}."]
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


def _policy(result: dict[str, Any], floors: Sequence[str]) -> list[str]:
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
    set_floors = [f"{k} {p[k]}" for k in floors if p[k] is not None]
    lines.append(f"- Absolute floors: {', '.join(set_floors)}.")
    if p["tfidf_margin"] is not None:
        lines.append(f"- Baseline: candidate macro-F1 ≥ TF-IDF macro-F1 + {p['tfidf_margin']}.")
    if result["comparison"]:
        lines.append(f"- Max regression vs champion: macro-F1 {p['max_regression_macro_f1']}, "
                     f"each slice {p['max_regression_slice']} (slices under "
                     f"{p['min_slice_rows']} rows are reported, not gated).")
    oos = [f"{k} {p[k]}" for k in ("min_oos_recall", "min_oos_auroc", "max_in_scope_flagged",
                                   "max_regression_oos_recall") if p.get(k) is not None]
    if oos:
        lines.append(f"- Out of scope: {', '.join(oos)} (a floor or ceiling that cannot be measured "
                     "fails; the champion comparison needs both detectors).")
    for items, what in ((p["warn_only"], "Non-blocking (warn only)"),
                        (result["disabled"], "Disabled (null in params.yaml)")):
        if items:
            lines.append(f"- {what}: {', '.join(items)}.")
    if result["skipped"]:
        lines.append(f"- Not checked: {'; '.join(result['skipped'])}.")
    return lines


def render_markdown(result: dict[str, Any], floors: Sequence[str]) -> str:
    """reports/gate.md: verdict first, then the numbers, the checks and the policy used.

    ``floors``: the absolute-floor params (stages.gate.FLOORS), listed in this order when set.
    """
    return "\n".join(_verdict(result) + _headline(result) + _checks(result)
                     + _policy(result, floors)) + "\n"
