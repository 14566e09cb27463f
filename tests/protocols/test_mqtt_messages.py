"""MQTT payloads of the v1 contract: golden JSON, round trips, and every kind of garbage."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_protocols.errors import LocalProtocolError
from firmware_protocols.gb2312 import display_text_problem
from firmware_protocols.mqtt_messages import (
    COMMAND_ARGS,
    EVENT_TYPES,
    SCHEMAS,
    Ack,
    AckRefused,
    Advice,
    AdviceMove,
    AdviceOutlook,
    Advisory,
    AnnounceArgs,
    BehindJournal,
    Booking,
    BookingCheckedIn,
    BookingsApplied,
    BookingsArgs,
    CalendarApplied,
    CalendarArgs,
    CalledProgress,
    CaseClosed,
    CaseInfo,
    CaseOpened,
    Cmd,
    CmdResult,
    ConfigApplied,
    ConfigRejected,
    DayReset,
    DayRestored,
    DeviceReplaced,
    DeviceStat,
    DeviceStatus,
    Diagnostics,
    DiagnosticsArgs,
    DiagStatus,
    DiagTask,
    EndedProgress,
    Event,
    EventBody,
    Forked,
    HelpAcknowledged,
    HelpEscalated,
    HelpRequested,
    HelpResolved,
    HostStat,
    IssuingArgs,
    IssuingResumed,
    IssuingStopped,
    JournalLost,
    Lease,
    LogLine,
    Message,
    OutboxDropped,
    OutboxStat,
    PrefixCounter,
    Progress,
    QueueStat,
    RatingGiven,
    RatingMissed,
    RatingReason,
    ReloadConfigArgs,
    ReprintArgs,
    Restore,
    RestoredTicket,
    RestoredWindow,
    ScreenNoticeArgs,
    ServiceOvertime,
    SlaBreached,
    State,
    Telemetry,
    TicketCalled,
    TicketCancelled,
    TicketDone,
    TicketIssued,
    TicketNoShow,
    TicketRecalled,
    TicketServing,
    TicketTransferred,
    WaitingProgress,
    WaitPrediction,
    WindowPaused,
    WindowResumed,
    WindowSignedIn,
    WindowSignedOut,
    WindowStat,
    decode,
    decode_publish,
    encode,
    epoch_base,
    epoch_of,
    kind_of,
    state_supersedes,
    to_publish,
    will_for,
)
from firmware_protocols.mqtt_topics import TOPICS, InvalidMessage, Kind, Reason

SITE = "zs-sanxiang-01"
EVENT_ID = uuid.UUID("0b8f5f7e-3c2a-4d7e-9a51-6f1e2d3c4b5a")
CMD_ID = uuid.UUID("c0ffee00-1234-4abc-8def-000000000001")
ADVISORY_ID = uuid.UUID("a1d71ce0-5e3a-4b1c-9d2e-000000000023")
TS = 1_763_882_400_000

# --------------------------------------------------------------------------- golden JSON
# One table feeds encode and decode (h11 style). The strings are the exact wire bytes.

CASE = CaseInfo(no="442000-2026-000123", item_code="11442000MB2C92107F4442115001000",
                item_name="居民身份证换领", department="11442000MB2C92107F",
                department_name="中山市公安局", source="hook")
CASE_WIRE = ('{"no":"442000-2026-000123","item_code":"11442000MB2C92107F4442115001000",'
             '"item_name":"居民身份证换领","department":"11442000MB2C92107F",'
             '"department_name":"中山市公安局","source":"hook"}')

BODY_TABLE: list[tuple[EventBody, str]] = [
    (
        TicketIssued(
            ticket="A012",
            service="huji",
            ticket_class="normal",
            booked_ts=None,
            channel="kiosk",
            people_ahead=3,
            wait=WaitPrediction(p50_s=240, p90_s=600),
        ),
        '{"type":"ticket.issued","ticket":"A012","service":"huji","class":"normal",'
        '"booked_ts":null,"channel":"kiosk","people_ahead":3,"wait":{"p50_s":240,"p90_s":600}}',
    ),
    (
        TicketIssued(
            ticket="Y001",
            service="shebao",
            ticket_class="appointment",
            booked_ts=TS + 600_000,
            channel="api",
            people_ahead=0,
            wait=None,
        ),
        '{"type":"ticket.issued","ticket":"Y001","service":"shebao","class":"appointment",'
        '"booked_ts":1763883000000,"channel":"api","people_ahead":0,"wait":null}',
    ),
    (
        TicketIssued(
            ticket="B007",
            service="huji",
            ticket_class="priority",
            booked_ts=None,
            channel="button",
            people_ahead=0,
            wait=None,
            token="q3Zf0pX9-aL_2mB7cD4eFg",
        ),
        '{"type":"ticket.issued","ticket":"B007","service":"huji","class":"priority",'
        '"booked_ts":null,"channel":"button","people_ahead":0,"wait":null,'
        '"token":"q3Zf0pX9-aL_2mB7cD4eFg"}',
    ),
    (TicketCalled(ticket="A012", window=3), '{"type":"ticket.called","ticket":"A012","window":3}'),
    (
        TicketRecalled(ticket="A012", window=3, recall=1),
        '{"type":"ticket.recalled","ticket":"A012","window":3,"recall":1}',
    ),
    (
        TicketServing(ticket="A012", window=3),
        '{"type":"ticket.serving","ticket":"A012","window":3}',
    ),
    (
        TicketDone(ticket="A012", window=3, served_s=415),
        '{"type":"ticket.done","ticket":"A012","window":3,"served_s":415}',
    ),
    (
        TicketNoShow(ticket="A013", window=3, requeued=False),
        '{"type":"ticket.no_show","ticket":"A013","window":3,"requeued":false}',
    ),
    (
        TicketTransferred(ticket="A014", window=3, from_service="huji", to_service="shebao"),
        '{"type":"ticket.transferred","ticket":"A014","window":3,"from_service":"huji",'
        '"to_service":"shebao"}',
    ),
    (TicketCancelled(ticket="B007"), '{"type":"ticket.cancelled","ticket":"B007"}'),
    (
        RatingGiven(ticket="A012", window=3, staff="zs0231", value=5),
        '{"type":"rating.given","ticket":"A012","window":3,"staff":"zs0231","value":5,'
        '"case":null,"channel":"pad","reasons":[]}',
    ),
    (
        RatingGiven(ticket="A012", window=3, staff="zs0231", value=2, case=CASE,
                    channel="tablet", reasons=["attitude", "slow"]),
        '{"type":"rating.given","ticket":"A012","window":3,"staff":"zs0231","value":2,'
        f'"case":{CASE_WIRE},"channel":"tablet","reasons":["attitude","slow"]}}',
    ),
    (
        RatingReason(ticket="A012", window=3, case_no="442000-2026-000123", reason="slow"),
        '{"type":"rating.reason","ticket":"A012","window":3,"case_no":"442000-2026-000123",'
        '"reason":"slow"}',
    ),
    (
        RatingMissed(ticket="A012", window=3, staff="zs0231", case=None),
        '{"type":"rating.missed","ticket":"A012","window":3,"staff":"zs0231","case":null}',
    ),
    (
        CaseOpened(window=3, ticket="A012", case=CASE),
        f'{{"type":"case.opened","window":3,"ticket":"A012","case":{CASE_WIRE}}}',
    ),
    (
        CaseClosed(window=3, ticket="A012", case_no="442000-2026-000123"),
        '{"type":"case.closed","window":3,"ticket":"A012","case_no":"442000-2026-000123"}',
    ),
    (
        HelpRequested(button="help-1", location="自助区A"),
        '{"type":"help.requested","button":"help-1","location":"自助区A"}',
    ),
    (
        HelpAcknowledged(button="help-1", staff="zs0231"),
        '{"type":"help.acknowledged","button":"help-1","staff":"zs0231"}',
    ),
    (HelpResolved(button="help-1"), '{"type":"help.resolved","button":"help-1"}'),
    (
        HelpEscalated(button="help-1", waited_s=300),
        '{"type":"help.escalated","button":"help-1","waited_s":300}',
    ),
    (
        WindowSignedIn(window=3, staff="zs0231"),
        '{"type":"window.signed_in","window":3,"staff":"zs0231"}',
    ),
    (
        WindowSignedOut(window=3, staff="zs0231"),
        '{"type":"window.signed_out","window":3,"staff":"zs0231"}',
    ),
    (WindowPaused(window=3), '{"type":"window.paused","window":3}'),
    (WindowResumed(window=3), '{"type":"window.resumed","window":3}'),
    (
        DeviceStatus(device="printer-1", kind="printer", status="degraded", detail="paper_low"),
        '{"type":"device.status","device":"printer-1","kind":"printer","status":"degraded",'
        '"detail":"paper_low"}',
    ),
    (
        DeviceStatus(device="printer-1", kind="printer", status="fault", detail="paper_out"),
        '{"type":"device.status","device":"printer-1","kind":"printer","status":"fault",'
        '"detail":"paper_out"}',
    ),
    (
        DeviceStatus(device="led-main", kind="led", status="fault", detail="silent"),
        '{"type":"device.status","device":"led-main","kind":"led","status":"fault",'
        '"detail":"silent"}',
    ),
    (
        DeviceStatus(device="term-3", kind="terminal", status="offline", detail="no_reply"),
        '{"type":"device.status","device":"term-3","kind":"terminal","status":"offline",'
        '"detail":"no_reply"}',
    ),
    (
        DeviceStatus(device="term-3", kind="terminal", status="ok", detail=None),
        '{"type":"device.status","device":"term-3","kind":"terminal","status":"ok","detail":null}',
    ),
    (ConfigApplied(version="2026.11.20-3"), '{"type":"config.applied","version":"2026.11.20-3"}'),
    (
        ConfigRejected(
            version="2026.11.21-1", errors=["windows[2].services: 未知业务 laowu / unknown service"]
        ),
        '{"type":"config.rejected","version":"2026.11.21-1",'
        '"errors":["windows[2].services: 未知业务 laowu / unknown service"]}',
    ),
    (
        SlaBreached(ticket="A020", service="huji", waited_s=1860),
        '{"type":"sla.breached","ticket":"A020","service":"huji","waited_s":1860}',
    ),
    (
        ServiceOvertime(ticket="A012", window=3, served_s=1900),
        '{"type":"service.overtime","ticket":"A012","window":3,"served_s":1900}',
    ),
    (OutboxDropped(count=12), '{"type":"outbox.dropped","count":12}'),
    (JournalLost(first_seq=1201, last_seq=1207),
     '{"type":"journal.lost","first_seq":1201,"last_seq":1207}'),
    (AckRefused(ack=2**53 - 1, last_seq=1207, count=3),
     '{"type":"ack.refused","ack":9007199254740991,"last_seq":1207,"count":3}'),
    (IssuingStopped(stop="typhoon-2026-09-16", reason="台风红色预警"),
     '{"type":"issuing.stopped","stop":"typhoon-2026-09-16","reason":"台风红色预警"}'),
    (IssuingResumed(stop="typhoon-2026-09-16"),
     '{"type":"issuing.resumed","stop":"typhoon-2026-09-16"}'),
    (CalendarApplied(version="2026-v2"), '{"type":"calendar.applied","version":"2026-v2"}'),
    (BookingsApplied(version="bk-20261208-0a1b2c3d4e5f", day="2026-12-08", count=2),
     '{"type":"bookings.applied","version":"bk-20261208-0a1b2c3d4e5f","day":"2026-12-08",'
     '"count":2}'),
    (BookingCheckedIn(code="1208123456", ticket="A012"),
     '{"type":"booking.checked_in","code":"1208123456","ticket":"A012"}'),
    (DayReset(day="2026-11-23"), '{"type":"day.reset","day":"2026-11-23"}'),
    (DayRestored(day="2026-11-23", epoch=2, tickets=14, left_out=0, skipped=20),
     '{"type":"day.restored","day":"2026-11-23","epoch":2,"tickets":14,"left_out":0,'
     '"skipped":20}'),
    (DeviceReplaced(device="5e0c2b9a41d7f388", epoch=2),
     '{"type":"device.replaced","device":"5e0c2b9a41d7f388","epoch":2}'),
]

_ENVELOPE = (
    '{"v":1,"site":"zs-sanxiang-01","seq":7,"id":"0b8f5f7e-3c2a-4d7e-9a51-6f1e2d3c4b5a",'
    '"ts":1763882400000,"clock_synced":true,"body":%s}'
)


def _event(body: EventBody, seq: int = 7, *, site: str = SITE) -> Event:
    return Event(site=site, seq=seq, id=EVENT_ID, ts=TS, clock_synced=True, body=body)


def _cmd(args: Any) -> Cmd:
    return Cmd(site=SITE, id=CMD_ID, issued_ts=TS, expires_ts=TS + 300_000, args=args)


_CMD_HEAD = (
    '{"v":1,"site":"zs-sanxiang-01","id":"c0ffee00-1234-4abc-8def-000000000001",'
    '"issued_ts":1763882400000,"expires_ts":1763882700000,"args":'
)

MESSAGE_TABLE: list[tuple[Message, str]] = [
    *[(_event(body), _ENVELOPE % wire) for body, wire in BODY_TABLE],
    (
        State(
            site=SITE,
            status="online",
            lwt=False,
            boot_id="7d1c9a0e",
            session=42,
            software="0.1.0",
            config="2026.11.20-3",
            ts=TS,
            clock_synced=True,
            device="3f9a07c2d4e1b856",
            epoch=1,
            seq=4294967338,
        ),
        '{"v":1,"site":"zs-sanxiang-01","status":"online","lwt":false,"boot_id":"7d1c9a0e",'
        '"session":42,"software":"0.1.0","config":"2026.11.20-3","ts":1763882400000,'
        '"clock_synced":true,"device":"3f9a07c2d4e1b856","epoch":1,"stop":null,'
        '"calendar":null,"bookings":null,"seq":4294967338,"forked":null}',
    ),
    (
        State(
            site=SITE,
            status="online",
            lwt=False,
            boot_id="9e0b77aa",
            session=44,
            software="0.1.0",
            config="2026.11.20-3",
            ts=TS,
            clock_synced=True,
            device="b1c2d3e4f5a60718",
            epoch=None,
            seq=4294967340,
            forked=Forked(device="3f9a07c2d4e1b856", epoch=1, after=4294967301,
                          last=4294967340),
        ),
        '{"v":1,"site":"zs-sanxiang-01","status":"online","lwt":false,"boot_id":"9e0b77aa",'
        '"session":44,"software":"0.1.0","config":"2026.11.20-3","ts":1763882400000,'
        '"clock_synced":true,"device":"b1c2d3e4f5a60718","epoch":null,"stop":null,'
        '"calendar":null,"bookings":null,"seq":4294967340,"forked":{"device":'
        '"3f9a07c2d4e1b856","epoch":1,"after":4294967301,"last":4294967340}}',
    ),
    (
        State(
            site=SITE,
            status="online",
            lwt=False,
            boot_id="7d1c9a0e",
            session=43,
            software="0.1.0",
            config="2026.11.20-3",
            ts=TS,
            clock_synced=True,
            stop="typhoon-2026-09-16",
            calendar="2026-v2",
            bookings="bk-20251123-0a1b2c3d4e5f",
        ),
        '{"v":1,"site":"zs-sanxiang-01","status":"online","lwt":false,"boot_id":"7d1c9a0e",'
        '"session":43,"software":"0.1.0","config":"2026.11.20-3","ts":1763882400000,'
        '"clock_synced":true,"device":null,"epoch":null,"stop":"typhoon-2026-09-16",'
        '"calendar":"2026-v2","bookings":"bk-20251123-0a1b2c3d4e5f","seq":null,"forked":null}',
    ),
    (
        State(
            site=SITE,
            status="offline",
            lwt=True,
            boot_id="7d1c9a0e",
            session=42,
            software="0.1.0",
            config=None,
            ts=TS,
            clock_synced=False,
            device="3f9a07c2d4e1b856",
            epoch=None,
        ),
        '{"v":1,"site":"zs-sanxiang-01","status":"offline","lwt":true,"boot_id":"7d1c9a0e",'
        '"session":42,"software":"0.1.0","config":null,"ts":1763882400000,'
        '"clock_synced":false,"device":"3f9a07c2d4e1b856","epoch":null,"stop":null,'
        '"calendar":null,"bookings":null,"seq":null,"forked":null}',
    ),
    (
        Telemetry(
            site=SITE,
            ts=TS,
            clock_synced=True,
            queues=[
                QueueStat(
                    service="huji",
                    waiting=7,
                    oldest_wait_s=540,
                    wait=WaitPrediction(p50_s=300, p90_s=780),
                )
            ],
            windows=[
                WindowStat(window=1, state="serving", ticket="A011"),
                WindowStat(window=2, state="open", ticket=None),
                WindowStat(window=3, state="closed", ticket=None),
            ],
            devices=[DeviceStat(device="printer-1", kind="printer", status="ok", detail=None)],
            host=HostStat(
                cpu_temp_c=51.5, load1=0.42, mem_used_pct=37.5, disk_used_pct=12.0, uptime_s=86400
            ),
            outbox=OutboxStat(depth=0, oldest_unacked_seq=None, last_seq=1041),
        ),
        '{"v":1,"site":"zs-sanxiang-01","ts":1763882400000,"clock_synced":true,'
        '"queues":[{"service":"huji","waiting":7,"oldest_wait_s":540,'
        '"wait":{"p50_s":300,"p90_s":780}}],'
        '"windows":[{"window":1,"state":"serving","ticket":"A011"},'
        '{"window":2,"state":"open","ticket":null},{"window":3,"state":"closed","ticket":null}],'
        '"devices":[{"device":"printer-1","kind":"printer","status":"ok","detail":null}],'
        '"host":{"cpu_temp_c":51.5,"load1":0.42,"mem_used_pct":37.5,"disk_used_pct":12.0,'
        '"uptime_s":86400},"outbox":{"depth":0,"oldest_unacked_seq":null,"last_seq":1041}}',
    ),
    (
        Progress(
            site=SITE,
            ts=TS,
            clock_synced=True,
            day="2026-11-23",
            day_seq=1002,
            seq=1041,
            issuing="stopped",
            notice="台风停止取号，已取号码照常办理",
            services={"huji": "户籍", "shebao": "社保医保"},
            waiting=[
                WaitingProgress(ticket="A013", service="shebao", ahead=0, p50_s=60, p90_s=240,
                                requeued=False),
                WaitingProgress(ticket="B004", service="huji", ahead=2, p50_s=None, p90_s=None,
                                requeued=True),
            ],
            called=[CalledProgress(ticket="A012", service="shebao", window=3, serving=True)],
            ended=[EndedProgress(ticket="A011", outcome="done", window=3),
                   EndedProgress(ticket="B003", outcome="no_show", window=1)],
        ),
        '{"v":1,"site":"zs-sanxiang-01","ts":1763882400000,"clock_synced":true,'
        '"day":"2026-11-23","day_seq":1002,"seq":1041,"issuing":"stopped","notice":"台风停止取号，已取号码照常办理",'
        '"services":{"huji":"户籍","shebao":"社保医保"},'
        '"waiting":[["A013","shebao",0,60,240,false],["B004","huji",2,null,null,true]],'
        '"called":[["A012","shebao",3,true]],'
        '"ended":[["A011","done",3],["B003","no_show",1]]}',
    ),
    (Ack(site=SITE, seq=1041), '{"v":1,"site":"zs-sanxiang-01","seq":1041}'),
    (
        _cmd(AnnounceArgs(text="请A012号到3号窗口办理", repeat=2)),
        _CMD_HEAD + '{"name":"announce","text":"请A012号到3号窗口办理","repeat":2}}',
    ),
    (_cmd(ReprintArgs(ticket="A012")), _CMD_HEAD + '{"name":"reprint","ticket":"A012"}}'),
    (
        _cmd(ScreenNoticeArgs(text="系统维护，暂停取号", screen=None, duration_s=600)),
        _CMD_HEAD
        + '{"name":"screen_notice","text":"系统维护，暂停取号","screen":null,"duration_s":600}}',
    ),
    (
        _cmd(ReloadConfigArgs(version="2026.11.21-1")),
        _CMD_HEAD + '{"name":"reload_config","version":"2026.11.21-1"}}',
    ),
    (
        _cmd(DiagnosticsArgs(lines=100)),
        _CMD_HEAD + '{"name":"diagnostics","lines":100}}',
    ),
    (
        _cmd(IssuingArgs(stop="typhoon-2026-09-16", stopped=True, reason="台风红色预警")),
        _CMD_HEAD + '{"name":"issuing","stop":"typhoon-2026-09-16","stopped":true,'
                    '"reason":"台风红色预警"}}',
    ),
    (
        _cmd(CalendarArgs(version="2026-v2", holidays=["2026-10-01..2026-10-08"],
                          workdays=["2026-09-27", "2026-10-10"],
                          special=["2026-12-31 08:30-12:00"])),
        _CMD_HEAD + '{"name":"calendar","version":"2026-v2",'
                    '"holidays":["2026-10-01..2026-10-08"],'
                    '"workdays":["2026-09-27","2026-10-10"],'
                    '"special":["2026-12-31 08:30-12:00"]}}',
    ),
    (
        _cmd(BookingsArgs(version="bk-20261208-0a1b2c3d4e5f", day="2026-12-08", bookings=[
            Booking("1208123456", "shebao", "09:00", "0123456789abcdef")])),
        _CMD_HEAD + '{"name":"bookings","version":"bk-20261208-0a1b2c3d4e5f",'
                    '"day":"2026-12-08","bookings":[["1208123456","shebao","09:00",'
                    '"0123456789abcdef"]]}}',
    ),
    (
        Advice(
            site=SITE,
            session=42,
            ts=TS,
            clock_synced=True,
            expires_ts=TS + 900_000,
            advisory=Advisory(
                id=ADVISORY_ID,
                since_ts=TS - 300_000,
                horizon_s=3600,
                breaching=["shebao"],
                move=AdviceMove(kind="open", windows=[4], services=["shebao", "huji"], count=1),
                before=[
                    AdviceOutlook(service="shebao", sla_s=1800, p90_s=2640, over_sla_pct=24.5,
                                  breach_pct=96.0, tickets=31.4),
                    AdviceOutlook(service="huji", sla_s=2700, p90_s=960, over_sla_pct=0.0,
                                  breach_pct=0.0, tickets=8.2),
                ],
                after=[
                    AdviceOutlook(service="shebao", sla_s=1800, p90_s=1320, over_sla_pct=4.1,
                                  breach_pct=3.0, tickets=31.4),
                    AdviceOutlook(service="huji", sla_s=2700, p90_s=1080, over_sla_pct=0.0,
                                  breach_pct=0.0, tickets=8.2),
                ],
                message_zh="未来60分钟社保医保预计p90等候44分钟（时限30分钟）。"
                "建议：开启4号窗口，办理社保医保、户籍（模拟验证后社保医保p90 22分钟）。",
                message_en="Next 60 min: shebao p90 wait 44 min (SLA 30). Advice: open window 4 "
                "for shebao, huji (simulated: shebao p90 22 min).",
            ),
        ),
        '{"v":1,"site":"zs-sanxiang-01","session":42,"ts":1763882400000,"clock_synced":true,'
        '"expires_ts":1763883300000,"advisory":{"id":"a1d71ce0-5e3a-4b1c-9d2e-000000000023",'
        '"since_ts":1763882100000,"horizon_s":3600,"breaching":["shebao"],'
        '"move":{"kind":"open","windows":[4],"services":["shebao","huji"],"count":1},'
        '"before":[{"service":"shebao","sla_s":1800,"p90_s":2640,"over_sla_pct":24.5,'
        '"breach_pct":96.0,"tickets":31.4},{"service":"huji","sla_s":2700,"p90_s":960,'
        '"over_sla_pct":0.0,"breach_pct":0.0,"tickets":8.2}],'
        '"after":[{"service":"shebao","sla_s":1800,"p90_s":1320,"over_sla_pct":4.1,'
        '"breach_pct":3.0,"tickets":31.4},{"service":"huji","sla_s":2700,"p90_s":1080,'
        '"over_sla_pct":0.0,"breach_pct":0.0,"tickets":8.2}],'
        '"message_zh":"未来60分钟社保医保预计p90等候44分钟（时限30分钟）。'
        '建议：开启4号窗口，办理社保医保、户籍（模拟验证后社保医保p90 22分钟）。",'
        '"message_en":"Next 60 min: shebao p90 wait 44 min (SLA 30). Advice: open window 4 '
        'for shebao, huji (simulated: shebao p90 22 min)."}}',
    ),
    (
        Advice(site=SITE, session=42, ts=TS + 300_000, clock_synced=True,
               expires_ts=TS + 1_200_000, advisory=None),
        '{"v":1,"site":"zs-sanxiang-01","session":42,"ts":1763882700000,"clock_synced":true,'
        '"expires_ts":1763883600000,"advisory":null}',
    ),
    (
        CmdResult(site=SITE, id=CMD_ID, ok=True, error=None, ts=TS),
        '{"v":1,"site":"zs-sanxiang-01","id":"c0ffee00-1234-4abc-8def-000000000001",'
        '"ok":true,"error":null,"ts":1763882400000}',
    ),
    (
        CmdResult(
            site=SITE, id=CMD_ID, ok=False, error="配置版本不符 / config version mismatch", ts=TS
        ),
        '{"v":1,"site":"zs-sanxiang-01","id":"c0ffee00-1234-4abc-8def-000000000001",'
        '"ok":false,"error":"配置版本不符 / config version mismatch","ts":1763882400000}',
    ),
    (
        Lease(site=SITE, device="3f9a07c2d4e1b856", epoch=2, ts=TS),
        '{"v":1,"site":"zs-sanxiang-01","device":"3f9a07c2d4e1b856","epoch":2,'
        '"ts":1763882400000}',
    ),
    (
        Lease(site=SITE, device="3f9a07c2d4e1b856", epoch=2, ts=TS,
              behind=BehindJournal(boot_id="9e0b77aa", held=8589934612)),
        '{"v":1,"site":"zs-sanxiang-01","device":"3f9a07c2d4e1b856","epoch":2,'
        '"ts":1763882400000,"behind":{"boot_id":"9e0b77aa","held":8589934612}}',
    ),
    (
        Restore(
            site=SITE,
            device="3f9a07c2d4e1b856",
            epoch=2,
            day="2026-11-23",
            part=1,
            parts=1,
            counters=[PrefixCounter(prefix="A", last=14), PrefixCounter(prefix="B", last=6)],
            skipped=20,
            tickets=[
                RestoredTicket(ticket="A013", service="shebao", ticket_class="normal",
                               issued_ts=TS - 900_000, key_ts=TS - 900_000, state="waiting",
                               window=None, recalls=0, requeued=False, transfers=0),
                RestoredTicket(ticket="A012", service="shebao", ticket_class="priority",
                               issued_ts=TS - 960_000, key_ts=TS - 960_000, state="called",
                               window=3, recalls=1, requeued=False, transfers=0),
            ],
            windows=[RestoredWindow(window=3, state="open", staff="zs0231", ticket="A012")],
            ts=TS,
        ),
        '{"v":1,"site":"zs-sanxiang-01","device":"3f9a07c2d4e1b856","epoch":2,'
        '"day":"2026-11-23","part":1,"parts":1,'
        '"counters":[{"prefix":"A","last":14},{"prefix":"B","last":6}],"skipped":20,'
        '"tickets":[{"ticket":"A013","service":"shebao","class":"normal",'
        '"issued_ts":1763881500000,"key_ts":1763881500000,"state":"waiting","window":null,'
        '"recalls":0,"requeued":false,"transfers":0},'
        '{"ticket":"A012","service":"shebao","class":"priority","issued_ts":1763881440000,'
        '"key_ts":1763881440000,"state":"called","window":3,"recalls":1,"requeued":false,'
        '"transfers":0}],'
        '"windows":[{"window":3,"state":"open","staff":"zs0231","ticket":"A012"}],'
        '"ts":1763882400000}',
    ),
    (
        Diagnostics(
            site=SITE,
            id=CMD_ID,
            device="3f9a07c2d4e1b856",
            boot_id="7d1c9a0e",
            software="0.1.0",
            ts=TS,
            status=DiagStatus(
                config="2026.11.20-3", day="2026-11-23", numbering="granted", epoch=2,
                last_seq=epoch_base(2) + 41, acked_seq=epoch_base(2) + 40, outbox_depth=1,
                journal_bytes=1_236_992, uplink_connects=3,
                tasks=[DiagTask(name="uplink", restarts=0)],
                devices=[DeviceStat(device="printer-1", kind="printer", status="degraded",
                                    detail="paper_low")],
                host=HostStat(cpu_temp_c=51.5, load1=0.42, mem_used_pct=37.5,
                              disk_used_pct=12.0, uptime_s=86400),
            ),
            logs=[LogLine(ts=TS - 1000, level="warning",
                          text="uplink.connect_failed host=mqtt.example port=8883 "
                               "error=TimeoutError() attempt=2")],
            logs_dropped=0,
        ),
        '{"v":1,"site":"zs-sanxiang-01","id":"c0ffee00-1234-4abc-8def-000000000001",'
        '"device":"3f9a07c2d4e1b856","boot_id":"7d1c9a0e","software":"0.1.0",'
        '"ts":1763882400000,"status":{"config":"2026.11.20-3","day":"2026-11-23",'
        '"numbering":"granted","epoch":2,"last_seq":8589934633,"acked_seq":8589934632,'
        '"outbox_depth":1,"journal_bytes":1236992,"uplink_connects":3,'
        '"tasks":[{"name":"uplink","restarts":0}],'
        '"devices":[{"device":"printer-1","kind":"printer","status":"degraded",'
        '"detail":"paper_low"}],'
        '"host":{"cpu_temp_c":51.5,"load1":0.42,"mem_used_pct":37.5,"disk_used_pct":12.0,'
        '"uptime_s":86400}},'
        '"logs":[{"ts":1763882399000,"level":"warning","text":"uplink.connect_failed '
        'host=mqtt.example port=8883 error=TimeoutError() attempt=2"}],"logs_dropped":0}',
    ),
]


def _ids(table: list[tuple[Message, str]]) -> list[str]:
    out = []
    for message, _ in table:
        name = kind_of(message).value
        if isinstance(message, Event):
            name = message.type
        elif isinstance(message, Cmd):
            name = f"cmd/{message.name}"
        out.append(name)
    return out


def test_golden_table_covers_every_event_type_and_command() -> None:
    covered = {type(body) for body, _ in BODY_TABLE}
    assert covered == set(EVENT_TYPES.values())
    commands = {m.name for m, _ in MESSAGE_TABLE if isinstance(m, Cmd)}
    assert commands == set(COMMAND_ARGS)
    assert {kind_of(m) for m, _ in MESSAGE_TABLE} == set(Kind)


def test_contract_event_types_are_all_present() -> None:
    expected = {
        *(f"ticket.{s}" for s in ("issued", "called", "recalled", "serving", "done", "no_show")),
        "ticket.transferred",
        "ticket.cancelled",
        "rating.given",
        *(f"help.{s}" for s in ("requested", "acknowledged", "resolved", "escalated")),
        *(f"window.{s}" for s in ("signed_in", "signed_out", "paused", "resumed")),
        "device.status",
        "config.applied",
        "config.rejected",
        "sla.breached",
        "service.overtime",
    }
    assert expected <= set(EVENT_TYPES)


def test_a_rating_from_an_edge_before_the_case_fields_is_still_read() -> None:
    """Additions to v1 carry defaults: the wire of an older edge decodes unchanged."""
    body = '{"type":"rating.given","ticket":"A012","window":3,"staff":"zs0231","value":5}'
    event = decode(Kind.EVENT, (_ENVELOPE % body).encode(), site_id=SITE)
    assert isinstance(event, Event)
    assert event.body == RatingGiven(ticket="A012", window=3, staff="zs0231", value=5)
    assert isinstance(event.body, RatingGiven)
    assert (event.body.case, event.body.channel, event.body.reasons) == (None, "pad", [])


def test_rating_reasons_and_channel_are_bounded() -> None:
    for body in (
        '{"type":"rating.given","ticket":"A012","window":3,"staff":"s","value":1,'
        '"reasons":[' + ",".join(['"r"'] * 17) + "]}",
        '{"type":"rating.given","ticket":"A012","window":3,"staff":"s","value":1,'
        '"channel":"fax"}',
        '{"type":"case.closed","window":3,"ticket":null,"case_no":"no spaces"}',
    ):
        with pytest.raises(InvalidMessage) as caught:
            decode(Kind.EVENT, (_ENVELOPE % body).encode(), site_id=SITE)
        assert caught.value.reason is Reason.SCHEMA


def test_telemetry_outbox_must_not_be_ahead_of_its_last_seq() -> None:
    with pytest.raises(ValueError, match="last_seq"):
        OutboxStat(depth=3, oldest_unacked_seq=12, last_seq=11)


def test_journal_lost_range_must_not_run_backwards() -> None:
    body = '{"type":"journal.lost","first_seq":9,"last_seq":3}'
    with pytest.raises(InvalidMessage, match="last_seq"):
        decode(Kind.EVENT, (_ENVELOPE % body).encode(), site_id=SITE)


@pytest.mark.parametrize(("message", "wire"), MESSAGE_TABLE, ids=_ids(MESSAGE_TABLE))
def test_encode_golden(message: Message, wire: str) -> None:
    assert encode(message) == wire.encode()


@pytest.mark.parametrize(("message", "wire"), MESSAGE_TABLE, ids=_ids(MESSAGE_TABLE))
def test_decode_golden(message: Message, wire: str) -> None:
    kind = kind_of(message)
    assert decode(kind, wire.encode(), site_id=SITE) == message
    publish = to_publish(message)
    assert publish.payload == wire.encode()
    assert (publish.qos, publish.retain) == (TOPICS[kind].qos, TOPICS[kind].retain)
    assert decode_publish(publish.topic, publish.payload) == (SITE, kind, message)


def test_event_type_property_and_cmd_helpers() -> None:
    assert _event(TicketCalled(ticket="A001", window=1)).type == "ticket.called"
    cmd = _cmd(ReprintArgs(ticket="A012"))
    assert cmd.name == "reprint"
    assert to_publish(cmd).topic == "onedoor/v1/zs-sanxiang-01/cmd/reprint"
    assert not cmd.expired(TS + 299_999)
    assert cmd.expired(TS + 300_000)


def test_will_matches_online_state() -> None:
    online, offline = MESSAGE_TABLE[len(BODY_TABLE)][0], MESSAGE_TABLE[len(BODY_TABLE) + 1][0]
    assert isinstance(online, State)
    assert isinstance(offline, State)
    will = will_for(online)
    assert will.topic == "onedoor/v1/zs-sanxiang-01/state"
    assert will.qos == 1
    assert will.retain
    decoded = decode(Kind.STATE, will.payload, site_id=SITE)
    assert isinstance(decoded, State)
    assert (decoded.status, decoded.lwt, decoded.session) == ("offline", True, 42)
    assert decoded.boot_id == online.boot_id


def _state(status: str, session: int, *, lwt: bool = False,
           device: str | None = "3f9a07c2d4e1b856") -> State:
    return State(
        site=SITE,
        status=status,  # type: ignore[arg-type]
        lwt=lwt,
        boot_id="b",
        session=session,
        software="0.1.0",
        config=None,
        ts=TS,
        clock_synced=True,
        device=device,
    )


def test_state_supersedes_ignores_stale_will() -> None:
    online_43 = _state("online", 43)
    stale_will_42 = _state("offline", 42, lwt=True)
    assert state_supersedes(online_43, None)
    assert not state_supersedes(stale_will_42, online_43)
    assert state_supersedes(_state("offline", 43, lwt=True), online_43)
    assert not state_supersedes(_state("online", 43), _state("offline", 43, lwt=True))
    assert state_supersedes(_state("online", 44), _state("offline", 43, lwt=True))


def test_a_state_of_another_device_is_not_ordered_by_session() -> None:
    """A replaced Pi's journal counts sessions from 1 again: its online is not stale."""
    old_device_offline = _state("offline", 420, lwt=True, device="aaaaaaaaaaaaaaaa")
    assert state_supersedes(_state("online", 1, device="bbbbbbbbbbbbbbbb"), old_device_offline)


