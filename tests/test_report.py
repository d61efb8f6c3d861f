"""commands.report against a real git + DVC repository, and the CI workflow that posts it.

The repository is built by hand (no training): three commits with metrics, plot CSVs, params and
DVC-tracked texts/labels/predictions, so the report runs DVC's real metrics/params diff and reads
DVC outputs at old revisions through dvc.api, as it does in a clone.

    c0 "data only"  texts + labels, no metrics yet
    c1 "base"       + metrics, plots, predictions; gate passed; label audit: 2 suspects
    c2 "head"       train.learning_rate and train.epochs changed, three ids relabelled, new
                    metrics and predictions; gate failed (min_macro_f1); label audit: 5 suspects
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import shutil
import struct
import subprocess
from pathlib import Path

import pytest
import yaml

from stages import artifacts
from stages.common import StageError
from stages.label_audit_report import verdict as audit_verdict
from stages.markdown_safety import escape_markdown
from stages.metrics import classification_metrics
from tests.conftest import REPO_ROOT, dvc, make_rows, set_params
from tests.helpers import git, run_module

WORKFLOW = REPO_ROOT / ".github/workflows/pr-report.yml"
RELABELLED = ["t00002", "t00015", "t00040"]
# the label audit's suspects on each side: id -> the label the audit suggests instead
BASE_SUSPECTS = {"t00005": "login_problem", "t00030": "refund_request"}
HEAD_SUSPECTS = {**BASE_SUSPECTS, "t00006": "login_problem", "t00007": "login_problem",
                 "t00050": "delivery_status"}


def write_label_audit(repo: Path, texts, labels, suspects: dict[str, str]) -> dict:
    """metrics/label_audit.json as the label_audit stage summarises an audit of all rows whose
    suspects are ``suspects`` (the cheap model's own results are not what the report tests)."""
    from stages.label_audit import LabelAuditParams, summarise

    rows = labels.merge(texts[["id", "text"]], on="id").assign(split="train")
    rows.loc[rows.index % 5 == 0, "split"] = "val"
    rows["suggested"] = [suspects.get(i, label) for i, label in zip(rows["id"], rows["label"],
                                                                    strict=True)]
    rows["suspect"] = rows["id"].isin(list(suspects))
    metrics = summarise(rows, LabelAuditParams(), seconds=1.0)
    (repo / "metrics").mkdir(exist_ok=True)
    (repo / "metrics/label_audit.json").write_text(json.dumps(metrics, indent=2))
    return metrics


def write_side(repo: Path, texts, labels, wrong: int, gate_passed: bool, lr: float,
               trained_on: list[str]) -> None:
    """Metrics, plot CSVs and predictions of one pipeline run whose candidate gets ``wrong``
    test rows wrong (deterministically), as evaluate/gate/train would write them, and the
    checkpoint's training-data fingerprint of the ids in ``trained_on``."""
    import pandas as pd

    from stages.data import training_data_record

    test = labels.iloc[::3].merge(texts[["id", "text"]], on="id").reset_index(drop=True)  # 24 rows
    classes = sorted(labels["label"].unique())
    pred = test["label"].tolist()
    for k in range(wrong):                                   # shift the first `wrong` rows
        pred[k] = classes[(classes.index(pred[k]) + 1) % len(classes)]
    pred_df = pd.DataFrame({"id": test["id"], "text": test["text"], "label": test["label"],
                            "candidate_pred": pred})
    (repo / "models/checkpoint").mkdir(parents=True, exist_ok=True)
    seen = texts.loc[texts["id"].isin(trained_on), "text"]
    (repo / "models/checkpoint/training_data.json").write_text(
        json.dumps(training_data_record({"train": seen})))
    (repo / "data/predictions").mkdir(parents=True, exist_ok=True)
    pred_df.to_parquet(repo / "data/predictions/test.parquet", index=False)
    cand = classification_metrics(test["label"], pred, classes)
    ev = {"test_rows": len(test), "labels": classes, "candidate": cand, "champion": None,
          "baselines": {"tfidf_logreg": {"macro_f1": 0.5, "accuracy": 0.5}}}
    checks = [{"name": "min_macro_f1", "value": cand["macro_f1"], "threshold": 0.8,
               "delta_vs_champion": None, "ci95": None, "passed": cand["macro_f1"] >= 0.8,
               "blocking": True, "detail": ""}]
    assert checks[0]["passed"] == gate_passed
    gate = {"passed": gate_passed, "policy": "first_run_absolute_only", "champion": False,
            "failed": [] if gate_passed else ["min_macro_f1"], "warnings": [], "checks": checks,
            "skipped": []}
    train = {"best_val_macro_f1": 0.9 - wrong / 100, "epochs": 4, "learning_rate": lr}
    for name, obj in (("eval", ev), ("gate", gate), ("train", train)):
        (repo / "metrics").mkdir(exist_ok=True)
        (repo / f"metrics/{name}.json").write_text(json.dumps(obj, indent=2))
    (repo / "plots").mkdir(exist_ok=True)
    pred_df.rename(columns={"label": "actual", "candidate_pred": "predicted"})[
        ["actual", "predicted"]].to_csv(repo / "plots/confusion.csv", index=False)
    pd.DataFrame([{"label": c, "f1": v["f1"]} for c, v in cand["per_class"].items()]).to_csv(
        repo / "plots/per_class_f1.csv", index=False)
    pd.DataFrame({"epoch": [1, 2], "train_loss": [1.0, 0.5 + wrong / 100],
                  "val_macro_f1": [0.5, 0.9 - wrong / 100]}).to_csv(
        repo / "plots/train_epochs.csv", index=False)
    (repo / "reports").mkdir(exist_ok=True)
    (repo / "reports/gate.md").write_text(f"# Gate: {'PASSED' if gate_passed else 'FAILED'}\n")


@pytest.fixture(scope="module")
def review_repo(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    import pandas as pd

    repo = tmp_path_factory.mktemp("review") / "repo"
    repo.mkdir()
    (repo / "params.yaml").write_text((REPO_ROOT / "params.yaml").read_text())
    git(repo, "init", "-q", "-b", "main")
    dvc(repo, "init", "-q")
    texts, labels = make_rows(12)                            # 72 rows, 6 classes
    texts, labels = pd.DataFrame(texts), pd.DataFrame(labels)
    for d in ("data/raw", "data/labels"):
        (repo / d).mkdir(parents=True)
    texts.to_parquet(repo / "data/raw/texts.parquet", index=False)
    labels.to_parquet(repo / "data/labels/labels.parquet", index=False)
    dvc(repo, "add", "-q", "data/raw/texts.parquet", "data/labels/labels.parquet")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "data only")
    c0 = git(repo, "rev-parse", "HEAD")

    # the base model trained on two rows that are test rows on both sides (as after a salt change)
    write_side(repo, texts, labels, wrong=2, gate_passed=True, lr=1e-4,
               trained_on=["t00001", "t00004", "t00002"])
    base_audit = write_label_audit(repo, texts, labels, BASE_SUSPECTS)
    dvc(repo, "add", "-q", "data/predictions/test.parquet", "models/checkpoint")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "base: first retrain")
    c1 = git(repo, "rev-parse", "HEAD")

    set_params(repo, {"train": {"learning_rate": 3e-5, "epochs": 6}})
    new = labels.copy()
    idx = new["id"].isin(RELABELLED)
    new.loc[idx, "label"] = new.loc[idx, "label"].map(lambda v: "refund_request"
                                                      if v != "refund_request" else "login_problem")
    new.to_parquet(repo / "data/labels/labels.parquet", index=False)
    write_side(repo, texts, new, wrong=9, gate_passed=False, lr=3e-5, trained_on=["t00002"])
    head_audit = write_label_audit(repo, texts, new, HEAD_SUSPECTS)
    dvc(repo, "add", "-q", "data/labels/labels.parquet", "data/predictions/test.parquet",
        "models/checkpoint")
    git(repo, "add", "-A")
    git(repo, "commit", "-q", "-m", "head: relabel three tickets, lower the learning rate")
    c2 = git(repo, "rev-parse", "HEAD")
    return {"repo": repo, "c0": c0, "c1": c1, "c2": c2, "base_labels": labels, "head_labels": new,
            "base_audit": base_audit, "head_audit": head_audit}


