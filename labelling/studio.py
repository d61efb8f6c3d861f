"""A thin Label Studio client over its REST API: a project per label set, the selected texts pushed as
tasks with the model's guess as a pre-annotation, and the finished annotations pulled back.

Where the server is and who we are, from the environment:

    LABEL_STUDIO_URL       e.g. http://127.0.0.1:8080 (``python -m labelling.studio_server up``
                           prints it)
    LABEL_STUDIO_API_KEY   Account & Settings in Label Studio: a legacy token (40 hex characters,
                           sent as ``Token <key>``) or a personal access token (a JWT refresh token:
                           exchanged at /api/token/refresh/ for a short-lived access token, sent as
                           ``Bearer <access>``, exchanged again when it expires)

The label-studio-sdk package is not used: into our venv it would add 26 packages (opencv, nltk,
black, Faker...) and downgrade numpy; six endpoints over ``requests`` do the job.
"""

from __future__ import annotations

import base64
import json
import os
import time
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import quoteattr

from stages.common import StageError, redact_url

if TYPE_CHECKING:
    import pandas as pd
    import requests

ENV_URL = "LABEL_STUDIO_URL"
ENV_KEY = "LABEL_STUDIO_API_KEY"
FROM_NAME = "label"  # the Choices control's name in our labelling config
TO_NAME = "text"  # the Text object's name; tasks carry data.text
OUT_OF_SCOPE_HINT = "out of scope / new intent"
PUSH_COLUMNS = ("id", "text", "suggested_label", "suggested_score", "model_version")
ANNOTATION_COLUMNS = ("id", "text", "label", "annotator", "annotated_at", "skipped", "task_id")
IMPORT_BATCH = 500  # tasks per import request: one request per batch keeps a big push bounded
PAGE_SIZE = 500
REFRESH_MARGIN_S = 30  # exchange the personal access token this long before the access one expires


def _attr(value: str) -> str:
    """An XML attribute value, quoted with double quotes whatever it holds."""
    return quoteattr(value, {'"': "&quot;"})


def labelling_config(labels: list[str], out_of_scope_label: str) -> str:
    """Label Studio's labelling config: the text, and one single choice among ``labels`` plus the
    "out of scope / new intent" choice whose value is ``out_of_scope_label``."""
    labels = [str(label) for label in labels]
    problems = [label for label in [*labels, out_of_scope_label]
                if not label.strip() or label.startswith("$")]
    if problems:
        # "$name" in a config is a reference to task data, not a literal value
        raise StageError(f"labels Label Studio cannot show as choices: {problems!r}",
                         where="the label set", fix="labels must be non-empty and not start with '$'")
    if out_of_scope_label in labels:
        raise StageError(f"the out-of-scope label {out_of_scope_label!r} is also a class label",
                         where="the label set", fix="use a different out-of-scope label")
    if len(set(labels)) != len(labels):
        raise StageError("the label set has duplicates", where="the label set",
                         fix="pass each label once")
    choices = [f"    <Choice value={_attr(label)}/>" for label in labels]
    choices.append(f"    <Choice value={_attr(out_of_scope_label)} hint={_attr(OUT_OF_SCOPE_HINT)}/>")
    return "\n".join([
        "<View>",
        f'  <Text name="{TO_NAME}" value="${TO_NAME}"/>',
        f"  <Header value={_attr(f'Intent ({out_of_scope_label}: {OUT_OF_SCOPE_HINT})')}/>",
        f'  <Choices name="{FROM_NAME}" toName="{TO_NAME}" choice="single" required="true">',
        *choices,
        "  </Choices>",
        "</View>",
    ])


def config_choices(config: str) -> list[str]:
    """The choice values of our Choices control in a labelling config (what annotators can pick)."""
    import xml.etree.ElementTree as ET

    try:
        root = ET.fromstring(config)
    except ET.ParseError as e:
        raise StageError(f"unreadable labelling config: {e}", where="the Label Studio project",
                         fix="fix the project's Labeling Interface") from e
    return [c.get("value", "") for choices in root.iter("Choices") if choices.get("name") == FROM_NAME
            for c in choices.iter("Choice")]


def _jwt_expiry(token: str) -> float | None:
    """The ``exp`` claim of a JWT (not verified: only to know when to refresh), or None."""
    try:
        payload = token.split(".")[1]
        claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
        return float(claims["exp"])
    except (IndexError, ValueError, KeyError, TypeError):
        return None


def is_personal_access_token(token: str) -> bool:
    """A personal access token is a JWT (three dot-separated parts); a legacy token is hex."""
    return token.count(".") == 2 and token.startswith("eyJ")


