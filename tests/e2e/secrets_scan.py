"""The e2e suite's secrets scan (issue 14; row 25 of docs/hardening.md's table).

Every e2e test runs with it (an autouse fixture in tests/e2e/conftest.py): it knows every
secret the test's servers and households use (installation tokens, Anthropic keys, the
server's encryption key and JWT secret, passwords and access tokens), captures every log
record of the test (our loggers at DEBUG, everything else at INFO), every byte the server
sent to HA (a recording relay in front of each server) and, at the end, reads each database
the test used (the SQLite files, the PostgreSQL tables). A secret found in any of them
fails the test at teardown, naming where it was seen. The one place a secret may appear
is the answer that creates it (a token shown once): those exchanges are not recorded.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

# Loggers whose DEBUG lines are captured; the rest of the process is captured from INFO.
OUR_LOGGERS = ("cloud_server", "homemind_client", "custom_components.home_mind", "tests")
MIN_SECRET_LENGTH = 8  # shorter values would match by chance


class _Capture(logging.Handler):
    def __init__(self, lines: list[str]) -> None:
        super().__init__(logging.DEBUG)
        self.lines = lines

    def emit(self, record: logging.LogRecord) -> None:
        try:
            text = record.getMessage()
        except Exception:  # a broken format string is not our concern here
            text = str(record.msg)
        if record.exc_info:
            text += "\n" + logging.Formatter().formatException(record.exc_info)
        self.lines.append(f"{record.name}: {text}")


@dataclass
class SecretsScan:
    secrets: dict[str, str] = field(default_factory=dict)  # value -> what it is
    log_lines: list[str] = field(default_factory=list)
    sent_to_ha: list[bytes] = field(default_factory=list)
    files: list[Path] = field(default_factory=list)
    texts: list[tuple[str, str]] = field(default_factory=list)  # (where, text) read at the end
    _handler: _Capture | None = None
    _levels: dict[str, int] = field(default_factory=dict)

    def secret(self, value: str | None, what: str) -> None:
        if value and len(value) >= MIN_SECRET_LENGTH:
            self.secrets.setdefault(value, what)

    def database(self, path: Path) -> None:
        """A SQLite database file (with its -wal and -shm) to read at the end."""
        self.files += [path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")]

    def text(self, where: str, text: str) -> None:
        self.texts.append((where, text))

    def start(self) -> None:
        self._handler = _Capture(self.log_lines)
        root = logging.getLogger()
        root.addHandler(self._handler)
        for name in ("", *OUR_LOGGERS):
            logger = logging.getLogger(name)
            self._levels[name] = logger.level
            wanted = logging.INFO if name == "" else logging.DEBUG
            if logger.getEffectiveLevel() > wanted:
                logger.setLevel(wanted)

    def stop(self) -> None:
        if self._handler is not None:
            logging.getLogger().removeHandler(self._handler)
        for name, level in self._levels.items():
            logging.getLogger(name).setLevel(level)

    def findings(self) -> list[str]:
        found: list[str] = []
        places: list[tuple[str, bytes]] = [
            ("a log line", "\n".join(self.log_lines).encode()),
            ("a response the server sent to HA", b"".join(self.sent_to_ha)),
        ]
        places += [(f"the file {p.name}", p.read_bytes()) for p in self.files if p.is_file()]
        places += [(where, text.encode()) for where, text in self.texts]
        for value, what in self.secrets.items():
            needle = value.encode()
            for where, haystack in places:
                if needle in haystack:
                    found.append(f"{what} found in {where}")
        return found
