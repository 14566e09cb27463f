"""Staged rollouts of a release: a canary first, then town by town, stopped past an error
threshold. The central plans and keeps the score; Ansible does the work on the sites
(``deploy/ansible/upgrade.yml``) and reports each site here.

::

    rollouts = Rollouts(sessions)
    view = rollouts.create("0.1.1", canary=["zs-shiqi-01"], towns=["石岐街道", "小榄镇"],
                           max_failures=0, actor=actor, now=now)
    rollouts.plan(view.id)            # RolloutPlan: the waves still to do, for the playbook
    rollouts.gate(view.id, wave=1)    # Gate: may wave 1 start? (every earlier wave settled)
    rollouts.report(view.id, "zs-shiqi-02", RolloutStep.UPGRADING, from_release="0.1.0", ...)
    rollouts.report(view.id, "zs-shiqi-02", RolloutStep.ROLLED_BACK, detail="...", ...)
    rollouts.resume(view.id, retry_failed=True, ...);  rollouts.cancel(view.id, ...)

The rules:

- **Waves.** Wave 0 is the canary (sites named, or the first ``n`` of the plan), then
  one wave per town in the order given (default: the towns' names), each town's sites
  by id. A wave starts only when every site of the earlier waves is settled (upgraded,
  rolled back or failed): a canary that was busy keeps the towns waiting.
- **When.** The playbook asks each site first (``onedoor edge can-restart``): a site
  within its opening hours or serving anyone is *deferred*, not touched, and done at a
  later run. The central does not judge the hours; the site does, by its own clock
  and config.
- **Health.** A site is *upgraded* only when the central sees its edge online, reporting
  the release's software (checked here again when the playbook reports it). A site
  unhealthy on the release is put back on the one before it (*rolled back*; *failed*
  when that did not come up healthy either).
- **Stop.** More than ``max_failures`` rolled-back or failed sites, or any in the canary,
  stop the rollout: no wave starts until someone resumes it (``retry_failed`` puts its
  failed sites back in line) or cancels it. One rollout runs at a time.
- What each site should run (``sites.expected_release``, :mod:`central.releases`) follows:
  the release once upgraded, the previous one once rolled back.

Errors: :class:`UnknownRollout` (404), :class:`central.releases.UnknownRelease` (404),
:class:`central.errors.Conflict` (409: another rollout is active, a step out of order, a
site the central does not see on the release), :class:`central.errors.InvalidRequest`
(422: sites or towns it does not know, a bad canary).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import structlog
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from central.audit import Actor, AuditAction, record
from central.errors import Conflict, InvalidRequest, NotFound, UnknownSite
from central.models import Release, Rollout, RolloutSite, RolloutStatus, RolloutStep, Site
from central.releases import UnknownRelease, expect_release
from central.views import View, iso
from onedoor import software_token

log = structlog.get_logger(__name__)

SETTLED: Final = frozenset({RolloutStep.UPGRADED, RolloutStep.ROLLED_BACK, RolloutStep.FAILED})
FAILURES: Final = frozenset({RolloutStep.ROLLED_BACK, RolloutStep.FAILED})
TO_DO: Final = frozenset({RolloutStep.PENDING, RolloutStep.DEFERRED})
ACTIVE: Final = frozenset({RolloutStatus.RUNNING, RolloutStatus.STOPPED})
# Which step may follow which (a report out of order is refused).
NEXT_STEPS: Final = {
    RolloutStep.UPGRADING: TO_DO,
    RolloutStep.DEFERRED: TO_DO,
    RolloutStep.UPGRADED: frozenset({RolloutStep.UPGRADING}),
    RolloutStep.ROLLED_BACK: frozenset({RolloutStep.UPGRADING}),
    RolloutStep.FAILED: frozenset({RolloutStep.UPGRADING}),
}
CANARY_WAVE: Final = 0


class UnknownRollout(NotFound, KeyError):
    what = "rollout"

    def __str__(self) -> str:
        return f"unknown rollout {self.key}"


# --------------------------------------------------------------------------- planning


def plan_waves(sites: Sequence[tuple[str, str]], *, canary: Sequence[str] | int,
               towns: Sequence[str] | None = None) -> list[list[str]]:  # fmt: skip
    """``sites`` as (id, town) -> waves of site ids: the canary, then one per town.

    ``canary``: site ids, or how many sites of the first town go first (at least one).
    ``towns``: the town order (each must have sites here); default: by name.
    """
    by_town: dict[str, list[str]] = {}
    for site_id, town in sorted(sites, key=lambda pair: pair[0]):
        by_town.setdefault(town, []).append(site_id)
    if not by_town:
        raise InvalidRequest("a rollout needs at least one site")
    order = list(towns) if towns else sorted(by_town)
    unknown = [town for town in order if town not in by_town]
    missing = [town for town in by_town if town not in order]
    if unknown or len(set(order)) != len(order):
        raise InvalidRequest(f"towns without sites in this rollout, or named twice: "
                             f"{', '.join(unknown) or 'a repeated town'}")  # fmt: skip
    order += sorted(missing)  # towns not named go last, by name
    if isinstance(canary, int):
        if canary < 1:
            raise InvalidRequest("the canary is at least one site")
        first = [s for town in order for s in by_town[town]][:canary]
    else:
        first = list(dict.fromkeys(canary))
        everyone = {s for s, _ in sites}
        strangers = [s for s in first if s not in everyone]
        if not first or strangers:
            raise InvalidRequest(f"the canary must be sites of the rollout: "
                                 f"{', '.join(strangers) or 'none given'}")  # fmt: skip
    chosen = set(first)
    waves = [first]
    for town in order:
        rest = [s for s in by_town[town] if s not in chosen]
        if rest:
            waves.append(rest)
    return waves


# --------------------------------------------------------------------------- views


class RolloutSiteView(View, frozen=True, kw_only=True):
    site: str
    town: str
    wave: int
    step: str
    from_release: str | None
    detail: str | None
    attempts: int
    updated_at: str | None
    software: str | None
    """What the site's edge reports now."""
    online: bool


