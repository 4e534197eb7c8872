"""Feishu event crypto: the SDK's own vector, and our cryptography-based code against lark's AESCipher."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from adapters.feishu import crypto

ROOT = Path(__file__).resolve().parents[1]


def test_sdk_decrypt_vector() -> None:
    assert crypto.decrypt("P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=", "test key") == "hello world"


def test_our_encryption_decrypts_with_lark_and_back() -> None:
    from lark_oapi.core.utils import AESCipher

    plaintext = '{"schema":"2.0","header":{"event_type":"im.message.receive_v1"},"event":{"text":"三号机漏油"}}'
    for key in ("test key", "k", "一把中文密钥" * 9):
        ours = crypto.encrypt(plaintext, key)
        assert AESCipher(key).decrypt_str(ours) == plaintext
        assert crypto.decrypt(ours, key) == plaintext
    assert AESCipher("test key").decrypt_str("P37w+VZImNgPEO1RBhJ6RtKl7n6zymIbEG1pReEzghk=") == "hello world"


def test_signature_matches_lark_dispatcher() -> None:
    from lark_oapi.core.model import RawRequest
    from lark_oapi.event.dispatcher_handler import EventDispatcherHandler

    body = b'{"encrypt":"abc"}'
    request = RawRequest()
    request.body = body
    request.headers = {
        "X-Lark-Request-Timestamp": "1700000000",
        "X-Lark-Request-Nonce": "n0nce",
        "X-Lark-Signature": crypto.signature("1700000000", "n0nce", "enc-key", body),
    }
    EventDispatcherHandler()._verify_sign(request, "enc-key")  # raises on mismatch
    assert crypto.signature_ok("1700000000", "n0nce", "enc-key", body, request.headers["X-Lark-Signature"])
    assert not crypto.signature_ok("1700000000", "n0nce", "enc-key", body + b" ", request.headers["X-Lark-Signature"])


@pytest.mark.parametrize("bad", ["not base64 !!", "QUJD", crypto.encrypt("hello", "other key", iv=bytes(16))])
def test_undecryptable_input_raises(bad: str) -> None:
    with pytest.raises(crypto.DecryptError):
        crypto.decrypt(bad, "test key")


def test_importing_the_adapter_does_not_import_lark_oapi() -> None:
    code = textwrap.dedent(
        """
        import sys
        from aiohttp import web
        from adapters.feishu import FeishuConfig, create_feishu_adapter

        class Inbox:
            async def accept(self, message):
                return True

        class Tokens:
            async def get(self, key): return None
            async def set(self, key, value, ttl_s): pass
            async def delete(self, key): pass

        adapter = create_feishu_adapter(FeishuConfig("cli_x", "secret", encrypt_key="k"), Inbox(), Tokens())
        adapter.add_routes(web.Application())
        leaked = sorted(name for name in sys.modules if name.startswith("lark_oapi"))
        print(leaked[:3])
        sys.exit(1 if leaked else 0)
        """
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
