"""report: one markdown review of a retrain, base revision -> head, for a pull request.

    python -m commands.report --base main [--head workspace|<rev>] --out reports/pr.md

Metric and param diffs (from DVC's API) plus what DVC lacks: relative change, CIs, the gate's
reasons, a row-level data diff and PNG plots. Every file is read at its own revision, offline; no
customer text unless ``report.show_texts``, and every data value is escaped (stages.markdown_safety).
More: docs/review.md.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages import artifacts
from stages.common import StageError, get_logger, load_params, run_cli
from stages.io import atomic_path, write_text
from stages.markdown_safety import code, defuse_markdown, escape_markdown, text_hash
from stages.report_format import MISSING, ReportParams, ci, md_table, num, signed
from stages.vcs import file_at_revision, git_try

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

WORKSPACE = "workspace"
METRIC_FILES = tuple(str(p) for p in artifacts.METRIC_FILES)  # DVC's diffs name files as strings
EVAL, GATE, TRAIN, EXPORT = (str(p) for p in (artifacts.EVAL_METRICS, artifacts.GATE_METRICS,
                                               artifacts.TRAIN_METRICS, artifacts.EXPORT_METRICS))
# (file, flattened key) -> short title, in the order of the headline table (a PR column is narrow)
HEADLINE = {
    (EVAL, "candidate.macro_f1"): "macro-F1",
    (EVAL, "candidate.accuracy"): "accuracy",
    (EVAL, "candidate.weighted_f1"): "weighted-F1",
    (EVAL, "baselines.tfidf_logreg.macro_f1"): "TF-IDF macro-F1",
    (TRAIN, "best_val_macro_f1"): "best val macro-F1",
    (EXPORT, "ratios.int8_vs_torch_p50_speedup"): "int8 speed-up",
}
AUDIT = str(artifacts.LABEL_AUDIT_METRICS)
# nested detail the flat metric diff leaves out, because a section of its own shows it briefly
# (DVC already drops lists such as the audit's confused_pairs)
DIFF_DETAIL = {AUDIT: ("per_class.",), EVAL: ("oos.candidate.methods.", "oos.champion.methods.")}
TEXTS = str(artifacts.RAW_TEXTS)
LABELS = str(artifacts.LABELS)
PREDICTIONS = str(artifacts.PREDICTIONS)
TRAINING_DATA = str(artifacts.CHECKPOINT_DIR / artifacts.TRAINING_DATA_FILE)
GATE_MD = str(artifacts.GATE_REPORT)
# name, git-tracked CSV (cache: false), title of its base-vs-head figure
PLOTS = (("confusion", str(artifacts.CONFUSION_CSV), "Confusion matrix (test split, candidate)"),
         ("per_class_f1", str(artifacts.PER_CLASS_CSV), "Per-class F1 (test split, candidate)"),
         ("train_epochs", str(artifacts.TRAIN_EPOCHS_CSV), "Training curves by epoch"),
         ("latency", str(artifacts.LATENCY_CSV), "Latency p50 at batch 1"))
MAX_EXAMPLES = 10        # example rows per data-diff table
MAX_CONFUSED_PAIRS = 5   # given -> suggested label pairs in the label audit section
# eval.json's oos.candidate figures in the Out of scope section: key, title, needs OOS test rows
OOS_FIGURES = (("threshold", "threshold", False), ("in_scope_flagged", "in-scope flagged", False),
               ("accuracy_with_abstention", "accuracy with abstention", False),
               ("oos_recall", "OOS recall", True), ("oos_precision", "OOS precision", True),
               ("auroc", "AUROC", True), ("fpr_at_95_tpr", "FPR at 95% TPR", True))
MAX_DETAIL_ROWS = 200    # rows per metric file in the collapsed full diff
BOOTSTRAP_RESAMPLES = 1000


# ------------------------------------------------------------------------ base -> head changes
# (numbers, tables and escaping come from stages.report_format and stages.markdown_safety)

def relative(old: Any, new: Any) -> float | None:
    if not all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new)):
        return None
    return (new - old) / abs(old) if old else None


def delta(old: Any, new: Any) -> Any:
    if old is None and new is not None:
        return "new"
    if new is None and old is not None:
        return "removed"
    if all(isinstance(v, int | float) and not isinstance(v, bool) for v in (old, new)):
        return signed(new - old)
    return "changed" if old != new else "0"


def pct(old: Any, new: Any) -> str:
    rel = relative(old, new)
    return MISSING if rel is None else f"{rel:+.1%}"


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:12]


@dataclass(frozen=True)
class Side:
    """One side of the comparison: a commit, or the working tree (``sha`` None)."""

    role: str        # "base" | "head"
    spec: str        # what the user typed: main, origin/main, HEAD~1, workspace
    sha: str | None
    subject: str = ""

    @property
    def rev(self) -> str:
        """The name DVC's API knows this side by."""
        return self.sha or WORKSPACE

    @property
    def short(self) -> str:
        return self.sha[:8] if self.sha else WORKSPACE

    @property
    def label(self) -> str:
        if self.sha is None:
            return "working tree"
        spec = escape_markdown(self.spec)
        return f"{spec} (`{self.sha[:8]}`)" if self.spec != self.sha else f"`{self.sha[:8]}`"


