"""Open-set benchmark (issue 23): out-of-scope detection on Banking77 with hidden intents.

    python benchmarks/open_set.py [--data ../shared/datasets/banking77] [--known-share 0.75 \\
        --known-share 0.5] [--draws 0 1 2] [--per-class N] [--set train.epochs=1 ...] \\
        [--out-dir benchmarks/results]
    python benchmarks/open_set.py --summary [--out-dir benchmarks/results]

(run from the repository root: it reads params.yaml; the dataset is never copied into the checkout)

The standard known-intent protocol (Shu et al. 2017, Zhang et al. 2021 "ADB"): for each known
share (default 75% and 50%) and each draw seed, a seeded numpy RNG draws that share of the 77
intents as known; the rest are hidden, i.e. out of scope. The project's default recipe
(params.yaml ``train:``, ``stages.train.train_model``, the split of benchmarks/real_data.py with
the official test file as the test set) is trained on the known intents' train rows, with the
known intents' val rows as val. ``stages.model.predict_outputs`` gives logits and pooled
embeddings of train, val and the whole test file (known intents = in scope, hidden = out of
scope); ``stages.oos_detector`` is fitted on the train embeddings and scores with msp, energy,
mahalanobis and knn (k = 1, 10, 50, stored as ``knn@k``), each with its threshold chosen to keep
95% of the in-scope val texts. Per method on test: AUROC, FPR@95%TPR, out-of-scope recall and
precision at the val threshold, the share of in-scope texts flagged, in-scope accuracy without
abstention and with it (a flagged in-scope text counts as wrong), the drop in points, and the
open-set (K+1 classes) accuracy and macro-F1 the literature reports.

One JSON per (share, draw), ``open_set_75_draw0.json`` etc. in ``--out-dir``, written as soon as
that draw finishes; an existing one is skipped, so a killed run resumes where it stopped.
``--summary`` (no training) aggregates them (mean, min, max over draws per method and share),
prints a table and writes ``open_set.json`` and ``open_set.png`` there.

Time, on 2 idle CPU cores with the full data: about 8 minutes per draw (training dominates: the
full 77-intent recipe trains at about 97 texts/s, 6 epochs in 525 s; a 75% draw has about 6,400
train rows, a 50% draw about 4,300 and takes nearer 6 minutes; a draw that runs all 10 epochs up
to about 13), so the default 2 shares x 3 draws take about 45 minutes; other jobs on the machine
stretch it. ``--per-class 15 --set train.epochs=1`` is a quick check (about 1.5 minutes per
draw), not a figure.
"""

from __future__ import annotations

import argparse
import gc
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import machine  # noqa: E402
from benchmarks.real_data import load  # noqa: E402

RESULTS = Path("benchmarks/results")
KEEP_IN_SCOPE = 0.95      # the val share of in-scope texts each threshold keeps (params.yaml oos)
BANK_ROWS = 20000         # kNN bank: every known train row of Banking77 fits
KNN_K = (1, 10, 50)
METHODS = ("msp", "energy", "mahalanobis", *(f"knn@{k}" for k in KNN_K))
OOS = "<out of scope>"    # the open-set class in the K+1 metrics (no Banking77 intent is named so)
VERSIONED = ("numpy", "scipy", "scikit-learn", "torch", "transformers", "pandas")
# what --summary aggregates, per method: (key, printed header, format)
COLUMNS = (("auroc", "AUROC", ".3f"), ("fpr_at_95_tpr", "FPR95", ".3f"),
           ("oos_recall", "OOS rec", ".3f"), ("oos_precision", "OOS prec", ".3f"),
           ("in_scope_flagged", "IS flag", ".3f"), ("accuracy_drop_points", "acc drop", ".2f"),
           ("open_macro_f1", "K+1 F1", ".3f"))
AGGREGATED = (*(c[0] for c in COLUMNS), "accuracy_in_scope", "accuracy_in_scope_with_abstention",
              "open_accuracy", "f1_oos", "f1_known_macro", "test_score_s")


# ------------------------------------------------------------------------ one draw


