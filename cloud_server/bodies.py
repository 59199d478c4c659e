"""Reading JSON request bodies into the wire models, with clear 413/415/422 errors."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import web
from pydantic import BaseModel, ValidationError

from homemind_client.models import ErrorCode

from .errors import ApiError, validation_error
from .input_text import UNSTORABLE_DETAIL, has_unstorable_text


async def read_json(request: web.Request) -> Any:
    """The parsed JSON body; 415 for another content type, 413 when too big, 422 if malformed."""
    if request.content_type != "application/json":
        raise ApiError(ErrorCode.UNSUPPORTED_MEDIA_TYPE, "Send the body as application/json.")
    try:
        raw = await request.read()
    except web.HTTPRequestEntityTooLarge as err:
        raise ApiError(
            ErrorCode.PAYLOAD_TOO_LARGE, "The request body is larger than this server accepts."
        ) from err
    try:
        data = json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ApiError(ErrorCode.VALIDATION_ERROR, "The request body is not valid JSON.") from err
    if has_unstorable_text(data):
        raise ApiError(ErrorCode.VALIDATION_ERROR, UNSTORABLE_DETAIL)
    return data


async def read_model[M: BaseModel](request: web.Request, model: type[M]) -> M:
    data = await read_json(request)
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise validation_error(err) from err


def json_model(model: BaseModel | list[Any], status: int = 200) -> web.Response:
    """A JSON response from a wire model (or a list of them)."""
    if isinstance(model, list):
        body = "[" + ",".join(item.model_dump_json() for item in model) + "]"
    else:
        body = model.model_dump_json()
    return web.Response(text=body, status=status, content_type="application/json")