# ---------------------------------------------------------------------------------------- reading

def repo_root(start: Path) -> Path:
    proc = git_try("rev-parse", "--show-toplevel", cwd=start)
    if proc.returncode != 0:
        raise StageError("not inside a git repository", where=str(start),
                         fix="run the report from the project's repository root")
    root = Path(proc.stdout.decode().strip())
    if not (root / ".dvc").is_dir():
        raise StageError("not a DVC project (no .dvc/ directory)", where=str(root),
                         fix="run the report from the project's repository root")
    return root


def resolve_side(root: Path, role: str, spec: str) -> Side:
    """A git revision (branch, tag, sha, HEAD~1) or, for the head only, the working tree."""
    if spec == WORKSPACE:
        if role == "base":
            raise StageError("--base must be a git revision, not the working tree",
                             fix="e.g. --base main or --base origin/main")
        top = git_try("log", "-1", "--format=%h %s", cwd=root).stdout.decode().strip()
        return Side(role, spec, None, f"on top of {top}" if top else "")
    # --end-of-options: a revision that starts with '-' is a name, never a git option
    proc = git_try("rev-parse", "--verify", "--quiet", "--end-of-options", f"{spec}^{{commit}}",
                   cwd=root)
    if proc.returncode != 0 or not spec.strip():
        raise StageError(f"unknown git revision '{spec}' (--{role})", where=str(root),
                         fix="use a branch, tag or commit that exists in this clone; fetch it "
                             "first (git fetch origin), and in CI check out with fetch-depth: 0")
    sha = proc.stdout.decode().strip()
    subject = git_try("log", "-1", "--format=%s", sha, "--", cwd=root).stdout.decode().strip()
    return Side(role, spec, sha, subject)


def read_at(root: Path, side: Side, path: str) -> tuple[bytes | None, str]:
    """The bytes of ``path`` as they were on ``side``, and where they came from (or why not)."""
    if side.sha is None:
        file = root / path
        return (file.read_bytes(), "working tree") if file.is_file() else (None, "absent")
    raw = file_at_revision(side.sha, path, cwd=root)
    if raw is not None:
        return raw, "git"
    try:
        import dvc.api

        return dvc.api.read(path, repo=str(root), rev=side.sha, mode="rb"), "dvc"
    except Exception as exc:  # missing path, missing cache, unreachable remote: all reported
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, "absent" if "does not exist" in reason else f"unavailable: {reason}"


def read_json_at(root: Path, side: Side, path: str) -> dict[str, Any] | None:
    raw, _ = read_at(root, side, path)
    return json.loads(raw) if raw else None


# ------------------------------------------------------------------------------------ DVC diffs

def dvc_diffs(root: Path, base: Side, head: Side) -> tuple[dict, dict]:
    """``dvc metrics diff --all`` and ``dvc params diff`` between the two sides, via DVC's API."""
    from dvc.repo import Repo

    targets = [str(root / f) for f in METRIC_FILES]
    with Repo(str(root)) as repo:
        metrics = repo.metrics.diff(a_rev=base.rev, b_rev=head.rev, targets=targets, all=True)
        params = repo.params.diff(a_rev=base.rev, b_rev=head.rev)
    return flat_metrics(metrics.get("diff", {})), params.get("diff", {})


def flat_metrics(diff: dict[str, dict]) -> dict[str, dict]:
    """DVC's metric diff less the nested detail another section shows (DIFF_DETAIL)."""
    return {file: {key: row for key, row in rows.items()
                   if not key.startswith(DIFF_DETAIL.get(file, ()))}
            for file, rows in diff.items()}


# ------------------------------------------------------------------------------------- sections

