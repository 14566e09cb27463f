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
    "cmd_text": ("内容 / 号码 / 版本", "Text / ticket / version"),
    "ttl": ("有效期(秒)", "TTL (s)"),
    "state_pending": ("等待执行", "pending"),
    "state_succeeded": ("已执行", "done"),
    "state_failed": ("失败", "failed"),
    "state_expired": ("已过期", "expired"),
    "waiting_for_site": ("站点离线，等待上线", "site offline, waiting"),
}


def translator(lang: str) -> Callable[[str], str]:
    index = 1 if lang == "en" else 0

    def t(key: str) -> str:
        return TEXT[key][index]

    return t


__all__ = ["TEXT", "translator"]
