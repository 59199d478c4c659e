"""Constants of the Home Mind integration."""

from __future__ import annotations

import logging
from typing import Final

DOMAIN: Final = "home_mind"
LOGGER = logging.getLogger(__package__)

DEFAULT_URL: Final = "https://api.homemind.dev"
DEFAULT_NAME: Final = "Home Mind"
MANUFACTURER: Final = "Home Mind"

# Options: which of HA's LLM APIs the agent may use (a list; empty = chat only) and the
# user's own instructions (a template, rendered per turn).
CONF_INSTRUCTIONS: Final = "instructions"
# Whether HA's own agent answers when the cloud cannot be reached (on by default).
CONF_OFFLINE_FALLBACK: Final = "offline_fallback"
DEFAULT_OFFLINE_FALLBACK: Final = True
NO_LLM_API: Final = "none"

# The upper bound of model round trips in one turn: each tool call costs one.
MAX_TOOL_ITERATIONS: Final = 10

# Timeouts in seconds. Voice satellites give up after ~15-30 s, so a server that never
# answers (or stops in the middle of a stream) must end in a spoken error before that.
SETUP_TIMEOUT: Final = 10.0
REQUEST_TIMEOUT: Final = 10.0
FIRST_EVENT_TIMEOUT: Final = 15.0
IDLE_TIMEOUT: Final = 15.0
TOTAL_TIMEOUT: Final = 90.0
