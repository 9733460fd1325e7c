"""Signature checks and AES decryption for OA and WeCom callbacks.

The rules are in docs/platform.md, "Callbacks: signatures and encryption".

wechatpy does the SHA-1 signing and the AES frame; we compare signatures in constant time
(wechatpy uses ``!=``) and turn its exceptions into refusals with codes.
"""

from __future__ import annotations

import binascii
import hmac
import struct
import time

from wechatpy.crypto import PrpCrypto as OaPrpCrypto
from wechatpy.enterprise.crypto import PrpCrypto as WeComPrpCrypto
from wechatpy.enterprise.exceptions import InvalidCorpIdException
from wechatpy.exceptions import InvalidAppIdException
from wechatpy.utils import WeChatSigner

from services.ingest.errors import Refused, bad_signature, malformed, missing_signature

# WeChat retries within seconds; anything older (or from the future) is a replay or a bad clock.
DEFAULT_MAX_AGE_S = 300


def sign(*parts: str) -> str:
    signer = WeChatSigner()
    signer.add_data(*parts)
    return signer.signature


def require(args, *names: str) -> list[str]:
    values = []
    for name in names:
        value = args.get(name)
        if not value:
            raise missing_signature(f"query parameter {name}")
        values.append(value)
    return values


def check_timestamp(
    timestamp: str, *, now: float | None = None, max_age_s: int = DEFAULT_MAX_AGE_S
):
    try:
        sent = int(timestamp)
    except ValueError:
        raise bad_signature("timestamp is not a number") from None
    now = time.time() if now is None else now
    if abs(now - sent) > max_age_s:
        raise bad_signature(f"timestamp is more than {max_age_s}s away from now (replay?)")


def verify(expected_parts: tuple[str, ...], signature: str) -> None:
    if not hmac.compare_digest(sign(*expected_parts).encode(), signature.lower().encode()):
        raise bad_signature()


def _aes_key(encoding_aes_key: str) -> bytes:
    return binascii.a2b_base64(encoding_aes_key + "=")


def decrypt(encrypt: str, *, encoding_aes_key: str, receive_id: str, wecom: bool) -> str:
    """Decrypt an ``Encrypt`` value whose signature was already verified."""
    crypto = (WeComPrpCrypto if wecom else OaPrpCrypto)(_aes_key(encoding_aes_key))
    try:
        return crypto.decrypt(encrypt, receive_id)
    except (InvalidAppIdException, InvalidCorpIdException):
        raise Refused("bad_receive_id", "encrypted for another app or corp", status=403) from None
    except (ValueError, TypeError, binascii.Error, struct.error, UnicodeDecodeError, IndexError):
        raise malformed("Encrypt does not decrypt with this app's EncodingAESKey") from None