class StudioClient:
    """Label Studio's REST API with a legacy token or a personal access token."""

    def __init__(self, url: str, token: str, timeout: float = 30.0,
                 session: requests.Session | None = None) -> None:
        import requests

        if not url or not token:
            raise StageError("the Label Studio URL and API key are both needed",
                             where=f"{ENV_URL} / {ENV_KEY}",
                             fix="set them (Account & Settings in Label Studio shows the key)")
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.session = session or requests.Session()
        self._token = token
        self._pat = is_personal_access_token(token)
        self._access: str | None = None
        self._access_expiry = 0.0

    @classmethod
    def from_env(cls, timeout: float = 30.0) -> StudioClient:
        """A client for LABEL_STUDIO_URL with LABEL_STUDIO_API_KEY."""
        url, token = os.environ.get(ENV_URL, ""), os.environ.get(ENV_KEY, "")
        if not url or not token:
            missing = [name for name, value in ((ENV_URL, url), (ENV_KEY, token)) if not value]
            raise StageError(f"{' and '.join(missing)} not set", where="the environment",
                             fix=f"export {ENV_URL}=http://127.0.0.1:8080 and {ENV_KEY}=<your token> "
                                 "(`python -m labelling.studio_server up` prints both)")
        return cls(url, token, timeout=timeout)

    # ------------------------------------------------------------------ HTTP

    def _refresh_access(self) -> None:
        """Exchange the personal access token (a refresh token) for a short-lived access token."""
        r = self._send("POST", "/api/token/refresh/", json={"refresh": self._token}, auth=False)
        self._access = r.json()["access"]
        self._access_expiry = _jwt_expiry(self._access) or time.time() + 240

    def _auth_header(self) -> dict[str, str]:
        if not self._pat:
            return {"Authorization": f"Token {self._token}"}
        if self._access is None or time.time() > self._access_expiry - REFRESH_MARGIN_S:
            self._refresh_access()
        return {"Authorization": f"Bearer {self._access}"}

    def _send(self, method: str, path: str, auth: bool = True, timeout: float | None = None,
              **kwargs: Any) -> requests.Response:
        import requests

        url = f"{self.url}{path}"
        for attempt in (1, 2):
            headers = self._auth_header() if auth else {}
            try:
                r = self.session.request(method, url, headers=headers,
                                         timeout=timeout or self.timeout, **kwargs)
            except requests.RequestException as e:
                raise StageError(f"could not reach Label Studio: {type(e).__name__}: {e}",
                                 where=redact_url(url),
                                 fix=f"is it running? check {ENV_URL} (`python -m "
                                     "labelling.studio_server status`)") from e
            # an access token can expire between our check and the server's: refresh, retry once
            if r.status_code == 401 and auth and self._pat and attempt == 1:
                self._access = None
                continue
            break
        if r.status_code >= 400:
            raise StageError(f"Label Studio answered {r.status_code} to {method} {redact_url(url)}: "
                             f"{r.text[:500]}", where=redact_url(url), fix=_fix_for(r.status_code, path))
        return r

    def get(self, path: str, **kwargs: Any) -> Any:
        return self._send("GET", path, **kwargs).json()

    def post(self, path: str, body: Any, **kwargs: Any) -> Any:
        return self._send("POST", path, json=body, **kwargs).json()

    # ------------------------------------------------------------------ projects and tasks

    def whoami(self) -> dict:
        return self.get("/api/current-user/whoami")

    def projects(self) -> list[dict]:
        out, page = [], 1
        while True:
            body = self.get("/api/projects/", params={"page": page, "page_size": PAGE_SIZE})
            out.extend(body["results"])
            if not body.get("next"):
                return out
            page += 1

    def ensure_project(self, title: str, labels: list[str], out_of_scope_label: str) -> int:
        """The id of the project titled ``title``, created with our labelling config if missing.

        An existing project is used as it is (its config may have been edited in the UI), as long
        as every label and the out-of-scope label are among its choices.
        """
        config = labelling_config(labels, out_of_scope_label)
        found = [p for p in self.projects() if p.get("title") == title]
        if len(found) > 1:
            raise StageError(f"{len(found)} Label Studio projects are titled {title!r}",
                             where=self.url, fix="rename or delete all but one, or use another title")
        if not found:
            return int(self.post("/api/projects/", {"title": title, "label_config": config})["id"])
        project = found[0]
        wanted = {*map(str, labels), out_of_scope_label}
        missing = sorted(wanted - set(config_choices(project.get("label_config", ""))))
        if missing:
            raise StageError(f"project {title!r} has no choice for {missing}",
                             where=f"{self.url}/projects/{project['id']}",
                             fix="add them in its Settings > Labeling Interface, or use a new title")
        return int(project["id"])

    def task_data_ids(self, project_id: int) -> set[str]:
        """The ``data.id`` of every task in the project."""
        ids: set[str] = set()
        page = 1
        while True:
            body = self.get("/api/tasks/", params={"project": project_id, "page": page,
                                                   "page_size": PAGE_SIZE, "fields": "task_only"})
            tasks = body.get("tasks", [])
            ids.update(str(t["data"]["id"]) for t in tasks if t.get("data", {}).get("id") is not None)
            if not tasks or page * PAGE_SIZE >= int(body.get("total", 0)):
                return ids
            page += 1

    def push_tasks(self, project_id: int, rows: pd.DataFrame) -> int:
        """Add ``rows`` (id, text, suggested_label, suggested_score, model_version) as tasks with
        the suggestion as a pre-annotation; rows whose id is in the project already are skipped.
        Returns how many tasks were added."""
        missing = [c for c in PUSH_COLUMNS if c not in rows.columns]
        if missing:
            raise StageError(f"the rows to label lack columns {missing}", where="push_tasks",
                             fix=f"pass a table with {', '.join(PUSH_COLUMNS)}")
        ids = rows["id"].astype(str)
        if ids.duplicated().any():
            raise StageError(f"duplicate ids in the rows to label: {sorted(set(ids[ids.duplicated()]))[:5]}",
                             where="push_tasks", fix="pass each text once")
        known = self.task_data_ids(project_id)
        tasks = [task_payload(row) for row in rows.loc[~ids.isin(known).to_numpy()].to_dict("records")]
        for start in range(0, len(tasks), IMPORT_BATCH):
            self.post(f"/api/projects/{project_id}/import", tasks[start:start + IMPORT_BATCH],
                      timeout=max(self.timeout, 120.0))
        return len(tasks)

    def export(self, project_id: int) -> list[dict]:
        """The project's tasks that have annotations (skipped ones included), in Label Studio's
        JSON export format."""
        return self.get(f"/api/projects/{project_id}/export", params={"exportType": "JSON"},
                        timeout=max(self.timeout, 300.0))

    def user_emails(self) -> dict[int, str]:
        """User id -> email for the organisation's users (an export names annotators by id)."""
        return {int(u["id"]): u.get("email", "") for u in self.get("/api/users/")}

    def submit_annotation(self, task_id: int, label: str | None, skip: bool = False) -> dict:
        """Annotate a task as an annotator would: choose ``label``, or skip it (``skip``)."""
        result = [] if label is None else [choice_result(label)]
        return self.post(f"/api/tasks/{task_id}/annotations/", {"result": result, "was_cancelled": skip})


