"""What the service reads from and writes to HTTP: a predict request, its answer, error answers.

Every refusal is a :class:`BadRequest` (status, code, message, fix) answered as
``{"error": {"code", "message", "fix"?}}``; docs/serving.md lists the codes.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from fastapi.responses import JSONResponse

if TYPE_CHECKING:
    from fastapi import Request

    from serve.model import BatchResult, ServedModel
    from serve.params import ServeParams

EXAMPLE = '{"texts": ["first text", "second text"], "ids": ["a", "b"]}'


class BadRequest(Exception):
    """A request the service refuses: the HTTP status and what the error answer says."""

    def __init__(self, status: int, code: str, message: str, fix: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.fix = status, code, message, fix

    def response(self) -> JSONResponse:
        return error_response(self.status, self.code, self.message, self.fix)


def error_response(status: int, code: str, message: str, fix: str | None = None,
                   headers: dict[str, str] | None = None) -> JSONResponse:
    body: dict[str, Any] = {"code": code, "message": message}
    if fix:
        body["fix"] = fix
    return JSONResponse({"error": body}, status_code=status, headers=headers)


async def read_predict_request(request: Request, params: ServeParams
                               ) -> tuple[list[str], list[str | None]]:
    """The texts and ids of a predict request; BadRequest (4xx) that names the problem."""
    return parse_predict_body(await read_body(request, params.max_body_bytes), params)


async def read_body(request: Request, limit: int) -> bytes:
    """The body, refusing (413) one over ``limit`` bytes before reading all of it."""
    def too_large() -> BadRequest:
        return BadRequest(413, "body_too_large", f"the request body is over {limit} bytes",
                          "send fewer or shorter texts per request (serve.max_body_bytes)")

    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise too_large()
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise too_large()
    return bytes(body)


def parse_predict_body(body: bytes, params: ServeParams) -> tuple[list[str], list[str | None]]:
    """The texts and ids of a predict request, or a 4xx that names the problem."""
    try:
        payload = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BadRequest(400, "invalid_json", f"the body is not valid JSON: {exc}",
                         f"send a JSON object like {EXAMPLE}") from None
    if not isinstance(payload, dict) or "texts" not in payload:
        raise BadRequest(422, "missing_texts", "the body must be a JSON object with a 'texts' list",
                         f"send {EXAMPLE}")
    unknown = sorted(set(payload) - {"texts", "ids"})
    if unknown:
        raise BadRequest(422, "unknown_fields", f"unknown field(s) {unknown}",
                         "send only 'texts' and optional 'ids'")
    texts = payload["texts"]
    if not isinstance(texts, list) or not texts:
        raise BadRequest(422, "invalid_texts", "'texts' must be a non-empty list of strings",
                         f"send {EXAMPLE}")
    if len(texts) > params.max_texts:
        raise BadRequest(422, "too_many_texts", f"{len(texts)} texts in one request; at most "
                         f"{params.max_texts} (serve.max_texts)", "split them over several requests")
    for i, text in enumerate(texts):
        if not isinstance(text, str):
            raise BadRequest(422, "invalid_text", f"texts[{i}] is {type(text).__name__}, "
                             "not a string", "send every text as a JSON string")
        if len(text) > params.max_chars:
            raise BadRequest(422, "text_too_long", f"texts[{i}] has {len(text)} characters; at "
                             f"most {params.max_chars} (serve.max_chars)",
                             "shorten it: the model reads only its first max_length tokens anyway")
    ids = payload.get("ids")
    if ids is None:
        return texts, [None] * len(texts)
    if not isinstance(ids, list) or len(ids) != len(texts) or not all(
            isinstance(x, str) for x in ids):
        raise BadRequest(422, "invalid_ids", "'ids' must be a list of strings, one per text",
                         f"send {EXAMPLE}, or leave 'ids' out")
    return texts, ids


def predict_answer(request_id: str, model: ServedModel, ids: list[str | None],
                   labels: list[str | None], result: BatchResult, top_k: int) -> JSONResponse:
    """The 200 answer: per text its label (the detector's, possibly null, when out of scope),
    confidence, ``top_k`` class probabilities, and ``out_of_scope``/``oos_score`` (null for a
    champion without a detector)."""
    k = min(top_k, len(model.labels))
    flags, scores = result.out_of_scope, result.oos_score
    predictions = []
    for row, label in enumerate(labels):
        p = result.probs[row]
        top = p.argsort()[::-1][:k]
        predictions.append({"id": ids[row], "label": label,
                            "confidence": round(float(p.max()), 6),
                            "probs": [{"label": model.labels[j], "prob": round(float(p[j]), 6)}
                                      for j in top],
                            "out_of_scope": None if flags is None else bool(flags[row]),
                            "oos_score": None if scores is None else round(float(scores[row]), 6),
                            "truncated": result.truncated[row],
                            "n_tokens": result.n_tokens[row]})
    return JSONResponse({"request_id": request_id, "model_version": model.version,
                         "predictions": predictions}, headers={"X-Request-ID": request_id})
