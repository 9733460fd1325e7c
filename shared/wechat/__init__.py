"""Clients of the WeChat platforms' server APIs (docs/platform.md)."""

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