def prediction_ci(root: Path, base: Side, head: Side, labels: list[str] | None) -> dict | None:
    """Paired bootstrap CI of head − base candidate accuracy / macro-F1 on their shared test rows.

    Both sides' predictions are read at their own revision; rows are matched on ``id`` and scored
    against the head's labels (a relabel counts as the truth now). As in evaluate, a row either
    side's model trained on (its checkpoint's training-data fingerprint) is left out: it would
    flatter that side. None when either side's predictions are missing.
    """
    raw_b, _ = read_at(root, base, PREDICTIONS)
    raw_h, _ = read_at(root, head, PREDICTIONS)
    if not raw_b or not raw_h:
        return None
    import pandas as pd

    from stages import stats
    from stages.data import seen_fingerprints, text_fingerprint

    # written by evaluate, not a user's table: read as it is (its flag columns are booleans)
    b = pd.read_parquet(io.BytesIO(raw_b))[["id", "candidate_pred"]]
    h = pd.read_parquet(io.BytesIO(raw_h))[["id", "text", "label", "candidate_pred"]]
    rows = h.merge(b, on="id", suffixes=("_head", "_base"))
    shared = len(rows)
    keys = rows["text"].map(text_fingerprint)
    excluded, unknown = {}, []
    for side in (base, head):
        seen = seen_fingerprints(read_json_at(root, side, TRAINING_DATA))
        if seen is None:
            unknown.append(side.role)
            continue
        hit = keys.isin(seen)
        excluded[side.role] = int(hit.sum())
        rows, keys = rows[~hit], keys[~hit]
    labels = labels or sorted(rows["label"].astype(str).unique())
    rows = rows[rows["label"].isin(labels)]
    if rows.empty:
        return None
    boot = stats.paired_bootstrap(rows["label"], rows["candidate_pred_head"],
                                  rows["candidate_pred_base"], labels, BOOTSTRAP_RESAMPLES, 42)
    return {**boot, "shared_rows": shared, "excluded_trained_on": excluded,
            "training_data_unknown": unknown}


def metrics_section(mdiff: dict, base_metrics: dict[str, dict | None],
                    head_metrics: dict[str, dict | None], boot: dict | None,
                    head_gate: dict | None) -> list[str]:
    lines = ["## Metrics", ""]
    present = [f for f in METRIC_FILES
               if base_metrics[f] is not None or head_metrics[f] is not None]
    if not present:
        return lines + ["No metrics on either side yet: run `dvc repro`.", ""]
    status = {f: ("new" if base_metrics[f] is None else "removed" if head_metrics[f] is None
                  else "both") for f in present}
    lines += md_table(["metrics file", "base", "head", "changed values"],
                      [[f"`{f}`", "new" if status[f] == "new" else "yes",
                        "removed" if status[f] == "removed" else "yes",
                        sum(1 for r in mdiff.get(f, {}).values() if r.get("old") != r.get("new"))]
                       for f in present], "lccr")
    boot_ci = {m: boot[m]["ci95"] for m in ("macro_f1", "accuracy")} if boot else {}
    rows = []
    for (file, key), title in HEADLINE.items():
        row = mdiff.get(file, {}).get(key)
        if row is None:
            continue
        old, new = row.get("old"), row.get("new")
        metric = key.removeprefix("candidate.") if file.endswith("eval.json") else None
        rows.append([f"{title} `{key}`", num(old), num(new), delta(old, new), pct(old, new),
                     ci(boot_ci.get(metric or ""))])
    if rows:
        lines += ["", "### Headline", ""]
        lines += md_table(["metric", "base", "head", "Δ", "Δ %", "95% CI of Δ"], rows)
    notes = []
    if boot:
        left_out = [f"{n} that the {role} model trained on" for role, n in
                    boot["excluded_trained_on"].items() if n]
        unknown = [f"the {role} model's training data is unknown (no `{TRAINING_DATA}`), so "
                   "its rows could not be checked" for role in boot["training_data_unknown"]]
        notes.append(f"95% CI of Δ: paired bootstrap ({boot['n_resamples']} resamples, seed "
                     f"{boot['seed']}) over **{boot['n']} test rows**: of the "
                     f"{boot['shared_rows']} rows in both sides' `{PREDICTIONS}`, "
                     + (f"left out {' and '.join(left_out)}" if left_out
                        else "none left out (neither model trained on any of them)")
                     + (f"; {'; '.join(unknown)}" if unknown else "")
                     + f". Scored against the head's labels; on those rows Δ macro-F1 = "
                     f"{boot['macro_f1']['diff']:+.4f}, Δ accuracy = "
                     f"{boot['accuracy']['diff']:+.4f}.")
    else:
        notes.append(f"No base→head CI: `{PREDICTIONS}` is not available on both sides.")
    comparison = (head_gate or {}).get("comparison")
    if comparison:
        notes.append("Head candidate vs champion (from the head's `metrics/gate.json`, paired "
                     "bootstrap on the same test rows): Δ macro-F1 = "
                     f"{comparison['macro_f1']['diff']:+.4f} "
                     f"{ci(comparison['macro_f1']['ci95'])}"
                     f", Δ accuracy = {comparison['accuracy']['diff']:+.4f} "
                     f"{ci(comparison['accuracy']['ci95'])} (95% CI); McNemar p = "
                     f"{num(comparison.get('mcnemar', {}).get('p_value'))}.")
    lines += [""] + [f"- {n}" for n in notes] + [""]
    for file in present:
        changed = sorted((k, r) for k, r in mdiff.get(file, {}).items()
                         if r.get("old") != r.get("new"))
        head_txt = {"new": " (new: not on the base side)",
                    "removed": " (removed: not on the head side)"}.get(status[file], "")
        summary = f"<code>{file}</code>{head_txt}: {len(changed)} changed value(s)"
        if not changed:
            lines += [f"- {summary}", ""]
            continue
        body = md_table(["metric", "base", "head", "Δ", "Δ %"],
                        [[f"`{k}`", num(r.get("old")), num(r.get("new")),
                          delta(r.get("old"), r.get("new")), pct(r.get("old"), r.get("new"))]
                         for k, r in changed[:MAX_DETAIL_ROWS]])
        if len(changed) > MAX_DETAIL_ROWS:
            body.append(f"\n… and {len(changed) - MAX_DETAIL_ROWS} more: `dvc metrics diff`.")
        lines += ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]
    return lines


