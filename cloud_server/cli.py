"""`homemind-server`: run the service and administer it from the command line."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence

from . import __version__
from .accounts.cli import register_commands as register_account_commands
from .lifecycle import event_loop_factory, serve
from .memory.cli import register_commands as register_memory_commands
from .observability.logs import configure_logging, configured_secrets, register_secrets
from .server_secrets import ConfigError, load_server_secrets
from .settings import Settings

LOGGER = logging.getLogger("cloud_server")

Command = Callable[[argparse.Namespace, Settings], int]


def settings_from_args(args: argparse.Namespace) -> Settings:
    """Environment settings, overridden by the command-line options that were given."""
    overrides = {
        name: value
        for name in ("host", "port", "data_dir")
        if (value := getattr(args, name, None)) is not None
    }
    return Settings(**overrides)


def cmd_serve(args: argparse.Namespace, settings: Settings) -> int:
    from .app import create_app

    secrets = load_server_secrets(settings)  # fail fast, before binding the port
    register_secrets(configured_secrets(settings, secrets))
    app = create_app(settings)
    url = f"http://{settings.host}:{settings.port}"
    print(f"Home Mind server {__version__} ({settings.mode}) on {url}", flush=True)
    print(f"  API {url}/api · health {url}/healthz · data in {settings.data_dir}", flush=True)
    asyncio.run(serve(app, settings.host, settings.port), loop_factory=event_loop_factory())
    return 0


def cmd_backup(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from .backup import backup_database

    backup_database(settings, Path(args.file))
    print(f"Backed up the database to {args.file}")
    return 0


def cmd_restore(args: argparse.Namespace, settings: Settings) -> int:
    from pathlib import Path

    from .backup import restore_database

    restore_database(settings, Path(args.file))
    print(f"Restored the database from {args.file}")
    return 0


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, Command]]:
    parser = argparse.ArgumentParser(prog="homemind-server", description="Home Mind cloud server")
    parser.add_argument("--version", action="version", version=__version__)
    sub = parser.add_subparsers(dest="command", required=True)
    commands: dict[str, Command] = {}

    serve = sub.add_parser("serve", help="run the server")
    serve.add_argument("--host", help="address to bind (HOMEMIND_HOST, default 127.0.0.1)")
    serve.add_argument("--port", type=int, help="port (HOMEMIND_PORT, default 8080)")
    serve.add_argument("--data-dir", help="data folder (HOMEMIND_DATA_DIR, default ./data)")
    commands["serve"] = cmd_serve

    backup = sub.add_parser("backup", help="write a consistent copy of the database to FILE")
    backup.add_argument("file")
    commands["backup"] = cmd_backup
    restore = sub.add_parser("restore", help="replace the database's contents with FILE")
    restore.add_argument("file")
    commands["restore"] = cmd_restore

    register_account_commands(sub, commands)
    register_memory_commands(sub, commands)  # type: ignore[arg-type]
    return parser, commands


def main(argv: Sequence[str] | None = None) -> int:
    parser, commands = build_parser()
    args = parser.parse_args(argv)
    try:
        settings = settings_from_args(args)
        undo_logging = configure_logging(settings.log_level, settings.effective_log_format)
        try:
            return commands[args.command](args, settings)
        finally:
            undo_logging()
    except ConfigError as err:
        print(f"homemind-server: configuration error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
