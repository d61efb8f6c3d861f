"""Label Studio: the labelling config, export parsing, and (slow) a round trip through a real server
started from its own venv: project, tasks with pre-annotations, two annotators, export."""

from __future__ import annotations

import socket
import time
import xml.etree.ElementTree as ET

import pandas as pd
import pytest

from labelling import studio, studio_server
from labelling.studio import StudioClient, annotations_from_export, labelling_config
from stages.common import StageError

LABELS = ["refund_request", "cancel & close", 'say "hi" <now>']
OOS = "oos"
SECOND = "second@example.com"


# --------------------------------------------------------------------------- pure

def test_config_escapes_labels_and_adds_the_out_of_scope_choice():
    config = labelling_config(LABELS, OOS)
    root = ET.fromstring(config)  # well-formed whatever the labels hold
    choices = root.find("Choices")
    assert choices.get("name") == studio.FROM_NAME and choices.get("toName") == studio.TO_NAME
    assert [c.get("value") for c in choices.iter("Choice")] == [*LABELS, OOS]
    oos = list(choices.iter("Choice"))[-1]
    assert oos.get("hint") == "out of scope / new intent"
    assert root.find("Text").get("value") == "$text"
    assert "cancel &amp; close" in config and "&lt;now&gt;" in config and "&quot;hi&quot;" in config
    assert studio.config_choices(config) == [*LABELS, OOS]


@pytest.mark.parametrize("labels, oos", [(["a", "a"], OOS), (["a", OOS], OOS), (["a", "$text"], OOS),
                                         (["a", " "], OOS), (["a"], "")])
def test_config_refuses_label_sets_it_cannot_show(labels, oos):
    with pytest.raises(StageError):
        labelling_config(labels, oos)


def _annotation(completed_by, choices=None, cancelled=False, at="2026-01-02T03:04:05Z"):
    result = [] if choices is None else [{"from_name": "label", "to_name": "text", "type": "choices",
                                          "value": {"choices": choices}}]
    return {"id": 1, "completed_by": completed_by, "result": result, "was_cancelled": cancelled,
            "created_at": "2026-01-01T00:00:00Z", "updated_at": at,
            # what the model guessed: must not leak into the labels
            "prediction": {"result": [{"from_name": "label", "to_name": "text", "type": "choices",
                                       "value": {"choices": ["guessed"]}}], "score": 0.9}}


EXPORT = [
    {"id": 11, "data": {"id": "t1", "text": "money back"},
     "predictions": [{"result": [{"type": "choices", "value": {"choices": ["guessed"]}}]}],
     "annotations": [_annotation(1, ["refund_request"]), _annotation(2, [OOS], at="2026-01-03T00:00:00Z")]},
    {"id": 12, "data": {"id": "t2", "text": "no idea"}, "annotations": [_annotation(1, cancelled=True)]},
    {"id": 13, "data": {"id": "t3", "text": "empty"},
     "annotations": [_annotation({"id": 2, "email": "b@x"}, [])]},
    {"id": 14, "data": {"id": "t4", "text": "nobody"}, "annotations": [],
     "predictions": [{"result": [{"type": "choices", "value": {"choices": ["guessed"]}}]}]},
]


def test_export_parsing_one_row_per_annotation():
    got = annotations_from_export(EXPORT, emails={1: "a@x"})
    assert list(got.columns) == list(studio.ANNOTATION_COLUMNS)
    rows = {(r.id, r.annotator): r for r in got.itertuples()}
    assert set(rows) == {("t1", "a@x"), ("t1", "2"), ("t2", "a@x"), ("t3", "b@x")}  # t4: nobody
    assert rows["t1", "a@x"].label == "refund_request" and not rows["t1", "a@x"].skipped
    assert rows["t1", "2"].label == OOS and rows["t1", "2"].annotated_at == "2026-01-03T00:00:00Z"
    assert rows["t2", "a@x"].label is None and rows["t2", "a@x"].skipped  # was_cancelled
    assert rows["t3", "b@x"].label is None and rows["t3", "b@x"].skipped  # submitted with no choice
    assert "guessed" not in set(got["label"].dropna())  # predictions are never labels
    assert got.loc[got["id"] == "t1", "task_id"].tolist() == [11, 11]
    assert got["text"].tolist()[0] == "money back"


def test_export_parsing_of_nothing_has_the_columns():
    got = annotations_from_export([])
    assert got.empty and list(got.columns) == list(studio.ANNOTATION_COLUMNS)


def test_task_payload_carries_the_guess_as_a_prediction():
    task = studio.task_payload({"id": 7, "text": "hi", "suggested_label": "refund_request",
                                "suggested_score": 0.25, "model_version": "abc123"})
    assert task["data"] == {"id": "7", "text": "hi"}
    (prediction,) = task["predictions"]
    assert prediction["model_version"] == "abc123" and prediction["score"] == 0.25
    assert prediction["result"] == [studio.choice_result("refund_request")]
    bare = studio.task_payload({"id": 8, "text": "x", "suggested_label": None,
                                "suggested_score": float("nan"), "model_version": "m"})
    assert "predictions" not in bare


