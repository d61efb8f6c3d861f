"""Usage analytics off by default: Prefect, DVC and tools that honour DO_NOT_TRACK send nothing.

Called at the top of the flows/ and commands/ packages, before prefect or dvc is imported (a
``python -m flows.retrain`` imports the package first). Only defaults: a user who exported another
value keeps theirs and so opts in. Without it, a run outside ``make`` starts a Prefect server that
logs ``ERROR | prefect.server.services.telemetry - Failed to send telemetry`` on a machine with no
internet.
"""

from __future__ import annotations

import os
from collections.abc import MutableMapping

ANALYTICS_OFF = {
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",  # prefect.settings: server.analytics_enabled
    "DO_NOT_TRACK": "1",
    "DVC_NO_ANALYTICS": "1",
}


def default_analytics_off(environ: MutableMapping[str, str] = os.environ) -> None:
    """Set each analytics switch to off unless the environment already has a value for it."""
    for name, value in ANALYTICS_OFF.items():
        environ.setdefault(name, value)