def run_report(repo: Path, *args: str) -> subprocess.CompletedProcess:
    return run_module("commands.report", repo, *args, timeout=120,
                      env={"DVC_SITE_CACHE_DIR": str(repo.parent / "dvc-site-cache")})


def show(repo: Path, rev: str, path: str) -> bytes:
    return subprocess.run(["git", "show", f"{rev}:{path}"], cwd=repo, check=True,
                          capture_output=True).stdout


def section(md: str, title: str) -> str:
    """The text of one '## title' section."""
    return md.split(f"## {title}", 1)[1].split("\n## ", 1)[0]


def test_report_base_to_workspace(review_repo: dict) -> None:
    repo, c1, c2 = review_repo["repo"], review_repo["c1"], review_repo["c2"]
    proc = run_report(repo, "--base", c1, "--out", "reports/pr.md")
    assert proc.returncode == 0, proc.stderr
    md = (repo / "reports/pr.md").read_text()

    # metric deltas: DVC's diff of the two committed eval.json files, plus relative change
    old = json.loads(show(repo, c1, "metrics/eval.json"))["candidate"]["macro_f1"]
    new = json.loads(show(repo, c2, "metrics/eval.json"))["candidate"]["macro_f1"]
    row = next(line for line in md.splitlines() if "`candidate.macro_f1`" in line)
    assert f"{old:.4f}" in row and f"{new:.4f}" in row
    assert f"{new - old:+.4f}" in row and f"{(new - old) / old:+.1%}" in row
    assert re.search(r"\[[-+]\d\.\d{4}, [-+]\d\.\d{4}\]", row), "bootstrap CI of the delta"
    # rows either model trained on are left out of the paired CI, and the report says how many
    assert ("over **22 test rows**: of the 24 rows in both sides' `data/predictions/test.parquet`, "
            "left out 2 that the base model trained on") in md

    # params: only the changed ones
    params = section(md, "Params (changed only)")
    assert "In `params.yaml`:" in params
    assert "`train.learning_rate`" in params and "3e-05" in params
    assert "`train.epochs`" in params
    assert "batch_size" not in params and "split." not in params

    # gate verdict and the failing check, base vs head
    gate = section(md, "Gate")
    assert "- head: **FAILED**" in gate and "- base: **PASSED**" in gate
    assert "`min_macro_f1`" in section(md, "Gate").split("### Failing checks", 1)[1]
    assert "`min_macro_f1` pass → fail" in gate

    # labels: exactly the three relabelled ids, with their old and new labels
    data = section(md, "Data and labels")
    assert "relabelled (same id, new label): **3**" in data
    assert "Rows added: **0**, removed: **0**" in data
    base_lab = review_repo["base_labels"].set_index("id")["label"]
    head_lab = review_repo["head_labels"].set_index("id")["label"]
    table = data.split("### Relabelled ids (3)", 1)[1].split("###", 1)[0]
    listed = re.findall(r"^\| `(t\d+)` \|", table, flags=re.M)
    assert listed == RELABELLED
    for i in RELABELLED:
        line = next(x for x in table.splitlines() if f"`{i}`" in x)
        assert f"| `{base_lab[i]}` | `{head_lab[i]}` |" in line
    assert "| `refund_request` | 12 | 15 | +3 |" in data  # class distribution before/after

    # plots: one figure per comparison (base and head on shared axes), 800 px wide for a PR
    # column, each side rendered from its own revision's CSV
    plots = section(md, "Plots (base vs head)")
    for name in ("confusion", "per_class_f1", "train_epochs"):
        png = (repo / f"reports/pr-plots/{name}.png").read_bytes()
        assert png[:8] == b"\x89PNG\r\n\x1a\n"
        assert struct.unpack(">I", png[16:20])[0] == 800, f"{name}.png is not 800 px wide"
        assert f"](pr-plots/{name}.png)" in plots
    assert not list((repo / "reports/pr-plots").glob("*-base.png"))
    old_sha = hashlib.sha256(show(repo, c1, "plots/confusion.csv")).hexdigest()[:12]
    new_sha = hashlib.sha256((repo / "plots/confusion.csv").read_bytes()).hexdigest()[:12]
    assert old_sha != new_sha
    captions = next(x for x in plots.splitlines() if "`plots/confusion.csv` —" in x)
    assert captions.index(f"base @ {c1[:8]}, sha256 {old_sha}") < captions.index(
        f"head @ workspace, sha256 {new_sha}")

    # reproduce: the exact revisions, with `--` so no revision can be read as an option
    repro = section(md, "Reproduce")
    assert f"git switch --detach -- {c1}" in repro and f"dvc metrics diff {c1}" in repro

    # the label audit: the head's headline, suspects base -> head, the most confused pairs
    base_audit, head_audit = review_repo["base_audit"], review_repo["head_audit"]
    assert (base_audit["suspects"], head_audit["suspects"]) == (2, 5)
    assert ("- Label audit: 5 of 72 train and val labels look wrong (6.9%, limit 5%)"
            in md.split("## Gate", 1)[0])
    audit = section(md, "Label audit")
    assert f"- head: {escape_markdown(audit_verdict(head_audit))}" in audit
    assert "- suspects: 2 → 5 (+3); share 2.8% → 6.9%" in audit
    pairs = audit.split("| given | suggested | rows | base rows |", 1)[1]
    listed = re.findall(r"^\| `(\w+)` \| `(\w+)` \| (\d+) \| (\d+) \|$", pairs, flags=re.M)
    assert listed[0] == ("cancel_subscription", "login_problem", "3", "1")
    assert set(listed[1:]) == {("delivery_status", "refund_request", "1", "1"),
                               ("payment_failed", "delivery_status", "1", "0")}
    # DVC's flat diff of the audit: its headline numbers, not one row per class
    details = section(md, "Metrics").split("<code>metrics/label_audit.json</code>", 1)[1]
    details = details.split("</details>", 1)[0]
    assert "| `suspects` | 2 | 5 | +3 |" in details and "| `suspect_share` |" in details
    assert "per_class" not in details
    assert "## Out of scope" not in md                       # neither side has a detector


