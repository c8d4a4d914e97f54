"""``termweb user …`` and ``termweb token …``: manage who may log in.

Reads the same TERMWEB_* settings as the server, so it works on the same
store: Redis with TERMWEB_REDIS_URL, else the instance folder's file.
"""
from __future__ import annotations

import argparse
import getpass
import re
import sys
import time

from .accounts import AccountError, open_accounts
from .config import ConfigError, Settings
from .sessions import NoShellAccount, shell_account
from .store import StoreUnavailable, open_store

DURATION = re.compile(r"(\d+)([smhd]?)")
UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def _duration(text: str) -> float:
    match = DURATION.fullmatch(text.strip())
    if not match or int(match.group(1)) <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a duration like 90s, 30m, 12h or 30d")
    return int(match.group(1)) * UNITS[match.group(2)]


def _password(args) -> str:
    if args.password_stdin:
        return sys.stdin.readline().rstrip("\n")
    first = getpass.getpass(f"Password for {args.name}: ")
    if getpass.getpass("Again: ") != first:
        raise AccountError("the passwords differ")
    return first


def _when(seconds: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M", time.localtime(seconds)) if seconds else "never"


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="termweb", description=__doc__.splitlines()[0])
    commands = top.add_subparsers(dest="command", required=True)

    user = commands.add_parser("user", help="add, remove and list users").add_subparsers(
        dest="action", required=True)
    add = user.add_parser("add", help="add a user (asks for the password)")
    add.add_argument("name")
    add.add_argument("--admin", action="store_true", help="may list and end everyone's sessions")
    add.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    passwd = user.add_parser("passwd", help="change a password (ends that user's logins)")
    passwd.add_argument("name")
    passwd.add_argument("--password-stdin", action="store_true", help="read the password from stdin")
    role = user.add_parser("role", help="make a user an admin, or not")
    role.add_argument("name")
    role.add_argument("role", choices=("user", "admin"))
    remove = user.add_parser("remove", help="remove a user, their API tokens and share links")
    remove.add_argument("name")
    user.add_parser("list", help="list users")

    token = commands.add_parser("token", help="API tokens for scripts and programs").add_subparsers(
        dest="action", required=True)
    create = token.add_parser("create", help="make a token for a user; it is shown once")
    create.add_argument("user")
    create.add_argument("--label", default="", help="what the token is for")
    create.add_argument("--expires", type=_duration, default=0,
                        help="lifetime such as 90s, 30m, 12h or 30d (default: never)")
    revoke = token.add_parser("revoke", help="revoke a token by its id")
    revoke.add_argument("id")
    listing = token.add_parser("list", help="list tokens (not their secrets)")
    listing.add_argument("user", nargs="?")
    return top


def _account_warning(settings, name: str) -> str:
    """With TERMWEB_RUN_AS=user, a reminder when the OS account is missing."""
    if settings is None or settings.run_as != "user":
        return ""
    try:
        shell_account(name)
    except NoShellAccount as exc:
        return f"\nwarning: {exc}; they can log in but get no terminal"
    return ""


def run(args, accounts, settings=None) -> str:
    """Carry out one command; return what to print."""
    if args.command == "user":
        if args.action == "add":
            accounts.check_name(args.name)  # before asking for a password
            user = accounts.add_user(args.name, _password(args), "admin" if args.admin else "user")
            return f"added {user.role} {user.name}" + _account_warning(settings, user.name)
        if args.action == "passwd":
            accounts.set_password(args.name, _password(args))
            return f"changed the password of {args.name}; their logins have ended"
        if args.action == "role":
            accounts.set_role(args.name, args.role)
            return f"{args.name} is now {'an admin' if args.role == 'admin' else 'a user'}"
        if args.action == "remove":
            accounts.remove_user(args.name)
            return f"removed {args.name}, with their API tokens and share links"
        rows = [f"{u.name}\t{u.role}\t{_when(u.created)}" for u in accounts.users()]
        return "\n".join(["name\trole\tcreated", *rows]) if rows else "no users"
    if args.action == "create":
        token, secret = accounts.create_token(args.user, args.label, args.expires)
        expiry = f", expires {_when(token.expires)}" if token.expires else ""
        print(f"token {token.id} for {token.user}{expiry}; it is not shown again:", file=sys.stderr)
        return secret
    if args.action == "revoke":
        if not accounts.revoke_token(args.id):
            raise AccountError(f"no token {args.id}")
        return f"revoked token {args.id}"
    rows = [f"{t.id}\t{t.user}\t{t.label}\t{_when(t.created)}\t{_when(t.expires)}"
            for t in accounts.tokens(args.user)]
    return "\n".join(["id\tuser\tlabel\tcreated\texpires", *rows]) if rows else "no tokens"


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        settings = Settings.from_env()
        store = open_store(settings.redis_url, settings.redis_prefix, settings.session_ttl)
        try:
            print(run(args, open_accounts(settings, store), settings))
        finally:
            store.close()
    except (AccountError, ConfigError, StoreUnavailable) as exc:
        print(f"termweb: {exc}", file=sys.stderr)
        return 1
    except (KeyboardInterrupt, EOFError):
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
