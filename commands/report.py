"""report: one markdown review of a retrain, base revision -> head, for a pull request.

    python -m flows.report --base main [--head workspace|<rev>] --out reports/pr.md

A reviewer wants one page that says what changed and why the gate said what it said: the metric
diff (with a confidence interval where one exists), the changed params, the gate verdict and its
failing checks, the data and label changes (relabelled ids above all), before/after plots and the
commands that reproduce both sides. DVC already diffs metrics and params between revisions, so
those numbers come from its Python API (what `dvc metrics diff` / `dvc params diff` print); this
module adds what DVC lacks: relative change, CIs, the gate's reasons, a row-level data diff and
plots rendered as PNG files next to the markdown (`dvc plots diff` renders HTML only).

Every file is read at the revision it belongs to: git-tracked files with `git show <rev>:<path>`,
DVC-tracked ones with `dvc.api.read(path, rev=...)` (local cache, else the DVC remote), and the
working tree from disk when ``--head workspace``. Nothing is read from anywhere else, so the
report works offline and locally as well as in CI. This module lives in flows/ but imports no
Prefect: it must stay fast (a few seconds).
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from stages.common import StageError, get_logger, run_cli
from stages.io import atomic_path, write_text

if TYPE_CHECKING:
    import pandas as pd

log = get_logger(__name__)

WORKSPACE = "workspace"
METRIC_FILES = ("metrics/eval.json", "metrics/gate.json", "metrics/data.json", "metrics/train.json",
                "metrics/parity.json", "metrics/quantize.json", "metrics/export.json")
# (file, flattened key) -> title, in the order of the headline table
HEADLINE = {
    ("metrics/eval.json", "candidate.macro_f1"): "macro-F1 (candidate, test split)",
    ("metrics/eval.json", "candidate.accuracy"): "accuracy (candidate, test split)",
    ("metrics/eval.json", "candidate.weighted_f1"): "weighted-F1 (candidate, test split)",
    ("metrics/eval.json", "baselines.tfidf_logreg.macro_f1"): "macro-F1 (TF-IDF baseline)",
    ("metrics/train.json", "best_val_macro_f1"): "best validation macro-F1 (training)",
    ("metrics/export.json", "ratios.int8_vs_torch_p50_speedup"): "int8 vs PyTorch p50 speed-up",
}
TEXTS = "data/raw/texts.parquet"
LABELS = "data/labels/labels.parquet"
PREDICTIONS = "data/predictions/test.parquet"
TRAINING_DATA = "models/checkpoint/training_data.json"
GATE_MD = "reports/gate.md"
# name, git-tracked CSV (cache: false), title
PLOTS = (("confusion", "plots/confusion.csv", "Confusion matrix (test split, candidate)"),
         ("per_class_f1", "plots/per_class_f1.csv", "Per-class F1 (test split, candidate)"),
         ("train_epochs", "plots/train_epochs.csv", "Training curves by epoch"),
         ("latency", "plots/latency.csv", "Latency p50 at batch 1"))
MAX_EXAMPLES = 10        # example rows per data-diff table
MAX_DETAIL_ROWS = 200    # rows per metric file in the collapsed full diff
BOOTSTRAP_RESAMPLES = 1000


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
        return f"`{self.spec}` ({self.sha[:8]})" if self.spec != self.sha else f"`{self.sha[:8]}`"


# ---------------------------------------------------------------------------------------- reading

def git(root: Path, *args: str) -> subprocess.CompletedProcess:
    return subprocess.run(["git", *args], cwd=root, capture_output=True)


def repo_root(start: Path) -> Path:
    proc = git(start, "rev-parse", "--show-toplevel")
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
        top = git(root, "log", "-1", "--format=%h %s").stdout.decode().strip()
        return Side(role, spec, None, f"on top of {top}" if top else "")
    proc = git(root, "rev-parse", "--verify", "--quiet", f"{spec}^{{commit}}")
    if proc.returncode != 0:
        raise StageError(f"unknown git revision '{spec}' (--{role})", where=str(root),
                         fix="use a branch, tag or commit that exists in this clone; fetch it "
                             "first (git fetch origin), and in CI check out with fetch-depth: 0")
    sha = proc.stdout.decode().strip()
    subject = git(root, "log", "-1", "--format=%s", sha).stdout.decode().strip()
    return Side(role, spec, sha, subject)


def read_at(root: Path, side: Side, path: str) -> tuple[bytes | None, str]:
    """The bytes of ``path`` as they were on ``side``, and where they came from (or why not)."""
    if side.sha is None:
        file = root / path
        return (file.read_bytes(), "working tree") if file.is_file() else (None, "absent")
    proc = git(root, "show", f"{side.sha}:{path}")
    if proc.returncode == 0:
        return proc.stdout, "git"
    try:
        import dvc.api

        return dvc.api.read(path, repo=str(root), rev=side.sha, mode="rb"), "dvc"
    except Exception as exc:  # missing path, missing cache, unreachable remote: all reported
        reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        return None, "absent" if "does not exist" in reason else f"unavailable: {reason}"


def read_json_at(root: Path, side: Side, path: str) -> dict[str, Any] | None:
    raw, _ = read_at(root, side, path)
    return json.loads(raw) if raw else None


def read_table_bytes(raw: bytes, path: str) -> pd.DataFrame:
    import pandas as pd

    buf = io.BytesIO(raw)
    if path.endswith(".parquet"):
        return pd.read_parquet(buf)
    if path.endswith((".jsonl", ".json")):
        return pd.read_json(buf, lines=True, dtype=False)
    return pd.read_csv(buf, dtype=str, keep_default_na=False, na_values=[""])


def digest(raw: bytes) -> str:
    return hashlib.sha256(raw).hexdigest()[:12]


# ------------------------------------------------------------------------------------- formatting

def fmt(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, bool):
        return str(value).lower()
    if isinstance(value, float):
        return f"{value:.4f}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:.4g}"
    return str(value)


def signed(value: float | None) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:+.4f}" if 1e-3 <= abs(value) < 1e5 or value == 0 else f"{value:+.4g}"
    return f"{value:+d}"


def ci_text(ci: list[float] | None) -> str:
    return f"[{ci[0]:+.4f}, {ci[1]:+.4f}]" if ci else "—"


def cell(text: Any) -> str:
    """A value safe inside a markdown table cell."""
    return str(text).replace("|", "\\|").replace("\n", " ")


def table(header: list[str], rows: list[list[Any]], align: str | None = None) -> list[str]:
    align = align or "l" + "r" * (len(header) - 1)
    marks = ["---:" if a == "r" else "---" for a in align]
    return (["| " + " | ".join(header) + " |", "| " + " | ".join(marks) + " |"]
            + ["| " + " | ".join(cell(c) for c in row) + " |" for row in rows])


# ------------------------------------------------------------------------------------ DVC diffs

def dvc_diffs(root: Path, base: Side, head: Side) -> tuple[dict, dict]:
    """``dvc metrics diff --all`` and ``dvc params diff`` between the two sides, via DVC's API."""
    from dvc.repo import Repo

    targets = [str(root / f) for f in METRIC_FILES]
    with Repo(str(root)) as repo:
        metrics = repo.metrics.diff(a_rev=base.rev, b_rev=head.rev, targets=targets, all=True)
        params = repo.params.diff(a_rev=base.rev, b_rev=head.rev)
    return metrics.get("diff", {}), params.get("diff", {})


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
    return "—" if rel is None else f"{rel:+.1%}"


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
    from stages import stats
    from stages.data import seen_fingerprints, text_fingerprint

    b = read_table_bytes(raw_b, PREDICTIONS)[["id", "candidate_pred"]]
    h = read_table_bytes(raw_h, PREDICTIONS)[["id", "text", "label", "candidate_pred"]]
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
    lines += table(["metrics file", "base", "head", "changed values"],
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
        rows.append([f"{title} `{key}`", fmt(old), fmt(new), delta(old, new), pct(old, new),
                     ci_text(boot_ci.get(metric or ""))])
    if rows:
        lines += ["", "### Headline", ""]
        lines += table(["metric", "base", "head", "Δ", "Δ %", "95% CI of Δ"], rows)
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
                     f"{ci_text(comparison['macro_f1']['ci95'])}"
                     f", Δ accuracy = {comparison['accuracy']['diff']:+.4f} "
                     f"{ci_text(comparison['accuracy']['ci95'])} (95% CI); McNemar p = "
                     f"{fmt(comparison.get('mcnemar', {}).get('p_value'))}.")
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
        body = table(["metric", "base", "head", "Δ", "Δ %"],
                     [[f"`{k}`", fmt(r.get("old")), fmt(r.get("new")),
                       delta(r.get("old"), r.get("new")), pct(r.get("old"), r.get("new"))]
                      for k, r in changed[:MAX_DETAIL_ROWS]])
        if len(changed) > MAX_DETAIL_ROWS:
            body.append(f"\n… and {len(changed) - MAX_DETAIL_ROWS} more: `dvc metrics diff`.")
        lines += ["<details>", f"<summary>{summary}</summary>", "", *body, "", "</details>", ""]
    return lines