def test_a_state_from_before_device_identity_still_decodes() -> None:
    wire = ('{"v":1,"site":"zs-sanxiang-01","status":"online","lwt":false,"boot_id":"b",'
            '"session":3,"software":"0.1.0","config":null,"ts":1763882400000,'
            '"clock_synced":true}')
    state = decode(Kind.STATE, wire.encode(), site_id=SITE)
    assert isinstance(state, State)
    assert (state.device, state.epoch) == (None, None)


def test_seqs_of_two_epochs_never_meet() -> None:
    assert epoch_base(0) == 0
    assert epoch_of(2**32) == 1
    assert epoch_of(2**32 - 1) == 0
    assert epoch_base(2**21 - 1) + 2**32 - 1 == 2**53 - 1  # the contract's largest seq


def test_restore_and_restored_tickets_hold_together() -> None:
    with pytest.raises(ValueError, match="window"):
        RestoredTicket(ticket="A012", service="s", ticket_class="normal", issued_ts=TS,
                       key_ts=TS, state="called", window=None, recalls=0, requeued=False,
                       transfers=0)
    with pytest.raises(ValueError, match="part"):
        Restore(site=SITE, device="3f9a07c2d4e1b856", epoch=1, day=None, part=2, parts=1,
                counters=[], skipped=0, tickets=[], windows=[], ts=TS)