def oos_figures(seed: int, method: str = "msp") -> dict:
    """eval.json's oos.candidate as evaluate measures it (stages.oos_metrics), for a detector on
    logits of 24 in-scope and 6 out-of-scope rows (the out-of-scope rows less confident)."""
    import numpy as np

    from stages.oos_detector import Detector
    from stages.oos_metrics import measure, out_of_scope_rows

    rng = np.random.default_rng(seed)
    classes = ["a", "b", "c"]
    truth = [classes[i % 3] for i in range(24)] + ["out_of_scope"] * 6
    logits = rng.normal(size=(30, 3))
    logits[np.arange(24), [i % 3 for i in range(24)]] += 3.0
    detector = Detector(method, {"msp": 0.5, "energy": -2.0}, "out_of_scope", 0.95, 1, {})
    pred = [classes[i] for i in logits.argmax(axis=1)]
    figures, _, _ = measure(detector, logits, None, classes, truth, pred,
                            out_of_scope_rows(truth, "out_of_scope"), classes)
    return figures


def test_report_out_of_scope_section(review_repo: dict, tmp_path: Path) -> None:
    """A head whose candidate has a detector: the section shows its figures base -> head (new
    here), which scores were compared, and the flat diff leaves the per-score detail out."""
    repo = tmp_path / "repo"
    shutil.copytree(review_repo["repo"], repo, symlinks=True)
    ev = json.loads((repo / "metrics/eval.json").read_text())
    ev["oos"] = {"candidate": oos_figures(0), "champion": None}
    (repo / "metrics/eval.json").write_text(json.dumps(ev, indent=2))
    proc = run_report(repo, "--base", review_repo["c1"], "--out", "reports/pr.md")
    assert proc.returncode == 0, proc.stderr
    md = (repo / "reports/pr.md").read_text()
    oos = section(md, "Out of scope")
    cand = ev["oos"]["candidate"]
    assert "| method | — | `msp` | new |" in oos
    assert f"| OOS recall | — | {cand['oos_recall']:.4f} | new |" in oos
    assert f"| in-scope flagged | — | {cand['in_scope_flagged']:.4f} | new |" in oos
    assert "- head: 24 in-scope and 6 out-of-scope test rows (labelled `out_of_scope`)" in oos
    assert "| `msp` (used) |" in oos and "| `energy` |" in oos
    assert md.index("## Metrics") < md.index("## Out of scope") < md.index("## Label audit")
    details = section(md, "Metrics").split("<code>metrics/eval.json</code>", 1)[1]
    details = details.split("</details>", 1)[0]
    assert "oos.candidate.oos_recall" in details and "methods" not in details