def params_diff_section(pdiff: dict) -> list[str]:
    lines = ["## Params (changed only)", ""]
    exact = lambda v: MISSING if v is None else code(json.dumps(v))  # noqa: E731  params: as written
    rows = [[code(k), exact(r.get("old")), exact(r.get("new")), code(file)]
            for file, changes in pdiff.items() for k, r in changes.items()
            if r.get("old") != r.get("new")]
    if not rows:
        return lines + ["No parameter changed.", ""]
    files = {r[3] for r in rows}
    if files == {code("params.yaml")}:             # the usual case: no column for it
        return lines + ["In `params.yaml`:", ""] + md_table(
            ["param", "base", "head"], [r[:3] for r in rows], "lll") + [""]
    return lines + md_table(["param", "base", "head", "file"], rows, "lllc") + [""]


def verdict(gate: dict | None) -> str:
    if gate is None:
        return "no verdict (no `metrics/gate.json`)"
    return "**PASSED**" if gate.get("passed") else "**FAILED**"


def gate_section(root: Path, base: Side, head: Side, base_gate: dict | None,
                 head_gate: dict | None) -> list[str]:
    lines = ["## Gate", "", f"- head: {verdict(head_gate)}", f"- base: {verdict(base_gate)}"]
    if head_gate is None:
        return lines + ["", "The head has no gate verdict: run `dvc repro gate` (CI fails the "
                            "check without one).", ""]
    checks = head_gate.get("checks", [])
    failing = [c for c in checks if not c.get("passed")]
    if head_gate.get("policy"):
        lines.append(f"- policy: `{head_gate['policy']}`; {len(checks)} checks, "
                     f"{sum(1 for c in failing if c.get('blocking'))} blocking failure(s), "
                     f"{sum(1 for c in failing if not c.get('blocking'))} warning(s)")
    lines.append("")
    if failing:
        lines += ["### Failing checks", ""]
        lines += md_table(["check", "value", "threshold", "Δ vs champion", "95% CI of Δ", "blocks"],
                          [[code(c["name"]), num(c.get("value")), num(c.get("threshold")),
                            signed(c.get("delta_vs_champion")), ci(c.get("ci95")),
                            "yes" if c.get("blocking") else "warn"]
                           for c in failing], "lrrrrc")
        why = [f"- {code(c['name'])}: {escape_markdown(c['detail'])}" for c in failing
               if c.get("detail")]
        lines += (["", "Why:", "", *why] if why else []) + [""]
    else:
        lines += ["Every check passed.", ""]
    before = {c["name"]: c.get("passed") for c in (base_gate or {}).get("checks", [])}
    flipped = [(c["name"], before[c["name"]], c.get("passed")) for c in checks
               if c["name"] in before and before[c["name"]] != c.get("passed")]
    if flipped:
        lines += ["Checks whose result changed since the base: " + ", ".join(
            f"{code(n)} {'pass' if a else 'fail'} → {'pass' if b else 'fail'}" for n, a, b in flipped)
            + ".", ""]
    skipped = head_gate.get("skipped") or []
    if skipped:
        lines += [f"Not checked: {escape_markdown('; '.join(skipped))}.", ""]
    raw, _ = read_at(root, head, GATE_MD)
    if raw:
        lines += ["<details>", f"<summary>head's <code>{GATE_MD}</code></summary>", "",
                  defuse_markdown(raw.decode("utf-8", "replace").strip()), "", "</details>", ""]
    return lines


def _detector(ev: dict | None, who: str = "candidate") -> dict | None:
    return ((ev or {}).get("oos") or {}).get(who)


