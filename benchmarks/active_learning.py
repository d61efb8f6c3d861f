"""Active-learning benchmark: how many labels the selection strategies save, on Banking77.

    python benchmarks/active_learning.py [--data ../shared/datasets/banking77] [--seeds 0 1] \\
        [--strategies random uncertainty hybrid] [--start-per-class 10] [--rounds 5] \\
        [--batch 400] [--val-per-class 5] [--set train.epochs=4 ...] \\
        [--out benchmarks/results/active_learning.json]
    python benchmarks/active_learning.py --summary [--out ...]

(run from the repository root: it reads params.yaml; the dataset is never copied into the checkout)

The annotator is simulated by the true labels. Data: the split of benchmarks/real_data.py (the
project's stable hash split, the official test file as the test set). The pool is the split's
train part; every text's label is known to the benchmark but "bought" only when selected.

Per seed: a seeded numpy RNG draws ``--start-per-class`` texts per intent from the pool (round 0)
and, once, a fixed early-stopping val set of ``--val-per-class`` texts per intent from the split's
val part (never in the pool, never bought: a cheap, fixed stand-in for the small val set a team
labelling from scratch would keep). Round 0 is trained once and shared by every strategy. Then,
per strategy, ``--rounds`` rounds each buy ``--batch`` more labels from the rest of the pool with
``labelling.select.choose`` (the function the ``labelling.select`` command runs: random,
uncertainty = smallest margin, hybrid = uncertain-or-novel candidates spread by k-center), using
the previous round's model's probabilities and pooled embeddings of the unlabelled pool and the
pooled embeddings of the labelled rows; the model is trained from the base model again on all
labels bought so far (params.yaml ``train:``, ``stages.train.train_model``, ``train.seed`` + seed)
and scored on the whole official test file (macro-F1).

Resumable: every finished (seed, strategy, round) goes into the results JSON at once, with the
ids it added; a restart skips them (the model outputs the next selection needs are cached under
``tmp/active_learning/<config hash>/``; without the cache that round's model is trained again
from its recorded labels). ``--summary`` (no training) re-renders the table, the label saving and the plot
(``--png``, default beside the JSON) from the JSON.

Time, on 2 CPU cores shared with other jobs, with ``--set train.epochs=2``: 1-4 minutes a round
(training dominates; predicting the 8,517-text pool adds 40-100 s where a selection needs it),
1 h 45 min for 31 of the 32 trainings of 2 seeds x (1 + 3 strategies x 5 rounds). On busy
cores, ``OMP_NUM_THREADS=1`` trained up to 5x faster than torch's default 2 threads (observed in
this run, benchmarks/RESULTS.md "Active learning").
"""

from __future__ import annotations

import argparse
import gc
import json
import sys
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks import machine  # noqa: E402
from benchmarks.open_set import train_params, with_versions  # noqa: E402
from benchmarks.real_data import load  # noqa: E402

RESULTS = Path("benchmarks/results/active_learning.json")
CACHE = Path("tmp/active_learning")   # model outputs on the pool, for a resumed run's next selection
SHARED = "shared"                     # the strategy name of round 0 (one model for all strategies)


# ------------------------------------------------------------------------ draws and selection


def per_class_sample(frame: Any, per_class: int, rng: Any) -> list[int]:
    """Row positions of ``per_class`` rows per label (all of a smaller class), drawn with ``rng``."""
    import numpy as np

    picked: list[int] = []
    for label in sorted(frame["label"].unique()):
        rows = np.flatnonzero(frame["label"].to_numpy() == label)
        picked += rng.choice(rows, size=min(per_class, len(rows)), replace=False).tolist()
    return sorted(picked)


def softmax(logits: Any) -> Any:
    import numpy as np

    z = logits - logits.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def select(strategy: str, n: int, outputs: dict[str, Any] | None, labelled: list[int],
           pool_size: int, seed: int) -> tuple[list[int], float]:
    """``n`` more pool positions to label and the seconds choosing took (model outputs exclude)."""
    import numpy as np

    from labelling.select import choose

    taken = set(labelled)
    candidates = np.asarray([i for i in range(pool_size) if i not in taken])
    started = time.perf_counter()
    if strategy == "random":  # needs no model: only the number of candidates matters
        picked = choose("random", n, np.zeros((len(candidates), 1)), seed=seed)
    else:
        probs, pooled = softmax(outputs["logits"]), outputs["pooled"]
        picked = choose(strategy, n, probs[candidates], pooled[candidates],
                        labelled=pooled[np.asarray(labelled)], seed=seed)
    return sorted(candidates[picked].tolist()), time.perf_counter() - started