def test_report_base_without_metrics_is_new(review_repo: dict) -> None:
    repo, c0, c2 = review_repo["repo"], review_repo["c0"], review_repo["c2"]
    proc = run_report(repo, "--base", c0, "--head", c2, "--out", "out/first.md")
    assert proc.returncode == 0, proc.stderr
    md = (repo / "out/first.md").read_text()
    assert "`metrics/eval.json` | new | yes |" in md
    row = next(line for line in md.splitlines() if "`candidate.macro_f1`" in line)
    assert "| — |" in row and "| new |" in row
    assert "- base: no verdict" in md and "- head: **FAILED**" in md
    # data at both old commits read through dvc.api (the workspace is not involved)
    assert "data/labels/labels.parquet` (dvc," in md
    assert "relabelled (same id, new label): **3**" in md
    plots = section(md, "Plots (base vs head)")
    assert "base: not on this side (absent)" in plots and f"head @ {c2[:8]}" in plots
    assert (repo / "out/first-plots/confusion.png").is_file()
    # the first audit: no base to compare with, so no base column
    audit = section(md, "Label audit")
    assert "`metrics/label_audit.json` | new | yes |" in md
    assert "- suspects: 5 (6.9%); first audit: the base has no `metrics/label_audit.json`" in audit
    assert "| given | suggested | rows |\n" in audit
    assert "| `cancel_subscription` | `login_problem` | 3 |\n" in audit


