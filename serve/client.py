"""Talk to a running service from elsewhere (the retrain flow's promotion step): stdlib only."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any

from stages.common import StageError


def request_reload(url: str, token: str, timeout_s: float = 300.0) -> dict[str, Any]:
    """POST /admin/reload and return the service's answer; StageError unless it loaded the model.

    The service loads the champion from *its* workspace: where it runs from another checkout,
    that checkout needs the new champion first (`git pull && dvc pull models/champion.dvc`).
    """
    endpoint = url.rstrip("/") + "/admin/reload"
    request = urllib.request.Request(endpoint, method="POST", data=b"",
                                     headers={"Authorization": f"Bearer {token}"})
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            return json.loads(response.read())
    except urllib.error.HTTPError as exc:
        try:
            body = json.loads(exc.read())
        except ValueError:
            body = {}
        detail = body.get("error", {}).get("message") or body.get("error") or exc.reason
        raise StageError(f"the service refused the reload (HTTP {exc.code}): {detail}",
                         where=endpoint, fix="see the service's log; it keeps serving the "
                         "model it had") from None
    except (urllib.error.URLError, OSError) as exc:
        raise StageError(f"could not reach the service: {exc}", where=endpoint,
                         fix="check RETRAINER_SERVE_URL and that the service runs") from None