class RolloutView(View, frozen=True, kw_only=True):
    id: int
    release: str
    software: str
    status: str
    created_at: str | None
    created_by: str
    max_failures: int
    failures: int
    stopped_reason: str | None
    finished_at: str | None
    counts: dict[str, int]
    """Sites per step."""
    sites: list[RolloutSiteView]


class RolloutPlan(View, frozen=True, kw_only=True):
    """What ``upgrade.yml`` runs: the waves with sites still to do, in order."""

    id: int
    release: str
    software: str
    status: str
    waves: list[int]
    batches: list[list[str]]


class Gate(View, frozen=True, kw_only=True):
    go: bool
    reason: str


@dataclass(frozen=True, slots=True)
class _Loaded:
    rollout: Rollout
    entries: list[RolloutSite]
    sites: dict[str, Site]


# --------------------------------------------------------------------------- the service


class Rollouts:
    def __init__(self, sessions: sessionmaker[Session]) -> None:
        self._sessions = sessions

    def create(self, release: str, *, actor: Actor, now: datetime,
               sites: Sequence[str] | None = None, towns: Sequence[str] | None = None,
               canary: Sequence[str] | int = 1, max_failures: int = 0) -> RolloutView:  # fmt: skip
        """Plan a rollout of ``release`` over ``sites`` (default: every site in service,
        of ``towns`` when given). Sites already on the release are marked upgraded."""
        if max_failures < 0:
            raise InvalidRequest("max_failures is 0 or more")
        with self._sessions.begin() as session:
            if session.get(Release, release) is None:
                raise UnknownRelease(release)
            active = session.scalars(select(Rollout).where(Rollout.status.in_(ACTIVE))).first()
            if active is not None:
                raise Conflict(f"rollout {active.id} ({active.release}) is {active.status}: "
                               "let it finish, or resume or cancel it first")  # fmt: skip
            chosen = self._chosen(session, sites, towns)
            waves = plan_waves([(s.id, s.town) for s in chosen], canary=canary, towns=towns)
            rollout = Rollout(release=release, status=RolloutStatus.RUNNING, created_at=now,
                              created_by=actor.name[:100], max_failures=max_failures)
            session.add(rollout)
            session.flush()
            by_id = {s.id: s for s in chosen}
            token = software_token(release)
            position = 0
            for wave, members in enumerate(waves):
                for site_id in members:
                    done = by_id[site_id].software_version == token
                    session.add(RolloutSite(
                        rollout_id=rollout.id, site_id=site_id, wave=wave, position=position,
                        step=RolloutStep.UPGRADED if done else RolloutStep.PENDING,
                        detail="已是该版本 already running it" if done else None,
                        updated_at=now))  # fmt: skip
                    position += 1
            record(session, actor, AuditAction.ROLLOUT_CREATE, f"rollout:{rollout.id}",
                   {"release": release, "sites": len(by_id), "waves": len(waves),
                    "canary": waves[0], "max_failures": max_failures}, now=now)  # fmt: skip
            session.flush()
            self._finish_if_done(session, rollout, now)
            rollout_id = rollout.id
        log.info("rollout.created", id=rollout_id, release=release, sites=len(chosen))
        return self.get(rollout_id)

    def get(self, rollout_id: int) -> RolloutView:
        with self._sessions() as session:
            return self._view(self._load(session, rollout_id))

    def newest_first(self) -> list[RolloutView]:
        with self._sessions() as session:
            ids = session.scalars(select(Rollout.id).order_by(Rollout.id.desc())).all()
            return [self._view(self._load(session, i)) for i in ids]

    def plan(self, rollout_id: int) -> RolloutPlan:
        with self._sessions() as session:
            loaded = self._load(session, rollout_id)
        rollout = loaded.rollout
        waves: dict[int, list[str]] = {}
        if rollout.status is RolloutStatus.RUNNING:
            for entry in loaded.entries:
                if entry.step in TO_DO:
                    waves.setdefault(entry.wave, []).append(entry.site_id)
        order = sorted(waves)
        return RolloutPlan(id=rollout.id, release=rollout.release,
                           software=software_token(rollout.release), status=rollout.status,
                           waves=order, batches=[waves[w] for w in order])  # fmt: skip

    def gate(self, rollout_id: int, wave: int) -> Gate:
        """May ``wave`` start now? Only while running, with every earlier wave settled."""
        with self._sessions() as session:
            loaded = self._load(session, rollout_id)
        rollout = loaded.rollout
        if rollout.status is not RolloutStatus.RUNNING:
            return Gate(go=False, reason=f"rollout {rollout.id} is {rollout.status}"
                        + (f": {rollout.stopped_reason}" if rollout.stopped_reason else ""))
        waiting = [e for e in loaded.entries if e.wave < wave and e.step not in SETTLED]
        if waiting:
            named = ", ".join(f"{e.site_id} {e.step}" for e in waiting[:10])
            return Gate(go=False, reason=f"earlier waves are not finished: {named}")
        return Gate(go=True, reason=f"wave {wave} may start")

    def report(self, rollout_id: int, site_id: str, step: RolloutStep, *, actor: Actor,
               now: datetime, detail: str | None = None,
               from_release: str | None = None) -> RolloutSiteView:  # fmt: skip
        """What happened at a site; may stop or finish the rollout."""
        with self._sessions.begin() as session:
            rollout = self._locked(session, rollout_id)
            entry = session.scalars(select(RolloutSite).where(
                RolloutSite.rollout_id == rollout_id, RolloutSite.site_id == site_id)
            ).one_or_none()  # fmt: skip
            if entry is None:
                raise UnknownSite(site_id)
            site = session.get(Site, site_id)
            assert site is not None  # rollout_sites.site_id is a foreign key
            allowed = NEXT_STEPS.get(step)
            if allowed is None or entry.step not in allowed:
                raise Conflict(f"{site_id} is {entry.step}: cannot become {step}")
            if step in (RolloutStep.UPGRADING, RolloutStep.DEFERRED) and \
                    rollout.status is not RolloutStatus.RUNNING:  # fmt: skip
                raise Conflict(f"rollout {rollout_id} is {rollout.status}: no site starts")
            if step is RolloutStep.UPGRADED:
                self._check_upgraded(site, rollout.release)
            entry.step = step
            entry.detail = detail[:2000] if detail else None
            entry.updated_at = now
            if step is RolloutStep.UPGRADING:
                entry.attempts += 1
                entry.from_release = from_release
            elif step is RolloutStep.UPGRADED:
                expect_release(session, site, rollout.release, actor=actor, now=now)
            elif step is RolloutStep.ROLLED_BACK and entry.from_release is not None:
                expect_release(session, site, entry.from_release, actor=actor, now=now)
            if step is not RolloutStep.UPGRADING:
                record(session, actor, AuditAction.ROLLOUT_SITE, site_id,
                       {"rollout": rollout_id, "release": rollout.release, "step": step.value,
                        "detail": entry.detail}, now=now)  # fmt: skip
            session.flush()
            if step in FAILURES:
                self._stop_if_over(session, rollout, entry, actor, now)
            self._finish_if_done(session, rollout, now)
            log.info("rollout.site", id=rollout_id, site=site_id, step=step.value,
                     status=rollout.status.value)  # fmt: skip
            town = site.town
        return self._site_view(entry, town, site)

    def resume(self, rollout_id: int, *, retry_failed: bool, actor: Actor,
               now: datetime) -> RolloutView:  # fmt: skip
        with self._sessions.begin() as session:
            rollout = self._locked(session, rollout_id)
            if rollout.status not in ACTIVE and not (retry_failed and
                                                     rollout.status is RolloutStatus.DONE):
                raise Conflict(f"rollout {rollout_id} is {rollout.status}")
            retried = 0
            if retry_failed:
                for entry in self._entries(session, rollout_id):
                    if entry.step in FAILURES:
                        entry.step, entry.detail, entry.updated_at = (
                            RolloutStep.PENDING, None, now)
                        retried += 1
            rollout.status, rollout.stopped_reason, rollout.finished_at = (
                RolloutStatus.RUNNING, None, None)
            record(session, actor, AuditAction.ROLLOUT_RESUME, f"rollout:{rollout_id}",
                   {"retried": retried}, now=now)  # fmt: skip
            session.flush()
            self._finish_if_done(session, rollout, now)
        return self.get(rollout_id)

    def cancel(self, rollout_id: int, *, actor: Actor, now: datetime) -> RolloutView:
        with self._sessions.begin() as session:
            rollout = self._locked(session, rollout_id)
            if rollout.status not in ACTIVE:
                raise Conflict(f"rollout {rollout_id} is {rollout.status}")
            rollout.status, rollout.finished_at = RolloutStatus.CANCELLED, now
            record(session, actor, AuditAction.ROLLOUT_CANCEL, f"rollout:{rollout_id}",
                   now=now)
        return self.get(rollout_id)

    # ------------------------------------------------------------------ helpers

    @staticmethod
    def _chosen(session: Session, sites: Sequence[str] | None,
                towns: Sequence[str] | None) -> list[Site]:  # fmt: skip
        query = select(Site).where(Site.retired_at.is_(None))
        if sites is not None:
            query = query.where(Site.id.in_(list(sites)))
        if towns:
            query = query.where(Site.town.in_(list(towns)))
        found = list(session.scalars(query))
        if sites is not None:
            unknown = sorted(set(sites) - {s.id for s in found})
            if unknown:
                raise InvalidRequest(f"not sites in service (or not of the towns given): "
                                     f"{', '.join(unknown)}")  # fmt: skip
        return found

    @staticmethod
    def _check_upgraded(site: Site, release: str) -> None:
        token = software_token(release)
        if not site.online or site.software_version != token:
            raise Conflict(f"the central does not see {site.id} on {token}: it is "
                           f"{'online' if site.online else 'offline'} with "
                           f"{site.software_version or 'no software reported'}")  # fmt: skip

    def _stop_if_over(self, session: Session, rollout: Rollout, entry: RolloutSite,
                      actor: Actor, now: datetime) -> None:  # fmt: skip
        if rollout.status is not RolloutStatus.RUNNING:
            return
        failed = [e for e in self._entries(session, rollout.id) if e.step in FAILURES]
        if entry.wave == CANARY_WAVE:
            reason = f"试点站点失败 the canary {entry.site_id} {entry.step}"
        elif len(failed) > rollout.max_failures:
            reason = (f"{len(failed)}个站点失败，超过上限{rollout.max_failures} "
                      f"{len(failed)} site(s) failed, more than {rollout.max_failures} allowed: "
                      + ", ".join(f"{e.site_id} {e.step}" for e in failed[:10]))
        else:
            return
        rollout.status, rollout.stopped_reason = RolloutStatus.STOPPED, reason
        record(session, actor, AuditAction.ROLLOUT_STOP, f"rollout:{rollout.id}",
               {"reason": reason}, now=now)  # fmt: skip
        log.warning("rollout.stopped", id=rollout.id, reason=reason)

    def _finish_if_done(self, session: Session, rollout: Rollout, now: datetime) -> None:
        if rollout.status is not RolloutStatus.RUNNING:
            return
        if all(e.step in SETTLED for e in self._entries(session, rollout.id)):
            rollout.status, rollout.finished_at = RolloutStatus.DONE, now
            log.info("rollout.done", id=rollout.id, release=rollout.release)

    @staticmethod
    def _entries(session: Session, rollout_id: int) -> list[RolloutSite]:
        return list(session.scalars(select(RolloutSite).where(
            RolloutSite.rollout_id == rollout_id).order_by(RolloutSite.position)))

    @staticmethod
    def _locked(session: Session, rollout_id: int) -> Rollout:
        rollout = session.scalars(select(Rollout).where(Rollout.id == rollout_id)
                                  .with_for_update()).one_or_none()  # fmt: skip
        if rollout is None:
            raise UnknownRollout(rollout_id)
        return rollout

    def _load(self, session: Session, rollout_id: int) -> _Loaded:
        rollout = session.get(Rollout, rollout_id)
        if rollout is None:
            raise UnknownRollout(rollout_id)
        entries = self._entries(session, rollout_id)
        sites = {s.id: s for s in session.scalars(
            select(Site).where(Site.id.in_([e.site_id for e in entries])))}  # fmt: skip
        return _Loaded(rollout, entries, sites)

    @staticmethod
    def _site_view(entry: RolloutSite, town: str, site: Site) -> RolloutSiteView:
        return RolloutSiteView(site=entry.site_id, town=town, wave=entry.wave,
                               step=entry.step.value, from_release=entry.from_release,
                               detail=entry.detail, attempts=entry.attempts,
                               updated_at=iso(entry.updated_at), software=site.software_version,
                               online=site.online)  # fmt: skip

    def _view(self, loaded: _Loaded) -> RolloutView:
        rollout = loaded.rollout
        counts: dict[str, int] = dict.fromkeys((s.value for s in RolloutStep), 0)
        for entry in loaded.entries:
            counts[entry.step.value] += 1
        return RolloutView(
            id=rollout.id, release=rollout.release, software=software_token(rollout.release),
            status=rollout.status.value, created_at=iso(rollout.created_at),
            created_by=rollout.created_by, max_failures=rollout.max_failures,
            failures=counts["rolled_back"] + counts["failed"],
            stopped_reason=rollout.stopped_reason, finished_at=iso(rollout.finished_at),
            counts=counts,
            sites=[self._site_view(e, loaded.sites[e.site_id].town, loaded.sites[e.site_id])
                   for e in loaded.entries])  # fmt: skip


__all__ = [
    "Gate",
    "RolloutPlan",
    "RolloutSiteView",
    "RolloutView",
    "Rollouts",
    "UnknownRollout",
    "plan_waves",
]