def test_label_audit_section_without_an_audit_on_the_head(review_repo: dict) -> None:
    from commands.report import label_audit_section

    lines = "\n".join(label_audit_section(review_repo["head_audit"], None))
    assert "No label audit on the head (no `metrics/label_audit.json`)" in lines
    assert "suspects" not in lines
    no_pairs = {**review_repo["base_audit"], "suspects": 0, "suspect_share": 0.0,
                "confused_pairs": []}
    lines = "\n".join(label_audit_section(review_repo["base_audit"], no_pairs))
    assert "- suspects: 2 → 0 (-2); share 2.8% → 0.0%" in lines
    assert "No confused label pairs on the head." in lines and "|" not in lines


def test_dvc_metrics_diff_shows_the_label_audit(review_repo: dict, tmp_path: Path) -> None:
    """dvc.yaml declares the audit's metrics: `dvc metrics diff` lists its change, as it does for
    every metrics file the report reads."""
    repo = tmp_path / "repo"
    (repo / "metrics").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "dvc.yaml", repo / "dvc.yaml")
    shutil.copy(REPO_ROOT / "params.yaml", repo / "params.yaml")
    git(repo, "init", "-q", "-b", "main")
    dvc(repo, "init", "-q")
    audit = repo / "metrics/label_audit.json"
    commits = []
    for metrics in (review_repo["base_audit"], review_repo["head_audit"]):
        audit.write_text(json.dumps(metrics, indent=2))
        git(repo, "add", "-A")
        git(repo, "commit", "-q", "-m", f"{metrics['suspects']} suspects")
        commits.append(git(repo, "rev-parse", "HEAD"))
    diff = json.loads(dvc(repo, "metrics", "diff", *commits, "--json").stdout)
    changed = diff["metrics/label_audit.json"]
    assert changed["suspects"] == {"old": 2, "new": 5, "diff": 3}
    assert changed["suspect_share"]["old"] == review_repo["base_audit"]["suspect_share"]
    assert changed["suspect_share"]["new"] == review_repo["head_audit"]["suspect_share"]
    declared = {str(p) for p in artifacts.METRIC_FILES}
    assert "metrics/label_audit.json" in declared           # and the PR report reads it too