# --------------------------------------------------------------------------- garbage


def _golden(kind: Kind) -> dict[str, Any]:
    for message, wire in MESSAGE_TABLE:
        if kind_of(message) is kind:
            data: dict[str, Any] = json.loads(wire)
            return data
    raise AssertionError(kind)


def _reason(
    kind: Kind, payload: bytes, *, site_id: str = SITE, command: str | None = None
) -> Reason:
    with pytest.raises(InvalidMessage) as info:
        decode(kind, payload, site_id=site_id, command=command)
    assert info.value.site_id == site_id
    assert info.value.kind is kind
    assert info.value.detail
    return info.value.reason


def _mutate(kind: Kind, change: Callable[[dict[str, Any]], None]) -> bytes:
    data = _golden(kind)
    change(data)
    return json.dumps(data, ensure_ascii=False).encode()


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"", Reason.JSON),
        (b"\xff\xfe\x00", Reason.JSON),
        (b"{", Reason.JSON),
        (b'{"v":1,"site":"zs-sanxiang-01","seq":1041', Reason.JSON),
        (b'{"v":1,"site":"zs-sanxiang-01","seq":1041}}', Reason.JSON),
        (b"NaN", Reason.JSON),
        (b'{"v":1,"site":"zs-\\ud800","seq":1}', Reason.JSON),
        (b"[" * 100 + b"]" * 100, Reason.SCHEMA),
        (b"null", Reason.SCHEMA),
        (b"42", Reason.SCHEMA),
        (b'"ack"', Reason.SCHEMA),
        (b'{"site":"zs-sanxiang-01","seq":1}', Reason.VERSION),
        (b'{"v":2,"site":"zs-sanxiang-01","seq":1}', Reason.VERSION),
        (b'{"v":"1","site":"zs-sanxiang-01","seq":1}', Reason.VERSION),
        (b'{"v":true,"site":"zs-sanxiang-01","seq":1}', Reason.VERSION),
        (b'{"v":1.0,"site":"zs-sanxiang-01","seq":1}', Reason.VERSION),
        # "v" first as our encoders write it (decoded once), then overridden: still a version
        (b'{"v":1,"site":"zs-sanxiang-01","seq":1,"v":2}', Reason.VERSION),
        (b'{"v":1,"v":2,"site":"zs-sanxiang-01","seq":1}', Reason.VERSION),
        (b'{"v":1, "site":"zs-sanxiang-01","seq":1,"v":"1"}', Reason.VERSION),
        (b'{"v":1,"site":"zs-sanxiang-01","seq":1.0}', Reason.SCHEMA),
        (b'{"v":1,"site":"zs-sanxiang-01","seq":"1"}', Reason.SCHEMA),
        (b'{"v":1,"site":"zs-sanxiang-01","seq":-1}', Reason.SCHEMA),
        (b'{"v":1,"site":"zs-sanxiang-01","seq":9007199254740992}', Reason.SCHEMA),
        (b'{"v":1,"site":"zs-sanxiang-01"}', Reason.SCHEMA),
        (b'{"v":1,"site":"zs-sanxiang-01","seq":1,"extra":0}', Reason.SCHEMA),
        (b'{"v":1,"site":"zs-sanxiang-01\\n","seq":1}', Reason.SCHEMA),
        (b'{"v":1,"site":"+","seq":1}', Reason.SCHEMA),
        (b'{"v":1,"site":"other-site","seq":1}', Reason.SITE_MISMATCH),
        (b'{"v":1,"site":"zs-sanxiang-01","seq":1,"pad":"' + b"x" * 300 + b'"}', Reason.TOO_LARGE),
    ],
)
def test_ack_garbage(payload: bytes, reason: Reason) -> None:
    assert _reason(Kind.ACK, payload) is reason


