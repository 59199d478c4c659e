"""Account administration commands of `homemind-server`.

`migrate`, `user create`, `installation create` (prints the token once) and
`rotate-encryption-key`. Each runs on the database of the settings (DATABASE_URL or
SQLite in the data folder) and returns a process exit code.
"""

from __future__ import annotations

import argparse
import asyncio
import getpass
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from ..db.engine import create_engine, make_sessionmaker, upgrade_database
from ..server_secrets import load_server_secrets, rotate_file_encryption_key
from ..settings import Settings
from . import installations as inst
from . import service
from .passwords import PasswordPolicyError
from .scopes import ALL_INSTALLATION_SCOPES

Command = Callable[[argparse.Namespace, Settings], int]


def _run[T](settings: Settings, work: Callable[[Any], Awaitable[T]]) -> T:
    """Migrate, then run `work(sessionmaker)` on a fresh engine."""

    async def main() -> T:
        engine = create_engine(settings.effective_database_url)
        try:
            await upgrade_database(engine)
            return await work(make_sessionmaker(engine))
        finally:
            await engine.dispose()

    return asyncio.run(main())


def cmd_migrate(args: argparse.Namespace, settings: Settings) -> int:
    async def nothing(_sessionmaker: Any) -> None:
        return None

    _run(settings, nothing)
    print("Database schema is up to date.")
    return 0


def _read_password(args: argparse.Namespace) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    if getpass.getpass("Repeat password: ") != first:
        raise PasswordPolicyError("The two passwords differ.")
    return first


def cmd_user(args: argparse.Namespace, settings: Settings) -> int:
    if args.user_command != "create":
        return 2
    try:
        password = _read_password(args)
    except PasswordPolicyError as err:
        print(f"error: {err}", file=sys.stderr)
        return 1

    async def work(sessionmaker: Any) -> str:
        async with sessionmaker.begin() as session:
            user = await service.create_user(session, args.email, password, args.name)
            return str(user.id)

    try:
        user_id = _run(settings, work)
    except (PasswordPolicyError, service.InvalidEmailError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 1
    except service.EmailTakenError:
        print(f"error: an account with the email {args.email} exists already", file=sys.stderr)
        return 1
    print(f"Created user {args.email} (id {user_id}).")
    return 0


def cmd_installation(args: argparse.Namespace, settings: Settings) -> int:
    if args.installation_command != "create":
        return 2

    async def work(sessionmaker: Any) -> tuple[str, str] | None:
        async with sessionmaker.begin() as session:
            if args.user:
                user = await service.find_user_by_email(session, args.user)
                if user is None:
                    return None
            else:
                user = await service.local_owner(session)
            installation, token = await inst.create_installation(
                session, user.id, args.name, scopes=args.scope or None
            )
            return installation.id, token

    created = _run(settings, work)
    if created is None:
        print(f"error: no user with the email {args.user}", file=sys.stderr)
        return 1
    installation_id, token = created
    print(f"Created installation {args.name!r} (id {installation_id}).")
    print("Its token is shown only this once; paste it into Home Assistant:")
    print(token)
    return 0


def cmd_rotate_encryption_key(args: argparse.Namespace, settings: Settings) -> int:
    if settings.encryption_key is None:
        # Self-hosted: the key lives in the data folder; put a new one in front of it.
        rotate_file_encryption_key(settings.data_dir)
    secrets = load_server_secrets(settings)

    async def work(sessionmaker: Any) -> tuple[int, int]:
        async with sessionmaker.begin() as session:
            return await inst.rotate_encryption(session, secrets.encryption)

    changed, total = _run(settings, work)
    if settings.encryption_key is None:
        rotate_file_encryption_key(settings.data_dir, prune=True)
        note = "The old key was removed from the data folder."
    else:
        note = (
            "Once every instance runs with the new key first, "
            "remove the old one from ENCRYPTION_KEY."
        )
    print(
        f"Re-encrypted {changed} of {total} stored API keys "
        f"with key {secrets.encryption.active_kid}. {note}"
    )
    return 0


def register_commands(sub: Any, commands: dict[str, Any]) -> None:
    """Add `migrate`, `user create`, `installation create`, `rotate-encryption-key`."""

    def common(parser: argparse.ArgumentParser) -> None:
        parser.add_argument("--data-dir", help="data folder (HOMEMIND_DATA_DIR, default ./data)")

    migrate = sub.add_parser("migrate", help="upgrade the database schema")
    common(migrate)
    commands["migrate"] = cmd_migrate

    user = sub.add_parser("user", help="manage users")
    user_sub = user.add_subparsers(dest="user_command", required=True)
    create_user = user_sub.add_parser("create", help="create a user")
    common(create_user)
    create_user.add_argument("--email", required=True)
    create_user.add_argument("--name")
    create_user.add_argument(
        "--password-stdin", action="store_true", help="read the password from standard input"
    )
    commands["user"] = cmd_user

    installation = sub.add_parser("installation", help="manage installations")
    inst_sub = installation.add_subparsers(dest="installation_command", required=True)
    create_inst = inst_sub.add_parser(
        "create", help="create an installation and print its token once"
    )
    common(create_inst)
    create_inst.add_argument("--name", required=True)
    create_inst.add_argument(
        "--user", help="owner's email (default: the local owner account, created when needed)"
    )
    create_inst.add_argument(
        "--scope",
        action="append",
        choices=ALL_INSTALLATION_SCOPES,
        help="limit the token to this scope (repeat for several; default: all)",
    )
    commands["installation"] = cmd_installation

    rotate = sub.add_parser(
        "rotate-encryption-key",
        help="re-encrypt every stored API key with the active encryption key",
    )
    common(rotate)
    commands["rotate-encryption-key"] = cmd_rotate_encryption_key