def test_unknown_revision_is_a_clear_error(review_repo: dict) -> None:
    repo = review_repo["repo"]
    proc = run_report(repo, "--base", "no-such-branch", "--out", "reports/x.md")
    assert proc.returncode == 1
    assert "ERROR [commands.report]: unknown git revision 'no-such-branch' (--base)" in proc.stderr
    assert "fetch-depth: 0" in proc.stderr
    assert not (repo / "reports/x.md").exists()

    # a revision that looks like an option is a (missing) name, never passed to git as an option
    proc = run_report(repo, "--base=--output=/tmp/pwned", "--out", "reports/x.md")
    assert proc.returncode == 1 and "unknown git revision '--output=/tmp/pwned'" in proc.stderr
    assert not (repo / "reports/x.md").exists()

    from commands.report import build_report

    with pytest.raises(StageError, match="unknown git revision 'HEAD~9'"):
        build_report(review_repo["c1"], "HEAD~9", repo / "reports/y.md", root=repo)


# ------------------------------------------------------------------------------------ workflow

def make_has_target(target: str) -> bool:
    proc = subprocess.run(["make", "-n", "-C", str(REPO_ROOT), target], capture_output=True,
                          text=True)
    return proc.returncode == 0 and "No rule to make target" not in proc.stderr


def dvc_outputs() -> set[str]:
    """Every path dvc.yaml declares as a stage output, metric or plot."""
    outs: set[str] = set()
    for stage in yaml.safe_load((REPO_ROOT / "dvc.yaml").read_text())["stages"].values():
        for key in ("outs", "metrics", "plots"):
            for item in stage.get(key, []):
                outs.update(item if isinstance(item, dict) else [item])
    return outs


def test_workflow_parses_and_uses_only_what_exists() -> None:
    wf = yaml.safe_load(WORKFLOW.read_text())
    triggers = wf.get("on", wf.get(True))                    # YAML 1.1 reads `on:` as True
    assert "pull_request" in triggers
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    checkout = next(s for s in steps if s.get("uses", "").startswith("actions/checkout@"))
    assert checkout["with"]["fetch-depth"] == 0
    assert any(s.get("uses", "").startswith("actions/upload-artifact@") for s in steps)

    text = "\n".join(s["run"] for s in steps if "run" in s)
    produced = dvc_outputs() | {"reports/pr.md", "reports/pr-plots", "reports/gate.md"}
    seen_modules, seen_targets = set(), set()
    for line in text.splitlines():
        words = shlex.split(line.split(" #", 1)[0], posix=True) if line.strip() else []
        for i, word in enumerate(words):
            if word == "-m" and i and words[i - 1].endswith("python"):
                mod = words[i + 1]
                seen_modules.add(mod)
                if mod in ("pip",):
                    continue
                path = REPO_ROOT / mod.replace(".", "/")
                assert path.with_suffix(".py").is_file() or (path / "__init__.py").is_file(), mod
            if word == "make":
                target = next(w for w in words[i + 1:] if "=" not in w and not w.startswith("-"))
                seen_targets.add(target)
                assert make_has_target(target), f"Makefile has no target {target!r}"
            if word not in seen_targets and re.fullmatch(
                    r"[\w.-]+/[\w./-]+\.\w+|[\w.-]+\.(txt|yaml|lock)", word):
                assert (REPO_ROOT / word).exists() or word in produced, word
    assert "commands.report" in seen_modules and seen_targets
    assert "--base" in text and "dvc pull" in text and "dvc status" in text
    assert "metrics/gate.json" in text                       # the gate decides the check

    # secrets come in through the environment and every one is documented
    secrets = set(re.findall(r"secrets\.(\w+)", WORKFLOW.read_text()))
    assert secrets, "the DVC remote credentials come from secrets"
    docs = (REPO_ROOT / "docs/review.md").read_text()
    assert all(s in docs for s in secrets - {"GITHUB_TOKEN"})
    assert "secrets." not in text                            # never interpolated into commands


