"""``onedoor central ...``: run the fleet manager, manage API tokens, load the registry seed.

::

    onedoor central run [--config FILE] [--host H] [--port P]
    onedoor central token create --role viewer|operator|admin [--name NAME]
    onedoor central token list | token revoke ID
    onedoor central seed [--config FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from central.auth import Role, TokenStore
from central.config import CentralConfig, load_config
from central.db import make_engine, migrate, session_factory
from central.errors import CentralError


def _config(args: argparse.Namespace) -> CentralConfig:
    path: Path | None = args.config
    return load_config(path)


def _store(config: CentralConfig) -> TokenStore:
    engine = make_engine(config.database_url)
    migrate(engine)
    return TokenStore(session_factory(engine))


def _cmd_run(args: argparse.Namespace) -> int:
    import uvicorn

    from central.app import create_app

    app = create_app(_config(args))
    uvicorn.run(app, host=args.host, port=args.port, log_config=None, access_log=False)
    return 0


def _cmd_token_create(args: argparse.Namespace) -> int:
    info, token = _store(_config(args)).create(args.role, args.name or f"{args.role} token")
    print(f"# token {info.token_id} ({info.role.value}, {info.name}); shown once, keep it safe",
          file=sys.stderr)  # fmt: skip
    print(token)
    return 0


def _cmd_token_list(args: argparse.Namespace) -> int:
    for info in _store(_config(args)).list():
        revoked = f" revoked {info.revoked_at:%Y-%m-%d %H:%M}" if info.revoked_at else ""
        print(f"{info.token_id}  {info.role.value:<8}  {info.created_at:%Y-%m-%d %H:%M}  "
              f"{info.name}{revoked}")  # fmt: skip
    return 0


def _cmd_token_revoke(args: argparse.Namespace) -> int:
    if _store(_config(args)).revoke(args.token_id):
        print(f"revoked {args.token_id}")
        return 0
    print(f"no active token {args.token_id}", file=sys.stderr)
    return 1


def _cmd_seed(args: argparse.Namespace) -> int:
    from central.seed import load_seed

    config = _config(args)
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
