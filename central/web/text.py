"""Every dashboard string, Chinese first: ``key -> (中文, English)``.

::

    t = translator("zh")
    t("alarms")   # "告警"

A test checks that every key has both languages and that the templates use
only keys of this table.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Final

# One table of every dashboard string: key -> (中文, English).
TEXT: Final[dict[str, tuple[str, str]]] = {
    "app": ("一门式政务服务 · 全市站点管理", "onedoor · fleet manager"),
    "fleet": ("站点总览", "Fleet"),
    "alarms": ("告警", "Alarms"),
    "statistics": ("统计", "Statistics"),
    "logout": ("退出", "Log out"),
    "login": ("登录", "Log in"),
    "login_hint": (
        "请输入访问令牌（由管理员用 onedoor central token create 生成）",
        "Enter your access token (an admin creates it with onedoor central token create)",
    ),
    "token": ("访问令牌", "Access token"),
    "login_failed": ("令牌无效或已撤销", "Invalid or revoked token"),
    "login_throttled": (
        "登录尝试过多，请 {seconds} 秒后再试",
        "Too many login attempts: try again in {seconds} s",
    ),
    "sites": ("站点", "sites"),
    "online": ("在线", "online"),
    "offline": ("离线", "offline"),
    "unknown": ("未接入", "never seen"),
    "alarm": ("告警", "alarm"),
    "warn": ("注意", "warning"),
    "ok": ("正常", "ok"),
    "active_alarms": ("活动告警", "active alarms"),
    "search": ("搜索站点、镇街或编号", "Search site, town or id"),
    "filter": ("筛选", "Filter"),
    "all": ("全部", "All"),
    "town": ("镇街", "Town"),
    "towns": ("个镇街", "towns"),
    "alarm_short": ("告警", "alarmed"),
    "by_town_hint": ("站点较多，按镇街汇总；点击镇街查看其站点",
                     "Many sites: shown per town; click a town for its sites"),
    "all_towns": ("返回全部镇街", "All towns"),
    "status": ("状态", "Status"),
    "last_seen": ("最后联系", "Last seen"),
    "windows": ("窗口", "Windows"),
    "window": ("窗口", "Window"),
    "serving": ("正在办理", "Serving"),
    "staff": ("工作人员", "Staff"),
    "services": ("业务", "Services"),
    "queues": ("排队与预计等候", "Queues and predicted waits"),
    "service": ("事项", "Service"),
    "waiting": ("等候人数", "Waiting"),
    "oldest_wait": ("最长已等", "Oldest wait"),
    "predicted": ("预计等候 P50 / P90", "Predicted wait p50 / p90"),
    "advice": ("人员调配建议", "Staffing advice"),
    "sla": ("等候时限", "SLA"),
    "advice_tickets": ("未来一小时人数", "tickets in the hour"),
    "advice_p90_now": ("预计 P90 等候（现状）", "p90 wait as is"),
    "advice_p90_after": ("预计 P90 等候（按建议调整后）", "p90 wait after the move"),
    "advice_since": ("提出于", "given at"),
    "advice_expires": ("有效至", "valid until"),
    "advice_note": (
        "未来一小时的模拟预测，仅为建议：窗口不会自动调整，由现场负责人决定",
        "a simulation of the next hour, advice only: no window changes by itself, "
        "the site's manager decides",
    ),
    "devices": ("设备", "Devices"),
    "device": ("设备", "Device"),
    "kind": ("类型", "Kind"),
    "detail": ("详情", "Detail"),
    "recent_events": ("最近事件", "Recent events"),
    "today": ("今日", "Today"),
    "arrivals": ("取号", "Arrivals"),
    "served": ("办结", "Served"),
    "wait_mean": ("平均等候(分钟)", "Mean wait (min)"),
    "ratings": ("评价", "Ratings"),
    "per_hour": ("每小时", "per hour"),
    "waiting_telemetry": ("排队人数 · 近6小时（遥测）", "Waiting · last 6 h (telemetry)"),
    "severity": ("级别", "Severity"),
    "site": ("站点", "Site"),
    "type": ("类型", "Type"),
    "message": ("说明", "Message"),
    "raised": ("发生时间", "Raised"),
    "occurrences": ("次数", "Count"),
    "acknowledge": ("确认", "Acknowledge"),
    "acknowledged": ("已确认", "Acknowledged"),
    "no_alarms": ("当前没有活动告警", "No active alarms"),
    "recently_cleared": ("最近恢复", "Recently cleared"),
    "cleared": ("恢复时间", "Cleared"),
    "from": ("开始日期", "From"),
    "to": ("结束日期", "To"),
    "scope": ("范围", "Scope"),
    "scope_site": ("按站点", "per site"),
    "scope_town": ("按镇街", "per town"),
    "scope_fleet": ("全市", "whole fleet"),
    "show": ("查询", "Show"),
    "csv": ("下载 CSV", "Download CSV"),
    "issued": ("取号量", "Issued"),
    "served_count": ("办件量", "Served"),
    "done_rate": ("办结率", "Done rate"),
    "good_rate": ("好评率", "Good ratings"),
    "wait_p50_p90": ("等候 P50/P90", "Wait p50/p90"),
    "service_p50_p90": ("办理 P50/P90", "Service p50/p90"),
    "no_show_rate": ("过号率", "No-show rate"),
    "help": ("呼叫帮办 (未响应)", "Help calls (unanswered)"),
    "help_response": ("帮办响应 平均/P90", "Help response mean/p90"),
    "no_data": ("所选日期没有数据", "No data for these dates"),
    "bad_date": ("日期格式应为 YYYY-MM-DD", "Dates must be YYYY-MM-DD"),
    "day": ("日期", "Day"),
    "sev_info": ("提示", "info"),
    "sev_warning": ("一般", "warning"),
    "sev_major": ("严重", "major"),
    "sev_critical": ("紧急", "critical"),
    "definitions": ("口径说明见 docs/STATISTICS.md", "Definitions: docs/STATISTICS.md"),
    "config": ("配置版本 应为/实际", "Config expected/reported"),
    "clock": ("时钟", "Clock"),
    "synced": ("已同步", "synced"),
    "not_synced": ("未同步", "not synced"),
    "outbox": ("待上报", "Outbox"),
    "software": ("软件版本", "Software"),
    "gaps": ("缺失序号", "Missing seqs"),
    "live": ("实时", "live"),
    "closed": ("关闭", "closed"),
    "open": ("空闲", "open"),
    "paused": ("暂停", "paused"),
    "all_services": ("全部事项", "all services"),
    "back": ("返回总览", "Back to fleet"),
    "site_retired": ("已撤销，不在站点总览中；历史记录保留。撤销于",
                     "Retired: out of the fleet, its history kept. Retired at"),
    "commands": ("远程指令", "Commands"),
    "send": ("发送", "Send"),
    "command_log": ("指令记录", "Command log"),
    "cmd_announce": ("语音播报", "Announce"),
    "cmd_screen_notice": ("屏幕通知", "Screen notice"),
    "cmd_reprint": ("补打号票", "Reprint ticket"),
    "cmd_reload_config": ("重新加载配置", "Reload config"),
    "cmd_issuing": ("暂停/恢复取号", "Stop / resume issuing"),
    "cmd_calendar": ("节假日日历", "City calendar"),
    "cmd_text": ("内容 / 号码 / 版本", "Text / ticket / version"),
    "ttl": ("有效期(秒)", "TTL (s)"),
    "state_pending": ("等待执行", "pending"),
    "state_succeeded": ("已执行", "done"),
    "state_failed": ("失败", "failed"),
    "state_expired": ("已过期", "expired"),
    "waiting_for_site": ("站点离线，等待上线", "site offline, waiting"),
    # the citizens' progress pages (/q/{token}): no login, a phone in a hall
    "q_title": ("排队进度", "Queue progress"),
    "q_number": ("您的号码", "Your number"),
    "q_ahead": ("前面还有 {ahead} 人", "{ahead} ahead of you"),
    "q_next": ("下一位就是您", "You are next"),
    "q_wait_range": ("预计等候 {low}–{high} 分钟", "Expected wait {low}–{high} min"),
    "q_wait_about": ("预计等候约 {minutes} 分钟", "Expected wait about {minutes} min"),
    "q_wait_soon": ("即将叫号，请留意", "Your call is due: listen out"),
    "q_wait_long": ("等候时间较长，预计超过 {hours} 小时", "A long wait: over {hours} hours"),
    "q_wait_unknown": ("等候时间暂无预测", "No wait prediction yet"),
    "q_requeued_advice": (
        "您已过号一次，系统已为您重新排队，请留意叫号；再次过号需重新取号。",
        "You missed your call once and are queued again: listen out. Miss it again and "
        "you need a new ticket.",
    ),
    "q_called": ("请到 {window} 号窗口办理", "Please go to window {window}"),
    "q_called_detail": ("正在叫您的号", "Your number is being called"),
    "q_serving": ("正在 {window} 号窗口办理", "Being served at window {window}"),
    "q_done": ("已办结，感谢您的耐心等候", "Done. Thank you for waiting"),
    "q_no_show": ("您已过号", "You missed your call (过号)"),
    "q_no_show_advice": (
        "请到取号机重新取号，或向大厅工作人员咨询。",
        "Take a new ticket at the kiosk, or ask the hall's staff.",
    ),
    "q_cancelled": ("此号已取消", "This ticket was cancelled"),
    "q_unknown": ("暂时查不到此号的状态", "This ticket's state is not known yet"),
    "q_unknown_advice": (
        "刚取的号码，或站点网络中断时会这样，请稍后刷新。",
        "This happens just after a ticket is taken, or while the hall's network is down: "
        "refresh in a moment.",
    ),
    "q_stopped": (
        "暂停取号：{notice}。已取的号码照常办理。",
        "Ticket issuing stopped: {notice}. Tickets already taken are still served.",
    ),
    "q_live": ("实时", "Live"),
    "q_no_news": ("暂未收到站点的排队信息", "No news from the hall yet"),
    "q_last_known": (
        "站点暂时无法连接，以下为 {time} 的最后状态，并非实时",
        "The hall cannot be reached: this is the last known state, of {time}, not live",
    ),
    "q_updated": ("更新于", "Updated"),
    "q_large": ("大字版", "Large print"),
    "q_normal": ("标准字号", "Normal print"),
    "q_sound": ("开启声音提醒", "Turn on sound alerts"),
    "q_sound_on": ("声音提醒已开启", "Sound alerts on"),
    "q_disconnected": ("网络连接中断，正在重试…", "Connection lost, retrying…"),
    "q_expired": ("此二维码已过期", "This QR code has expired"),
    "q_expired_detail": (
        "排队进度只在取号当天有效。", "A progress page is valid on the day of its ticket only."
    ),
    "q_not_found": ("未找到此号码", "Ticket not found"),
    "q_not_found_detail": (
        "请核对二维码；刚取的号码请稍后再试。",
        "Check the QR code; a ticket just taken may need a moment.",
    ),
    "q_busy": ("查询过于频繁，请稍后再试", "Too many requests: try again in a moment"),
    "q_privacy": ("本页不含任何个人信息", "This page holds no personal data"),
    "q_alert_near": ("快到您了，请到窗口附近等候", "Almost your turn: wait near the windows"),
    "q_alert_called": ("请到窗口办理", "Please go to the window"),
}


def translator(lang: str) -> Callable[[str], str]:
    index = 1 if lang == "en" else 0

    def t(key: str) -> str:
        return TEXT[key][index]

    return t


__all__ = ["TEXT", "translator"]