def draw_known(labels: list[str], share: float, seed: int) -> list[str]:
    """``share`` of ``labels`` (rounded as ADB does), drawn with a seeded numpy RNG; sorted."""
    import numpy as np

    n_known = round(share * len(labels))
    if not 1 < n_known < len(labels):
        from stages.common import StageError

        raise StageError(f"a known share of {share} keeps {n_known} of {len(labels)} intents",
                         fix="pass --known-share between 0 and 1 that keeps 2 or more intents "
                             "known and 1 or more hidden")
    rng = np.random.default_rng(seed)
    return sorted(rng.choice(sorted(labels), size=n_known, replace=False).tolist())


def result_path(out_dir: Path, share: float, draw: int) -> Path:
    return out_dir / f"open_set_{round(100 * share)}_draw{draw}.json"


def train_known(train: Any, val: Any, params: Any) -> tuple[Any, Any, dict[str, Any]]:
    """The default recipe on the known intents' rows: (model in eval mode, tokenizer, run facts)."""
    from stages.train import train_model

    started = time.perf_counter()
    result = train_model(train, val, params, resume=False)
    wall = time.perf_counter() - started
    summary = result["summary"]
    facts = {"train_wall_s": round(wall, 1), "epochs_run": summary["epochs_run"],
             "best_epoch": summary["best_epoch"],
             "best_val_macro_f1": summary.get("best_val_macro_f1"), "device": summary["device"]}
    return result["model"].eval(), result["tokenizer"], facts


def model_outputs(model: Any, tokenizer: Any, frames: dict[str, Any], params: Any
                  ) -> dict[str, tuple[Any, Any]]:
    """(logits, pooled embeddings) of each frame's texts, in row order."""
    from stages.common import StageError
    from stages.model import predict_outputs

    out = {}
    for name, df in frames.items():
        logits, pooled = predict_outputs(model, tokenizer, df["text"].tolist(), params.max_length,
                                         params.eval_batch_size)
        if pooled is None:
            raise StageError("the trained model returned no pooled embedding",
                             where="stages.model.predict_outputs",
                             fix="train with the shared classifier (stages.classifier)")
        out[name] = (logits, pooled)
    return out


def method_scores(method: str, logits: Any, pooled: Any, arrays: dict[str, Any]) -> Any:
    """Out-of-scope scores of a METHODS name (``knn@k`` is knn with k neighbours)."""
    from stages.oos_detector import score

    name, _, k = method.partition("@")
    return score(name, logits, pooled, arrays, int(k) if k else 1)


def open_set_scores(truth: list[str], predicted: list[str], known: list[str]) -> dict[str, Any]:
    """Accuracy and macro-F1 over the K known intents + the out-of-scope class, as ADB reports
    them; also F1 of the out-of-scope class alone and macro-F1 of the known intents alone."""
    from sklearn.metrics import accuracy_score, f1_score

    per_class = f1_score(truth, predicted, labels=[*known, OOS], average=None, zero_division=0)
    return {"open_accuracy": round(float(accuracy_score(truth, predicted)), 6),
            "open_macro_f1": round(float(per_class.mean()), 6),
            "f1_oos": round(float(per_class[-1]), 6),
            "f1_known_macro": round(float(per_class[:-1].mean()), 6)}


def measure_method(method: str, outputs: dict[str, tuple[Any, Any]], arrays: dict[str, Any],
                   test_facts: dict[str, Any]) -> dict[str, Any]:
    """One method on test, its threshold chosen on the in-scope val texts."""
    import numpy as np

    from stages.oos_detector import choose_threshold, separation

    threshold = choose_threshold(method_scores(method, *outputs["val"], arrays), KEEP_IN_SCOPE)
    started = time.perf_counter()
    scores = method_scores(method, *outputs["test"], arrays)
    score_s = time.perf_counter() - started
    in_scope, flags = test_facts["in_scope"], scores > threshold
    result = separation(scores[in_scope], scores[~in_scope], threshold)
    correct = test_facts["correct"]
    kept_correct = float((correct & ~flags[in_scope]).mean())
    result |= {
        "oos_precision": round(float((~in_scope[flags]).mean()), 6) if flags.any() else None,
        "accuracy_in_scope": round(float(correct.mean()), 6),
        "accuracy_in_scope_with_abstention": round(kept_correct, 6),
        "accuracy_drop_points": round(100 * (float(correct.mean()) - kept_correct), 3),
        **open_set_scores(test_facts["truth"],
                          np.where(flags, OOS, test_facts["predicted"]).tolist(),
                          test_facts["known"]),
        "test_score_s": round(score_s, 3)}
    return result