def params_section(pdiff: dict) -> list[str]:
    lines = ["## Params (changed only)", ""]
    exact = lambda v: "—" if v is None else json.dumps(v)  # noqa: E731  params: as written
    rows = [[f"`{k}`", exact(r.get("old")), exact(r.get("new")), f"`{file}`"]
            for file, changes in pdiff.items() for k, r in changes.items()
            if r.get("old") != r.get("new")]
    if not rows:
        return lines + ["No parameter changed.", ""]
    return lines + table(["param", "base", "head", "file"], rows, "lllc") + [""]


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
        lines += table(["check", "value", "threshold", "Δ vs champion", "95% CI of Δ", "blocking",
                        "detail"],
                       [[f"`{c['name']}`", fmt(c.get("value")), fmt(c.get("threshold")),
                         signed(c.get("delta_vs_champion")), ci_text(c.get("ci95")),
                         "yes" if c.get("blocking") else "no (warning)", c.get("detail", "")]
                        for c in failing], "lrrrrcl")
        lines.append("")
    else:
        lines += ["Every check passed.", ""]
    before = {c["name"]: c.get("passed") for c in (base_gate or {}).get("checks", [])}
    flipped = [(c["name"], before[c["name"]], c.get("passed")) for c in checks
               if c["name"] in before and before[c["name"]] != c.get("passed")]
    if flipped:
        lines += ["Checks whose result changed since the base: " + ", ".join(
            f"`{n}` {'pass' if a else 'fail'} → {'pass' if b else 'fail'}" for n, a, b in flipped)
            + ".", ""]
    skipped = head_gate.get("skipped") or []
    if skipped:
        lines += [f"Not checked: {'; '.join(skipped)}.", ""]
    raw, _ = read_at(root, head, GATE_MD)
    if raw:
        lines += ["<details>", f"<summary>head's <code>{GATE_MD}</code></summary>", "",
                  raw.decode("utf-8", "replace").strip(), "", "</details>", ""]
    return lines


