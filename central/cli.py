"""``onedoor central ...``: run the fleet manager, manage API tokens, the registry, backups.

::

    onedoor central run [--config FILE] [--env-file FILE] [--host H] [--port P]
    onedoor central token create --role viewer|operator|admin [--name NAME] [--town TOWN ...]
    onedoor central user create|list|set|disable|enable|password ...   (accounts for people)
    onedoor central token list | token revoke ID
    onedoor central seed [--config FILE] [--env-file FILE]
    onedoor central site list|show|add|set|retire|restore|service|window|import|export ...
    onedoor central audit [--target SITE] [--action site.] [--csv]
    onedoor central backup --to FILE | --dir DIR [--keep N]
    onedoor central restore --from FILE

``site`` and ``audit`` are :mod:`central.cli_registry`, ``user`` is
:mod:`central.cli_users` (create the first admin with it); backups are
:mod:`central.backup`. Every command but ``run`` works on an existing central's
database, so it refuses to run when none is configured (``database_url`` in
``--config``, in ``--env-file`` as the service has it, or
``ONEDOOR_CENTRAL_DATABASE_URL``): the default would create an empty SQLite
file in the current directory and print a token the real central does not
know. They say on stderr which database they use. Changes made here are
audited as the system user who ran the command (the one ``sudo`` was run by).
"""

from __future__ import annotations

import argparse
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from sqlalchemy import make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.orm import Session, sessionmaker

from central.audit import Actor, AuditAction, AuditLog
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


def database_config(args: argparse.Namespace) -> CentralConfig:
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


def sessions_of(config: CentralConfig) -> sessionmaker[Session]:
    """Sessions on the configured database, migrated to this release's schema."""
    engine = make_engine(config.database_url)
    migrate(engine)
    return session_factory(engine)


def _store(config: CentralConfig) -> TokenStore:
    return TokenStore(sessions_of(config))


def _audit(config: CentralConfig, action: AuditAction, target: str,
           detail: dict[str, Any] | None = None) -> None:  # fmt: skip
    AuditLog(sessions_of(config)).write(Actor.command_line(), action, target, detail,
                                        now=datetime.now(UTC))  # fmt: skip


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
    config = database_config(args)
    towns = list(args.town) if args.town else None
    info, token = _store(config).create(args.role, args.name or f"{args.role} token", towns)
    _audit(config, AuditAction.TOKEN_CREATE, f"token:{info.token_id}",
           {"role": info.role.value, "name": info.name, "towns": towns})
    print(f"# token {info.token_id} ({info.role.value}, {info.name}); shown once, keep it safe",
          file=sys.stderr)  # fmt: skip
    print(token)
    return 0


def _cmd_token_list(args: argparse.Namespace) -> int:
    for info in _store(database_config(args)).list():
        revoked = f" revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else ""
        print(f"{info.token_id}  {info.role.value:<8}  {info.created_at:%Y-%m-%d %H:%M}  "
              f"{info.name}{revoked}")  # fmt: skip
    return 0


def _cmd_token_revoke(args: argparse.Namespace) -> int:
    config = database_config(args)
    if _store(config).revoke(args.token_id):
        _audit(config, AuditAction.TOKEN_REVOKE, f"token:{args.token_id}")
        print(f"revoked {args.token_id}")
        return 0
    print(f"no active token {args.token_id}", file=sys.stderr)
    return 1


def _cmd_seed(args: argparse.Namespace) -> int:
    from central.seed import load_seed

    config = database_config(args)
    with sessions_of(config).begin() as session:
        counts = load_seed(session)
    _audit(config, AuditAction.REGISTRY_SEED, "registry",
           {"sites": counts.sites, "services": counts.services, "windows": counts.windows})
    print(f"seed loaded: {counts.sites} sites, {counts.services} services, "
          f"{counts.windows} windows (sample data)")  # fmt: skip
    return 0


