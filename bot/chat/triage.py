"""Chat commands for the triage queue (supervisors and admins).

    分诊                       the tickets waiting in 待分诊, oldest first, and the categories to choose from
    分诊 <工单号> <分类>         classify one: category set, 待分诊 → 待派单 (dispatch follows as for any new job)

Anyone else is refused by the command registry, politely, and the conversation audits the
attempt ("command_refused").
"""

from __future__ import annotations

from bot.chat.conversation import TICKET_NUMBER, Conversation, Incoming, text_command
from bot.rules.rulebook import RuleBook
from core.errors import InvalidInput
from core.intake.triage import ClassifyTicket, ListTriage
from core.model import Role
from nlp.normalize import normalize

STAFF = {Role.SUPERVISOR, Role.ADMIN}
USAGE = "用法：「分诊」查看待分诊工单；「分诊 工单号 分类」完成分诊，例如「分诊 GD-20260101-0001 机械类」。"
REFUSAL = "抱歉，分诊只有主管和管理员可以操作。您的工单会由主管尽快处理。"


def live_categories(conv: Conversation) -> tuple[str, ...]:
    """Category names of the rules this process classifies with, most preferred first."""
    classifier = conv.service.classifier
    if isinstance(classifier, RuleBook):
        return tuple(c.name for c in classifier.rules.by_precedence())
    return ()


@text_command("分诊", "分诊队列", roles=STAFF, usage="分诊｜分诊 工单号 分类", summary="待分诊工单：查看与人工分类",
              refusal=REFUSAL)
async def _triage(conv: Conversation, inc: Incoming) -> None:
    categories = live_categories(conv)
    if not inc.args:
        await conv.run(ListTriage(categories), inc.person, inc.message)
        return
    if len(inc.args) != 2 or not TICKET_NUMBER.fullmatch(inc.args[0]):
        raise InvalidInput(f"看不懂这条分诊命令。{USAGE}")
    number, category = inc.args[0].upper(), inc.args[1]
    # Compared like the rules compare names (full-width, traditional characters, case).
    known = next((name for name in categories if normalize(name) == normalize(category)), category)
    await conv.run(ClassifyTicket(number, known, categories), inc.person, inc.message)
