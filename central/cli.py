"""``onedoor central ...``: run the fleet manager, manage API tokens, load the registry seed.

::

    onedoor central run [--config FILE] [--env-file FILE] [--host H] [--port P]
    onedoor central token create --role viewer|operator|admin [--name NAME]
    onedoor central token list | token revoke ID
    onedoor central seed [--config FILE] [--env-file FILE]

``token`` and ``seed`` work on an existing central's database, so they refuse to
run when none is configured (``database_url`` in ``--config``, in
``--env-file`` as the service has it, or ``ONEDOOR_CENTRAL_DATABASE_URL``):
the default would create an empty SQLite file in the current directory and
print a token the real central does not know. They say on stderr which
database they use.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError

from central.auth import Role, TokenStore
from central.config import (
    ENV_PREFIX,
    CentralConfig,
    load_config,
    read_env_file,
    setting_source,
)
from central.db import make_engine, migrate, session_factory
from central.errors import CentralError, ConfigError

STREAMS_GRACE_S = 5

def _environment(args: argparse.Namespace) -> dict[str, str]:
    env = dict(os.environ)
    if args.env_file is not None:
        env.update(read_env_file(args.env_file))
    return env


def _config(args: argparse.Namespace) -> CentralConfig:
    path: Path | None = args.config
    return load_config(path, _environment(args))


def _database_config(args: argparse.Namespace) -> CentralConfig:
    """The config of a command that works on an existing central's database."""
    config = _config(args)
    source = setting_source("database_url", args.config, _environment(args))
    if source is None:
        raise ConfigError(
            "no database configured: pass --env-file with the central's environment file "
            "(ONEDOOR_CENTRAL_DATABASE_URL, as the service runs with), --config with "
            f"database_url, or set {ENV_PREFIX}DATABASE_URL; refusing to use the default "
            f"{config.database_url} in {Path.cwd()}"
        )
    shown = make_url(config.database_url).render_as_string(hide_password=True)
    print(f"# database: {shown} (from {source})", file=sys.stderr)
    return config


def _store(config: CentralConfig) -> TokenStore:
    engine = make_engine(config.database_url)
    migrate(engine)
    return TokenStore(session_factory(engine))


def _cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from central.app import create_app

    app = create_app(_config(args))
    # Live streams (dashboards, citizens' progress pages) never end by themselves: on
    # SIGTERM they get this long, then close (the pages reconnect, to another replica).
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False,
                timeout_graceful_shutdown=STREAMS_GRACE_S)
    return 0


def _cmd_token_create(args: argparse.Namespace) -> int:
    store = _store(_database_config(args))
    info, token = store.create(args.role, args.name or f"{args.role} token")
    print(f"# token {info.token_id} ({info.role.value}, {info.name}); shown once, keep it safe",
          file=sys.stderr)  # fmt: skip
    print(token)
    return 0


def _cmd_token_list(args: argparse.Namespace) -> int:
    for info in _store(_database_config(args)).list():
        revoked = f" revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else ""
        print(f"{info.token_id}  {info.role.value:<8}  {info.created_at:%Y-%m-%d %H:%M}  "
              f"{info.name}{revoked}")  # fmt: skip
    return 0


def _cmd_token_revoke(args: argparse.Namespace) -> int:
    if _store(_database_config(args)).revoke(args.token_id):
        print(f"revoked {args.token_id}")
        return 0
    print(f"no active token {args.token_id}", file=sys.stderr)
    return 1


def _cmd_seed(args: argparse.Namespace) -> int:
    from central.seed import load_seed

    config = _database_config(args)
    engine = make_engine(config.database_url)
    migrate(engine)
    with session_factory(engine).begin() as session:
        counts = load_seed(session)
    print(f"seed loaded: {counts.sites} sites, {counts.services} services, "
          f"{counts.windows} windows (sample data)")  # fmt: skip
    return 0


def _guarded(handler: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        try:
            result: int = handler(args)
        except (CentralError, ValueError) as exc:
            print(f"onedoor central: {exc}", file=sys.stderr)
            return 2
        except DBAPIError as exc:  # the database is down or refuses us: say so, no traceback
            reason = (str(exc.orig) or type(exc.orig).__name__).splitlines()[0]
            print(f"onedoor central: the database does not answer: {reason}", file=sys.stderr)
            return 1
        return result

    return run


def _help(parser: argparse.ArgumentParser) -> Any:
    def show(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    central = subparsers.add_parser("central", help="the fleet manager (API, dashboards, ingest)")
    central.set_defaults(func=_help(central))
    sub = central.add_subparsers(dest="central_command", metavar="ACTION")

    def with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
        parser.add_argument(
            "--config", type=Path, help="TOML settings file (see central/config.py)"
        )
        parser.add_argument(
            "--env-file",
            type=Path,
            help="the service's environment file (ONEDOOR_CENTRAL_* lines, e.g. the database "
            "URL with its password), read as if set in the environment",
        )
        return parser

    run = with_config(sub.add_parser("run", help="serve API + dashboards and run ingest"))
    run.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    run.set_defaults(func=_guarded(_cmd_run))

    token = sub.add_parser("token", help="API and dashboard access tokens")
    token.set_defaults(func=_help(token))
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION")
    create = with_config(token_sub.add_parser("create", help="create a token (printed once)"))
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", help="who or what uses it, e.g. 'ops-li' or 'ansible'")
    create.set_defaults(func=_guarded(_cmd_token_create))
    listing = with_config(token_sub.add_parser("list", help="list tokens (never the secrets)"))
    listing.set_defaults(func=_guarded(_cmd_token_list))
    revoke = with_config(token_sub.add_parser("revoke", help="revoke a token by id"))
    revoke.add_argument("token_id")
    revoke.set_defaults(func=_guarded(_cmd_token_revoke))

    seed = with_config(
        sub.add_parser("seed", help="load the sample registry (25 towns, 277 sites)")
    )
    seed.set_defaults(func=_guarded(_cmd_seed))


__all__ = ["register_cli"]