def _set(path: str, value: Any) -> Callable[[dict[str, Any]], None]:
    *parents, last = path.split(".")

    def change(data: dict[str, Any]) -> None:
        node: Any = data
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        if value is _DELETE:
            del node[last]
        else:
            node[last] = value

    return change


_DELETE = object()

SCHEMA_GARBAGE: list[tuple[Kind, str, Any]] = [
    (Kind.EVENT, "seq", 0),
    (Kind.EVENT, "id", "not-a-uuid"),
    (Kind.EVENT, "ts", -1),
    (Kind.EVENT, "ts", 5_000_000_000_000),
    (Kind.EVENT, "clock_synced", 1),
    (Kind.EVENT, "clock_synced", _DELETE),
    (Kind.EVENT, "body.type", "ticket.exploded"),
    (Kind.EVENT, "body.type", _DELETE),
    (Kind.EVENT, "body.ticket", "a012"),
    (Kind.EVENT, "body.ticket", "A12"),
    (Kind.EVENT, "body.service", "户籍"),
    (Kind.EVENT, "body.class", "vip"),
    (Kind.EVENT, "body.booked_ts", TS),  # a normal ticket has no booked time
    (Kind.EVENT, "body.wait.p90_s", 10),  # p90 below p50
    (Kind.EVENT, "body.unknown", 1),
    (Kind.STATE, "status", "sleeping"),
    (Kind.STATE, "lwt", True),  # a Will must say offline
    (Kind.STATE, "session", 0),
    (Kind.STATE, "boot_id", "has space"),
    (Kind.STATE, "software", ""),
    (Kind.TELEMETRY, "windows.0.ticket", None),  # serving without a ticket
    (Kind.TELEMETRY, "windows.2.ticket", "A001"),  # closed with a ticket
    (Kind.TELEMETRY, "windows.0.window", 0),
    (Kind.TELEMETRY, "host.mem_used_pct", 100.5),
    (Kind.TELEMETRY, "host.cpu_temp_c", "hot"),
    (Kind.TELEMETRY, "queues.0.waiting", -3),
    (Kind.TELEMETRY, "devices.0.status", "smoking"),
    (Kind.TELEMETRY, "devices.0.kind", "toaster"),
    (Kind.TELEMETRY, "windows", [{"window": 1, "state": "open", "ticket": None}] * 257),
    (Kind.TELEMETRY, "outbox.extra", 1),
    (Kind.CMD, "expires_ts", TS),  # ttl 0
    (Kind.CMD, "expires_ts", TS + 86_400_001),  # ttl above a day
    (Kind.CMD, "args.text", ""),
    (Kind.CMD, "args.text", "x" * 201),
    (Kind.CMD, "args.text", "叫号\x1b[2J"),  # control characters never reach TTS/LED
    (Kind.CMD, "args.repeat", 6),
    (Kind.CMD, "args.name", "format_disk"),
    (Kind.CMD_RESULT, "error", "boom"),  # ok=true with an error
    (Kind.CMD_RESULT, "ok", "yes"),
    (Kind.ADVICE, "expires_ts", TS),  # expires when sent
    (Kind.ADVICE, "session", 0),
    (Kind.ADVICE, "advisory.since_ts", TS + 1),  # first given after it was sent
    (Kind.ADVICE, "advisory.breaching", []),
    (Kind.ADVICE, "advisory.breaching", ["laowu"]),  # not among the services judged
    (Kind.ADVICE, "advisory.after", None),  # a move without its check
    (Kind.ADVICE, "advisory.move.kind", "fire_someone"),
    (Kind.ADVICE, "advisory.move.windows", [4, 5]),  # count 1
    (Kind.ADVICE, "advisory.move.count", 0),
    (Kind.ADVICE, "advisory.before.0.over_sla_pct", 100.5),
    (Kind.ADVICE, "advisory.before.0.p90_s", -1),
    (Kind.ADVICE, "advisory.message_zh", ""),
    (Kind.ADVICE, "advisory.message_zh", "请开窗\x1b[2J"),
    (Kind.ADVICE, "advisory.message_en", "x" * 401),
]


