"""The whole loop, as a team lives it: a real Prefect server (the test harness's), the real
service, real git and DVC, the tiny model.

serve the champion -> traffic from a new kind of customer -> the monitor flow sees drift ->
the labelling flow queues the drifted texts -> people label them (a CSV import) -> the retrain
flow trains on the new data version -> gate -> promote -> the service reloads and answers with
the new model version. The Label Studio leg of the round trip: tests/test_label_studio.py.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pandas as pd
import pytest

from stages.prediction_log import read_log
from tests.conftest import TINY_PIPELINE, set_params, write_csv
from tests.helpers import git, wait_until
from tests.serving import ADMIN_TOKEN, Server

PASSING_GATE = {"min_macro_f1": 0.0, "min_accuracy": 0.0, "min_class_recall": 0.0,
                "tfidf_margin": None, "max_regression_macro_f1": None,
                "max_regression_slice": None}
# the new kind of customer: long messages about two intents, each said three times over
NEW_CUSTOMERS = {
    "delivery_status": ["where is my package {n} it was due last week and nobody answers",
                        "my parcel {n} has not arrived and the tracking page shows nothing"],
    "login_problem": ["cant log in to my account {n} the reset link never comes",
                      "my account {n} is locked after the app update and support is closed"],
}


def new_customer_texts(n: int, seed: int) -> dict[str, str]:
    """``n`` distinct messages of the new kind -> their true intent (the simulated annotator)."""
    rng, out = random.Random(seed), {}
    while len(out) < n:
        intent = rng.choice(sorted(NEW_CUSTOMERS))
        text = rng.choice(NEW_CUSTOMERS[intent]).format(n=rng.randint(100, 99999))
        out[" ".join([text] * 3)] = intent
    return out


def predict(server: Server, texts: list[str]) -> list[dict[str, Any]]:
    answers = []
    for start in range(0, len(texts), 16):
        response = httpx.post(f"{server.url}/v1/predict", json={"texts": texts[start:start + 16]},
                              timeout=60)
        assert response.status_code == 200, response.text
        answers.append(response.json())
    return answers


@pytest.mark.slow
def test_drift_becomes_labels_then_a_new_champion_the_service_answers_with(
        pipeline_repo: Path, prefect_api: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.labels import import_labels, select_for_labelling
    from flows.monitoring import monitor
    from flows.retrain import retrain

    repo = pipeline_repo
    set_params(repo, {"gate": PASSING_GATE, "quantize": TINY_PIPELINE["quantize"],
                      "benchmark": TINY_PIPELINE["benchmark"],
                      "monitor": {"min_predictions": 100, "window_hours": 2},
                      "labelling": {"batch_size": 40, "window_hours": 2}})
    server = Server(repo, flush_interval_s=0.2)  # writes its serve: params
    git(repo, "commit", "-qam", "loop test: lenient gate, small windows")

    # 1. the first champion
    first = retrain(repo_dir=str(repo), promote=True, reason="first", return_state=True)
    assert first.is_completed(), first.message
    assert first.result()["promoted"] is True
    monkeypatch.setenv("RETRAINER_SERVE_URL", server.url)
    monkeypatch.setenv("RETRAINER_ADMIN_TOKEN", ADMIN_TOKEN)
    with server:
        v1 = httpx.get(f"{server.url}/v1/model", timeout=10).json()["version"]

        # 2. traffic: the old kind of customer, then many of a new kind
        old = pd.read_csv(repo / "data/sample/texts.csv")["text"].sample(60, random_state=0)
        truth = new_customer_texts(150, seed=3)
        predict(server, [*old, *truth])
        end = datetime.now(UTC) + timedelta(minutes=1)
        wait_until(lambda: len(read_log(repo / "logs/predictions")) == 210, 60,
                   "the service to log 210 predictions")

        # 3. the monitor sees drift
        window = monitor(repo_dir=str(repo), end=end.isoformat(), hours=2)
        assert window["status"] == "drift", window
        assert window["predictions"] == 210

        # 4. drift queues texts for labelling (what the label-on-drift deployment runs)
        batch = select_for_labelling(repo_dir=str(repo), end=end.isoformat(), hours=2,
                                     reason="retrainer.drift.detected")
        queued = pd.read_csv(batch["path"])
        assert len(queued) == 40 and queued["text"].isin(list(truth) + list(old)).all()
        assert batch["counts"]["already_labelled_or_queued"] >= 50  # the old texts are labelled

        # 5. people label the batch (the true intent), imported as a new version of the data
        answers = queued.assign(label=queued["text"].map(truth))
        assert answers["label"].notna().sum() >= 30  # mostly the new kind: novel and uncertain
        write_csv(repo.parent / "labels.csv", answers.dropna(subset=["label"])[
            ["id", "label"]].assign(annotator="pat").to_dict("records"))
        report = import_labels(repo_dir=str(repo), csv=str(repo.parent / "labels.csv"))
        assert report["imported"] == answers["label"].notna().sum() and report["commit"]
        assert git(repo, "log", "-1", "--format=%s").startswith("labels: import ")

        # 6. the retrain flow trains on the new version, gates and promotes; the service reloads
        second = retrain(repo_dir=str(repo), promote=True, reason="data arrived",
                         return_state=True)
        assert second.is_completed(), second.message
        steps = {s["stage"]: s["status"] for s in second.result()["stages"]}
        assert steps["ingest"] == steps["train"] == "ran"
        assert second.result()["promoted"] is True
        trained_on = pd.concat(pd.read_parquet(repo / f"data/splits/{name}.parquet")
                               for name in ("train", "val", "test"))
        assert set(answers.dropna(subset=["label"])["id"]) <= set(trained_on["id"])
        v2 = wait_until(lambda: (v := httpx.get(f"{server.url}/v1/model", timeout=10)
                                 .json()["version"]) != v1 and v, 60,
                        "the service to serve the new champion")
        assert predict(server, ["where is my package 7"])[0]["model_version"] == v2