def _oos_rows_note(role: str, oos: dict) -> str:
    """Which test rows a side's figures are on, and why some are not measured."""
    label = "null" if oos.get("label") is None else code(oos["label"])
    note = (f"- {role}: {oos.get('in_scope_rows')} in-scope and {oos.get('oos_rows')} out-of-scope "
            f"test rows (labelled {label})")
    if not oos.get("oos_rows"):
        note += (f"; no out-of-scope rows, so recall, precision, AUROC and FPR are not measured "
                 f"(add texts labelled {label} to the labelled data)")
    return note


def oos_methods_table(oos: dict) -> list[str]:
    """Every score the head's detector has a threshold for, on the same test rows."""
    methods = oos.get("methods") or {}
    if not methods:
        return []
    rows = [[code(m) + (" (used)" if m == oos.get("method") else ""), num(v.get("auroc")),
             num(v.get("fpr_at_95_tpr")), num(v.get("in_scope_flagged")), num(v.get("oos_recall"))]
            for m, v in methods.items()]
    return ["", "Scores compared on the head's test split (each at its own threshold):", "",
            *md_table(["score", "AUROC", "FPR at 95% TPR", "in-scope flagged", "OOS recall"], rows,
                      "lrrrr")]


def oos_section(base_eval: dict | None, head_eval: dict | None) -> list[str]:
    """The candidates' out-of-scope detectors base -> head; nothing when neither side has one."""
    base, head = _detector(base_eval), _detector(head_eval)
    if base is None and head is None:
        return []
    lines = ["## Out of scope", ""]
    if head is None:
        lines += ["The head's candidate has no out-of-scope detector (the base's had one): "
                  "run `dvc repro oos evaluate`.", ""]
    method_old, method_new = (base or {}).get("method"), (head or {}).get("method")
    rows = [["method", code(method_old) if method_old else MISSING,
             code(method_new) if method_new else MISSING, delta(method_old, method_new)]]
    for key, title, needs_rows in OOS_FIGURES:
        old, new = (base or {}).get(key), (head or {}).get(key)
        if needs_rows and old is None and new is None:
            continue  # measured on neither side: the notes below say why
        other_score = key == "threshold" and None not in (method_old, method_new) \
            and method_old != method_new  # thresholds of two different scores do not subtract
        rows.append([title, num(old), num(new), "other score" if other_score else delta(old, new)])
    lines += md_table(["figure", "base", "head", "Δ"], rows, "lrrr")
    lines += [""] + [_oos_rows_note(role, oos) for role, oos in (("base", base), ("head", head))
                     if oos is not None]
    champion = _detector(head_eval, "champion")
    if head is not None and champion is not None:
        lines.append(f"- head's champion ({code(champion.get('method'))}): in-scope flagged "
                     f"{num(champion.get('in_scope_flagged'))}, OOS recall "
                     f"{num(champion.get('oos_recall'))}, AUROC {num(champion.get('auroc'))}")
    if head is not None:
        lines += oos_methods_table(head)
    return lines + [""]


def audit_summary(audit: dict | None) -> str:
    """The summary line of the label audit: suspects and their share on the head."""
    if audit is None:
        return "no label audit on the head"
    return (f"{audit['suspects']} of {audit['rows']} train and val labels look wrong "
            f"({100 * audit['suspect_share']:.1f}%, limit {100 * audit['max_suspect_share']:g}%)")


def label_audit_section(base_audit: dict | None, head_audit: dict | None) -> list[str]:
    """The head's audit headline, suspects base -> head, and its most confused label pairs."""
    from stages.label_audit_report import verdict as audit_verdict

    lines = ["## Label audit", ""]
    if head_audit is None:
        return lines + [f"No label audit on the head (no `{AUDIT}`): run `dvc repro label_audit`.",
                        ""]
    lines.append(f"- head: {escape_markdown(audit_verdict(head_audit))}")
    new, share = head_audit["suspects"], head_audit["suspect_share"]
    if base_audit is None:
        lines.append(f"- suspects: {new} ({share:.1%}); first audit: the base has no `{AUDIT}`")
    else:
        old, old_share = base_audit["suspects"], base_audit["suspect_share"]
        lines.append(f"- suspects: {old} → {new} ({delta(old, new)}); share {old_share:.1%} → "
                     f"{share:.1%}")
    pairs = (head_audit.get("confused_pairs") or [])[:MAX_CONFUSED_PAIRS]
    if not pairs:
        return lines + ["", "No confused label pairs on the head.", ""]
    lines += ["", f"Most confused pairs on the head (given label → suggested label; top "
              f"{len(pairs)}, all in the head's `{artifacts.LABEL_AUDIT_MD}`):", ""]
    rows = [[code(p["given"]), code(p["suggested"]), p["rows"]] for p in pairs]
    if base_audit is None:
        return lines + md_table(["given", "suggested", "rows"], rows, "llr") + [""]
    before = {(p["given"], p["suggested"]): p["rows"] for p in base_audit.get("confused_pairs") or []}
    for row, pair in zip(rows, pairs, strict=True):
        row.append(before.get((pair["given"], pair["suggested"]), 0))
    return lines + md_table(["given", "suggested", "rows", "base rows"], rows, "llrr") + [""]