def load_data(root: Path, side: Side) -> tuple[pd.DataFrame | None, str]:
    """Labelled texts of one side: the DVC outputs of ingest, else the ingest sources in params."""
    import yaml

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
            texts = read_table_bytes(raw_t, texts_path)
            labels = read_table_bytes(raw_l, labels_path)
            keep = [c for c in ("id", "label", "annotator") if c in labels]
            df = texts[["id", "text"]].merge(labels[keep], on="id", how="outer")
            df["id"] = df["id"].astype(str)
            where = (f"`{texts_path}` ({why_t}, sha256 {digest(raw_t)}) + `{labels_path}` "
                     f"({why_l}, sha256 {digest(raw_l)})")
            return df, where
        reasons.append(f"`{texts_path}`: {why_t}; `{labels_path}`: {why_l}")
    return None, "; ".join(reasons)


def short_text(text: Any, width: int = 80) -> str:
    text = "" if text is None or text != text else " ".join(str(text).split())
    return text if len(text) <= width else text[: width - 1] + "…"


def data_section(root: Path, base: Side, head: Side) -> tuple[list[str], dict[str, int]]:
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
    lines += table(["", "base", "head"],
                   [["labelled rows", int(b["label"].notna().sum()), int(h["label"].notna().sum())],
                    ["texts", int(b["text"].notna().sum()), int(h["text"].notna().sum())],
                    ["classes", b["label"].nunique(), h["label"].nunique()]])
    lines += ["", f"Rows added: **{len(added)}**, removed: **{len(removed)}**, relabelled "
              f"(same id, new label): **{len(relabelled)}**, text changed (same id): "
              f"**{len(retexted)}**.", ""]
    if len(relabelled):
        lines += [f"### Relabelled ids ({len(relabelled)})", ""]
        annot = "annotator" in h
        rows = [[f"`{i}`", short_text(h.at[i, "text"]), fmt(b.at[i, "label"]),
                 fmt(h.at[i, "label"])] + ([fmt(h.at[i, "annotator"])] if annot else [])
                for i in sorted(relabelled)[:MAX_EXAMPLES]]
        extra = ["annotator"] if annot else []
        lines += table(["id", "text", "base label", "head label", *extra], rows,
                       "l" * (4 + len(extra)))
        if len(relabelled) > MAX_EXAMPLES:
            lines += ["", "<details><summary>all relabelled ids</summary>", "",
                      ", ".join(f"`{i}`" for i in sorted(relabelled)), "", "</details>"]
        lines.append("")
    for title, ids, df in (("Added rows", added, h), ("Removed rows", removed, b),
                           ("Text changed", retexted, h)):
        if len(ids):
            lines += [f"<details><summary>{title} ({len(ids)}; first {min(len(ids), MAX_EXAMPLES)})"
                      "</summary>", ""]
            lines += table(["id", "text", "label"],
                           [[f"`{i}`", short_text(df.at[i, "text"]), fmt(df.at[i, "label"])]
                            for i in sorted(ids)[:MAX_EXAMPLES]], "lll")
            lines += ["", "</details>", ""]
    dist_b, dist_h = b["label"].value_counts(), h["label"].value_counts()
    classes = sorted(set(dist_b.index) | set(dist_h.index))
    nb, nh = max(int(dist_b.sum()), 1), max(int(dist_h.sum()), 1)
    lines += ["### Class distribution", ""]
    lines += table(["class", "base", "head", "Δ", "base share", "head share"],
                   [[c, int(dist_b.get(c, 0)), int(dist_h.get(c, 0)),
                     f"{int(dist_h.get(c, 0)) - int(dist_b.get(c, 0)):+d}",
                     f"{dist_b.get(c, 0) / nb:.1%}", f"{dist_h.get(c, 0) / nh:.1%}"]
                    for c in classes])
    return lines + [""], counts