def test_workflow_is_hardened() -> None:
    """Pinned actions, no persisted token, secrets only on the steps that talk to the remote."""
    wf = yaml.safe_load(WORKFLOW.read_text())
    steps = [s for job in wf["jobs"].values() for s in job["steps"]]
    for step in steps:
        if "uses" in step:                                   # a tag can be moved, a SHA cannot
            assert re.fullmatch(r"[\w.-]+/[\w.-]+@[0-9a-f]{40}", step["uses"]), step["uses"]
    checkout = next(s for s in steps if s["uses"].startswith("actions/checkout@"))
    assert checkout["with"]["persist-credentials"] is False
    assert "secrets." not in json.dumps(wf.get("env", {}))
    assert all("secrets." not in json.dumps(job.get("env", {})) for job in wf["jobs"].values())
    with_secrets = [s for s in steps if "secrets." in json.dumps(s)]
    assert with_secrets and all("dvc pull" in s["run"] or "commands.report" in s["run"]
                                for s in with_secrets)


# ------------------------------------------------------------------------------- PR-comment safety

HOSTILE = ("@octocat @org/team see ![x](https://evil.example/p.png) <img src=x onerror=alert(1)> "
           "[click](https://evil.example) <script>alert(1)</script> `tick` | pipe\nnew row "
           "#12 org/repo#34 www.evil.example **bold**")


