"""Base classes of the wire models shared by the client and the server.

Requests are strict (unknown fields are refused, so a typo never passes silently);
responses are lenient on the reading side, because the server may add fields at any
time without a new API version.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class RequestModel(BaseModel):
    """A body a client sends: unknown fields are an error (mass-assignment safe)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=False)


class ResponseModel(BaseModel):
    """A body the server sends: readers ignore fields they do not know yet."""

    model_config = ConfigDict(extra="ignore")
