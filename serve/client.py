"""Talk to a running service from elsewhere (the retrain flow's promotion step): stdlib only."""

from __future__ import annotations

import json
import logging
import os
import urllib.error
import urllib.request
from typing import Any

from serve.params import ADMIN_TOKEN_ENV
from stages.common import StageError, get_logger


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


def notify_reload(url: str, log: logging.Logger | logging.LoggerAdapter | None = None,
                  token: str | None = None) -> dict[str, Any] | None:
    """:func:`request_reload` for the promotion step: a refused or unreachable service is a
    warning (the promotion stands; the service keeps its model and polls the pointer)."""
    log = log or get_logger(__name__)
    try:
        answer = request_reload(url, token if token is not None else
                                os.environ.get(ADMIN_TOKEN_ENV, ""))
    except StageError as exc:
        log.warning("the service at %s did not load the new champion:\n%s", url, exc)
        return None
    log.info("service at %s: %s, serving %s", url, answer.get("result"), answer.get("serving"))
    return answer
