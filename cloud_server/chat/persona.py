"""The system prompt: our persona and rules, HA's `home_prompt`, the user's `instructions`.

All the wording the model sees from us lives in `cloud_server/prompts.py`; this module only
assembles it.

The prompt is two system blocks. The first (persona, home prompt, instructions) carries the
prompt-cache breakpoint and must be byte-identical from turn to turn of a conversation: build
it only from request fields that stay the same within a conversation, never from the clock.
The second block holds what changes per turn (time, speaker, recalled memories).
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any
from zoneinfo import ZoneInfo

from homemind_client.models import ChatRequest

from ..prompts import (
    HOME_HEADER,
    INSTRUCTIONS_HEADER,
    LANGUAGE_RULE,
    MEMORY_HEADER,
    MEMORY_NAMED_TAG,
    MEMORY_SPEAKER_TAG,
    NO_LANGUAGE_RULE,
    PERSONA,
    SERVER_TOOL_FAILED_TEXT,
    SPEAKER_NOTE,
    SPEAKER_UNNAMED_NOTE,
    TASK_LANGUAGE_RULE,
    TASK_NO_LANGUAGE_RULE,
    TASK_PERSONA,
    TASK_STRUCTURE_RULE,
    TEXT_STYLE,
    TIME_NOTE,
    TIME_NOTE_UTC,
    VOICE_STYLE,
)
from .hooks import RecalledFact

# Between the texts of two model calls of one request (server-tool loops): no run-on sentences.
TEXT_JOINER = "\n\n"
VOICE_JOINER = " "

# The result sent back to the model for a server tool that failed.
SERVER_TOOL_FAILED = {"error": "tool_failed", "error_text": SERVER_TOOL_FAILED_TEXT}

# The tool a structured task answers with (its input schema is the task's structure).
TASK_RESULT_TOOL = "homemind_task_result"


def _persona_parts(chat: ChatRequest) -> list[str]:
    """A chat's persona, style and language rule; or a task's, which has no voice rules."""
    if chat.mode == "task":
        name = chat.task.name if chat.task else "task"
        parts = [TASK_PERSONA.format(name=name)]
        if chat.task is not None and chat.task.structure is not None:
            parts.append(TASK_STRUCTURE_RULE.format(tool=TASK_RESULT_TOOL))
        parts.append(
            TASK_LANGUAGE_RULE.format(language=chat.language)
            if chat.language
            else TASK_NO_LANGUAGE_RULE
        )
        return parts
    return [
        PERSONA,
        VOICE_STYLE if chat.is_voice else TEXT_STYLE,
        LANGUAGE_RULE.format(language=chat.language) if chat.language else NO_LANGUAGE_RULE,
    ]


def stable_system_text(chat: ChatRequest) -> str:
    """Persona, style and language, HA's home prompt, the user's instructions.

    Depends only on request fields that stay the same for a whole conversation.
    """
    parts = _persona_parts(chat)
    if chat.home_prompt and chat.home_prompt.strip():
        parts.append(f"{HOME_HEADER}\n{chat.home_prompt.strip()}")
    if chat.instructions and chat.instructions.strip():
        parts.append(f"{INSTRUCTIONS_HEADER}\n{chat.instructions.strip()}")
    return "\n\n".join(parts)


def time_note(chat: ChatRequest, now: datetime) -> str:
    """The time in the home's zone when HA sent it (it is no longer in HA's prompt), else UTC."""
    if chat.time_zone:
        local = now.astimezone(ZoneInfo(chat.time_zone))
        return TIME_NOTE.format(now=local.strftime("%A %Y-%m-%d %H:%M"), zone=chat.time_zone)
    return TIME_NOTE_UTC.format(now=now.astimezone(UTC).strftime("%A %Y-%m-%d %H:%M"))


def dynamic_system_text(chat: ChatRequest, now: datetime, memories: Sequence[RecalledFact]) -> str:
    """Time, speaker and recalled memories: the part that may change every turn."""
    parts = [time_note(chat, now)]
    if chat.speaker is not None:
        if chat.speaker.name:
            parts.append(SPEAKER_NOTE.format(name=chat.speaker.name, id=chat.speaker.id))
        else:
            parts.append(SPEAKER_UNNAMED_NOTE.format(id=chat.speaker.id))
    if memories:
        lines = [MEMORY_HEADER]
        for fact in memories:
            own = chat.speaker is not None and fact.speaker_id == chat.speaker.id
            category = f"({fact.category}) " if fact.category else ""
            tag = MEMORY_SPEAKER_TAG if own else ""
            if not own and fact.speaker_id is not None and fact.speaker_name:
                tag = MEMORY_NAMED_TAG.format(name=fact.speaker_name)
            lines.append(f"- [{fact.id}] {category}{fact.content}{tag}")
        parts.append("\n".join(lines))
    return "\n\n".join(parts)


def system_blocks(chat: ChatRequest, now: datetime, memories: Sequence[RecalledFact]) -> list[Any]:
    """The `system` parameter: the cached stable block, then the per-turn block."""
    return [
        {
            "type": "text",
            "text": stable_system_text(chat),
            "cache_control": {"type": "ephemeral"},
        },
        {"type": "text", "text": dynamic_system_text(chat, now, memories)},
    ]
