"""Active learning, cheap proxy: frozen encoder embeddings + logistic regression on Banking77.

    python benchmarks/active_learning_proxy.py [--data ../shared/datasets/banking77]
        [--strategies random uncertainty hybrid dedupe] [--seeds 0 1 2]
        [--out benchmarks/results/active_learning_proxy.json]

The protocol of benchmarks/active_learning.py (10 texts per intent, then 5 rounds of 400 labels,
test macro-F1 on the official test file), but the model is a logistic regression (C=10) on the
frozen label_audit encoder's embeddings (computed once; cached in tmp/), so one strategy and seed
takes about a minute instead of half an hour. It ranks selection strategies; it is not the
fine-tune's accuracy. ``dedupe`` (not a strategy of labelling.select yet) keeps uncertainty's
order and skips a text within cosine distance ``--radius`` of one already picked.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import machine  # noqa: E402

ROUNDS, BATCH, START_PER_CLASS = 5, 400, 10


def embeddings(root: Path, cache: Path):
    import numpy as np
    import pandas as pd

    train = pd.read_csv(root / "train.csv").rename(columns={"category": "label"})
    test = pd.read_csv(root / "test.csv").rename(columns={"category": "label"})
    if not cache.is_file():
        from stages.common import load_params
        from stages.label_audit import LabelAuditParams, embed_texts

        params = load_params("label_audit", LabelAuditParams)
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, train=embed_texts(train["text"].tolist(), params),
                 test=embed_texts(test["text"].tolist(), params))
    arrays = np.load(cache)
    classes = sorted(train["label"].unique())
    index = {c: i for i, c in enumerate(classes)}
    return (arrays["train"], train["label"].map(index).to_numpy(), arrays["test"],
            test["label"].map(index).to_numpy(), len(classes))


def dedupe(probs, emb, n: int, radius: float):
    """Uncertainty order, skipping a text within ``radius`` (cosine) of one already picked."""
    import numpy as np

    from labelling.select import uncertainty, unit_rows

    order, unit, picked = np.argsort(-uncertainty(probs), kind="stable"), unit_rows(emb), []
    for i in order:
        if picked and (1.0 - unit[picked] @ unit[i]).min() < radius:
            continue
        picked.append(int(i))
        if len(picked) == n:
            break
    return np.array(picked)


def run(strategy: str, seed: int, data, radius: float) -> list[tuple[int, float]]:
    import numpy as np
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import f1_score

    from labelling.select import choose

    x_train, y_train, x_test, y_test, n_classes = data
    rng = np.random.default_rng(seed)
    labelled = np.concatenate([rng.choice(np.flatnonzero(y_train == c), START_PER_CLASS,
                                          replace=False) for c in range(n_classes)])
    curve = []
    for round_ in range(ROUNDS + 1):
        model = LogisticRegression(C=10, max_iter=300).fit(x_train[labelled], y_train[labelled])
        f1 = f1_score(y_test, model.predict(x_test), average="macro")
        curve.append((len(labelled), round(float(f1), 4)))
        if round_ == ROUNDS:
            return curve
        pool = np.setdiff1d(np.arange(len(y_train)), labelled)
        probs = np.zeros((len(pool), n_classes))
        probs[:, model.classes_] = model.predict_proba(x_train[pool])
        if strategy == "dedupe":
            picked = dedupe(probs, x_train[pool], BATCH, radius)
        else:
            picked = choose(strategy, BATCH, probs, x_train[pool], x_train[labelled], seed)
        labelled = np.concatenate([labelled, pool[picked]])
    return curve


def labels_to_reach(curve: list[tuple[int, float]], target: float) -> float | None:
    """Labels at which the (linearly interpolated) curve first reaches ``target``."""
    for (n0, f0), (n1, f1) in zip(curve, curve[1:], strict=False):
        if f1 >= target:
            return n0 + (n1 - n0) * max(0.0, (target - f0) / (f1 - f0)) if f1 > f0 else n1
    return None


def main() -> None:
    import numpy as np

    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--data", type=Path, default=Path("../shared/datasets/banking77"))
    parser.add_argument("--strategies", nargs="+",
                        default=["random", "uncertainty", "hybrid", "dedupe"])
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--radius", type=float, default=0.1)
    parser.add_argument("--cache", type=Path, default=Path("tmp/active_learning_proxy/emb.npz"))
    parser.add_argument("--out", type=Path, default=Path("benchmarks/results/active_learning_proxy.json"))
    args = parser.parse_args()
    print(machine.machine_line())
    data = embeddings(machine.require(args.data, "Banking77", "pass --data"), args.cache)
    curves: dict[str, list[list[tuple[int, float]]]] = {}
    for strategy in args.strategies:
        for seed in args.seeds:
            start = time.time()
            curves.setdefault(strategy, []).append(run(strategy, seed, data, args.radius))
            print(f"{strategy:12s} seed {seed}: {curves[strategy][-1]} ({time.time() - start:.0f} s)",
                  flush=True)
    mean = {s: [(c[0][i][0], float(np.mean([r[i][1] for r in c]))) for i in range(ROUNDS + 1)]
            for s, c in curves.items()}
    summary = {}
    if "random" in mean:
        target, spent = mean["random"][-1][1], mean["random"][-1][0]
        for s, curve in mean.items():
            need = labels_to_reach(curve, target)
            summary[s] = {"final_macro_f1": round(curve[-1][1], 4),
                          "labels_to_reach_random_final": None if need is None else round(need),
                          "fewer_labels_than_random": None if need is None
                          else round(1 - need / spent, 3)}
            print(f"{s:12s} final {curve[-1][1]:.4f}; reaches random's {target:.4f} at "
                  f"{'never' if need is None else f'{need:.0f} labels ({1 - need / spent:.1%} fewer)'}")
    args.out.write_text(json.dumps({"benchmark": "active_learning_proxy", "command":
                                    machine.shown_command(), "machine": machine.machine_facts(),
                                    "radius": args.radius, "curves": curves, "mean": mean,
                                    "summary": summary}, indent=2) + "\n")


if __name__ == "__main__":
    machine.run_benchmark(main)
