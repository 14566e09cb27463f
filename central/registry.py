"""Changes to the site registry made by people (admin role), beside what ingest keeps live.

::

    Registry(sessions).set_expected_config("zs-city", "cfg-42", now=now, by="0123abcd")

Today one change: the config version a site should run (drift is judged from
it, see :attr:`central.models.Site.config_drift`). Registry management (sites,
windows, services, hours) belongs here as it grows; reads go through
:class:`central.queries.ReadModel`.
"""

from __future__ import annotations

from datetime import datetime

import structlog
from sqlalchemy.orm import Session, sessionmaker

from central.errors import UnknownSite
from central.models import Site

log = structlog.get_logger(__name__)


class Registry:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def set_expected_config(
        self, site_id: str, version: str | None, *, now: datetime, by: str
    ) -> None:
        """Set (or clear, with ``None``) the config version the site should run."""
        with self._sessions.begin() as session:
            site = session.get(Site, site_id)
            if site is None:
                raise UnknownSite(site_id)
            if site.expected_config_version != version:
                site.expected_config_version = version
                site.config_version_changed_at = now
        log.info("registry.site_updated", site=site_id, by=by, expected_config_version=version)


__all__ = ["Registry"]