def load_data(root: Path, side: Side) -> tuple[pd.DataFrame | None, str]:
    """Labelled texts of one side: the DVC outputs of ingest, else the ingest sources in params."""
    import yaml

    from stages.tables import read_table_bytes

    sources = [(TEXTS, LABELS)]
    raw_params, _ = read_at(root, side, "params.yaml")
    ingest = ((yaml.safe_load(raw_params) or {}).get("ingest") or {}) if raw_params else {}
    src = ingest.get("source") or {}
    if src.get("texts") and src.get("labels") and "://" not in src["texts"] + src["labels"]:
        sources.append((src["texts"], src["labels"]))
    reasons = []
    for texts_path, labels_path in sources:
        raw_t, why_t = read_at(root, side, texts_path)
        raw_l, why_l = read_at(root, side, labels_path)
        if raw_t and raw_l:
            texts = read_table_bytes(raw_t, texts_path, f"{side.role} texts")
            labels = read_table_bytes(raw_l, labels_path, f"{side.role} labels")
            keep = [c for c in ("id", "label", "annotator") if c in labels]
            df = texts[["id", "text"]].merge(labels[keep], on="id", how="outer")
            df["id"] = df["id"].astype(str)
            where = (f"`{texts_path}` ({why_t}, sha256 {digest(raw_t)}) + `{labels_path}` "
                     f"({why_l}, sha256 {digest(raw_l)})")
            return df, where
        reasons.append(f"`{texts_path}`: {why_t}; `{labels_path}`: {why_l}")
    return None, "; ".join(reasons)


def row_text(text: Any, show_texts: bool) -> str:
    """What a data-diff table shows of a text: its hash, or (opt-in) the escaped text itself."""
    return escape_markdown(text, width=80) if show_texts else code(text_hash(text))


def data_section(root: Path, base: Side, head: Side,
                 show_texts: bool = False) -> tuple[list[str], dict[str, int]]:
    lines = ["## Data and labels", ""]
    (b, b_where), (h, h_where) = load_data(root, base), load_data(root, head)
    lines += [f"- base: {b_where}", f"- head: {h_where}", ""]
    if b is None or h is None:
        return lines + ["Data diff not available for both sides (see above): `dvc pull` the "
                        "missing revision's data, or run with a DVC remote configured.", ""], {}
    b, h = b.set_index("id"), h.set_index("id")
    added, removed = h.index.difference(b.index), b.index.difference(h.index)
    common = h.index.intersection(b.index)
    old_label, new_label = b.loc[common, "label"], h.loc[common, "label"]
    relabelled = common[(old_label.fillna("\0") != new_label.fillna("\0")).to_numpy()]
    retexted = common[(b.loc[common, "text"].fillna("") != h.loc[common, "text"].fillna(""))
                      .to_numpy()]
    counts = {"added": len(added), "removed": len(removed), "relabelled": len(relabelled),
              "text_changed": len(retexted)}
    lines += md_table(["", "base", "head"],
                      [["labelled rows", int(b["label"].notna().sum()), int(h["label"].notna().sum())],
                       ["texts", int(b["text"].notna().sum()), int(h["text"].notna().sum())],
                       ["classes", b["label"].nunique(), h["label"].nunique()]])
    lines += ["", f"Rows added: **{len(added)}**, removed: **{len(removed)}**, relabelled "
              f"(same id, new label): **{len(relabelled)}**, text changed (same id): "
              f"**{len(retexted)}**.", ""]
    text_column = "text" if show_texts else "text hash"
    lines += ["Texts are quoted (escaped): `report.show_texts` is true." if show_texts else
              "Texts are not quoted (they may be customer data and this report may be public): "
              "rows show their id and text hash, the fingerprint in `training_data.json`; "
              "`report.show_texts: true` in params.yaml quotes them.", ""]
    if len(relabelled):
        lines += [f"### Relabelled ids ({len(relabelled)})", ""]
        annot = "annotator" in h
        rows = [[code(i), row_text(h.at[i, "text"], show_texts), code(num(b.at[i, "label"])),
                 code(num(h.at[i, "label"]))] + ([code(num(h.at[i, "annotator"]))] if annot else [])
                for i in sorted(relabelled)[:MAX_EXAMPLES]]
        extra = ["annotator"] if annot else []
        lines += md_table(["id", text_column, "base label", "head label", *extra], rows,
                          "l" * (4 + len(extra)))
        if len(relabelled) > MAX_EXAMPLES:
            lines += ["", "<details><summary>all relabelled ids</summary>", "",
                      ", ".join(code(i) for i in sorted(relabelled)), "", "</details>"]
        lines.append("")
    for title, ids, df in (("Added rows", added, h), ("Removed rows", removed, b),
                           ("Text changed", retexted, h)):
        if len(ids):
            lines += [f"<details><summary>{title} ({len(ids)}; first {min(len(ids), MAX_EXAMPLES)})"
                      "</summary>", ""]
            lines += md_table(["id", text_column, "label"],
                              [[code(i), row_text(df.at[i, "text"], show_texts),
                                code(num(df.at[i, "label"]))]
                               for i in sorted(ids)[:MAX_EXAMPLES]], "lll")
            lines += ["", "</details>", ""]
    dist_b, dist_h = b["label"].value_counts(), h["label"].value_counts()
    classes = sorted(set(dist_b.index) | set(dist_h.index))
    nb, nh = max(int(dist_b.sum()), 1), max(int(dist_h.sum()), 1)
    lines += ["### Class distribution", ""]
    lines += md_table(["class", "base", "head", "Δ", "base share", "head share"],
                      [[code(c), int(dist_b.get(c, 0)), int(dist_h.get(c, 0)),
                        f"{int(dist_h.get(c, 0)) - int(dist_b.get(c, 0)):+d}",
                        f"{dist_b.get(c, 0) / nb:.1%}", f"{dist_h.get(c, 0) / nh:.1%}"]
                       for c in classes])
    return lines + [""], counts