# ---------------------------------------------------------------------------------------- plots

def render_plot(name: str, df: pd.DataFrame, title: str, path: Path,
                classes: list[str] | None = None) -> None:
    """One PNG (matplotlib, Agg) from a plot CSV; ``classes`` fixes the confusion axes."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import pandas as pd

    if name == "confusion":
        labels = classes or sorted(set(df["actual"]) | set(df["predicted"]))
        cm = pd.crosstab(pd.Categorical(df["actual"], labels),
                         pd.Categorical(df["predicted"], labels), dropna=False).to_numpy()
        fig, ax = plt.subplots(figsize=(1.4 + 0.6 * len(labels), 1.0 + 0.55 * len(labels)))
        ax.imshow(cm, cmap="Blues")
        ax.set_xticks(range(len(labels)), labels, rotation=45, ha="right", fontsize=8)
        ax.set_yticks(range(len(labels)), labels, fontsize=8)
        ax.set(xlabel="predicted", ylabel="actual")
        for i in range(len(labels)):
            for j in range(len(labels)):
                ax.text(j, i, int(cm[i, j]), ha="center", va="center", fontsize=7,
                        color="white" if cm[i, j] > cm.max() / 2 else "black")
    elif name == "per_class_f1":
        df = df.sort_values("label")
        fig, ax = plt.subplots(figsize=(6, 1.0 + 0.35 * len(df)))
        ax.barh(df["label"].astype(str), pd.to_numeric(df["f1"]), color="tab:blue")
        ax.set(xlim=(0, 1), xlabel="F1")
        ax.invert_yaxis()
    elif name == "train_epochs":
        fig, ax = plt.subplots(figsize=(6, 3.5))
        for col in [c for c in df.columns if c != "epoch"]:
            ax.plot(pd.to_numeric(df["epoch"]), pd.to_numeric(df[col]), marker="o", label=col)
        ax.set(xlabel="epoch")
        ax.legend(fontsize=8)
    else:  # latency
        fig, ax = plt.subplots(figsize=(6, 1.2 + 0.4 * len(df)))
        ax.barh(df["runtime"].astype(str), pd.to_numeric(df["p50_ms"]), color="tab:green")
        ax.set(xlabel="p50 ms per text (batch 1)")
        ax.invert_yaxis()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=100)
    plt.close(fig)


def plots_section(root: Path, base: Side, head: Side, img_dir: Path,
                  rel_dir: str) -> tuple[list[str], list[str]]:
    """Before/after images of every plot CSV, each read at its own side's revision."""
    import pandas as pd

    lines = ["## Plots (base | head)", ""]
    written: list[str] = []
    for name, path, title in PLOTS:
        raws = {side.role: read_at(root, side, path) for side in (base, head)}
        if not any(raw for raw, _ in raws.values()):
            continue
        frames = {role: pd.read_csv(io.BytesIO(raw)) for role, (raw, _) in raws.items() if raw}
        classes = None
        if name == "confusion":
            classes = sorted({str(v) for df in frames.values()
                              for v in pd.concat([df["actual"], df["predicted"]])})
        cells, captions = [], []
        for side in (base, head):
            raw, why = raws[side.role]
            if not raw:
                cells.append(f"not on this side ({why})")
                captions.append("—")
                continue
            file = f"{name}-{side.role}.png"
            render_plot(name, frames[side.role], f"{title}\n{side.role}: {side.short}",
                        img_dir / file, classes)
            written.append(file)
            cells.append(f"![{name} {side.role}]({rel_dir}/{file})")
            captions.append(f"`{path}` @ {side.short}, sha256 {digest(raw)}")
        same = " (identical data on both sides)" if (
            all(raw for raw, _ in raws.values())
            and raws["base"][0] == raws["head"][0]) else ""
        lines += [f"### {title}{same}", "", "| base | head |", "|---|---|",
                  f"| {cells[0]} | {cells[1]} |", f"| {captions[0]} | {captions[1]} |", ""]
    if not written:
        lines += ["No plot data on either side yet.", ""]
    return lines, written