def test_from_env_names_the_missing_variables(monkeypatch):
    monkeypatch.delenv(studio.ENV_URL, raising=False)
    monkeypatch.setenv(studio.ENV_KEY, "k")
    with pytest.raises(StageError, match=studio.ENV_URL):
        StudioClient.from_env()


def test_unreachable_server_is_a_clear_error():
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    client = StudioClient(f"http://127.0.0.1:{port}", "0" * 40, timeout=5)
    with pytest.raises(StageError, match="could not reach Label Studio") as e:
        client.whoami()
    assert "fix:" in str(e.value)


def test_personal_access_tokens_are_told_from_legacy_ones():
    assert not studio.is_personal_access_token("e7099cc458e6babbf9685e5f0940bb02c8e780e5")
    assert studio.is_personal_access_token("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.sig")
    assert studio._jwt_expiry("eyJhbGciOiJIUzI1NiJ9.eyJleHAiOjE3MDAwMDAwMDB9.sig") == 1_700_000_000


def test_status_without_a_server(tmp_path, capsys):
    assert studio_server.main(["status", "--dir", str(tmp_path)]) == 3
    assert "not running" in capsys.readouterr().out


def test_venv_without_its_requirements_file_is_a_clear_error(tmp_path):
    with pytest.raises(StageError, match="missing"):
        studio_server.ensure_venv(tmp_path / "venv", tmp_path / "requirements-label-studio.txt")
    assert not (tmp_path / "venv").exists()


@pytest.mark.slow  # creates two small virtual envs' worth of pip runs
def test_venv_is_installed_once_and_again_when_the_requirements_change(tmp_path):
    venv, requirements = tmp_path / "venv", tmp_path / "requirements.txt"
    requirements.write_text("# nothing to install\n")
    assert studio_server.ensure_venv(venv, requirements) == venv
    assert (venv / "bin" / "python").exists()
    log = venv / "install.log"
    first = log.stat().st_mtime_ns
    studio_server.ensure_venv(venv, requirements)
    assert log.stat().st_mtime_ns == first  # up to date: nothing ran
    requirements.write_text("# nothing to install, still\n")
    studio_server.ensure_venv(venv, requirements)
    assert log.stat().st_mtime_ns != first
    assert (venv / studio_server.MARKER).read_text().strip() == studio_server._sha256(requirements)


# --------------------------------------------------------------------------- a real server

@pytest.fixture(scope="module")
def server(tmp_path_factory):
    t0 = time.monotonic()
    venv = studio_server.ensure_venv()
    installed = time.monotonic()
    handle = studio_server.start(tmp_path_factory.mktemp("label-studio") / "data", venv=venv)
    print(f"\nLabel Studio: ensure_venv {installed - t0:.1f} s, start {time.monotonic() - installed:.1f} s")
    try:
        yield handle
    finally:
        studio_server.stop(handle)
        assert not studio_server._is_our_server(handle.pid, handle.data_dir)


def sign_up(url: str, email: str, password: str) -> str:
    """A second annotator signs up in the web UI (a session, CSRF) and creates a personal access
    token, as a person would in Account & Settings; returns the token."""
    import requests

    session = requests.Session()
    session.get(f"{url}/user/signup/", timeout=30).raise_for_status()
    r = session.post(f"{url}/user/signup/", timeout=30, allow_redirects=False,
                     data={"email": email, "password": password,
                           "csrfmiddlewaretoken": session.cookies["csrftoken"]})
    assert r.status_code == 302, r.text[:500]
    r = session.post(f"{url}/api/token/", headers={"X-CSRFToken": session.cookies["csrftoken"]},
                     timeout=30)
    assert r.status_code == 201, r.text[:500]
    return r.json()["token"]


ROWS = pd.DataFrame({
    "id": ["t1", "t2", "t3"],
    "text": ["i want my money back", "close my account & stop billing", "what is the weather"],
    "suggested_label": ["refund_request", "cancel & close", "refund_request"],
    "suggested_score": [0.91, 0.55, 0.31],
    "model_version": ["model-abc", "model-abc", "model-abc"],
})