def _cmd_backup(args: argparse.Namespace) -> int:
    from central.backup import backup, backup_to_folder

    url = database_config(args).database_url
    if args.to is not None:
        written = backup(url, args.to)
    else:
        written = backup_to_folder(url, args.dir, keep=args.keep, now=datetime.now(UTC))
    print(f"backup: {written.path} ({written.backend}, {written.size} bytes)")
    return 0


def _cmd_restore(args: argparse.Namespace) -> int:
    from central.backup import restore

    restore(args.source, database_config(args).database_url)
    print(f"restored {args.source}; start the central on this database (it migrates at start)")
    return 0


def guarded(handler: Any) -> Any:
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


def with_config(parser: argparse.ArgumentParser) -> argparse.ArgumentParser:
    """``parser`` with ``--config`` and ``--env-file``."""
    parser.add_argument("--config", type=Path, help="TOML settings file (see central/config.py)")
    parser.add_argument(
        "--env-file",
        type=Path,
        help="the service's environment file (ONEDOOR_CENTRAL_* lines, e.g. the database "
        "URL with its password), read as if set in the environment",
    )
    return parser


def register_cli(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    from central.cli_registry import register_registry_cli
    from central.cli_users import register_user_cli

    central = subparsers.add_parser("central", help="中心管理 / "
                                                    "the fleet manager (API, dashboards, ingest)")
    sub = central.add_subparsers(dest="central_command", metavar="ACTION")

    run = with_config(sub.add_parser("run", help="运行中心 / "
                                                 "serve API + dashboards and run ingest"))
    run.add_argument("--host", default="127.0.0.1", help="listen address (default 127.0.0.1)")
    run.add_argument("--port", type=int, default=8080, help="listen port (default 8080)")
    run.set_defaults(func=guarded(_cmd_run))

    token = sub.add_parser("token", help="访问令牌 / API and dashboard access tokens")
    token_sub = token.add_subparsers(dest="token_command", metavar="ACTION")
    create = with_config(token_sub.add_parser("create", help="创建令牌 / "
                                                             "create a token (printed once)"))
    create.add_argument("--role", required=True, choices=[r.value for r in Role])
    create.add_argument("--name", help="what uses it, e.g. 'ansible' or 'booking-sanxiang'")
    create.add_argument("--town", action="append",
                        help="a town it covers (repeat for more); none: the whole city")
    create.set_defaults(func=guarded(_cmd_token_create))
    listing = with_config(token_sub.add_parser("list", help="令牌列表 / "
                                                            "list tokens (never the secrets)"))
    listing.set_defaults(func=guarded(_cmd_token_list))
    revoke = with_config(token_sub.add_parser("revoke", help="吊销令牌 / revoke a token by id"))
    revoke.add_argument("token_id")
    revoke.set_defaults(func=guarded(_cmd_token_revoke))

    seed = with_config(
        sub.add_parser("seed", help="载入示例 / load the sample registry (25 towns, 277 sites)")
    )
    seed.set_defaults(func=guarded(_cmd_seed))

    register_registry_cli(sub)
    register_user_cli(sub)

    saved = with_config(sub.add_parser(
        "backup", help="备份中心数据库 / back up the central database (SQLite: online backup "
        "API; PostgreSQL: pg_dump), while the central runs"))  # fmt: skip
    where = saved.add_mutually_exclusive_group(required=True)
    where.add_argument("--to", type=Path, help="write the backup to this file")
    where.add_argument("--dir", type=Path, help="write central-<UTC time>.sqlite|.dump here")
    saved.add_argument("--keep", type=int, default=14,
                       help="with --dir: keep this many newest backups (default 14)")
    saved.set_defaults(func=guarded(_cmd_backup))
    loaded = with_config(sub.add_parser(
        "restore", help="从备份恢复 / load a backup into the configured, empty database "
        "(stop the central first; it migrates at start)"))  # fmt: skip
    loaded.add_argument("--from", dest="source", type=Path, required=True, help="backup file")
    loaded.set_defaults(func=guarded(_cmd_restore))


__all__ = ["database_config", "guarded", "register_cli", "sessions_of", "with_config"]