@pytest.mark.parametrize(
    ("kind", "path", "value"), SCHEMA_GARBAGE, ids=[f"{k.value}.{p}" for k, p, _ in SCHEMA_GARBAGE]
)
def test_schema_garbage_is_rejected_with_reason(kind: Kind, path: str, value: Any) -> None:
    payload = _mutate(kind, _set(path, value))
    assert len(payload) <= TOPICS[kind].max_payload
    assert _reason(kind, payload) is Reason.SCHEMA


def test_unknown_top_level_field_is_schema_error_for_every_kind() -> None:
    for kind in Kind:
        assert _reason(kind, _mutate(kind, _set("surprise", 1))) is Reason.SCHEMA


def test_every_kind_has_a_size_limit() -> None:
    for kind in Kind:
        limit = TOPICS[kind].max_payload
        data = _golden(kind)
        padding = limit - len(json.dumps(data, separators=(",", ":"))) + 1
        data["pad"] = "x" * padding
        assert _reason(kind, json.dumps(data).encode()) is Reason.TOO_LARGE


def test_command_name_must_match_topic() -> None:
    payload = encode(_cmd(ReprintArgs(ticket="A012")))
    assert _reason(Kind.CMD, payload, command="announce") is Reason.COMMAND_MISMATCH
    with pytest.raises(InvalidMessage) as info:
        decode_publish("onedoor/v1/zs-sanxiang-01/cmd/announce", payload)
    assert info.value.reason is Reason.COMMAND_MISMATCH