def test_facts(test: Any, logits: Any, names: list[str], known: list[str]) -> dict[str, Any]:
    """What every method's measurement shares: which test rows are in scope, the model's answers,
    whether each in-scope answer is right, and the K+1 truth."""
    import numpy as np

    in_scope = test["label"].isin(known).to_numpy()
    predicted = np.asarray(names, dtype=object)[logits.argmax(axis=1)]
    labels = test["label"].to_numpy()
    return {"in_scope": in_scope, "predicted": predicted, "known": known,
            "correct": predicted[in_scope] == labels[in_scope],
            "truth": np.where(in_scope, labels, OOS).tolist()}


def run_draw(share: float, draw: int, data: tuple[Any, Any, Any], params: Any,
             config: dict[str, Any]) -> dict[str, Any]:
    """Train on a draw's known intents and measure every method: the draw's results JSON."""
    import numpy as np

    from stages.model import class_names
    from stages.oos_detector import fit_arrays

    train, val, test = data
    known = draw_known(sorted(train["label"].unique()), share, draw)
    train_k = train[train["label"].isin(known)].reset_index(drop=True)
    val_k = val[val["label"].isin(known)].reset_index(drop=True)
    print(f"share {share:g} draw {draw}: {len(known)} known intents, train {len(train_k)}, "
          f"val {len(val_k)}, test {test['label'].isin(known).sum()} in scope + "
          f"{(~test['label'].isin(known)).sum()} out of scope; training", flush=True)
    model, tokenizer, run = train_known(train_k, val_k, params)
    print(f"  trained in {run['train_wall_s']:.0f} s ({run['epochs_run']} epochs, best "
          f"{run['best_epoch']}); predicting", flush=True)
    started = time.perf_counter()
    outputs = model_outputs(model, tokenizer, {"train": train_k, "val": val_k, "test": test}, params)
    predict_s = time.perf_counter() - started
    names = class_names(model)
    del model, tokenizer
    gc.collect()
    index = {name: i for i, name in enumerate(names)}
    started = time.perf_counter()
    arrays = fit_arrays(outputs["train"][1], np.asarray([index[x] for x in train_k["label"]]),
                        len(names), BANK_ROWS)
    fit_s = time.perf_counter() - started
    facts = test_facts(test, outputs["test"][0], names, known)
    methods = {}
    for method in METHODS:
        methods[method] = measure_method(method, outputs, arrays, facts)
        m = methods[method]
        print(f"  {method:<12} AUROC {m['auroc']:.3f}  FPR95 {m['fpr_at_95_tpr']:.3f}  OOS recall "
              f"{m['oos_recall']:.3f}  in-scope flagged {m['in_scope_flagged']:.3f}  "
              f"acc drop {m['accuracy_drop_points']:.2f} pts", flush=True)
    return {"benchmark": "open_set", "dataset": "banking77", "known_share": share, "draw": draw,
            "config": config, "known_intents": known,
            "hidden_intents": sorted(set(train["label"]) - set(known)),
            "rows": {"train": len(train_k), "val": len(val_k), "test": len(test),
                     "test_in_scope": int(facts["in_scope"].sum()),
                     "test_out_of_scope": int((~facts["in_scope"]).sum())},
            "keep_in_scope": KEEP_IN_SCOPE, "bank_rows": min(BANK_ROWS, len(train_k)),
            "methods": methods, "train": run, "predict_wall_s": round(predict_s, 1),
            "fit_wall_s": round(fit_s, 2),
            "peak_rss_mb_so_far": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)}


# ------------------------------------------------------------------------ the run


def train_params(overrides: list[str]) -> tuple[Any, Any]:
    """(TrainParams from params.yaml with ``--set train.KEY=VALUE`` applied, SplitParams)."""
    import yaml

    from stages.common import StageError, from_mapping, read_params_file
    from stages.split import SplitParams
    from stages.train import TrainParams

    raw = read_params_file()
    params = from_mapping(TrainParams, raw["train"], "params.yaml:train")
    for item in overrides:
        key, eq, value = item.removeprefix("train.").partition("=")
        if not eq or key not in vars(params):
            raise StageError(f"--set {item!r} is not train.KEY=VALUE for a train param",
                             fix=f"use one of {sorted(vars(params))}, e.g. --set train.epochs=1")
        params = replace(params, **{key: yaml.safe_load(value)})
    return params, from_mapping(SplitParams, raw["split"], "params.yaml:split")