# ------------------------------------------------------------------------ one round


def train_and_score(pool: Any, labelled: list[int], val: Any, test: Any, params: Any,
                    need_outputs: bool) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """Train on the labelled pool rows; test macro-F1; with ``need_outputs`` also the logits and
    pooled embeddings of every pool row (what the next selection reads)."""
    from stages.metrics import classification_metrics
    from stages.model import class_names, predict_outputs
    from stages.train import train_model

    started = time.perf_counter()
    result = train_model(pool.iloc[labelled].reset_index(drop=True), val, params, resume=False)
    train_s = time.perf_counter() - started
    model, tokenizer = result["model"].eval(), result["tokenizer"]
    started = time.perf_counter()
    logits, _ = predict_outputs(model, tokenizer, test["text"].tolist(), params.max_length,
                                params.eval_batch_size, embeddings=False)
    test_s = time.perf_counter() - started
    names = class_names(model)
    labels = sorted(test["label"].unique())
    scores = classification_metrics(test["label"], [names[i] for i in logits.argmax(axis=1)], labels)
    outputs, pool_s = None, 0.0
    if need_outputs:
        started = time.perf_counter()
        pool_logits, pooled = predict_outputs(model, tokenizer, pool["text"].tolist(),
                                              params.max_length, params.eval_batch_size)
        pool_s = time.perf_counter() - started
        # the pool's columns in the order the model's classes have (every round has all intents)
        outputs = {"logits": pool_logits, "pooled": pooled, "classes": names}
    summary = result["summary"]
    del model, tokenizer, result
    gc.collect()
    facts = {"test_macro_f1": scores["macro_f1"], "test_accuracy": scores["accuracy"],
             "epochs_run": summary["epochs_run"], "best_epoch": summary["best_epoch"],
             "best_val_macro_f1": summary["best_val_macro_f1"], "device": summary["device"],
             "train_s": round(train_s, 1), "test_predict_s": round(test_s, 1),
             "pool_predict_s": round(pool_s, 1)}
    return facts, outputs


def cache_path(config: dict[str, Any], seed: int, strategy: str, round_: int) -> Path:
    """Under a folder named by the config's hash: another config's outputs are never read."""
    import hashlib

    key = hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest()[:12]
    return CACHE / key / f"seed{seed}_{strategy}_round{round_}.npz"


def save_outputs(path: Path, outputs: dict[str, Any]) -> None:
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".part.npz")
    np.savez(tmp, logits=outputs["logits"], pooled=outputs["pooled"])
    tmp.replace(path)


def load_outputs(path: Path) -> dict[str, Any] | None:
    import numpy as np

    if not path.is_file():
        return None
    with np.load(path) as f:
        return {"logits": f["logits"], "pooled": f["pooled"]}


# ------------------------------------------------------------------------ the run


def record_key(seed: int, strategy: str, round_: int) -> str:
    return f"seed{seed}/{strategy}/round{round_}"


def read_results(path: Path, config: dict[str, Any] | None) -> dict[str, Any]:
    """The results file so far; a different config there is an error, never silently mixed."""
    from stages.common import StageError

    if not path.is_file():
        return {"benchmark": "active_learning", "dataset": "banking77", "config": config,
                "records": {}}
    results = json.loads(path.read_text())
    if config is not None and results.get("config") != config:
        raise StageError(f"{machine.shown_path(path)} was measured with a different config "
                         f"({results.get('config')}, this run {config})",
                         where=machine.shown_path(path),
                         fix="pass another --out, or delete the file to measure again")
    return results


