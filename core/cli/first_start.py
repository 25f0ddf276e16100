"""CLI run by `make run` before the server starts: demo users, demo corpus, login hint."""

from __future__ import annotations

import sys

from core.bootstrap import first_start
from core.errors import CQAError
from core.governance.users import DEMO_USERS
from core.services import build_services


def main() -> int:
    try:
        services = build_services()
    except CQAError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 3
    try:
        result = first_start(services.settings, services.library)
    finally:
        services.close()
    for outcome in result.indexed:
        print(f"  [{outcome.status}] {outcome.message}")
    if result.users_created:
        print("Demo users created (change them before real use: python -m core.users add ...):")
        for name in result.users_created:
            password, role, _ = DEMO_USERS[name]
            print(f"  {role:<10} user: {name:<10} password: {password}")
    print(f"Data folder: {services.settings.data_dir}")
    print("Open http://127.0.0.1:8501 and log in.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
