"""Filter `mosquitto_password_file`: the text of a Mosquitto 2 password file, idempotently.

`mosquitto_passwd` draws a new random salt on every call, so a task running it
would rewrite the file (and reload the broker) on every run. This filter writes
the same `$7$` format (PBKDF2-SHA512, 101 iterations, 12-byte salt, as
mosquitto 2.0 `password_mosq.c`) but keeps an entry from the current file when
its password still matches, so a second run changes nothing. New and changed
passwords get a fresh random salt.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
from collections.abc import Iterable, Mapping, Sequence

_ITERATIONS = 101
_SALT_BYTES = 12
_ENTRY_RE = re.compile(
    r"^(?P<user>[^:]+):\$7\$(?P<iterations>\d+)\$(?P<salt>[^$]+)\$(?P<hash>[^$]+)$"
)
_USER_RE = re.compile(r"^[^:\s]{1,64}$")


def _digest(password: str, salt: bytes, iterations: int) -> str:
    raw = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    return base64.b64encode(raw).decode("ascii")


def _entry(user: str, password: str, salt: bytes, iterations: int) -> str:
    encoded_salt = base64.b64encode(salt).decode("ascii")
    return f"{user}:$7${iterations}${encoded_salt}${_digest(password, salt, iterations)}"


def _current_entries(text: str) -> dict[str, re.Match[str]]:
    entries = {}
    for line in text.splitlines():
        match = _ENTRY_RE.match(line.strip())
        if match is not None:
            entries[match["user"]] = match
    return entries


def mosquitto_password_file(
    users: Mapping[str, str] | Iterable[Sequence[str]], current: str = ""
) -> str:
    """One `user:$7$...` line per user, sorted; unchanged users keep their current line.

    ``users`` maps user to password, or lists (user, password) pairs: then a user named
    twice is refused (a user is a client id: two hosts would knock each other off).
    """
    from ansible.errors import AnsibleFilterError  # type: ignore[import-untyped]

    pairs = list(users.items()) if isinstance(users, Mapping) else [tuple(p) for p in users]
    passwords: dict[str, str] = {}
    for user, password in pairs:
        if user in passwords:
            raise AnsibleFilterError(f"mosquitto user {user!r} is named twice")
        passwords[user] = str(password)
    existing = _current_entries(current or "")
    lines = []
    for user in sorted(passwords):
        password = passwords[user]
        if not _USER_RE.match(user):
            raise AnsibleFilterError(f"mosquitto user {user!r}: no ':' or spaces, 1-64 chars")
        if not password:
            raise AnsibleFilterError(f"mosquitto user {user!r}: empty password")
        match = existing.get(user)
        if match is not None:
            salt = base64.b64decode(match["salt"])
            iterations = int(match["iterations"])
            if hmac.compare_digest(_digest(password, salt, iterations), match["hash"]):
                lines.append(match.group(0))
                continue
        lines.append(_entry(user, password, os.urandom(_SALT_BYTES), _ITERATIONS))
    return "".join(f"{line}\n" for line in lines)


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"mosquitto_password_file": mosquitto_password_file}