# ---------------------------------------------------------------------------------------- plots

def plots_section(root: Path, base: Side, head: Side, img_dir: Path,
                  rel_dir: str) -> tuple[list[str], list[str]]:
    """One before/after figure per plot CSV, each side read at its own revision."""
    import pandas as pd

    from commands.report_plots import render_comparison

    lines = ["## Plots (base vs head)", ""]
    written: list[str] = []
    for name, path, title in PLOTS:
        raws = {side.role: read_at(root, side, path) for side in (base, head)}
        if not any(raw for raw, _ in raws.values()):
            continue
        frames = {role: pd.read_csv(io.BytesIO(raw)) for role, (raw, _) in raws.items() if raw}
        sides = {side.role: side for side in (base, head)}
        file = f"{name}.png"
        render_comparison(name, frames, {r: f"{r} ({sides[r].short})" for r in frames}, title,
                          img_dir / file)
        written.append(file)
        same = " (identical data on both sides)" if (
            len(frames) == 2 and raws["base"][0] == raws["head"][0]) else ""
        where = "; ".join(f"{r} @ {sides[r].short}, sha256 {digest(raw)}" if raw
                          else f"{r}: not on this side ({why})" for r, (raw, why) in raws.items())
        lines += [f"### {title}{same}", "", f"![{name}: base vs head]({rel_dir}/{file})", "",
                  f"<sub>`{path}` — {where}</sub>", ""]
    if not written:
        lines += ["No plot data on either side yet.", ""]
    return lines, written


def reproduce_section(root: Path, base: Side, head: Side, out: str) -> list[str]:
    lines = ["## Reproduce", "", "```bash"]
    inert = lambda text: " ".join(str(text).replace("`", "'").split())  # noqa: E731  no fence end
    for side in (base, head):
        if side.sha:
            lines += [f"# {side.role}: {inert(side.spec)} — {inert(side.subject)}",
                      f"git switch --detach -- {side.sha}"]
        else:
            top = git_try("rev-parse", "HEAD", cwd=root).stdout.decode().strip() or "HEAD"
            dirty = git_try("status", "--porcelain", "--untracked-files=no", cwd=root).stdout.decode()
            changed = [line[3:] for line in dirty.splitlines()]
            if changed:
                lines += [f"# head: the working tree on top of {top[:8]}, with uncommitted "
                          f"changes in {inert(', '.join(changed[:8]))}"
                          f"{' …' if len(changed) > 8 else ''}",
                          "# (commit and push them to make this side reproducible elsewhere)"]
            else:
                lines += [f"# head: the working tree, identical to commit {top[:8]}",
                          f"git switch --detach -- {top}"]
        lines += ["dvc pull        # this revision's data and models from the DVC remote",
                  "dvc status      # clean: dvc.lock matches code, params and data",
                  "dvc repro       # re-runs only stages whose inputs changed", ""]
    revs = f"{base.sha} {head.sha or ''}".strip()  # no second rev: DVC compares the workspace
    lines += ["# this report, and DVC's own views of the same diff",
              f"python -m commands.report --base {base.sha} --head {head.rev} --out {inert(out)}",
              f"dvc metrics diff {revs}", f"dvc params diff {revs}",
              f"dvc plots diff {revs}   # interactive HTML", "```", ""]
    return lines


