"""A flow run that a user error stopped: the message as a markdown artifact and a Failed state."""

from __future__ import annotations

from typing import Any


def refused(exc: BaseException, artifact_key: str, heading: str) -> Any:
    """The Failed state of a run stopped by ``exc`` (a StageError: what, where, fix), with the
    whole message kept as the ``artifact_key`` artifact and on one line as the state's message."""
    from prefect.artifacts import create_markdown_artifact
    from prefect.states import Failed

    message = str(exc).replace("\n", " ")
    create_markdown_artifact(key=artifact_key, markdown=f"# {heading}\n\n```\n{exc}\n```",
                             description=message)
    return Failed(message=message)
