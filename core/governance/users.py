"""Users and roles, kept in a YAML file in the data folder with bcrypt-hashed passwords.

The file has the layout streamlit-authenticator reads (`credentials.usernames.<name>`), so the
UI can hand it over unchanged; this module itself never imports streamlit.
"""

from __future__ import annotations

import secrets
import threading
from pathlib import Path
from typing import Any, Literal

import bcrypt
import yaml

from core.errors import CQAError

Role = Literal["admin", "clinician"]
ROLES: tuple[Role, ...] = ("admin", "clinician")
DEMO_USERS: dict[str, tuple[str, Role, str]] = {
    "admin": ("admin-demo", "admin", "Demo Admin"),
    "clinician": ("clinician-demo", "clinician", "Demo Clinician"),
}
_lock = threading.Lock()


class UserStore:
    def __init__(self, path: Path, cookie_name: str = "cqa_auth", expiry_days: float = 1.0) -> None:
        self.path = path
        self._cookie_name = cookie_name
        self._expiry_days = expiry_days

    def load(self) -> dict[str, Any]:
        """The whole config (credentials + cookie), created empty with a fresh cookie key if missing."""
        with _lock:
            if not self.path.exists():
                self._write(self._empty())
            try:
                data = yaml.safe_load(self.path.read_text(encoding="utf-8")) or {}
            except yaml.YAMLError as exc:
                raise CQAError(f"The users file {str(self.path)!r} is not valid YAML: {exc}") from exc
        data.setdefault("credentials", {}).setdefault("usernames", {})
        data.setdefault("cookie", self._empty()["cookie"])
        return data

    def save(self, data: dict[str, Any]) -> None:
        with _lock:
            self._write(data)

    def _empty(self) -> dict[str, Any]:
        return {
            "credentials": {"usernames": {}},
            # The cookie key signs login cookies: generated per installation, never committed.
            "cookie": {"name": self._cookie_name, "key": secrets.token_hex(32), "expiry_days": self._expiry_days},
        }

    def _write(self, data: dict[str, Any]) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(yaml.safe_dump(data, sort_keys=True), encoding="utf-8")
        tmp.chmod(0o600)
        tmp.replace(self.path)

    def add(self, username: str, password: str, role: Role, name: str | None = None, email: str | None = None) -> None:
        if not username.isidentifier() and not username.replace("-", "_").replace(".", "_").isidentifier():
            raise CQAError(f"User name {username!r} may contain only letters, digits, '.', '-' and '_'.")
        if len(password) < 8:
            raise CQAError("Passwords need at least 8 characters.")
        if role not in ROLES:
            raise CQAError(f"Role must be one of {', '.join(ROLES)}, not {role!r}.")
        data = self.load()
        data["credentials"]["usernames"][username] = {
            "name": name or username,
            "email": email or f"{username}@example.invalid",
            "password": bcrypt.hashpw(password.encode(), bcrypt.gensalt()).decode(),
            "roles": [role],
        }
        self.save(data)

    def role_of(self, username: str | None) -> Role | None:
        if not username:
            return None
        user = self.load()["credentials"]["usernames"].get(username)
        roles = (user or {}).get("roles") or []
        return "admin" if "admin" in roles else ("clinician" if "clinician" in roles else None)

    def verify(self, username: str, password: str) -> bool:
        user = self.load()["credentials"]["usernames"].get(username)
        if not user:
            return False
        return bcrypt.checkpw(password.encode(), str(user["password"]).encode())

    def usernames(self) -> list[str]:
        return sorted(self.load()["credentials"]["usernames"])

    def ensure_demo_users(self) -> list[str]:
        """On first start, create the demo admin and clinician; returns the names created."""
        existing = set(self.usernames())
        created = []
        for username, (password, role, name) in DEMO_USERS.items():
            if username not in existing:
                self.add(username, password, role, name)
                created.append(username)
        return created
