"""Software releases at the central: which releases may be rolled out, which one each site
should run, and every site's software and config version with their drift.

::

    releases = Releases(sessions)
    releases.register(manifest, actor=actor, now=now)        # POST /api/v1/releases
    releases.newest_first()                                  # [ReleaseView]
    releases.set_expected("zs-shiqi-01", "0.1.1", actor=actor, now=now)
    releases.versions(town="石岐街道", drift_only=True)       # FleetVersions (the versions page)

A release is the folder ``onedoor release build`` writes; the central keeps its
manifest (files and their sha256 per architecture) so that a rollout names a release
it knows, and the versions page can say what each site should run. Which release a
site should run (``sites.expected_release``) is set by the rollout (:mod:`central.rollout`)
when a site is upgraded or rolled back, and by an admin for a release installed otherwise
(``PUT /api/v1/sites/{id}/release``). A site whose edge reports other software than
``onedoor-<expected release>`` shows **software drift**: a Pi put back from an old SD
card image, or an upgrade made by hand.

Errors: :class:`UnknownRelease` (404), :class:`central.errors.Conflict` (409: the version
is registered with another manifest), :class:`central.errors.InvalidRequest` (422: not
a manifest).
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Mapping
from datetime import datetime
from typing import Any

import msgspec
import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.audit import Actor, AuditAction, record
from central.errors import Conflict, InvalidRequest, NotFound, UnknownSite
from central.models import Release, Rollout, RolloutSite, Site, config_drift
from central.views import View, iso
from onedoor import software_token
from onedoor.release import Manifest, ReleaseError, check_version

log = structlog.get_logger(__name__)


class UnknownRelease(NotFound, KeyError):
    """No release of this version is registered."""

    what = "release"


def software_drift(expected_release: str | None, software: str | None) -> bool:
    """A release is expected and the site reports other software (or none)."""
    return expected_release is not None and software != software_token(expected_release)


class ReleaseView(View, frozen=True, kw_only=True):
    version: str
    software: str
    registered_at: str | None
    architectures: list[str]
    commit: str | None
    built_at: str | None
    sites_running: int
    """Sites whose edge reports this release now."""

    @classmethod
    def of(cls, release: Release, running: int) -> ReleaseView:
        manifest = release.manifest
        return cls(version=release.version, software=release.software,
                   registered_at=iso(release.registered_at),
                   architectures=sorted(manifest.get("targets", {})),
                   commit=manifest.get("commit"), built_at=manifest.get("built_at"),
                   sites_running=running)  # fmt: skip


class VersionRow(View, frozen=True, kw_only=True):
    """One site on the versions page."""

    site: str
    name: str
    town: str
    online: bool
    software: str | None
    expected_release: str | None
    software_drift: bool
    reported_config_version: str | None
    expected_config_version: str | None
    config_drift: bool
    rollout_step: str | None
    """Where the site is in the newest rollout that includes it (``None``: in none)."""


class FleetVersions(View, frozen=True, kw_only=True):
    rows: list[VersionRow]
    software: dict[str, int]
    """Sites per reported software (``-`` for a site that never reported)."""
    software_drift: int
    config_drift: int
    towns: list[str]


class Releases:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def register(self, data: Mapping[str, Any], *, actor: Actor, now: datetime) -> ReleaseView:
        """Register a release from its manifest; the same manifest again changes nothing,
        another manifest for a registered version is a :class:`Conflict`."""
        try:
            manifest = Manifest.from_json(data)
        except ReleaseError as exc:
            raise InvalidRequest(str(exc)) from None
        stored = manifest.to_json()
        with self._sessions.begin() as session:
            release = session.get(Release, manifest.version)
            if release is not None:
                if release.manifest != stored:
                    raise Conflict(f"release {manifest.version} is registered with another "
                                   "build (a version is built once: give the new build a "
                                   "new version)")  # fmt: skip
            else:
                release = Release(version=manifest.version, software=manifest.software,
                                  registered_at=now, manifest=stored)  # fmt: skip
                session.add(release)
                record(session, actor, AuditAction.RELEASE_ADD, f"release:{manifest.version}",
                       {"architectures": sorted(manifest.targets), "commit": manifest.commit},
                       now=now)  # fmt: skip
                log.info("release.registered", version=manifest.version, by=actor.name)
            running = self._running(session).get(release.software, 0)
            return ReleaseView.of(release, running)

    def newest_first(self) -> list[ReleaseView]:
        with self._sessions() as session:
            running = self._running(session)
            releases = session.scalars(select(Release).order_by(
                Release.registered_at.desc(), Release.version.desc()))
            return [ReleaseView.of(r, running.get(r.software, 0)) for r in releases]

    def get(self, version: str) -> ReleaseView:
        with self._sessions() as session:
            release = session.get(Release, version)
            if release is None:
                raise UnknownRelease(version)
            return ReleaseView.of(release, self._running(session).get(release.software, 0))

    def set_expected(self, site_id: str, version: str | None, *, actor: Actor,
                     now: datetime) -> bool:  # fmt: skip
        """Set (or clear) the release a site should run; whether it changed."""
        if version is not None:
            try:
                check_version(version)
            except ReleaseError as exc:
                raise InvalidRequest(str(exc)) from None
        with self._sessions.begin() as session:
            site = session.get(Site, site_id)
            if site is None:
                raise UnknownSite(site_id)
            return expect_release(session, site, version, actor=actor, now=now)

    def versions(self, *, town: str = "", drift_only: bool = False) -> FleetVersions:
        with self._sessions() as session:
            sites = list(session.scalars(
                select(Site).where(Site.retired_at.is_(None)).order_by(Site.town, Site.id)))
            steps = newest_steps(session)
        rows = [VersionRow(
            site=s.id, name=s.name, town=s.town, online=s.online, software=s.software_version,
            expected_release=s.expected_release,
            software_drift=software_drift(s.expected_release, s.software_version),
            reported_config_version=s.reported_config_version,
            expected_config_version=s.expected_config_version,
            config_drift=config_drift(s.expected_config_version, s.reported_config_version),
            rollout_step=steps.get(s.id)) for s in sites]  # fmt: skip
        towns = sorted({row.town for row in rows})
        counted = Counter(row.software or "-" for row in rows)
        shown = [row for row in rows if (not town or row.town == town)
                 and (not drift_only or row.software_drift or row.config_drift)]  # fmt: skip
        return FleetVersions(rows=shown, software=dict(counted.most_common()),
                             software_drift=sum(r.software_drift for r in rows),
                             config_drift=sum(r.config_drift for r in rows), towns=towns)

    @staticmethod
    def _running(session: Session) -> dict[str, int]:
        rows = session.execute(select(Site.software_version).where(
            Site.retired_at.is_(None), Site.online.is_(True)))  # fmt: skip
        return dict(Counter(software for (software,) in rows if software))


def expect_release(session: Session, site: Site, version: str | None, *, actor: Actor,
                   now: datetime) -> bool:  # fmt: skip
    """Inside the caller's transaction: the release ``site`` should run, audited."""
    old = site.expected_release
    if old == version:
        return False
    site.expected_release = version
    record(session, actor, AuditAction.SITE_EXPECTED_RELEASE, site.id,
           {"old": old, "new": version}, now=now)  # fmt: skip
    log.info("release.expected", site=site.id, version=version, by=actor.name)
    return True


def newest_steps(session: Session) -> dict[str, str]:
    """Each site's step in the newest rollout that includes it."""
    rows = session.execute(select(RolloutSite.site_id, RolloutSite.step)
                           .join(Rollout, Rollout.id == RolloutSite.rollout_id)
                           .order_by(Rollout.id))  # fmt: skip
    return {site_id: step.value for site_id, step in rows}


def manifest_of(body: bytes) -> dict[str, Any]:
    """A manifest posted as JSON (the file ``onedoor release build`` wrote)."""
    try:
        data = msgspec.json.decode(body)
    except msgspec.DecodeError as exc:
        raise InvalidRequest(f"not JSON: {exc}") from None
    if not isinstance(data, dict):
        raise InvalidRequest("a release manifest is a JSON object")
    return data


__all__ = [
    "FleetVersions",
    "ReleaseView",
    "Releases",
    "UnknownRelease",
    "VersionRow",
    "expect_release",
    "manifest_of",
    "newest_steps",
    "software_drift",
]
