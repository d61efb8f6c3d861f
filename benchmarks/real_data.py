"""Real-data benchmark: the default fine-tuning recipe vs TF-IDF, on Banking77, in one process.

    python benchmarks/real_data.py [--data ../shared/datasets/banking77] [--per-class 20]
        [--set train.epochs=3 ...] [--out benchmarks/results/real_data_full.json]
        [--save-checkpoint tmp/banking77-checkpoint]

(paths relative to the repository root, where this runs: it reads params.yaml; ``tmp/`` there is
git-ignored scratch)

Uses the project's own code and defaults: params.yaml's ``train:`` and ``split:`` sections, the
split stage with the official test file as the golden test set (its stable hash split carves val
out of the official train file), ``stages.train.train_model`` and ``stages.evaluate.baselines``
(TF-IDF + logistic regression fitted on the same train rows). ``--per-class N`` keeps the first N
training rows of each class (by the hash order of the split, so the subset is not cherry-picked);
the test file is always whole. Prints test accuracy / macro-F1 of both, the margin, wall time and
peak RSS; with --out also writes them as JSON. ``--plot A.json B.json --png OUT`` draws the
val macro-F1 curves of such JSON files against their TF-IDF baselines (no training).
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
import time
from dataclasses import replace
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import machine  # noqa: E402


def load(root: Path, per_class: int, split_params: object):
    import pandas as pd

    from stages.data import normalise_text
    from stages.split import assign_splits, bucket

    frames = {}
    for name in ("train", "test"):
        df = pd.read_csv(root / f"{name}.csv").rename(columns={"category": "label"})
        frames[name] = df.assign(id=[f"{name}{i:05d}" for i in range(len(df))])
    train, test = frames["train"], frames["test"]
    train = train[~train["text"].map(normalise_text).isin(set(test["text"].map(normalise_text)))]
    if per_class:
        order = bucket(train["text"].map(normalise_text), "subset").sort_values().index
        train = train.loc[order].groupby("label", sort=False).head(per_class).sort_index()
    train = train.reset_index(drop=True)
    split = assign_splits(train, split_params, has_test_set=True)
    return train[split == "train"].reset_index(drop=True), train[split == "val"].reset_index(drop=True), test


def save_checkpoint(result: dict, params: object, out: Path) -> None:
    """The fine-tuned model as ``stages.train`` lays it out (weights, tokenizer, labels, the
    max_length export reads); the data fingerprints are left out: these are not the project's
    splits."""
    from stages import artifacts
    from stages.io import atomic_path, write_json

    with atomic_path(out) as tmp:
        tmp.mkdir()
        result["model"].save(tmp)
        result["tokenizer"].save_pretrained(tmp)
        write_json(tmp / artifacts.LABELS_FILE, result["labels"])
        write_json(tmp / artifacts.MANIFEST_FILE, {"params": vars(params), "pooling": result["pooling"]})
    print(f"saved the fine-tuned checkpoint to {out}")


def plot(results: list[Path], png: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for path in results:
        d = json.loads(path.read_text())
        name = f"{d['per_class']} per class" if d["per_class"] else "full train file"
        epochs = d["epochs"]
        (line,) = ax.plot([r["epoch"] for r in epochs], [r["val_macro_f1"] for r in epochs],
                          marker="o", label=f"{name}: val macro-F1")
        ax.axhline(d["tfidf_logreg"]["macro_f1"], color=line.get_color(), ls="--", lw=1,
                   label=f"{name}: TF-IDF test macro-F1")
        ax.scatter([d["train_summary"]["best_epoch"]], [d["fine_tuned"]["macro_f1"]], marker="*",
                   s=150, color=line.get_color(), zorder=5,
                   label=f"{name}: fine-tuned test macro-F1 (best epoch)")
    ax.set(xlabel="epoch", ylabel="macro-F1", ylim=(0.4, 1.0),
           title="Banking77 (77 intents): default recipe vs TF-IDF, CPU")
    ax.legend(fontsize=7, loc="lower right")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(png, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=machine.BANKING77,
                        help="folder with train.csv, test.csv (default ../shared/datasets/banking77)")
    parser.add_argument("--plot", type=Path, nargs="+", help="result JSON files to draw")
    parser.add_argument("--png", type=Path, default=Path("benchmarks/results/real_data_banking77.png"))
    parser.add_argument("--per-class", type=int, default=0, help="training rows per class (0: all)")
    parser.add_argument("--set", action="append", default=[], metavar="train.KEY=VALUE",
                        help="override a train param (the default recipe is what is measured)")
    parser.add_argument("--out", type=Path)
    parser.add_argument("--save-checkpoint", type=Path, metavar="DIR",
                        help="also save the fine-tuned model as train does (for export/quantize)")
    args = parser.parse_args()
    if args.plot:
        plot(args.plot, args.png)
        return
    for name in ("train.csv", "test.csv"):
        machine.require(args.data / name, f"the dataset's {name}",
                        "pass --data DIR, a folder with train.csv and test.csv (text, label)")
    facts = machine.machine_facts()
    print(machine.machine_line(facts), flush=True)

    import torch
    import yaml

    from stages.common import from_mapping, read_params_file
    from stages.evaluate import EvaluateParams, baselines
    from stages.metrics import classification_metrics
    from stages.model import class_names, predict_logits
    from stages.split import SplitParams
    from stages.train import TrainParams, train_model

    raw = read_params_file()
    params = from_mapping(TrainParams, raw["train"], "params.yaml:train")
    for item in args.set:
        key, value = item.removeprefix("train.").split("=", 1)
        params = replace(params, **{key: yaml.safe_load(value)})
    split_params = from_mapping(SplitParams, raw["split"], "params.yaml:split")
    train, val, test = load(args.data, args.per_class, split_params)
    labels = sorted(train["label"].unique())
    print(f"banking77{f' {args.per_class}/class' if args.per_class else ' full'}: train {len(train)}, "
          f"val {len(val)}, test {len(test)} rows, {len(labels)} classes", flush=True)

    t0 = time.perf_counter()
    tfidf_pred = baselines(train, test, from_mapping(EvaluateParams, raw["evaluate"], "evaluate"))
    tfidf_s = time.perf_counter() - t0
    tfidf = classification_metrics(test["label"], tfidf_pred["tfidf_logreg"], labels)

    t0 = time.perf_counter()
    result = train_model(train, val, params, resume=False)
    train_s = time.perf_counter() - t0
    model, tokenizer = result["model"].eval(), result["tokenizer"]
    logits = predict_logits(model, tokenizer, test["text"].tolist(), params.max_length,
                            params.eval_batch_size)
    names = class_names(model)
    ours = classification_metrics(test["label"], [names[i] for i in logits.argmax(axis=1)], labels)

    out = {
        "dataset": "banking77", "per_class": args.per_class or None,
        "rows": {"train": len(train), "val": len(val), "test": len(test)}, "classes": len(labels),
        "fine_tuned": {k: ours[k] for k in ("accuracy", "macro_f1")},
        "tfidf_logreg": {k: tfidf[k] for k in ("accuracy", "macro_f1")},
        "macro_f1_margin_points": round(100 * (ours["macro_f1"] - tfidf["macro_f1"]), 2),
        "train_summary": result["summary"], "epochs": result["epochs"].to_dict("records"),
        "train_wall_s": round(train_s, 1), "tfidf_wall_s": round(tfidf_s, 1),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        "params": {k: v for k, v in vars(params).items()}, "overrides": args.set,
        "machine": {**facts, "device": result["summary"]["device"],
                    "cpu_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
                    "peak_gpu_mb": round(torch.cuda.max_memory_allocated() / 2**20)
                    if torch.cuda.is_available() else None},
    }
    print(f"{'model':<22}{'accuracy':>10}{'macro-F1':>10}")
    print(f"{'fine-tuned (default)':<22}{ours['accuracy']:>10.4f}{ours['macro_f1']:>10.4f}")
    print(f"{'TF-IDF + logreg':<22}{tfidf['accuracy']:>10.4f}{tfidf['macro_f1']:>10.4f}")
    print(f"margin {out['macro_f1_margin_points']:+.2f} macro-F1 points; train {train_s:.0f} s "
          f"({result['summary']['epochs_run']} epochs, best {result['summary']['best_epoch']}), "
          f"TF-IDF {tfidf_s:.0f} s, peak RSS {out['peak_rss_mb']} MB")
    if args.save_checkpoint:
        save_checkpoint(result, params, args.save_checkpoint)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(out, indent=2, default=str) + "\n")


if __name__ == "__main__":
    machine.run_benchmark(main)
