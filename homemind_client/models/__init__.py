"""The wire models of the Home Mind API: one definition used by client and server.

Exported here is what a user of `HomeMindClient` meets (installation-token paths, errors,
stream events). The bodies of the account, installation-management, billing and memory
management paths (user access tokens: the dashboard's business, not this client's) live
in `accounts`, `billing` and `memory`, where the server imports them from.
"""

# Raised when a model refuses a value (e.g. building a ChatRequest); re-exported so
# users of the client need not import pydantic themselves.
from pydantic import ValidationError

from .accounts import (
    SUBSCRIPTION_STATUSES,
    TIERS,
    InstallationInfo,
    SubscriptionSummary,
    Tier,
    UsageSummary,
)
from .base import RequestModel, ResponseModel
from .chat import (
    TOOL_NAME_PATTERN,
    AssistantMessage,
    ChatMessage,
    ChatRequest,
    ChatResponse,
    DoneEvent,
    ErrorEvent,
    ImageAttachment,
    Notice,
    ResponseToolCall,
    Speaker,
    StopReason,
    StreamEvent,
    TaskSpec,
    TextDeltaEvent,
    ToolCall,
    ToolCallEvent,
    ToolResultMessage,
    ToolSpec,
    Usage,
    UserMessage,
    decode_event,
    encode_event,
)
from .error_codes import ErrorCode, Recovery, known_code
from .memory import (
    MemoryCreate,
    MemoryForgetRequest,
    MemoryForgetResult,
    MemoryItem,
)
from .problem import PROBLEM_CONTENT_TYPE, FieldError, Problem

__all__ = [
    "PROBLEM_CONTENT_TYPE",
    "SUBSCRIPTION_STATUSES",
    "TIERS",
    "TOOL_NAME_PATTERN",
    "AssistantMessage",
    "ChatMessage",
    "ChatRequest",
    "ChatResponse",
    "DoneEvent",
    "ErrorCode",
    "ErrorEvent",
    "FieldError",
    "ImageAttachment",
    "InstallationInfo",
    "MemoryCreate",
    "MemoryForgetRequest",
    "MemoryForgetResult",
    "MemoryItem",
    "Notice",
    "Problem",
    "Recovery",
    "RequestModel",
    "ResponseModel",
    "ResponseToolCall",
    "Speaker",
    "StopReason",
    "StreamEvent",
    "SubscriptionSummary",
    "TaskSpec",
    "TextDeltaEvent",
    "Tier",
    "ToolCall",
    "ToolCallEvent",
    "ToolResultMessage",
    "ToolSpec",
    "Usage",
    "UsageSummary",
    "UserMessage",
    "ValidationError",
    "decode_event",
    "encode_event",
    "known_code",
]