def test_decode_publish_bad_topic_has_no_site() -> None:
    with pytest.raises(InvalidMessage) as info:
        decode_publish("onedoor/v1/+/event", b"{}")
    assert info.value.reason is Reason.TOPIC
    assert info.value.site_id is None


def test_site_mismatch_between_topic_and_payload() -> None:
    payload = encode(_event(TicketCancelled(ticket="A001"), site="other"))
    with pytest.raises(InvalidMessage) as info:
        decode_publish("onedoor/v1/zs-sanxiang-01/event", payload)
    assert info.value.reason is Reason.SITE_MISMATCH
    assert info.value.site_id == "zs-sanxiang-01"


def test_encode_refuses_what_the_peer_would_reject() -> None:
    with pytest.raises(LocalProtocolError):
        encode(Ack(site=SITE, seq=-5))
    with pytest.raises(LocalProtocolError):
        encode(Ack(site="a/b", seq=1))
    too_many = ["错" * 200] * 16  # valid per field, 9.6 kB in all: above the event limit
    with pytest.raises(LocalProtocolError, match="limit"):
        encode(_event(ConfigRejected(version="x", errors=too_many)))
    with pytest.raises(LocalProtocolError):
        kind_of(WaitPrediction(p50_s=1, p90_s=2))  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="Will"):
        _state("online", 1, lwt=True)


