"""Users and roles in the data folder: bcrypt hashes, validation, demo users, the CLI."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
import yaml

from core.cli.users import main
from core.errors import CQAError
from core.governance.users import DEMO_USERS, UserStore


def test_add_verify_and_roles(tmp_path: Path) -> None:
    users = UserStore(tmp_path / "var" / "users.yaml")
    users.add("jdoe", "correct horse", "clinician", name="J. Doe")
    users.add("boss", "admin password", "admin")
    assert users.usernames() == ["boss", "jdoe"]
    assert users.verify("jdoe", "correct horse") and not users.verify("jdoe", "wrong password")
    assert not users.verify("nobody", "correct horse")
    assert users.role_of("jdoe") == "clinician" and users.role_of("boss") == "admin"
    assert users.role_of("nobody") is None and users.role_of(None) is None
    stored = yaml.safe_load(users.path.read_text())
    record = stored["credentials"]["usernames"]["jdoe"]
    assert record["password"].startswith("$2") and "correct horse" not in users.path.read_text()  # bcrypt, never plain
    assert record["name"] == "J. Doe" and record["roles"] == ["clinician"]
    assert stat.S_IMODE(users.path.stat().st_mode) == 0o600


def test_the_cookie_key_is_made_once_per_installation(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    key = UserStore(path).load()["cookie"]["key"]
    assert len(key) == 64 and UserStore(path).load()["cookie"]["key"] == key
    assert UserStore(tmp_path / "other.yaml").load()["cookie"]["key"] != key


@pytest.mark.parametrize(("username", "password", "role", "message"), [
    ("bad name!", "long enough", "clinician", "may contain only"),
    ("jdoe", "short", "clinician", "at least 8 characters"),
    ("jdoe", "long enough", "nurse", "Role must be one of admin, clinician"),
])
def test_bad_users_are_refused(tmp_path: Path, username: str, password: str, role: str, message: str) -> None:
    users = UserStore(tmp_path / "users.yaml")
    with pytest.raises(CQAError, match=message):
        users.add(username, password, role)  # type: ignore[arg-type]
    assert users.usernames() == []


def test_invalid_yaml_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "users.yaml"
    path.write_text("credentials: [unclosed")
    with pytest.raises(CQAError, match="is not valid YAML"):
        UserStore(path).load()


def test_demo_users_are_created_once(tmp_path: Path) -> None:
    users = UserStore(tmp_path / "users.yaml")
    assert users.ensure_demo_users() == list(DEMO_USERS)
    assert users.ensure_demo_users() == []
    for name, (password, role, _) in DEMO_USERS.items():
        assert users.verify(name, password) and users.role_of(name) == role


def test_cli_adds_and_lists(capsys: pytest.CaptureFixture[str], _isolated_data_dir: Path) -> None:
    assert main(["add", "jdoe", "--role", "clinician", "--password", "correct horse"]) == 0
    assert main(["list"]) == 0
    assert "jdoe\tclinician" in capsys.readouterr().out
    assert UserStore(_isolated_data_dir / "users.yaml").verify("jdoe", "correct horse")
    assert main(["add", "x", "--role", "admin", "--password", "short"]) == 2
    assert "at least 8 characters" in capsys.readouterr().err