def check_existing(path: Path, config: dict[str, Any]) -> bool:
    """True when ``path`` holds this draw measured with the same config (skip it); a different
    config there is an error, never silently mixed into one summary."""
    if not path.is_file():
        return False
    from stages.common import StageError

    found = json.loads(path.read_text()).get("config")
    if found != config:
        raise StageError(f"{machine.shown_path(path)} was measured with a different config "
                         f"({found}, this run {config})",
                         where=machine.shown_path(path),
                         fix="pass another --out-dir, or delete the file to measure it again")
    return True


def with_versions(facts: dict[str, Any]) -> dict[str, Any]:
    """machine_facts() plus the versions these figures depend on."""
    from importlib import metadata

    return facts | {"versions": facts["versions"] | {n: metadata.version(n) for n in VERSIONED}}


def measure(args: argparse.Namespace) -> None:
    """Every (share, draw) not measured yet in ``args.out_dir``, each written when done."""
    import torch

    from stages.io import write_json

    for name in ("train.csv", "test.csv"):
        machine.require(args.data / name, f"the dataset's {name}",
                        "pass --data DIR, a folder with train.csv and test.csv (text, category)")
    facts = machine.machine_facts()
    print(machine.machine_line(facts), flush=True)
    params, split_params = train_params(args.set)
    config = {"per_class": args.per_class or None, "overrides": args.set,
              "data": machine.shown_path(args.data)}
    todo = []
    for share, draw in [(s, d) for s in args.known_share for d in args.draws]:
        path = result_path(args.out_dir, share, draw)
        if check_existing(path, config):
            print(f"share {share:g} draw {draw}: done already ({machine.shown_path(path)})",
                  flush=True)
        else:
            todo.append((share, draw))
    if not todo:
        return
    data = load(args.data, args.per_class, split_params)
    print(f"banking77{f' {args.per_class}/class' if args.per_class else ' full'}: train "
          f"{len(data[0])}, val {len(data[1])}, test {len(data[2])} rows, "
          f"{data[0]['label'].nunique()} intents", flush=True)
    for share, draw in todo:
        result = run_draw(share, draw, data, params, config)
        result |= {"params": vars(params), "command": machine.shown_command(),
                   "machine": with_versions(facts) | {
                       "cpu_threads": torch.get_num_threads(),
                       "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}
        path = result_path(args.out_dir, share, draw)
        write_json(path, result)
        print(f"  wrote {machine.shown_path(path)}", flush=True)


# ------------------------------------------------------------------------ summary


def spread(values: list[float | None]) -> dict[str, Any]:
    present = [v for v in values if v is not None]
    if not present:
        return {"mean": None, "min": None, "max": None, "n": 0}
    return {"mean": round(sum(present) / len(present), 6), "min": min(present),
            "max": max(present), "n": len(present)}


def summarise(draws: list[dict[str, Any]]) -> dict[str, Any]:
    """Mean, min and max over draws, per known share and method."""
    shares: dict[str, Any] = {}
    for share in sorted({d["known_share"] for d in draws}, reverse=True):
        runs = sorted((d for d in draws if d["known_share"] == share), key=lambda d: d["draw"])
        per_method = {m: {key: spread([r["methods"][m].get(key) for r in runs]) for key in AGGREGATED}
                      for m in METHODS}
        shares[f"{round(100 * share)}"] = {
            "known_share": share, "draws": [r["draw"] for r in runs],
            "known_intents": [len(r["known_intents"]) for r in runs],
            "train_wall_s": spread([r["train"]["train_wall_s"] for r in runs]),
            "methods": per_method}
    return shares


def read_draws(out_dir: Path) -> list[dict[str, Any]]:
    from stages.common import StageError

    paths = sorted(out_dir.glob("open_set_*_draw*.json"))
    if not paths:
        raise StageError("no per-draw results to summarise", where=machine.shown_path(out_dir),
                         fix="run benchmarks/open_set.py without --summary first (or pass --out-dir)")
    draws = [json.loads(p.read_text()) for p in paths]
    configs = {json.dumps(d["config"], sort_keys=True) for d in draws}
    if len(configs) > 1:
        raise StageError(f"the per-draw results were measured with different configs: {configs}",
                         where=machine.shown_path(out_dir),
                         fix="keep one config's files in a folder (e.g. move the quick checks)")
    return draws


def print_table(shares: dict[str, Any]) -> None:
    header = "".join(f"{title:>21}" for _, title, _ in COLUMNS)
    for key, share in shares.items():
        print(f"\nknown share {key}% ({len(share['draws'])} draws; mean [min, max])")
        print(f"{'method':<12}{header}")
        for method, stats in share["methods"].items():
            cells = []
            for column, _, fmt in COLUMNS:
                s = stats[column]
                cells.append("-" if s["mean"] is None else
                             f"{s['mean']:{fmt}} [{s['min']:{fmt}}, {s['max']:{fmt}}]")
            print(f"{method:<12}" + "".join(f"{c:>21}" for c in cells))


def plot(shares: dict[str, Any], png: Path) -> None:
    """AUROC and out-of-scope recall per method, one bar per known share, min-max error bars."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(METHODS))
    width = 0.8 / max(len(shares), 1)
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
    panels = (("auroc", "AUROC", "AUROC on test (in scope vs hidden intents)"),
              ("oos_recall", "out-of-scope recall",
               f"out-of-scope recall on test at the val threshold\n(keeps {KEEP_IN_SCOPE:.0%} "
               "of in-scope val texts)"))
    for ax, (key, label, title) in zip(axes, panels, strict=True):
        for i, (share_key, share) in enumerate(shares.items()):
            stats = [share["methods"][m][key] for m in METHODS]
            mean = np.array([s["mean"] for s in stats], dtype=float)
            low = mean - np.array([s["min"] for s in stats], dtype=float)
            high = np.array([s["max"] for s in stats], dtype=float) - mean
            ax.bar(x + (i - (len(shares) - 1) / 2) * width, mean, width, yerr=[low, high],
                   capsize=3, label=f"{share_key}% intents known ({len(share['draws'])} draws)")
        ax.set_xticks(x, METHODS, rotation=20)
        ax.set(xlabel="out-of-scope score", ylabel=label, ylim=(0, 1.05),
               title=title)
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8, loc="lower left")
    fig.suptitle("Banking77 open set: hidden intents as out of scope (bars: mean, whiskers: "
                 "min-max over draws)", fontsize=10)
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def summary(out_dir: Path) -> None:
    from stages.io import write_json

    draws = read_draws(out_dir)
    shares = summarise(draws)
    print_table(shares)
    out = {"benchmark": "open_set", "dataset": "banking77", "config": draws[0]["config"],
           "keep_in_scope": KEEP_IN_SCOPE, "methods": list(METHODS), "shares": shares,
           "files": [machine.shown_path(p) for p in sorted(out_dir.glob("open_set_*_draw*.json"))],
           "machine": draws[-1]["machine"], "command": draws[-1]["command"]}
    write_json(out_dir / "open_set.json", out)
    plot(shares, out_dir / "open_set.png")
    print(f"\nwrote {machine.shown_path(out_dir / 'open_set.json')} and "
          f"{machine.shown_path(out_dir / 'open_set.png')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=machine.BANKING77,
                        help="folder with train.csv, test.csv (default ../shared/datasets/banking77)")
    parser.add_argument("--known-share", type=float, action="append",
                        help="share of the intents known (repeatable; default 0.75 and 0.5)")
    parser.add_argument("--draws", type=int, nargs="+", default=[0, 1, 2],
                        help="draw seeds: which intents are known (default 0 1 2)")
    parser.add_argument("--per-class", type=int, default=0,
                        help="training rows per intent (0: all; small values for a quick check)")
    parser.add_argument("--set", action="append", default=[], metavar="train.KEY=VALUE",
                        help="override a train param (the default recipe is what is measured)")
    parser.add_argument("--out-dir", type=Path, default=RESULTS,
                        help="where the per-draw JSON, open_set.json and open_set.png go")
    parser.add_argument("--summary", action="store_true",
                        help="aggregate the per-draw JSON in --out-dir; no training")
    args = parser.parse_args()
    args.known_share = args.known_share or [0.75, 0.5]
    if args.summary:
        summary(args.out_dir)
        return
    measure(args)


if __name__ == "__main__":
    machine.run_benchmark(main)