@pytest.fixture(scope="module")
def hostile_repo(review_repo: dict, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A copy of the review repository whose working tree relabels a row with a hostile text,
    label and annotator (what a customer or a labelling tool may well write)."""
    import pandas as pd

    repo = tmp_path_factory.mktemp("hostile") / "repo"
    shutil.copytree(review_repo["repo"], repo, symlinks=True)
    texts = pd.read_parquet(repo / "data/raw/texts.parquet")
    texts.loc[texts["id"] == "t00002", "text"] = HOSTILE
    texts.to_parquet(repo / "data/raw/texts.parquet", index=False)
    labels = pd.read_parquet(repo / "data/labels/labels.parquet")
    labels.loc[labels["id"] == "t00002", "label"] = "@admin <b>x</b> `y` |z"
    labels["annotator"] = "![a](https://evil.example/a.png)"
    labels.to_parquet(repo / "data/labels/labels.parquet", index=False)
    # the audit names classes, so a hostile label reaches its confused pairs
    write_label_audit(repo, texts, labels, {"t00002": "@org/team <img src=x> ![i](https://e.x)",
                                            **HEAD_SUSPECTS})
    return {**review_repo, "repo": repo}


def unsafe_markup(md: str) -> list[str]:
    """What would render as more than plain text on GitHub, outside code spans."""
    prose = re.sub(r"(`+)(.+?)\1", "", md)                  # code spans render nothing
    prose = re.sub(r"!\[\w+: base vs head\]\([\w-]+/\w+\.png\)", "", prose)  # our own plots
    found = []
    for pattern in (r"(?<![\\])@\w", r"(?<![\\])!\[", r"(?<![\\])\]\(", r"(?<![\\])<(?:img|script|b)\b",
                    r"https?://", r"(?<![\w\\])www\.", r"(?<![\\])#\d"):
        found += re.findall(pattern, prose)
    return found


def test_texts_hidden_by_default(hostile_repo: dict) -> None:
    import pandas as pd

    from stages.data import text_fingerprint

    repo = hostile_repo["repo"]
    assert yaml.safe_load((repo / "params.yaml").read_text())["report"]["show_texts"] is False
    proc = run_report(repo, "--base", hostile_repo["c1"], "--out", "reports/pr.md")
    assert proc.returncode == 0, proc.stderr
    md = (repo / "reports/pr.md").read_text()
    data = section(md, "Data and labels")
    assert "Texts are not quoted" in data and "| id | text hash |" in data
    row = next(x for x in data.splitlines() if x.startswith("| `t00002` |"))
    assert f"`{text_fingerprint(HOSTILE)}`" in row             # the text's hash, not the text
    assert "octocat" not in md and "evil.example/p.png" not in md
    audit = section(md, "Label audit")                       # class names as code spans
    assert "| ``@admin <b>x</b> `y` \\|z`` | `@org/team <img src=x> ![i](https://e.x)` | 1 | 0 |" \
        in audit
    texts = pd.read_parquet(repo / "data/raw/texts.parquet").set_index("id")["text"]
    for i in RELABELLED:                                     # no relabelled text is quoted
        assert texts[i][:30] not in md, f"text of {i} quoted"
    assert unsafe_markup(md) == [], unsafe_markup(md)


def test_pr_comment_escapes_markdown_injection(hostile_repo: dict) -> None:
    repo = hostile_repo["repo"]
    set_params(repo, {"report": {"show_texts": True}})
    try:
        proc = run_report(repo, "--base", hostile_repo["c1"], "--out", "reports/shown.md")
    finally:
        set_params(repo, {"report": {"show_texts": False}})
    assert proc.returncode == 0, proc.stderr
    md = (repo / "reports/shown.md").read_text()
    data = section(md, "Data and labels")
    assert "Texts are quoted (escaped)" in data
    row = next(x for x in data.splitlines() if x.startswith("| `t00002` |"))
    # the text is there, readable, but inert: no mention, image, link, HTML or emphasis
    assert "octocat" in row and "evil" in row
    assert "\\!\\[x\\]\\(" in row and "\\<img src" in row     # shown literally
    assert unsafe_markup(md) == [], unsafe_markup(md)
    # one table row: the newline did not start a new row, the pipes did not add cells
    cells = re.split(r"(?<!\\)\|", row)[1:-1]
    assert len(cells) == 5, cells                            # id, text, base, head, annotator
    assert cells[3].strip() == "``@admin <b>x</b> `y` \\|z``"  # a code span: shown as written

    # the whole text, unshortened, as one inert table cell
    from stages.markdown_safety import escape_markdown
    from stages.report_format import md_table

    one = md_table(["text"], [[escape_markdown(HOSTILE)]])[2]
    assert len(re.split(r"(?<!\\)\|", one)) == 3 and "new row" in one and "**bold" not in one
    assert unsafe_markup(one) == [], unsafe_markup(one)


def test_bad_report_param_is_a_clear_error(hostile_repo: dict) -> None:
    repo = hostile_repo["repo"]
    params = (repo / "params.yaml").read_text()
    try:
        set_params(repo, {"report": {"show_text": True}})          # a typo of show_texts
        proc = run_report(repo, "--base", hostile_repo["c1"], "--out", "reports/typo.md")
    finally:
        (repo / "params.yaml").write_text(params)
    assert proc.returncode == 1
    assert "ERROR [commands.report]: unknown parameter(s) ['show_text']" in proc.stderr
    assert "params.yaml:report" in proc.stderr and "allowed keys: ['show_texts']" in proc.stderr
    assert not (repo / "reports/typo.md").exists() and not (repo / "reports/typo-plots").exists()
