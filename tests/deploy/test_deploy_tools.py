"""The Python parts of deploy/ansible: the Mosquitto password and database URL filters, and the
inventory script."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from ansible.errors import AnsibleFilterError
from sqlalchemy.engine import make_url

from tests.deploy.fleet import ANSIBLE_DIR, INVENTORY_SCRIPT, load_module

passwd = load_module(ANSIBLE_DIR / "roles" / "broker" / "filter_plugins" / "mosquitto_passwd.py")
database_url = load_module(ANSIBLE_DIR / "roles" / "central" / "filter_plugins" / "database_url.py")


def test_an_entry_made_by_mosquitto_passwd_is_kept_when_the_password_matches(
    tmp_path: Path,
) -> None:
    tool = shutil.which("mosquitto_passwd") or "/usr/bin/mosquitto_passwd"
    path = tmp_path / "passwd"
    subprocess.run([tool, "-c", "-b", str(path), "zs-shiqi-01", "s3cret"], check=True)
    current = path.read_text()
    # Same hash as mosquitto's own tool: the line is kept byte for byte (idempotent).
    assert passwd.mosquitto_password_file({"zs-shiqi-01": "s3cret"}, current) == current


def test_a_changed_password_gets_a_fresh_salt_and_others_are_kept() -> None:
    first = passwd.mosquitto_password_file({"a": "one", "b": "two"})
    again = passwd.mosquitto_password_file({"a": "one", "b": "two"}, first)
    assert again == first
    changed = passwd.mosquitto_password_file({"a": "one", "b": "three"}, first)
    assert changed.splitlines()[0] == first.splitlines()[0]
    assert changed.splitlines()[1] != first.splitlines()[1]
    assert changed.splitlines()[1].startswith("b:$7$101$")


@pytest.mark.parametrize(("users", "message"), [
    ({"zs:01": "pw"}, "no ':' or spaces"),
    ({"zs 01": "pw"}, "no ':' or spaces"),
    ({"zs-01": ""}, "empty password"),
])
def test_bad_users_are_refused(users: dict[str, str], message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        passwd.mosquitto_password_file(users)


@pytest.mark.parametrize(("env", "message"), [
    ({}, "set ONEDOOR_CENTRAL_URL"),
    ({"ONEDOOR_CENTRAL_URL": "ftp://central"}, "set ONEDOOR_CENTRAL_URL"),
    ({"ONEDOOR_CENTRAL_URL": "http://127.0.0.1:9"}, "set ONEDOOR_CENTRAL_TOKEN"),
    ({"ONEDOOR_CENTRAL_URL": "http://127.0.0.1:9", "ONEDOOR_CENTRAL_TOKEN": "od_x",
      "ONEDOOR_CENTRAL_TIMEOUT": "soon"}, "ONEDOOR_CENTRAL_TIMEOUT"),
    # Without a broker the sites' configs would name none (they said "localhost").
    ({"ONEDOOR_CENTRAL_URL": "http://127.0.0.1:9", "ONEDOOR_CENTRAL_TOKEN": "od_x"},
     "set ONEDOOR_BROKER_HOSTS"),
    ({"ONEDOOR_CENTRAL_URL": "http://127.0.0.1:9", "ONEDOOR_CENTRAL_TOKEN": "od_x",
      "ONEDOOR_BROKER_HOSTS": " , "}, "set ONEDOOR_BROKER_HOSTS"),
    # Port 9 (discard) on loopback: nothing listens, the connection is refused.
    ({"ONEDOOR_CENTRAL_URL": "http://127.0.0.1:9", "ONEDOOR_CENTRAL_TOKEN": "od_x",
      "ONEDOOR_BROKER_HOSTS": "mqtt.zs.example.cn"}, "GET http://127.0.0.1:9/api/v1/inventory"),
])
def test_the_inventory_script_explains_what_is_wrong(env: dict[str, str], message: str) -> None:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("ONEDOOR_CENTRAL_", "ONEDOOR_BROKER_"))}
    result = subprocess.run([sys.executable, str(INVENTORY_SCRIPT), "--list"],
                            env={**clean, **env}, capture_output=True, text=True, timeout=60,
                            check=False)
    assert result.returncode == 1
    assert message in result.stderr
    assert result.stdout == ""


def test_the_inventory_script_refuses_an_answer_without_hostvars() -> None:
    inventory = load_module(INVENTORY_SCRIPT)
    with pytest.raises(inventory.InventoryError, match=r"no _meta\.hostvars"):
        inventory.build_inventory(lambda path: {"all": {"hosts": []}})
    with pytest.raises(inventory.InventoryError, match="site x: bad or missing onedoor_town"):
        inventory.build_inventory(
            lambda path: {"_meta": {"hostvars": {"x": {"onedoor_site_kind": "village"}}}})


@pytest.mark.parametrize("password", [
    "plain", "p@ss:w/rd", "\\1 back\\g<0>", "100% #?&='\"$x;", "空格 and ünïcode", "a+b~c",
])
def test_the_database_password_is_quoted_into_the_url(password: str) -> None:
    """SQLAlchemy reads back exactly the password given (a regex replacement turned `\\1`
    into byte 0x01 and cut the URL at `@` or `/`)."""
    url = database_url.database_url_with_password(
        "postgresql+psycopg://onedoor@db.zs.example.cn:5433/onedoor?sslmode=require", password)
    parsed = make_url(url)
    assert (parsed.username, parsed.password) == ("onedoor", password)
    assert (parsed.host, parsed.port, parsed.database) == ("db.zs.example.cn", 5433, "onedoor")
    assert parsed.query == {"sslmode": "require"}
    # Nothing a single-quoted EnvironmentFile value or a shell would read otherwise.
    assert not set(url) & set("'\"\\ $`\n")


def test_without_a_password_the_url_is_unchanged() -> None:
    assert database_url.database_url_with_password("sqlite:////var/lib/x/central.db", "") == \
        "sqlite:////var/lib/x/central.db"


@pytest.mark.parametrize(("url", "message"), [
    ("sqlite:////var/lib/x/central.db", "not a server database URL"),
    ("postgresql+psycopg://db.zs.example.cn/onedoor", "needs a user name"),
    ("postgresql+psycopg://onedoor:old@db.zs.example.cn/onedoor", "already holds a password"),
])
def test_a_password_that_cannot_go_into_the_url_is_refused(url: str, message: str) -> None:
    with pytest.raises(AnsibleFilterError, match=message):
        database_url.database_url_with_password(url, "secret")


def test_a_user_named_twice_is_refused() -> None:
    """A broker user is a client id: two hosts with one would knock each other off."""
    with pytest.raises(AnsibleFilterError, match="'zs-01' is named twice"):
        passwd.mosquitto_password_file([["zs-01", "a"], ["zs-02", "b"], ["zs-01", "c"]])
    assert passwd.mosquitto_password_file([["b", "x"], ["a", "y"]]).startswith("a:$7$101$")
