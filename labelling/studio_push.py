"""The labelling queue and Label Studio: push a queued batch as tasks, pull the export back.

The project is ``labelling.project`` (created on first use with a labelling config built from the
dataset's current label set plus the out-of-scope choice); the server and token come from
LABEL_STUDIO_URL and LABEL_STUDIO_API_KEY (labelling/studio.py). More: docs/labelling.md.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any


def _project(repo: Path) -> tuple[Any, int, str]:
    from labelling.imports import current_state
    from labelling.params import LabellingParams
    from labelling.studio import StudioClient
    from stages.common import load_params
    from stages.oos_params import OosParams

    params = load_params("labelling", LabellingParams, repo / "params.yaml")
    oos_label = load_params("oos", OosParams, repo / "params.yaml").label or "out_of_scope"
    labels = sorted(current_state(repo)["label_set"] - {oos_label})
    client = StudioClient.from_env()
    return client, client.ensure_project(params.project, labels, oos_label), params.project


def push_batch(repo: Path, batch: Path) -> dict[str, Any]:
    """Send a queued batch to the Label Studio project; tasks already there are not sent again."""
    import pandas as pd

    client, project_id, title = _project(repo)
    rows = pd.read_csv(batch, dtype={"id": "string", "text": "string"})
    pushed = client.push_tasks(project_id, rows)
    return {"project": title, "project_id": project_id, "tasks_pushed": pushed,
            "url": f"{client.url.rstrip('/')}/projects/{project_id}/data"}


def pull_annotations(repo: Path) -> tuple[Any, str]:
    """The project's annotations (one row per annotation, annotators by email) and where they
    came from."""
    from labelling.studio import annotations_from_export

    client, project_id, title = _project(repo)
    tasks = client.export(project_id)
    return (annotations_from_export(tasks, client.user_emails()),
            f"Label Studio project {title!r} ({client.url})")