# ---------------------------------------------------------------------------------------- report

def build_report(base_spec: str, head_spec: str, out: Path, root: Path | None = None) -> dict:
    """Write the markdown report and its images; return a summary (verdict, counts, paths)."""
    root = repo_root(root or Path.cwd())
    # the checkout's own params (the one CI runs), read before any work starts
    show_texts = load_params("report", ReportParams, root / "params.yaml").show_texts
    base = resolve_side(root, "base", base_spec)
    head = resolve_side(root, "head", head_spec)
    log.info("comparing base %s with head %s in %s", base.short, head.short, root)

    mdiff, pdiff = dvc_diffs(root, base, head)
    log.info("dvc diff: %d metric file(s), %d changed param(s)", len(mdiff),
             sum(len(v) for v in pdiff.values()))
    base_metrics = {f: read_json_at(root, base, f) for f in METRIC_FILES}
    head_metrics = {f: read_json_at(root, head, f) for f in METRIC_FILES}
    base_gate, head_gate = base_metrics["metrics/gate.json"], head_metrics["metrics/gate.json"]
    labels = (head_metrics["metrics/eval.json"] or {}).get("labels")
    boot = prediction_ci(root, base, head, labels)
    log.info("prediction bootstrap: %s", f"{boot['n']} shared rows" if boot else "not available")
    data_lines, counts = data_section(root, base, head, show_texts)
    log.info("data diff: %s", counts or "not available")

    out = out if out.is_absolute() else Path.cwd() / out
    img_name = f"{out.stem}-plots"
    with atomic_path(out.parent / img_name) as img_dir:
        img_dir.mkdir()
        plot_lines, images = plots_section(root, base, head, img_dir, img_name)
    log.info("rendered %d plot image(s) into %s", len(images), out.parent / img_name)

    pchanged = sum(1 for ch in pdiff.values() for r in ch.values() if r.get("old") != r.get("new"))
    f1 = mdiff.get("metrics/eval.json", {}).get("candidate.macro_f1", {})
    lines = ["# Retrain review", "",
             f"**base** {base.label}{' — ' + escape_markdown(base.subject) if base.subject else ''}  ",
             f"**head** {head.label}{' — ' + escape_markdown(head.subject) if head.subject else ''}",
             "",
             f"- Gate (head): {verdict(head_gate)}"
             + (f" — failed: {', '.join(code(n) for n in head_gate.get('failed', []))}"
                if head_gate and not head_gate.get("passed") else ""),
             f"- Candidate macro-F1: {num(f1.get('old'))} → {num(f1.get('new'))} "
             f"({delta(f1.get('old'), f1.get('new'))})" if f1 else
             "- Candidate macro-F1: not on either side",
             f"- Params changed: {pchanged}",
             (f"- Data: {counts['added']} added, {counts['removed']} removed, "
              f"{counts['relabelled']} relabelled, {counts['text_changed']} text changed"
              if counts else "- Data: diff not available"),
             f"- Label audit: {audit_summary(head_metrics[AUDIT])}", ""]
    lines += gate_section(root, base, head, base_gate, head_gate)
    lines += metrics_section(mdiff, base_metrics, head_metrics, boot, head_gate)
    lines += oos_section(base_metrics[EVAL], head_metrics[EVAL])
    lines += label_audit_section(base_metrics[AUDIT], head_metrics[AUDIT])
    lines += params_diff_section(pdiff)
    lines += data_lines
    lines += plot_lines
    lines += reproduce_section(root, base, head, str(out.relative_to(root))
                               if out.is_relative_to(root) else str(out))
    lines += ["<sub>Generated by `python -m commands.report`; metric and param diffs by DVC "
              "(`dvc metrics diff`, `dvc params diff`), data diff on `id`.</sub>"]
    write_text(out, "\n".join(lines) + "\n")
    log.info("wrote %s (gate %s)", out, verdict(head_gate).strip("*"))
    return {"out": str(out), "images": images, "gate_passed": (head_gate or {}).get("passed"),
            "base": base.sha, "head": head.sha or WORKSPACE, "data": counts,
            "params_changed": pchanged}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m commands.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision to compare against (main)")
    parser.add_argument("--head", default=WORKSPACE,
                        help="git revision, or 'workspace' for the working tree (default)")
    parser.add_argument("--out", type=Path, default=artifacts.PR_REPORT,
                        help="markdown file; images go to <out stem>-plots/ beside it")
    args = parser.parse_args()
    build_report(args.base, args.head, args.out)


if __name__ == "__main__":
    run_cli(main)
