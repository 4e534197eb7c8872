"""`后台`: a one-time sign-in link to the staff console (issue 22, docs/console.md).

- `后台` (every staff role with a console: supervisor, admin, quality, front desk, warehouse, expert):
  answers with `PUBLIC_BASE_URL/console/signin/<token>`, valid CONSOLE_LINK_MINUTES, once, for this
  person only. Technicians and customers are refused (and audited, by the runner): technicians work in
  the chat, where their tickets come to them; the console is for overseeing many tickets.
- `后台 退出全部`: ends every console session of the person (all browsers) and voids their unused links.
- `帮助` from someone with a console: the same help text, with a card whose button (打开后台) does what
  `后台` does. The link is made when the button is pressed (a card may be pressed hours later; a link
  lives minutes), by the card handler `_pressed`, through this runtime's console store.

The card handler runs in the core (a TASK card, core/lifecycle/tasks.py) and so only gets the service:
it finds the runtime (its settings, its sessions, the public base URL) by the service, registered by
`attach_console_links`: by the `帮助` and `后台` commands of this process, and by the runtime when it
calls it at construction. A press that finds none (a process that has answered neither since it
started, and whose runtime does not call it) asks the person to send 后台 instead.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from bot.chat.conversation import HELP_WORDS, Conversation, HelpLine, Incoming, help_for, text_command
from core.cards import ActionStyle, Card, CardAction, CardKind
from core.errors import InvalidInput, NotAllowed
from core.lifecycle.tasks import task_action
from core.model import Person, Role
from core.repository import StoredCard
from core.service import Context, TicketService, handles
from storage.console_store import ConsoleStore

# The runtime (bot.runtime.Runtime, a layer above the chat): its settings, sessions and public base URL.
Runtime = Any

# Who has a console (bot/console/scope.py decides which stores each sees).
CONSOLE_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN, Role.QUALITY, Role.FRONT_DESK, Role.WAREHOUSE,
                           Role.EXPERT})
USAGE = "用法：后台｜后台 退出全部"
REFUSAL = "抱歉，后台只对主管、管理员、质量改进组、前台、仓库管理员和专家开放。技师请直接在聊天里处理工单。"


CARD_PREFIX = "console"  # the help card's id prefix: its presses come to `_pressed`
SIGN_IN_ACTION = "console_signin"
# Weak both ways: a runtime holds its service, so a strong value would keep the key (and every stopped
# runtime with its engine) alive for ever.
_RUNTIMES: weakref.WeakKeyDictionary[TicketService, weakref.ref[Runtime]] = weakref.WeakKeyDictionary()


def signin_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/console/signin/{token}"


def attach_console_links(runtime: Runtime) -> None:
    """Let the help card's button make links for `runtime`'s service (see the module docstring)."""
    _RUNTIMES[runtime.service] = weakref.ref(runtime)


def may_use_console(person: Person) -> bool:
    """The same rule as bot/console/scope.py's (which takes CONSOLE_ROLES from here: the console is a layer up)."""
    return person.active and person.role in CONSOLE_ROLES


async def issue_signin(runtime: Runtime, person: Person, now: datetime) -> str:
    """A new one-time link for `person`, and the text that gives it to them."""
    minutes = runtime.settings.console_link_minutes
    token = await ConsoleStore(runtime.sessions).issue_link(person.id, now=now, valid_for=timedelta(minutes=minutes))
    url = signin_url(runtime.public_base_url, token)
    return (f"后台登录链接（{minutes:g} 分钟内有效，只能打开一次，请勿转发）：\n{url}\n"
            "在其他设备上退出：发送「后台 退出全部」。")


@text_command("后台", roles=CONSOLE_ROLES, usage="后台", summary="获取后台（网页版工单台）一次性登录链接",
              help=(HelpLine("后台 退出全部", "让所有浏览器上的后台登录失效"),), refusal=REFUSAL)
async def _console(conv: Conversation, inc: Incoming) -> None:
    runtime = conv.extra["runtime"]
    attach_console_links(runtime)
    store = ConsoleStore(runtime.sessions)
    now = conv.service.clock.now()
    action = "".join(inc.args)
    if action in ("退出全部", "退出所有", "全部退出"):
        ended = await store.revoke_all(inc.person.id, now=now)
        await conv.reply(inc.person, inc.message,
                         f"已退出全部后台登录（{ended} 个会话），未使用的登录链接也已作废。" if ended
                         else "您没有正在使用的后台登录；未使用的登录链接已作废。")
        return
    if action:
        raise InvalidInput(f"看不懂「{inc.text}」。{USAGE}")
    await conv.reply(inc.person, inc.message, await issue_signin(runtime, inc.person, now))


# --- the button on the help card ---
@dataclass(frozen=True, slots=True)
class HelpWithConsoleButton:
    """帮助 for someone with a console: the help text, on a card with the 打开后台 button."""

    text: str


@handles(HelpWithConsoleButton)
async def _help_card(ctx: Context, cmd: HelpWithConsoleButton) -> None:
    card = Card(id=ctx.new_card_id(CARD_PREFIX), kind=CardKind.TASK, title="后台（网页版工单台）",
                body="按「打开后台」获取一次性登录链接（与发送「后台」相同）。",
                actions=(CardAction(SIGN_IN_ACTION, "打开后台", ActionStyle.PRIMARY),))
    await ctx.send_card(ctx.actor.id, card, text=cmd.text)


@text_command(*sorted(HELP_WORDS))
async def _help(conv: Conversation, inc: Incoming) -> None:
    """The help words, taken before the conversation's own 帮助 (bot/chat/conversation.py `understand`),
    which everyone else still gets, as do texts that only start with a help word ("help me …")."""
    if inc.args or not may_use_console(inc.person):
        await conv.understand(inc.person, inc.message, inc.text)
        return
    attach_console_links(conv.extra["runtime"])
    await conv.run(HelpWithConsoleButton(help_for(inc.person)), inc.person, inc.message)


@task_action(CARD_PREFIX)
async def _pressed(ctx: Context, stored: StoredCard, action: str, values: dict[str, str]) -> str:
    """打开后台 on the help card: the person gets a link as if they had sent 后台 (the card is theirs:
    core/intake/tickets.py checked; whether they may still use the console is checked now)."""
    if not may_use_console(ctx.actor):
        raise NotAllowed(REFUSAL, reason="console_role")
    registered = _RUNTIMES.get(ctx.service)
    runtime = registered() if registered is not None else None
    if runtime is None:  # a process whose runtime did not register (see the module docstring)
        raise InvalidInput("请发送「后台」获取后台登录链接。")
    await ctx.tell(ctx.actor.id, await issue_signin(runtime, ctx.actor, ctx.now))
    return "已发送后台登录链接"
