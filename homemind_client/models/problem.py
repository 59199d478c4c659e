"""RFC 9457 problem details: the one shape of every error the server returns."""

from __future__ import annotations

from typing import Any

from pydantic import Field

from .base import ResponseModel

PROBLEM_CONTENT_TYPE = "application/problem+json"


class FieldError(ResponseModel):
    """One validation failure: where (`loc`) and why (`msg`)."""

    loc: list[str | int] = Field(default_factory=list)
    msg: str
    type: str = "value_error"


class Problem(ResponseModel):
    """`{type, title, status, detail, code, request_id}` plus optional details."""

    type: str = "about:blank"
    title: str
    status: int
    detail: str = ""
    code: str
    request_id: str | None = None
    errors: list[FieldError] | None = None
    retry_after: int | None = None

    def to_json_dict(self) -> dict[str, Any]:
        return self.model_dump(mode="json", exclude_none=True)
