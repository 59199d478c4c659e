"""Offline fallback: when the cloud cannot be reached, HA's own agent answers the turn.

Device control must not stop with the internet. A turn whose cloud request fails before
anything of the answer arrived (connection refused, DNS, a timeout before the first event,
a 5xx from our server or Claude being down) is handed to HA's built-in agent, so "turn on
the kitchen light" still works; the answer says once per conversation that Home Mind is
offline. After a failure the cloud is left alone for a short, growing back-off (so a
voice user does not wait for a timeout on every turn); the first turn after it tries the
cloud again, and one success ends the back-off.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from homeassistant.components import conversation
from homeassistant.core import HomeAssistant
from homeassistant.util.dt import utcnow

from homemind_client.errors import (
    HomeMindConnectionError,
    HomeMindError,
    HomeMindInvalidResponseError,
    HomeMindServerError,
    HomeMindUpstreamError,
)

from . import compat
from .const import LOGGER
from .errors import async_localized_message

# The errors that mean "the cloud cannot answer now", not "the cloud said no": a refused
# token, a used-up plan or a bad request are spoken as they are, never papered over.
OFFLINE_ERRORS: Final[tuple[type[HomeMindError], ...]] = (
    HomeMindConnectionError,  # refused, DNS, reset, and timeouts (a subclass)
    HomeMindServerError,  # 5xx from our server
    HomeMindUpstreamError,  # our server is up but Claude is not
    HomeMindInvalidResponseError,  # something else answers at the address (a portal, a proxy)
)

BACKOFF_FIRST: Final = timedelta(seconds=10)
BACKOFF_MAX: Final = timedelta(minutes=2)

OFFLINE_NOTICE_KEY: Final = "offline_fallback"


def is_offline_error(err: HomeMindError) -> bool:
    """Whether a failed request means the cloud is unreachable right now."""
    return isinstance(err, OFFLINE_ERRORS)


@dataclass(slots=True)
class CloudBackoff:
    """When to try the cloud again after it failed (per installation)."""

    failures: int = 0
    retry_at: datetime | None = None

    def cloud_allowed(self, now: datetime | None = None) -> bool:
        """False while a recent failure's back-off lasts."""
        return self.retry_at is None or (now or utcnow()) >= self.retry_at

    def record_failure(self, now: datetime | None = None) -> timedelta:
        """The cloud failed: wait 10 s, then 20 s, 40 s ... at most 2 minutes."""
        delay: timedelta = min(BACKOFF_FIRST * (2**self.failures), BACKOFF_MAX)
        self.failures += 1
        self.retry_at = (now or utcnow()) + delay
        return delay

    def record_success(self) -> bool:
        """The cloud answered; True when this ends an outage."""
        recovered = self.failures > 0
        self.failures = 0
        self.retry_at = None
        return recovered


async def async_answer_locally(
    hass: HomeAssistant,
    user_input: conversation.ConversationInput,
    chat_log: conversation.ChatLog,
    agent_id: str,
) -> conversation.ConversationResult:
    """Let HA's built-in agent answer, and keep its answer in our conversation.

    The built-in agent gets a conversation of its own: re-entering ours would make it a
    second turn of the same conversation (HA 2026.11 refuses that as busy). Its answer is
    then added to our chat log, so the next cloud turn sees what happened.
    """
    result = await conversation.async_converse(
        hass,
        user_input.text,
        None,
        user_input.context,
        language=user_input.language,
        agent_id=compat.local_agent_id(),
        device_id=user_input.device_id,
        **compat.converse_satellite_kwargs(user_input),
    )
    response = result.response
    local_speech = str(response.speech.get("plain", {}).get("speech", "") or "")

    notice = await async_localized_message(hass, user_input.language, OFFLINE_NOTICE_KEY)
    said_before = any(
        isinstance(content, conversation.AssistantContent)
        and content.content
        and notice in content.content
        for content in chat_log.content
    )
    spoken = local_speech if said_before else f"{notice} {local_speech}".strip()
    response.async_set_speech(spoken)
    chat_log.async_add_assistant_content_without_tools(
        conversation.AssistantContent(agent_id=agent_id, content=spoken)
    )
    LOGGER.debug("Home Mind is offline; HA's own agent answered the turn")
    return conversation.ConversationResult(
        response=response,
        conversation_id=chat_log.conversation_id,
        continue_conversation=result.continue_conversation,
    )