def reproduce_section(root: Path, base: Side, head: Side, out: str) -> list[str]:
    lines = ["## Reproduce", "", "```bash"]
    for side in (base, head):
        if side.sha:
            lines += [f"# {side.role}: {side.spec} — {side.subject}", f"git checkout {side.sha}"]
        else:
            top = git(root, "rev-parse", "HEAD").stdout.decode().strip() or "HEAD"
            dirty = git(root, "status", "--porcelain", "--untracked-files=no").stdout.decode()
            changed = [line[3:] for line in dirty.splitlines()]
            if changed:
                lines += [f"# head: the working tree on top of {top[:8]}, with uncommitted "
                          f"changes in {', '.join(changed[:8])}{' …' if len(changed) > 8 else ''}",
                          "# (commit and push them to make this side reproducible elsewhere)"]
            else:
                lines += [f"# head: the working tree, identical to commit {top[:8]}",
                          f"git checkout {top}"]
        lines += ["dvc pull        # this revision's data and models from the DVC remote",
                  "dvc status      # clean: dvc.lock matches code, params and data",
                  "dvc repro       # re-runs only stages whose inputs changed", ""]
    revs = f"{base.sha} {head.sha or ''}".strip()  # no second rev: DVC compares the workspace
    lines += ["# this report, and DVC's own views of the same diff",
              f"python -m flows.report --base {base.sha} --head {head.rev} --out {out}",
              f"dvc metrics diff {revs}", f"dvc params diff {revs}",
              f"dvc plots diff {revs}   # interactive HTML", "```", ""]
    return lines


