"""Account administration commands (filled in by the accounts issue)."""

from __future__ import annotations

import argparse
from typing import Any


def register_commands(sub: Any, commands: dict[str, Any]) -> None:
    """Add `migrate`, `user create`, `installation create`, `rotate-encryption-key`."""
    del sub, commands
    _ = argparse