class Runner:
    """One benchmark run: the data, params, results file and the model-output cache."""

    def __init__(self, args: argparse.Namespace, params: Any, data: tuple[Any, Any, Any],
                 results: dict[str, Any]) -> None:
        self.args, self.params, self.results = args, params, results
        self.pool, self.val_all, self.test = data
        self.position = {rid: i for i, rid in enumerate(self.pool["id"])}

    def save(self, key: str, record: dict[str, Any]) -> None:
        from stages.io import write_json

        self.results["records"][key] = record
        write_json(self.args.out, self.results)

    def labelled_until(self, seed: int, strategy: str, round_: int) -> list[int]:
        """Pool positions labelled after ``round_`` (round 0's, then each round's additions)."""
        records = self.results["records"]
        ids = list(records[record_key(seed, SHARED, 0)]["added_ids"])
        for r in range(1, round_ + 1):
            ids += records[record_key(seed, strategy, r)]["added_ids"]
        return sorted(self.position[i] for i in ids)

    def run_round(self, seed: int, strategy: str, round_: int, labelled: list[int], val: Any,
                  added: list[int], select_s: float) -> dict[str, Any] | None:
        from dataclasses import replace

        import torch

        params = replace(self.params, seed=self.params.seed + seed)
        last = round_ == self.args.rounds
        need = not last and (round_ == 0 or strategy != "random")
        started = time.perf_counter()
        facts, outputs = train_and_score(self.pool, labelled, val, self.test, params, need)
        if outputs is not None:
            save_outputs(cache_path(self.results["config"], seed, strategy, round_), outputs)
        record = {"seed": seed, "strategy": strategy, "round": round_, "labels": len(labelled),
                  "added_ids": [self.pool["id"].iloc[i] for i in added], **facts,
                  "select_s": round(select_s, 2), "cpu_threads": torch.get_num_threads(),
                  "round_wall_s": round(time.perf_counter() - started + select_s, 1)}
        self.save(record_key(seed, strategy, round_), record)
        print(f"seed {seed} {strategy:<11} round {round_}: {len(labelled):>5} labels  test "
              f"macro-F1 {facts['test_macro_f1']:.4f}  ({facts['epochs_run']} epochs, best "
              f"{facts['best_epoch']}; train {facts['train_s']:.0f} s, select {select_s:.1f} s, "
              f"predict pool {facts['pool_predict_s']:.0f} s, round {record['round_wall_s']:.0f} s)",
              flush=True)
        return outputs

    def outputs_after(self, seed: int, strategy: str, round_: int, val: Any) -> dict[str, Any]:
        """The model outputs of round ``round_``: cached, or that round's model trained again."""
        name = SHARED if round_ == 0 else strategy
        outputs = load_outputs(cache_path(self.results["config"], seed, name, round_))
        if outputs is None:
            print(f"seed {seed} {name} round {round_}: no cached outputs, training it again",
                  flush=True)
            from dataclasses import replace

            params = replace(self.params, seed=self.params.seed + seed)
            _, outputs = train_and_score(self.pool, self.labelled_until(seed, strategy, round_),
                                         val, self.test, params, need_outputs=True)
            save_outputs(cache_path(self.results["config"], seed, name, round_), outputs)
        return outputs

    def run_seed(self, seed: int) -> None:
        import numpy as np

        rng = np.random.default_rng(seed)
        val_rows = per_class_sample(self.val_all, self.args.val_per_class, rng)
        val = self.val_all.iloc[val_rows].reset_index(drop=True)
        records = self.results["records"]
        if record_key(seed, SHARED, 0) not in records:
            start = per_class_sample(self.pool, self.args.start_per_class, rng)
            self.run_round(seed, SHARED, 0, start, val, start, 0.0)
        for strategy in self.args.strategies:
            for round_ in range(1, self.args.rounds + 1):
                if record_key(seed, strategy, round_) in records:
                    continue
                labelled = self.labelled_until(seed, strategy, round_ - 1)
                outputs = None if strategy == "random" else \
                    self.outputs_after(seed, strategy, round_ - 1, val)
                added, select_s = select(strategy, self.args.batch, outputs, labelled,
                                         len(self.pool), seed * 1000 + round_)
                self.run_round(seed, strategy, round_, sorted(labelled + added), val, added,
                               select_s)