# ---------------------------------------------------------------------------------------- report

def build_report(base_spec: str, head_spec: str, out: Path, root: Path | None = None) -> dict:
    """Write the markdown report and its images; return a summary (verdict, counts, paths)."""
    root = repo_root(root or Path.cwd())
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
    data_lines, counts = data_section(root, base, head)
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
             f"**base** {base.label}{' — ' + base.subject if base.subject else ''}  ",
             f"**head** {head.label}{' — ' + head.subject if head.subject else ''}", "",
             f"- Gate (head): {verdict(head_gate)}"
             + (f" — failed: {', '.join(f'`{n}`' for n in head_gate.get('failed', []))}"
                if head_gate and not head_gate.get("passed") else ""),
             f"- Candidate macro-F1: {fmt(f1.get('old'))} → {fmt(f1.get('new'))} "
             f"({delta(f1.get('old'), f1.get('new'))})" if f1 else
             "- Candidate macro-F1: not on either side",
             f"- Params changed: {pchanged}",
             (f"- Data: {counts['added']} added, {counts['removed']} removed, "
              f"{counts['relabelled']} relabelled, {counts['text_changed']} text changed"
              if counts else "- Data: diff not available"), ""]
    lines += gate_section(root, base, head, base_gate, head_gate)
    lines += metrics_section(mdiff, base_metrics, head_metrics, boot, head_gate)
    lines += params_section(pdiff)
    lines += data_lines
    lines += plot_lines
    lines += reproduce_section(root, base, head, str(out.relative_to(root))
                               if out.is_relative_to(root) else str(out))
    lines += ["<sub>Generated by `python -m flows.report`; metric and param diffs by DVC "
              "(`dvc metrics diff`, `dvc params diff`), data diff on `id`.</sub>"]
    write_text(out, "\n".join(lines) + "\n")
    log.info("wrote %s (gate %s)", out, verdict(head_gate).strip("*"))
    return {"out": str(out), "images": images, "gate_passed": (head_gate or {}).get("passed"),
            "base": base.sha, "head": head.sha or WORKSPACE, "data": counts,
            "params_changed": pchanged}


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m flows.report", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base", required=True, help="git revision to compare against (main)")
    parser.add_argument("--head", default=WORKSPACE,
                        help="git revision, or 'workspace' for the working tree (default)")
    parser.add_argument("--out", type=Path, default=Path("reports/pr.md"),
                        help="markdown file; images go to <out stem>-plots/ beside it")
    args = parser.parse_args()
    build_report(args.base, args.head, args.out)


if __name__ == "__main__":
    run_cli(main)
