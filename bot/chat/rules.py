"""Chat commands for the classification rules (admins): `规则 …` and 确认/取消 of a risky rule change.

The grammar is `nlp.rule_commands.RULE_HELP` (also the reply to `规则 帮助`). Anyone else
who sends `规则 …` is refused by the command registry, politely, and the conversation audits
the attempt ("command_refused").
After a change commits, this process installs the new rules at once; the others pick the
new version up in their refresh sweep (every 2 s), without a restart.
"""

from __future__ import annotations

from bot.chat import confirmations
from bot.chat.conversation import Conversation, Incoming, text_command
from bot.rules.admin import Installed, RunRuleCommand, pending_change
from bot.rules.dry_run import DryRunPlan, render_dry_run
from bot.rules.rulebook import RuleBook
from core.errors import InvalidInput
from core.model import Role
from nlp.errors import RuleCommandError
from nlp.rule_commands import Cancel, Confirm, DryRun, RuleCommand, parse_rule_command

REFUSAL = "抱歉，规则管理命令只有系统管理员可以使用。如需调整故障分类规则，请联系系统管理员。"


@text_command("规则", "rule", "rules", "/规则", roles={Role.ADMIN}, usage="规则｜规则 帮助",
              summary="故障分类规则管理", refusal=REFUSAL)
async def _rules(conv: Conversation, inc: Incoming) -> None:
    try:
        # The raw text: `规则 测试` keeps the message exactly as typed.
        command = parse_rule_command(inc.message.text or inc.text)
    except RuleCommandError as error:
        raise InvalidInput(error.user_message, **error.data) from error
    if command is None or isinstance(command, Confirm | Cancel):
        raise InvalidInput("看不懂这条规则命令。发送「规则 帮助」查看用法。")
    await run(conv, inc, command)


async def run(conv: Conversation, inc: Incoming, command: RuleCommand) -> None:
    live = conv.service.classifier if isinstance(conv.service.classifier, RuleBook) else None
    # Two admins saving at once: the loser's command is re-run on the new rules (core.errors.StaleRead).
    outcome = await conv.run(RunRuleCommand(command), inc.person, inc.message)
    if isinstance(outcome, Installed) and live is not None:
        await live.install(outcome.version, outcome.payload)
    elif isinstance(outcome, DryRunPlan) and isinstance(command, DryRun):
        await conv.reply(inc.person, inc.message, await render_dry_run(outcome, command.text, live))


_has_pending = confirmations.admin_pending(pending_change)


async def _confirm(conv: Conversation, inc: Incoming) -> None:
    await run(conv, inc, Confirm())


async def _cancel(conv: Conversation, inc: Incoming) -> None:
    await run(conv, inc, Cancel())


confirmations.register(confirmations.Confirmable("故障分类规则", _has_pending, _confirm, _cancel))
