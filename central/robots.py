"""Group robots of 企业微信 (WeCom) and 钉钉 (DingTalk), sans-IO: bodies, signatures, answers.

::

    body = wecom_markdown("## 站点离线 ...")                      # bytes to POST
    body = dingtalk_markdown("站点离线", "#### 站点离线 ...")
    url = dingtalk_signed_url(url, secret, timestamp_ms)          # 加签: &timestamp=..&sign=..
    answer = read_answer(200, b'{"errcode":45009,"errmsg":"api freq out of limit"}')
    answer.ok, answer.rate_limited                                # False, True

No sockets and no clocks here: :mod:`central.notify` sends, waits and retries.

Both robots take ``POST`` with a JSON body and answer HTTP 200 with
``{"errcode": 0, "errmsg": "ok"}``; any other errcode is a failure (the message
was not posted). Each robot takes at most 20 messages a minute
(:data:`RATE_PER_MINUTE`); past that WeCom answers errcode 45009 and DingTalk
130101, which :attr:`RobotAnswer.rate_limited` names.

* WeCom: ``{"msgtype": "markdown", "markdown": {"content": ...}}``, content at
  most 4096 bytes of UTF-8 (:data:`WECOM_MAX_BYTES`); ``<font color="warning">``
  colours a word.
* DingTalk: ``{"msgtype": "markdown", "markdown": {"title": ..., "text": ...}}``;
  the title is what the chat list shows. In signed mode (加签) the URL gains
  ``timestamp`` (unix ms, within an hour of DingTalk's clock) and ``sign`` =
  URL-encoded base64 of HMAC-SHA256(key=secret, "timestamp\\nsecret").

Text from the registry (site names) and from edges (alarm messages) goes
through :func:`plain`, so it cannot open a link, a colour tag or a heading.
"""

from __future__ import annotations

import base64
import enum
import hashlib
import hmac
import json
import urllib.parse
from dataclasses import dataclass
from typing import Final

RATE_PER_MINUTE: Final = 20
"""Messages one robot takes a minute (WeCom and DingTalk alike)."""
WECOM_MAX_BYTES: Final = 4096
DINGTALK_MAX_BYTES: Final = 18_000
"""DingTalk refuses a body over 20,000 bytes; this leaves room for the title and the JSON."""

WECOM_RATE_LIMITED: Final = 45009
DINGTALK_RATE_LIMITED: Final = 130101


class RobotKind(enum.StrEnum):
    WECOM = "wecom"
    DINGTALK = "dingtalk"

    @property
    def max_bytes(self) -> int:
        return WECOM_MAX_BYTES if self is RobotKind.WECOM else DINGTALK_MAX_BYTES


_PLAIN: Final = str.maketrans({
    "<": "＜", ">": "＞", "[": "【", "]": "】", "*": "＊", "_": "＿", "`": "｀", "#": "＃",
    "\n": " ", "\r": " ",
})  # fmt: skip


def plain(text: str) -> str:
    """``text`` with the characters markdown or WeCom's tags would act on made harmless."""
    return text.translate(_PLAIN)


def _json(document: object) -> bytes:
    return json.dumps(document, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def wecom_markdown(content: str) -> bytes:
    """The body of a WeCom markdown message (``content`` within :data:`WECOM_MAX_BYTES`)."""
    return _json({"msgtype": "markdown", "markdown": {"content": content}})


def dingtalk_markdown(title: str, text: str) -> bytes:
    """The body of a DingTalk markdown message."""
    return _json({"msgtype": "markdown", "markdown": {"title": title, "text": text}})


def dingtalk_sign(secret: str, timestamp_ms: int) -> str:
    """DingTalk's ``sign``: base64(HMAC-SHA256(secret, "timestamp\\nsecret")), URL-encoded."""
    digest = hmac.new(secret.encode("utf-8"), f"{timestamp_ms}\n{secret}".encode(),
                      hashlib.sha256).digest()  # fmt: skip
    return urllib.parse.quote_plus(base64.b64encode(digest).decode("ascii"))


def dingtalk_signed_url(url: str, secret: str, timestamp_ms: int) -> str:
    """``url`` (with its ``access_token``) plus ``&timestamp=...&sign=...``."""
    joiner = "&" if urllib.parse.urlsplit(url).query else "?"
    return f"{url}{joiner}timestamp={timestamp_ms}&sign={dingtalk_sign(secret, timestamp_ms)}"


@dataclass(frozen=True, slots=True)
class RobotAnswer:
    """What a robot said to one POST."""

    ok: bool
    status: int
    errcode: int | None
    errmsg: str

    @property
    def rate_limited(self) -> bool:
        return self.errcode in (WECOM_RATE_LIMITED, DINGTALK_RATE_LIMITED) or self.status == 429

    def describe(self) -> str:
        if self.errcode is None:
            return f"HTTP {self.status}: {self.errmsg}"
        return f"HTTP {self.status}, errcode {self.errcode}: {self.errmsg}"


def read_answer(status: int, body: bytes) -> RobotAnswer:
    """The answer to a POST: ok only for HTTP 2xx with ``errcode`` 0."""
    try:
        document = json.loads(body.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        document = None
    if not isinstance(document, dict) or not isinstance(document.get("errcode"), int):
        snippet = body[:200].decode("utf-8", "replace")
        return RobotAnswer(False, status, None, f"not a robot answer: {snippet!r}")
    errcode: int = document["errcode"]
    errmsg = str(document.get("errmsg", ""))[:300]
    return RobotAnswer(200 <= status < 300 and errcode == 0, status, errcode, errmsg)


def fit(kind: RobotKind, head: str, items: list[str], tail: str, more: str) -> str:
    """``head``, as many ``items`` as fit the robot's size limit, ``more`` (formatted with
    the count left out) when some did not, then ``tail``."""
    limit = kind.max_bytes
    used = len(head.encode()) + len(tail.encode()) + len(more.encode()) + 16
    kept: list[str] = []
    for item in items:
        size = len(item.encode()) + 1
        if used + size > limit:
            break
        kept.append(item)
        used += size
    lines = [head, *kept]
    if len(kept) < len(items):
        lines.append(more.format(count=len(items) - len(kept)))
    if tail:
        lines.append(tail)
    return "\n".join(lines)


__all__ = [
    "DINGTALK_MAX_BYTES",
    "DINGTALK_RATE_LIMITED",
    "RATE_PER_MINUTE",
    "WECOM_MAX_BYTES",
    "WECOM_RATE_LIMITED",
    "RobotAnswer",
    "RobotKind",
    "dingtalk_markdown",
    "dingtalk_sign",
    "dingtalk_signed_url",
    "fit",
    "plain",
    "read_answer",
    "wecom_markdown",
]
