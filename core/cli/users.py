"""`python -m core.users add NAME --role admin|clinician` / `list`: manage the app's users (`core.governance.users`)."""

from __future__ import annotations

import argparse
import getpass
import sys

from core.errors import CQAError
from core.governance.users import ROLES, UserStore
from core.settings import Settings


def main(argv: list[str] | None = None) -> int:

    parser = argparse.ArgumentParser(prog="python -m core.users", description="Manage app users.")
    sub = parser.add_subparsers(dest="command", required=True)
    add = sub.add_parser("add", help="Add or replace a user.")
    add.add_argument("username")
    add.add_argument("--role", choices=ROLES, required=True)
    add.add_argument("--name", help="Display name.")
    add.add_argument("--password", help="Password (prompted if omitted).")
    sub.add_parser("list", help="List users and roles.")
    args = parser.parse_args(argv)
    settings = Settings()
    users = UserStore(settings.users_path, settings.auth.cookie_name, settings.auth.cookie_expiry_days)
    try:
        if args.command == "add":
            password = args.password or getpass.getpass(f"Password for {args.username}: ")
            users.add(args.username, password, args.role, args.name)
            print(f"Saved user {args.username!r} with role {args.role} in {users.path}")
        else:
            for name in users.usernames():
                print(f"{name}\t{users.role_of(name)}")
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
