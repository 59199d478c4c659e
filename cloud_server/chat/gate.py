"""The default `ChatGate`: no billing, the installation's own key or the server's key.

Billing installs its own gate (before `setup_chat` runs); this one serves self-hosted servers.
"""

from __future__ import annotations

import logging

from aiohttp import web

from homemind_client.models import ErrorCode

from ..accounts.principal import InstallationPrincipal, installation_api_key
from ..errors import ApiError
from ..keys import SETTINGS
from .hooks import ChatAccess, ChatOutcome

LOGGER = logging.getLogger(__name__)


class DefaultChatGate:
    """Own key first (the user chose it), else `ANTHROPIC_API_KEY`, else `no_api_key`."""

    async def admit(self, request: web.Request, principal: InstallationPrincipal) -> ChatAccess:
        own = await installation_api_key(request, principal)
        if own:
            return ChatAccess(api_key=own, key_source="installation")
        server_key = request.app[SETTINGS].anthropic_api_key
        if server_key is not None and server_key.get_secret_value():
            return ChatAccess(api_key=server_key.get_secret_value(), key_source="server")
        raise ApiError(
            ErrorCode.NO_API_KEY,
            "No Anthropic API key is configured: add one to this installation "
            "(or set ANTHROPIC_API_KEY on a self-hosted server).",
        )

    async def record(
        self,
        request: web.Request,
        principal: InstallationPrincipal,
        access: ChatAccess,
        outcome: ChatOutcome,
    ) -> None:
        LOGGER.debug(
            "usage request_id=%s installation=%s key_source=%s message=%s "
            "in=%d out=%d cache_read=%d cache_write=%d calls=%d completed=%s error=%s",
            outcome.request_id,
            principal.installation_id,
            access.key_source,
            outcome.counts_as_message,
            outcome.usage.input_tokens,
            outcome.usage.output_tokens,
            outcome.usage.cache_read_input_tokens,
            outcome.usage.cache_creation_input_tokens,
            outcome.model_calls,
            outcome.completed,
            outcome.error_code,
        )