@settings(max_examples=300, deadline=None)
@given(kind=st.sampled_from(list(Kind)), payload=st.binary(max_size=600))
def test_random_bytes_only_raise_invalid_message(kind: Kind, payload: bytes) -> None:
    # Any exception other than InvalidMessage escapes and fails the test.
    with pytest.raises(InvalidMessage) as info:
        decode(kind, payload, site_id=SITE)
    assert info.value.reason in set(Reason)


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_truncated_golden_payloads_are_json_errors(data: st.DataObject) -> None:
    message, wire = data.draw(st.sampled_from(MESSAGE_TABLE))
    raw = wire.encode()
    cut = data.draw(st.integers(min_value=0, max_value=len(raw) - 1))
    assert _reason(kind_of(message), raw[:cut]) in {Reason.JSON, Reason.VERSION, Reason.SCHEMA}


# --------------------------------------------------------------------------- round trips
# Strategies are derived from the schemas themselves (msgspec.inspect), so a field added
# to the contract is fuzzed without touching this file. Cross-field rules are fixed up.


def _no_control_text(lo: int, hi: int) -> st.SearchStrategy[str]:
    alphabet = st.characters(blacklist_categories=("Cc", "Cs"))
    return st.text(alphabet=alphabet, min_size=lo, max_size=hi)


