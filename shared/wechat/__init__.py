"""Clients of the WeChat platforms' server APIs (PLATFORM.md sections 5 and 6)."""

from shared.wechat.wecom import (
    RateLimited,
    RateLimiter,
    TokenCache,
    WeComClient,
    WeComError,
    WeComUnavailable,
)

__all__ = [
    "RateLimited",
    "RateLimiter",
    "TokenCache",
    "WeComClient",
    "WeComError",
    "WeComUnavailable",
]
