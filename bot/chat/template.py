"""Workflow-template admin commands, confirmations, and reopening unsigned closed tickets.

    模板                                   the current template (options and steps)
    模板 帮助                               this grammar
    模板 历史                               versions (who, when, what)
    模板 设置 <名称> <值>                    完工照片 N｜签到照片 开/关｜签到定位 开/关｜签到时限 分钟｜
                                           备件升级 小时｜签字回访 秒｜返修期 天｜质检 开/关
    模板 添加检查 <步骤> <检查>              e.g. 模板 添加检查 complete photos
    模板 去掉检查 <步骤> <检查>              high-risk
    模板 切换 <维修服务|生产工序>             a built-in template
    模板 回滚 <版本>                         back to a stored version
    模板 导入 <JSON>                         a whole template as JSON (Workflow.to_dict)
    模板 试运行 <工单号>                      dry run of the pending draft (or the current template)
    重开未签字工单                            reopen every closed ticket without a signature (asks 确认)
    确认 | 放弃                              confirm / drop the pending high-risk change (15 minutes)
"""

from __future__ import annotations

from contextvars import ContextVar

from bot.chat.conversation import _TEXT_COMMANDS, Conversation, HelpLine, Incoming, text_command
from core.errors import InvalidInput, NotFound
from core.lifecycle.template import (
    Abandon,
    Confirm,
    DryRunTemplate,
    ProposeReopenUnsigned,
    ProposeTemplate,
    ShowTemplate,
    TemplateHistory,
    pending_draft,
)
from core.model import Role
from core.service import Context

TEMPLATE_HELP = (__doc__ or "").split("\n\n", 1)[1].split("\n\n")[0]
_VERBS = {"设置": "option", "添加检查": "add_guard", "去掉检查": "remove_guard", "移除检查": "remove_guard",
          "切换": "switch", "回滚": "rollback", "导入": "import"}
CONFIRM_WORDS = ("确认", "确定")
ABANDON_WORDS = ("放弃",)
_delegating: ContextVar[bool] = ContextVar("delegating", default=False)


@text_command("模板", "流程模板", roles={Role.ADMIN, Role.SUPERVISOR}, usage="模板｜模板 历史｜模板 试运行 工单号",
              summary="查看流程模板", help=(
                  HelpLine("模板 设置/添加检查/去掉检查/切换/回滚/导入", "修改流程模板（发送「模板 帮助」查看用法）",
                           frozenset({Role.ADMIN})),))
async def _template(conv: Conversation, inc: Incoming) -> None:
    args = inc.args
    if not args:
        await conv.run(ShowTemplate(), inc.person, inc.message)
    elif args[0] in {"帮助", "help"}:
        await conv.reply(inc.person, inc.message, "流程模板命令：\n" + TEMPLATE_HELP)
    elif args[0] in {"历史", "版本"}:
        await conv.run(TemplateHistory(), inc.person, inc.message)
    elif args[0] == "试运行":
        if len(args) != 2:
            raise InvalidInput("请写上样本工单号，例如「模板 试运行 GD-20260101-0001」。")
        await conv.run(DryRunTemplate(args[1]), inc.person, inc.message)
    elif args[0] in _VERBS:
        rest = args[1:]
        if args[0] == "导入":
            raw = inc.message.text or ""
            rest = [raw[raw.index("导入") + 2:].strip()]
        await conv.run(ProposeTemplate(_VERBS[args[0]], tuple(rest)), inc.person, inc.message)
    else:
        raise InvalidInput("看不懂这条模板命令。\n" + TEMPLATE_HELP)


@text_command("重开未签字工单", roles={Role.ADMIN}, summary="重开所有缺少客户签字的已结案工单（需确认）")
async def _reopen_unsigned(conv: Conversation, inc: Incoming) -> None:
    await conv.run(ProposeReopenUnsigned(), inc.person, inc.message)


async def _has_pending(conv: Conversation, inc: Incoming) -> bool:
    async with conv.service.uow_factory() as uow:
        ctx = Context(uow=uow, clock=conv.service.clock, actor=inc.person, service=conv.service)
        return await pending_draft(ctx) is not None


async def _other_handler(conv: Conversation, inc: Incoming, mine: object) -> bool:
    """Another feature's 确认/放弃 (e.g. rule changes) gets the message when we have nothing pending."""
    if _delegating.get():
        return False  # the other handler chains back to us: stop here
    for command in _TEXT_COMMANDS:
        if command.handler is not mine and inc.text in command.words and (
                command.roles is None or inc.person.role in command.roles):
            token = _delegating.set(True)
            try:
                await command.handler(conv, inc)
            finally:
                _delegating.reset(token)
            return True
    return False


@text_command(*CONFIRM_WORDS)  # listed in 帮助 by bot.chat.confirmations
async def _confirm(conv: Conversation, inc: Incoming) -> None:
    if inc.args:
        raise InvalidInput("只需回复「确认」两个字。")
    if inc.person.role == Role.ADMIN and await _has_pending(conv, inc):
        await conv.run(Confirm(), inc.person, inc.message)
    elif not await _other_handler(conv, inc, _confirm):
        raise NotFound("没有待确认的操作（或已超过 15 分钟）。")


@text_command(*ABANDON_WORDS)
async def _abandon(conv: Conversation, inc: Incoming) -> None:
    if inc.person.role == Role.ADMIN and await _has_pending(conv, inc):
        await conv.run(Abandon(), inc.person, inc.message)
    elif not await _other_handler(conv, inc, _abandon):
        raise NotFound("没有待确认的操作。")