def choice_result(label: str) -> dict:
    """One choice in our config, as Label Studio stores it in an annotation or prediction."""
    return {"from_name": FROM_NAME, "to_name": TO_NAME, "type": "choices",
            "value": {"choices": [str(label)]}}


def task_payload(row: dict) -> dict:
    """A task for Label Studio's import: the text, and the model's guess as a prediction."""
    import pandas as pd

    task: dict[str, Any] = {"data": {"id": str(row["id"]), "text": str(row["text"])}}
    if not pd.isna(row.get("suggested_label")):
        score = row.get("suggested_score")
        task["predictions"] = [{
            "model_version": str(row.get("model_version") or "unknown"),
            "score": None if pd.isna(score) else float(score),
            "result": [choice_result(row["suggested_label"])],
        }]
    return task


def _fix_for(status: int, path: str) -> str:
    if status == 401:
        return f"the API key was refused: copy a current one from Account & Settings into {ENV_KEY}"
    if status == 403:
        return "this user may not do that here: use an account of the project's organisation"
    if status == 404:
        return f"no such thing at {path}: check {ENV_URL} and the project or task id"
    if status >= 500:
        return "Label Studio failed: read its log (data dir server.log when started by studio_server)"
    return "read Label Studio's message above"


def _label_of(annotation: dict) -> str | None:
    """The chosen value of our Choices control in an annotation's result, or None."""
    results = [r for r in annotation.get("result") or [] if r.get("type") == "choices"]
    # prefer our control by name; a config edited in the UI may have renamed it
    results.sort(key=lambda r: r.get("from_name") != FROM_NAME)
    for r in results:
        choices = (r.get("value") or {}).get("choices") or []
        if choices:
            return str(choices[0])
    return None


def _annotator(completed_by: Any, emails: dict[int, str] | None) -> str:
    if isinstance(completed_by, dict):  # some exports expand the user
        return str(completed_by.get("email") or completed_by.get("id"))
    if emails and completed_by is not None and int(completed_by) in emails:
        return emails[int(completed_by)]
    return str(completed_by)


def annotations_from_export(tasks: list[dict], emails: dict[int, str] | None = None) -> pd.DataFrame:
    """One row per annotation in a Label Studio JSON export: id, text (the task's data), label (the
    choice, None if none), annotator (email when known, else the user id), annotated_at (ISO, its
    last update), skipped (cancelled, or no choice), task_id. Predictions are ignored; so are tasks
    nobody annotated. ``emails``: user id -> email (StudioClient.user_emails)."""
    import pandas as pd

    rows = []
    for task in tasks:
        data = task.get("data") or {}
        for annotation in task.get("annotations") or []:
            label = _label_of(annotation)
            rows.append({
                "id": None if data.get("id") is None else str(data["id"]),
                "text": data.get("text"),
                "label": label,
                "annotator": _annotator(annotation.get("completed_by"), emails),
                "annotated_at": annotation.get("updated_at") or annotation.get("created_at"),
                "skipped": bool(annotation.get("was_cancelled")) or label is None,
                "task_id": int(task["id"]),
            })
    # object columns: a missing label stays None (pandas 3 would make a str column with NaN)
    frame = pd.DataFrame(rows, columns=list(ANNOTATION_COLUMNS), dtype=object)
    return frame.astype({"skipped": bool, "task_id": "int64"})
