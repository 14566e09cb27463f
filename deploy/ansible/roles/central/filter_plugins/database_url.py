"""Filter `database_url_with_password`: a SQLAlchemy URL with the password put in, quoted.

The password is percent-encoded whole (``/``, ``@``, ``:``, ``%``, quotes and
backslashes included), so any password gives a URL that SQLAlchemy and psycopg
read back exactly, and the result holds no character that needs quoting in a
systemd EnvironmentFile or a shell. A regular-expression replacement would read
a backslash in the password (or its own ``\\1``) as a group reference.
"""

from __future__ import annotations

from urllib.parse import quote


def database_url_with_password(url: str, password: str) -> str:
    """``scheme://user@host/db`` + ``pw`` -> ``scheme://user:pw@host/db``; no password: ``url``."""
    from ansible.errors import AnsibleFilterError  # type: ignore[import-untyped]

    if not password:
        return url
    scheme, sep, rest = url.partition("://")
    authority, slash, path = rest.partition("/")
    userinfo, at, hostport = authority.rpartition("@")
    if not sep or scheme.startswith("sqlite"):
        raise AnsibleFilterError(
            f"central_database_password is set but {scheme or url!r} is not a server database "
            "URL (postgresql+psycopg://user@host/db)")
    if not at or not userinfo:
        raise AnsibleFilterError(
            "central_database_url needs a user name before the host "
            "(postgresql+psycopg://onedoor@db.example.cn/onedoor) to carry the password")
    if ":" in userinfo:
        raise AnsibleFilterError(
            "central_database_url already holds a password: keep it in "
            "central_database_password only")
    return f"{scheme}://{userinfo}:{quote(str(password), safe='')}@{hostport}{slash}{path}"


class FilterModule:
    def filters(self) -> dict[str, object]:
        return {"database_url_with_password": database_url_with_password}
