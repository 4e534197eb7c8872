"""`后台`: a one-time sign-in link to the staff console (issue 22, docs/console.md).

- `后台` (every staff role with a console: supervisor, admin, quality, front desk, warehouse, expert):
  answers with `PUBLIC_BASE_URL/console/signin/<token>`, valid CONSOLE_LINK_MINUTES, once, for this
  person only. Technicians and customers are refused (and audited, by the runner): technicians work in
  the chat, where their tickets come to them; the console is for overseeing many tickets.
- `后台 退出全部`: ends every console session of the person (all browsers) and voids their unused links.
"""

from __future__ import annotations

from datetime import timedelta

from bot.chat.conversation import Conversation, HelpLine, Incoming, text_command
from core.errors import InvalidInput
from core.model import Role
from storage.console_store import ConsoleStore

# Who has a console (bot/console/scope.py decides which stores each sees).
CONSOLE_ROLES = frozenset({Role.SUPERVISOR, Role.ADMIN, Role.QUALITY, Role.FRONT_DESK, Role.WAREHOUSE,
                           Role.EXPERT})
USAGE = "用法：后台｜后台 退出全部"
REFUSAL = "抱歉，后台只对主管、管理员、质量改进组、前台、仓库管理员和专家开放。技师请直接在聊天里处理工单。"


def signin_url(base_url: str, token: str) -> str:
    return f"{base_url.rstrip('/')}/console/signin/{token}"


@text_command("后台", roles=CONSOLE_ROLES, usage="后台", summary="获取后台（网页版工单台）一次性登录链接",
              help=(HelpLine("后台 退出全部", "让所有浏览器上的后台登录失效"),), refusal=REFUSAL)
async def _console(conv: Conversation, inc: Incoming) -> None:
    runtime = conv.extra["runtime"]
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
    minutes = runtime.settings.console_link_minutes
    token = await store.issue_link(inc.person.id, now=now, valid_for=timedelta(minutes=minutes))
    url = signin_url(runtime.public_base_url, token)
    await conv.reply(inc.person, inc.message,
                     f"后台登录链接（{minutes:g} 分钟内有效，只能打开一次，请勿转发）：\n{url}\n"
                     "在其他设备上退出：发送「后台 退出全部」。")
