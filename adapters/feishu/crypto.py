"""Feishu event encryption and request signatures, with `cryptography` + hashlib.

Same scheme as lark-oapi's AESCipher (checked against it in tests), without importing
lark_oapi (~2.5 s, ~160 MB) on the web path:
  encrypt = b64(iv16 ‖ AES-256-CBC(key=sha256(encrypt_key), iv, PKCS7(plaintext)))
  X-Lark-Signature = sha256_hex(timestamp + nonce + encrypt_key + raw_body)
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import padding
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

_BLOCK = 16


class DecryptError(ValueError):
    """The `encrypt` field is not something our key produced."""


def _key(encrypt_key: str) -> bytes:
    return hashlib.sha256(encrypt_key.encode("utf-8")).digest()


def decrypt(encrypted_b64: str, encrypt_key: str) -> str:
    try:
        raw = base64.b64decode(encrypted_b64, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise DecryptError("encrypt 字段不是合法的 base64") from exc
    if len(raw) < 2 * _BLOCK or len(raw) % _BLOCK:
        raise DecryptError("密文长度不对")
    decryptor = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(raw[:_BLOCK])).decryptor()
    padded = decryptor.update(raw[_BLOCK:]) + decryptor.finalize()
    unpadder = padding.PKCS7(128).unpadder()
    try:
        plain = unpadder.update(padded) + unpadder.finalize()
        return plain.decode("utf-8")
    except ValueError as exc:  # bad padding or not UTF-8: wrong key or tampered body
        raise DecryptError("无法解密") from exc


def encrypt(plaintext: str, encrypt_key: str, iv: bytes | None = None) -> str:
    """What Feishu does before it POSTs an event (used by tests, the fake and the bench)."""
    iv = iv or os.urandom(_BLOCK)
    padder = padding.PKCS7(128).padder()
    padded = padder.update(plaintext.encode("utf-8")) + padder.finalize()
    encryptor = Cipher(algorithms.AES(_key(encrypt_key)), modes.CBC(iv)).encryptor()
    return base64.b64encode(iv + encryptor.update(padded) + encryptor.finalize()).decode("ascii")


def signature(timestamp: str, nonce: str, encrypt_key: str, body: bytes) -> str:
    return hashlib.sha256((timestamp + nonce + encrypt_key).encode("utf-8") + body).hexdigest()


def signature_ok(timestamp: str, nonce: str, encrypt_key: str, body: bytes, received: str) -> bool:
    expected = signature(timestamp, nonce, encrypt_key, body)
    return hmac.compare_digest(expected.encode("ascii"), received.encode("utf-8", "replace"))
