"""What a bind address exposes, decided and logged once at start.

Anyone who reaches the playground can act as anyone (admin included), and `/api/` without
`API_TOKEN` shows every ticket and its audit trail. A loopback bind reaches only this machine;
any other bind (0.0.0.0, a LAN address, a host name) is treated as reachable from the network.
"""

from __future__ import annotations

import logging

from bot.settings import Settings, is_loopback

log = logging.getLogger(__name__)


def playground_served(settings: Settings, host: str) -> bool:
    """Whether to serve the playground on `host`, logging loudly when it is forced on a network bind."""
    if not settings.playground_enabled(host):
        log.info("playground disabled (bound to %r; set PLAYGROUND=on to force it)", host)
        return False
    if not is_loopback(host):
        # One line (log collectors split on newlines), loud by its words and its level.
        log.warning("!!! DANGER: PLAYGROUND=on on a network bind (%r): anyone who can reach this address can act "
                    "as any person, admin included (rules, SLAs, technicians, sign-offs). Unset PLAYGROUND unless "
                    "this is a trusted test network !!!", host)
    return True


def warn_open_api(settings: Settings, host: str) -> None:
    if not settings.api_token and not is_loopback(host):
        log.warning("/api/ is served on a network bind (%r) without API_TOKEN: anyone who can reach it reads "
                    "every ticket and its audit trail; set API_TOKEN", host)