def measure(args: argparse.Namespace) -> None:
    import torch

    for name in ("train.csv", "test.csv"):
        machine.require(args.data / name, f"the dataset's {name}",
                        "pass --data DIR, a folder with train.csv and test.csv (text, category)")
    facts = machine.machine_facts()
    print(machine.machine_line(facts), flush=True)
    params, split_params = train_params(args.set)
    config = {"data": machine.shown_path(args.data), "overrides": args.set,
              "start_per_class": args.start_per_class, "rounds": args.rounds, "batch": args.batch,
              "val_per_class": args.val_per_class, "selection": {"measure": "margin",
                                                                 "hybrid_candidates": 5}}
    results = read_results(args.out, config)
    results |= {"params": vars(params), "command": machine.shown_command(),
                "machine": with_versions(facts) | {
                    "cpu_threads": torch.get_num_threads(),
                    "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None}}
    pool, val, test = load(args.data, 0, split_params)
    print(f"banking77: pool (split train) {len(pool)}, split val {len(val)} (val sample "
          f"{args.val_per_class}/intent), test {len(test)} rows, {pool['label'].nunique()} intents",
          flush=True)
    runner = Runner(args, params, (pool, val, test), results)
    for seed in args.seeds:
        runner.run_seed(seed)
    summary(args.out, args.png, args.data)


# ------------------------------------------------------------------------ summary


def curves(records: dict[str, Any], strategies: list[str]) -> dict[str, Any]:
    """Per strategy: labels -> the per-seed test macro-F1 (round 0 belongs to every strategy)."""
    out: dict[str, dict[int, dict[int, float]]] = {s: {} for s in strategies}
    for r in records.values():
        for s in strategies if r["strategy"] == SHARED else [r["strategy"]]:
            if s in out:
                out[s].setdefault(r["labels"], {})[r["seed"]] = r["test_macro_f1"]
    return out


def labels_to_reach(points: list[tuple[int, float]], target: float) -> float | None:
    """The labels at which a curve first reaches ``target``, linear between rounds; None if never."""
    for (x0, y0), (x1, y1) in zip([(None, None), *points], points, strict=False):
        if y1 >= target:
            if x0 is None or y1 == y0:
                return float(x1)
            return x0 + (target - y0) / (y1 - y0) * (x1 - x0)
    return None


def complete_seeds(curve: dict[int, dict[int, float]], xs: list[int]) -> set[int]:
    """The seeds with a figure at every label count in ``xs`` (a finished curve)."""
    return set.intersection(*(set(curve.get(x, {})) for x in xs)) if xs else set()


def saving(curve: dict[int, dict[int, float]], reference: dict[int, dict[int, float]],
           start: int, xs: list[int], seeds: list[int] | None = None) -> dict[str, Any] | None:
    """Labels ``curve`` needs to reach ``reference``'s final macro-F1 (means over ``seeds``, by
    default every seed with a finished reference and a round 1 of ``curve``), and the share saved,
    of all labels and of the labels bought after round 0. A curve still running counts up to the
    last round all those seeds finished: reaching the target there is measured; not reaching it is
    None ("not yet")."""
    both = complete_seeds(reference, xs) & set(curve.get(xs[1], {}) if len(xs) > 1 else ())
    use = sorted(both if seeds is None else both & set(seeds))
    if not use:
        return None
    done = [x for x in xs if all(seed in curve.get(x, {}) for seed in use)]
    done = done[:next((i for i, x in enumerate(done) if x != xs[i]), len(done))]  # a prefix

    def mean_curve(c: dict[int, dict[int, float]], at: list[int]) -> list[tuple[int, float]]:
        return [(x, sum(c[x][seed] for seed in use) / len(use)) for x in at]

    final_labels, target = mean_curve(reference, xs)[-1]
    needed = labels_to_reach(mean_curve(curve, done), target)
    if needed is None and len(done) < len(xs):
        return None
    return {"seeds": use, "curve_rounds_measured": len(done) - 1,
            "reference_final_labels": final_labels,
            "reference_final_macro_f1": round(target, 6),
            "labels_needed": None if needed is None else round(needed, 1),
            "saving_of_all_labels": None if needed is None else round(1 - needed / final_labels, 4),
            "saving_of_bought_labels": None if needed is None
            else round(1 - (needed - start) / (final_labels - start), 4)}


def summarise(results: dict[str, Any]) -> dict[str, Any]:
    records = results["records"]
    strategies = list(dict.fromkeys(r["strategy"] for r in records.values() if r["strategy"] != SHARED))
    seeds = sorted({r["seed"] for r in records.values()})
    cv = curves(records, strategies)
    start = min((r["labels"] for r in records.values() if r["round"] == 0), default=0)
    config = results["config"]
    xs = [start + r * config["batch"] for r in range(config["rounds"] + 1)]
    table = {s: {str(x): {"mean": round(sum(v.values()) / len(v), 6), "min": min(v.values()),
                          "max": max(v.values()), "seeds": sorted(v)}
                 for x, v in sorted(cv[s].items())} for s in strategies}
    # per strategy and torch thread count: on shared cores the thread count changes the speed
    wall: dict[str, Any] = {}
    for s in [SHARED, *strategies]:
        for threads in sorted({r.get("cpu_threads", 0) for r in records.values()}):
            rows = [r for r in records.values()
                    if r["strategy"] == s and r.get("cpu_threads", 0) == threads]
            if rows:
                wall[f"{s}, {threads or '?'} thread(s)"] = {
                    k: round(sum(r[k] for r in rows) / len(rows), 1)
                    for k in ("round_wall_s", "train_s", "select_s", "pool_predict_s",
                              "test_predict_s", "epochs_run")} | {"rounds": len(rows)}
    savings = {}
    if "random" in cv:
        for s in strategies:
            if s != "random":
                savings[s] = {"mean_over_seeds": saving(cv[s], cv["random"], start, xs)} | {
                    f"seed{seed}": saving(cv[s], cv["random"], start, xs, [seed]) for seed in seeds}
    return {"strategies": strategies, "seeds": seeds, "start_labels": start, "table": table,
            "label_saving_vs_random": savings, "mean_wall_per_round": wall}


def print_summary(summ: dict[str, Any]) -> None:
    strategies = summ["strategies"]
    xs = sorted({int(x) for s in strategies for x in summ["table"][s]})
    print(f"\ntest macro-F1, mean [min, max] over seeds {summ['seeds']}")
    print(f"{'labels':>7}" + "".join(f"{s:>30}" for s in strategies))
    for x in xs:
        cells = []
        for s in strategies:
            c = summ["table"][s].get(str(x))
            partial = "" if c is None or len(c["seeds"]) == len(summ["seeds"]) else \
                f" n={len(c['seeds'])}"  # a seed still running: fewer seeds in this cell
            cells.append("-" if c is None else
                         f"{c['mean']:.4f} [{c['min']:.4f}, {c['max']:.4f}]{partial}")
        print(f"{x:>7}" + "".join(f"{c:>30}" for c in cells))
    for s, per in summ["label_saving_vs_random"].items():
        for who, sv in per.items():
            who = f"seeds {sv['seeds']}" if sv and who == "mean_over_seeds" else who
            if sv and sv["curve_rounds_measured"] < len(summ["table"][s]) - 1:
                who += f", its rounds 0-{sv['curve_rounds_measured']}"
            if sv is None:
                print(f"{s} vs random ({who}): not measurable yet")
            elif sv["labels_needed"] is None:
                print(f"{s} vs random ({who}): never reaches random's final macro-F1 "
                      f"{sv['reference_final_macro_f1']:.4f} within {sv['reference_final_labels']} labels")
            else:
                print(f"{s} vs random ({who}): {sv['labels_needed']:.0f} labels to reach random's "
                      f"final {sv['reference_final_macro_f1']:.4f} at {sv['reference_final_labels']}: "
                      f"{100 * sv['saving_of_all_labels']:.1f}% fewer labels, "
                      f"{100 * sv['saving_of_bought_labels']:.1f}% fewer bought after round 0")
    print("\nmean wall time per round (s)")
    for s, w in summ["mean_wall_per_round"].items():
        print(f"  {s:<25} round {w['round_wall_s']:>6.0f}  train {w['train_s']:>6.0f}  select "
              f"{w['select_s']:>5.1f}  predict pool {w['pool_predict_s']:>4.0f}  predict test "
              f"{w['test_predict_s']:>4.0f}  epochs {w['epochs_run']:.1f}  ({w['rounds']} rounds)")


def plot(results: dict[str, Any], summ: dict[str, Any], png: Path) -> None:
    """Test macro-F1 vs labels: mean over seeds (line), min-max (band), each seed (points)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cv = curves(results["records"], summ["strategies"])
    fig, ax = plt.subplots(figsize=(7.5, 4.5))
    for s in summ["strategies"]:
        xs = sorted(cv[s])
        mean = [sum(cv[s][x].values()) / len(cv[s][x]) for x in xs]
        partial = [x for x in xs if len(cv[s][x]) < len(summ["seeds"])]
        note = f"; {', '.join(f'{x:,}' for x in partial)}: fewer seeds" if partial else ""
        (line,) = ax.plot(xs, mean, marker="o", label=f"{s} (mean{note})")
        ax.fill_between(xs, [min(cv[s][x].values()) for x in xs],
                        [max(cv[s][x].values()) for x in xs], color=line.get_color(), alpha=0.15)
        for x in xs:
            ax.scatter([x] * len(cv[s][x]), list(cv[s][x].values()), s=12,
                       color=line.get_color(), alpha=0.6)
        if s == "random" and xs:  # the level the label saving is measured at
            ax.axhline(mean[-1], color=line.get_color(), ls="--", lw=1,
                       label=f"random's final mean ({mean[-1]:.3f})")
    cfg = results["config"]
    ax.set(xlabel="labelled training texts", ylabel="test macro-F1 (official test file)",
           title=f"Banking77 active learning: {cfg['start_per_class']}/intent, then "
                 f"{cfg['rounds']} x {cfg['batch']} labels; seeds {summ['seeds']}\n"
                 f"(line: mean, band: min-max, points: seeds; "
                 f"{' '.join(cfg['overrides']) or 'default recipe'})")
    ax.title.set_fontsize(9)
    ax.grid(alpha=0.3)
    ax.legend(loc="lower right")
    fig.tight_layout()
    png.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(png, dpi=110)
    plt.close(fig)


def class_balance(results: dict[str, Any], data: Path) -> dict[str, Any]:
    """What each strategy bought, by intent (the labels come from the data: the JSON keeps ids):
    intents per 400-label batch and the fewest / most labels of one intent after the last round,
    mean over seeds. Why a strategy helps or not is often here: a batch of one region's texts."""
    from collections import Counter

    records = results["records"]
    _, split_params = train_params([])
    pool, _, _ = load(data, 0, split_params)
    label_of = dict(zip(pool["id"], pool["label"], strict=True))
    out: dict[str, Any] = {}
    for s in dict.fromkeys(r["strategy"] for r in records.values() if r["strategy"] != SHARED):
        batches = [r for r in records.values() if r["strategy"] == s]
        per_batch = [len({label_of[i] for i in r["added_ids"]}) for r in batches]
        finals = []
        for seed in sorted({r["seed"] for r in batches}):
            rounds = [r for r in batches if r["seed"] == seed]
            if len(rounds) == results["config"]["rounds"]:
                ids = records[record_key(seed, SHARED, 0)]["added_ids"] + \
                    [i for r in rounds for i in r["added_ids"]]
                counts = Counter(label_of[i] for i in ids)
                if counts:
                    finals.append((min(counts.values()), max(counts.values())))
        out[s] = {"intents_per_batch_mean": round(sum(per_batch) / max(len(per_batch), 1), 1),
                  "intents_per_batch_min": min(per_batch, default=0),
                  "final_fewest_per_intent": [f[0] for f in finals],
                  "final_most_per_intent": [f[1] for f in finals]}
        print(f"  {s:<11} intents per {results['config']['batch']}-label batch: mean "
              f"{out[s]['intents_per_batch_mean']}, min {out[s]['intents_per_batch_min']}; after "
              f"the last round, labels of the rarest / commonest intent per seed: "
              f"{out[s]['final_fewest_per_intent']} / {out[s]['final_most_per_intent']}")
    return out


def summary(out: Path, png: Path | None, data: Path | None = None) -> None:
    from stages.common import StageError
    from stages.io import write_json

    if not out.is_file():
        raise StageError("no results to summarise", where=machine.shown_path(out),
                         fix="run benchmarks/active_learning.py without --summary first (or pass --out)")
    results = read_results(out, None)
    summ = summarise(results)
    print_summary(summ)
    if data is not None and (data / "train.csv").is_file():
        print("\nwhat was bought, by intent")
        summ["class_balance"] = class_balance(results, data)
    results["summary"] = summ
    write_json(out, results)
    png = png or out.with_suffix(".png")
    plot(results, summ, png)
    print(f"\nwrote {machine.shown_path(out)} and {machine.shown_path(png)}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, default=machine.BANKING77,
                        help="folder with train.csv, test.csv (default ../shared/datasets/banking77)")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--strategies", nargs="+", default=["random", "uncertainty", "hybrid"],
                        choices=["random", "uncertainty", "novelty", "hybrid"])
    parser.add_argument("--start-per-class", type=int, default=10, help="labels per intent in round 0")
    parser.add_argument("--rounds", type=int, default=5, help="selection rounds after round 0")
    parser.add_argument("--batch", type=int, default=400, help="labels bought per round")
    parser.add_argument("--val-per-class", type=int, default=5,
                        help="fixed early-stopping val texts per intent (from the split's val part)")
    parser.add_argument("--set", action="append", default=[], metavar="train.KEY=VALUE",
                        help="override a train param (the default recipe is what is measured)")
    parser.add_argument("--out", type=Path, default=RESULTS, help="the results JSON")
    parser.add_argument("--png", type=Path, help="the plot (default: --out with .png)")
    parser.add_argument("--summary", action="store_true",
                        help="re-render table and plot from --out; no training")
    args = parser.parse_args()
    if args.summary:
        summary(args.out, args.png, args.data)
        return
    measure(args)


if __name__ == "__main__":
    machine.run_benchmark(main)