def _strategy(t: msgspec.inspect.Type) -> st.SearchStrategy[Any]:
    mi = msgspec.inspect
    if isinstance(t, mi.IntType):
        return st.integers(min_value=t.ge, max_value=t.le)
    if isinstance(t, mi.FloatType):
        return st.floats(min_value=t.ge, max_value=t.le, allow_nan=False, allow_infinity=False)
    if isinstance(t, mi.BoolType):
        return st.booleans()
    if isinstance(t, mi.NoneType):
        return st.none()
    if isinstance(t, mi.UUIDType):
        return st.uuids().map(str)
    if isinstance(t, mi.LiteralType):
        return st.sampled_from(t.values)
    if isinstance(t, mi.StrType):
        lo, hi = t.min_length or 0, t.max_length or 64
        if t.pattern is None or "\\x00-\\x1f" in t.pattern:
            return _no_control_text(max(lo, 1), hi)
        return st.from_regex(t.pattern).filter(lambda s: lo <= len(s) <= hi)
    if isinstance(t, mi.ListType):
        lo = t.min_length or 0
        return st.lists(_strategy(t.item_type), min_size=lo, max_size=max(lo, 3))
    if isinstance(t, mi.UnionType):
        return st.one_of([_strategy(member) for member in t.types])
    if isinstance(t, mi.DictType):
        return st.dictionaries(_strategy(t.key_type), _strategy(t.value_type),
                               min_size=t.min_length or 0, max_size=3)
    if isinstance(t, mi.StructType):
        fields = {f.encode_name: _strategy(f.type) for f in t.fields}
        fixed = {t.tag_field: st.just(t.tag)} if t.tag_field else {}
        drawn = st.fixed_dictionaries({**fixed, **fields}).map(_fix_up(t.cls))
        if t.array_like:  # a JSON array of the fields, in order
            return drawn.map(lambda d: [d[f.encode_name] for f in t.fields])
        if t.cls.__struct_config__.omit_defaults:  # a field at its default is left out
            defaults = {f.encode_name: f.default for f in t.fields if not f.required}
            return drawn.map(lambda d: {k: v for k, v in d.items()
                                        if k not in defaults or v != defaults[k]})
        return drawn
    raise NotImplementedError(f"no strategy for {t!r}")


def _fix_up(cls: type) -> Callable[[dict[str, Any]], dict[str, Any]]:
    """Make a drawn dict satisfy the schema's cross-field rules (``__post_init__``)."""

    def fix(d: dict[str, Any]) -> dict[str, Any]:
        if cls is WaitPrediction:
            d["p90_s"] = max(d["p50_s"], d["p90_s"])
        elif cls is TicketIssued:
            if d["class"] == "appointment" and d["booked_ts"] is None:
                d["booked_ts"] = TS
            elif d["class"] != "appointment":
                d["booked_ts"] = None
        elif cls is State and d["lwt"]:
            d["status"] = "offline"
        elif cls is WindowStat:
            if d["state"] == "serving" and d["ticket"] is None:
                d["ticket"] = "A001"
            elif d["state"] == "closed":
                d["ticket"] = None
        elif cls is Cmd:
            d["issued_ts"] = min(d["issued_ts"], 4_102_444_800_000 - 86_400_000)
            d["expires_ts"] = d["issued_ts"] + 1 + d["expires_ts"] % 86_400_000
        elif cls in (AnnounceArgs, ScreenNoticeArgs):  # shown on the LED font
            d["text"] = "".join(c for c in d["text"] if display_text_problem(c) is None) or "通知"
        elif cls is CmdResult:
            d["error"] = None if d["ok"] else (d["error"] or "failed")
        elif cls is IssuingArgs:
            reason = d["reason"] and "".join(c for c in d["reason"]
                                             if display_text_problem(c) is None)
            d["reason"] = (reason or "台风") if d["stopped"] else None
        elif cls is WaitingProgress:
            if d["p50_s"] is None or d["p90_s"] is None:
                d["p50_s"] = d["p90_s"] = None
            else:
                d["p90_s"] = max(d["p50_s"], d["p90_s"])
        elif cls is JournalLost:
            d["last_seq"] = max(d["first_seq"], d["last_seq"])
        elif cls is OutboxStat and d["oldest_unacked_seq"] is not None:
            d["last_seq"] = max(d["oldest_unacked_seq"], d["last_seq"])
        elif cls is RestoredTicket:
            d["window"] = None if d["state"] == "waiting" else (d["window"] or 1)
        elif cls is Restore:
            d["part"] = min(d["part"], d["parts"])
        elif cls is AdviceMove:
            d["windows"] = [] if d["kind"] == "add" else (d["windows"] or [1])
            d["count"] = len(d["windows"]) or d["count"]
        elif cls is Advisory:
            d["after"] = None if d["move"] is None else (d["after"] or [])
            d["breaching"] = [o["service"] for o in d["before"]]
        elif cls is Advice:
            d["ts"] = min(d["ts"], 4_102_444_800_000 - 1)
            d["expires_ts"] = max(d["expires_ts"], d["ts"] + 1)
            if d["advisory"] is not None:
                d["advisory"]["since_ts"] = min(d["advisory"]["since_ts"], d["ts"])
        return d

    return fix


def _message_strategy(kind: Kind) -> st.SearchStrategy[bytes]:
    schema = msgspec.inspect.type_info(SCHEMAS[kind])
    return _strategy(schema).map(lambda d: json.dumps(d, ensure_ascii=False).encode())


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(list(Kind)))
def test_round_trip_every_schema(data: st.DataObject, kind: Kind) -> None:
    raw = data.draw(_message_strategy(kind))
    site = json.loads(raw)["site"]
    if len(raw) > TOPICS[kind].max_payload:
        assert _reason(kind, raw, site_id=site) is Reason.TOO_LARGE
        return
    message = decode(kind, raw, site_id=site)
    wire = encode(message)
    assert json.loads(wire) == json.loads(raw)
    assert decode(kind, wire, site_id=site) == message
    publish = to_publish(message)
    assert decode_publish(publish.topic, publish.payload).message == message


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data(), kind=st.sampled_from(list(Kind)))
def test_extra_field_anywhere_is_rejected(data: st.DataObject, kind: Kind) -> None:
    raw = data.draw(_message_strategy(kind))
    doc = json.loads(raw)
    doc[data.draw(st.sampled_from(["x", "V", "Site", "seq_", "__proto__"]))] = 0
    payload = json.dumps(doc, ensure_ascii=False).encode()
    if len(payload) <= TOPICS[kind].max_payload:
        assert _reason(kind, payload, site_id=doc["site"]) is Reason.SCHEMA


def test_every_topic_event_type_and_reason_is_documented() -> None:
    doc = (Path(__file__).parents[2] / "docs" / "PROTOCOLS.md").read_text("utf-8")
    names = [
        *(f"`{kind.value}`" for kind in Kind if kind is not Kind.CMD),
        "`cmd/{name}`",
        *(f"`cmd/{name}`" for name in COMMAND_ARGS),
        *(f"`{event_type}`" for event_type in EVENT_TYPES),
        *(f"`{reason.value}`" for reason in Reason),
    ]
    assert [name for name in names if name not in doc] == []


@pytest.mark.parametrize("name", ["screen_notice", "announce"])
def test_text_the_led_font_lacks_is_refused_where_it_enters(name: str) -> None:
    """The central converts command args with COMMAND_ARGS: a notice the hall screen cannot
    show is refused there with the reason, never accepted and dropped at the screen."""
    args: dict[str, Any] = {"name": name, "text": "窗口暂停😀"}
    args |= {"screen": None, "duration_s": 600} if name == "screen_notice" else {"repeat": 1}
    refused = r"cannot be shown on the LED screens.*U\+1F600"
    with pytest.raises(msgspec.ValidationError, match=refused):
        msgspec.convert(args, COMMAND_ARGS[name])
    typed = {**args, "text": "系统维护——暂停取号·张三"}
    assert msgspec.convert(typed, COMMAND_ARGS[name]).text == "系统维护——暂停取号·张三"
    payload = encode(_cmd(msgspec.convert(typed, COMMAND_ARGS[name]))).replace(
        "——".encode(), "😀".encode()
    )
    with pytest.raises(InvalidMessage) as info:
        decode(Kind.CMD, payload, site_id="zs-sanxiang-01")
    assert "cannot be shown on the LED screens" in str(info.value)