@pytest.mark.slow  # starts a Label Studio server (installs its venv first if missing)
def test_round_trip_through_a_real_server(server):
    admin = StudioClient(server.url, server.token)
    project = admin.ensure_project("retrainer round trip", LABELS, OOS)
    assert admin.ensure_project("retrainer round trip", LABELS, OOS) == project  # found, not made
    with pytest.raises(StageError, match="no choice for"):
        admin.ensure_project("retrainer round trip", [*LABELS, "new_intent"], OOS)

    assert admin.push_tasks(project, ROWS) == 3
    tasks = admin.get("/api/tasks/", params={"project": project, "fields": "all"})["tasks"]
    by_id = {t["data"]["id"]: t for t in tasks}
    assert set(by_id) == {"t1", "t2", "t3"} and by_id["t2"]["data"]["text"] == ROWS["text"][1]
    for row in ROWS.itertuples():
        (prediction,) = by_id[row.id]["predictions"]
        assert prediction["model_version"] == "model-abc"
        assert prediction["score"] == pytest.approx(row.suggested_score)
        assert prediction["result"][0]["value"]["choices"] == [row.suggested_label]
    assert admin.push_tasks(project, ROWS) == 0  # the same texts again: nothing new
    assert admin.get("/api/tasks/", params={"project": project})["total"] == 3

    # the second annotator works with a personal access token (JWT refresh -> access)
    second = StudioClient(server.url, sign_up(server.url, SECOND, "Second-pass-9174"))
    assert second.whoami()["email"] == SECOND
    task = {k: t["id"] for k, t in by_id.items()}
    admin.submit_annotation(task["t1"], "refund_request")
    admin.submit_annotation(task["t2"], "cancel & close")
    admin.submit_annotation(task["t3"], None, skip=True)
    second.submit_annotation(task["t1"], OOS)  # disagrees with the first annotator
    second._access = "expired-or-revoked"  # a 401 makes it exchange its token again, once
    second.submit_annotation(task["t2"], "cancel & close")

    export = admin.export(project)
    got = annotations_from_export(export, emails=admin.user_emails())
    rows = sorted(got[["id", "annotator", "label", "skipped"]].itertuples(index=False, name=None),
                  key=lambda r: (r[0], r[1]))
    assert rows == [
        ("t1", server.username, "refund_request", False), ("t1", SECOND, OOS, False),
        ("t2", server.username, "cancel & close", False), ("t2", SECOND, "cancel & close", False),
        ("t3", server.username, None, True),
    ]
    assert set(got["task_id"]) == set(task.values())
    assert got["annotated_at"].str.match(r"\d{4}-\d\d-\d\dT").all()


@pytest.mark.slow
def test_refused_key_and_taken_port_are_clear_errors(server, tmp_path):
    with pytest.raises(StageError, match="401") as e:
        StudioClient(server.url, "0" * 40).whoami()
    assert "API key" in str(e.value)
    with pytest.raises(StageError, match="in use"):
        studio_server.start(tmp_path / "data", port=server.port, venv=studio_server.default_venv())


@pytest.mark.slow  # a real Label Studio server, real git and DVC, the tiny model
def test_labels_from_label_studio_are_a_new_data_version_that_dvc_repro_trains_on(
        server, pipeline_repo):
    from tests.conftest import dvc
    from tests.helpers import git, run_module
    from tests.test_labelling import END, log_rows

    repo = pipeline_repo
    new = ["where is the nearest atm to the station", "can i change my pin at a branch",
           "the machine swallowed my card last night", "how long does a transfer abroad take",
           "is there a fee for paying in euros", "my card was charged twice at the atm"]
    log_rows(repo, new, 6)
    env = {"LABEL_STUDIO_URL": server.url, "LABEL_STUDIO_API_KEY": server.token}
    chose = run_module("labelling.select", repo, "--push", "--end", END.isoformat(), "--hours",
                       "2", "--n", "10", env=env)
    assert chose.returncode == 0, chose.stderr
    assert "6 text(s) queued for labelling" in chose.stdout

    admin = StudioClient(server.url, server.token)
    project = next(p["id"] for p in admin.projects() if p["title"] == "retrainer")
    tasks = admin.get("/api/tasks/", params={"project": project, "fields": "all"})["tasks"]
    assert sorted(t["data"]["text"] for t in tasks) == sorted(new)
    assert all(t["predictions"] and t["predictions"][0]["model_version"] == "abc123" for t in tasks)
    for task in tasks:  # people label: one skips a task, the rest are card questions
        skip = task["data"]["text"] == new[0]
        admin.submit_annotation(task["id"], None if skip else "payment_failed", skip=skip)

    before = git(repo, "rev-parse", "HEAD")
    imported = run_module("labelling.imports", repo, "--label-studio", env=env)
    assert imported.returncode == 0, imported.stderr
    assert "imported 5 label(s) from label-studio: 5 new text(s)" in imported.stdout
    assert git(repo, "rev-parse", "HEAD~1") == before  # the import is one commit
    again = run_module("labelling.imports", repo, "--label-studio", env=env)
    assert again.returncode == 0 and "nothing new to import" in again.stdout

    repro = dvc(repo, "repro", "train")
    assert "Running stage 'ingest'" in repro.stdout and "Running stage 'train'" in repro.stdout
    splits = pd.concat(pd.read_parquet(repo / f"data/splits/{n}.parquet")
                       for n in ("train", "val", "test"))
    added = splits[splits["id"].str.startswith("log-")]
    assert sorted(added["text"]) == sorted(new[1:]) and set(added["label"]) == {"payment_failed"}
    lock = (repo / "dvc.lock").read_text()
    assert "path: data/imports" in lock
