"""Chat commands of the organisation (admins): stores, people of every role, and the change-linkage rules.

Grammar (fields are 字段=值; a value may contain spaces; 无 clears it; 试运行 at the end only shows
what would change):

    门店 | 门店 列表
    门店 查看 <编码>
    门店 新增 <编码> 名称=… 地址=… 坐标=纬度,经度 营业时间=… [电话=…]
    门店 修改 <编码> 字段=值 …
    门店 停用 <编码> | 门店 启用 <编码>
    门店 历史 [编码] | 门店 回滚 <版本>
    人员 | 人员 列表 [角色]
    人员 查看 <工号>
    人员 新增 <工号> 姓名=… 角色=主管|技师|管理员|仓库|质检|专家|前台 [门店=… 班组=… 上级=… 手机=…]
    人员 修改 <工号> 字段=值 …               (also 企业微信=… 钉钉=… 飞书=…)
    人员 停用 <工号> | 人员 启用 <工号>
    人员 历史 [工号] | 人员 回滚 <版本>
    联动 | 联动 列表 | 联动 启用 <规则> | 联动 停用 <规则> | 联动 历史 | 联动 检查

Deactivating, changing a role and rollbacks that do either wait for 确认 (bot/chat/confirmations.py).
Anyone else who sends these is refused by the command registry, and the refusal is audited.
"""

from __future__ import annotations

import re

from bot.chat import confirmations
from bot.chat.conversation import Conversation, HelpLine, Incoming, text_command
from core.errors import InvalidInput
from core.masterdata.admin import (
    ROLE_WORDS,
    CancelOrgChange,
    ConfirmOrgChange,
    ListPeople,
    ListStores,
    OrgChange,
    OrgHistory,
    ShowPerson,
    ShowStore,
    pending_change,
)
from core.masterdata.linkage import CheckLinkage, ListLinkageRules, SetLinkageRule, ShowLinkageHistory
from core.model import Role

ADMINS = frozenset({Role.ADMIN})
ASSIGNMENT = re.compile(r"^([^=＝]+)[=＝](.*)$")
DRY_RUN_WORDS = frozenset({"试运行", "预览", "--dry-run"})
STORE_KEYS = {"名称": "name", "名字": "name", "店名": "name", "地址": "address", "坐标": "position",
              "位置": "position", "营业时间": "opening_hours", "电话": "phone", "手机": "phone"}
PERSON_KEYS = {"姓名": "name", "名字": "name", "角色": "role", "门店": "store", "班组": "team", "上级": "supervisor",
               "主管": "supervisor", "手机": "phone", "电话": "phone", "企业微信": "wecom", "钉钉": "dingtalk",
               "飞书": "feishu"}
VERBS = {"新增": "add", "添加": "add", "修改": "update", "停用": "deactivate", "启用": "activate"}
STORE_USAGE = ("用法：门店｜门店 查看 编码｜门店 新增 S04 名称=… 地址=… 坐标=31.23,121.47 营业时间=9:00-18:00｜"
               "门店 修改 编码 字段=值｜门店 停用/启用 编码｜门店 历史 [编码]｜门店 回滚 版本号；"
               "末尾加「试运行」只预览")
PERSON_USAGE = ("用法：人员｜人员 列表 [角色]｜人员 查看 工号｜"
                "人员 新增 工号 姓名=… 角色=主管|技师|管理员|仓库|质检|专家|前台 门店=… 班组=… 上级=… 手机=…｜"
                "人员 修改 工号 字段=值｜人员 停用/启用 工号｜人员 历史 [工号]｜人员 回滚 版本号；"
                "末尾加「试运行」只预览")
LINKAGE_USAGE = "用法：联动｜联动 列表｜联动 启用 规则｜联动 停用 规则｜联动 历史｜联动 检查"
REFUSAL = "抱歉，门店、人员和联动规则只有系统管理员可以管理。如需调整，请联系系统管理员。"


def parse_fields(tokens: list[str], keys: dict[str, str], usage: str) -> tuple[tuple[str, str], ...]:
    """字段=值 tokens; a token without = continues the previous value (an address with spaces)."""
    fields: list[list[str]] = []
    for token in tokens:
        match = ASSIGNMENT.match(token)
        if match is None:
            if not fields:
                raise InvalidInput(f"看不懂「{token}」：字段请写成 字段=值。{usage}")
            fields[-1][1] += " " + token
            continue
        key = keys.get(match.group(1).strip())
        if key is None:
            raise InvalidInput(f"未知的字段「{match.group(1)}」。可用：{'、'.join(keys)}。")
        fields.append([key, match.group(2).strip()])
    return tuple((k, v) for k, v in fields)


def _version(token: str, usage: str) -> int:
    match = re.fullmatch(r"(?:v|版本)?(\d{1,9})", token, re.IGNORECASE)
    if match is None:
        raise InvalidInput(f"请给出版本号，例如：回滚 12。{usage}")
    return int(match.group(1))


def parse_org_command(entity: str, args: list[str]) -> object:
    usage = STORE_USAGE if entity == "store" else PERSON_USAGE
    dry_run = bool(args) and args[-1] in DRY_RUN_WORDS
    if dry_run:
        args = args[:-1]
    if not args or args[0] == "列表":
        if dry_run:
            raise InvalidInput(f"「试运行」只用于修改类命令。{usage}")
        if entity == "store":
            if len(args) > 1:
                raise InvalidInput(usage)
            return ListStores()
        if len(args) > 2:
            raise InvalidInput(usage)
        role = ROLE_WORDS.get(args[1]) if len(args) == 2 else None
        if len(args) == 2 and role is None:
            raise InvalidInput(f"未知的角色「{args[1]}」（可用：主管、技师、管理员、仓库、质检、专家、前台）。")
        return ListPeople(role)
    verb, rest = args[0], args[1:]
    if verb == "查看" and len(rest) == 1 and not dry_run:
        return ShowStore(rest[0]) if entity == "store" else ShowPerson(rest[0])
    if verb == "历史" and len(rest) <= 1 and not dry_run:
        return OrgHistory(entity, rest[0] if rest else None)
    if verb == "回滚" and len(rest) == 1:
        return OrgChange(entity, "", "rollback", dry_run=dry_run, version=_version(rest[0], usage))
    action = VERBS.get(verb)
    if action is not None and rest:
        if action in {"deactivate", "activate"}:
            if len(rest) != 1:
                raise InvalidInput(f"「{verb}」只需要{'编码' if entity == 'store' else '工号'}。{usage}")
            return OrgChange(entity, rest[0], action, dry_run=dry_run)
        fields = parse_fields(rest[1:], STORE_KEYS if entity == "store" else PERSON_KEYS, usage)
        if not fields:
            raise InvalidInput(f"请写明要{verb}的字段，例如 名称=…。{usage}")
        return OrgChange(entity, rest[0], action, fields, dry_run=dry_run)
    raise InvalidInput(f"看不懂这条{'门店' if entity == 'store' else '人员'}命令。{usage}")


def parse_linkage_command(args: list[str]) -> object:
    if not args or args == ["列表"]:
        return ListLinkageRules()
    verb, rest = args[0], args[1:]
    if verb in {"启用", "停用"} and len(rest) == 1:
        return SetLinkageRule(rest[0], verb == "启用")
    if verb == "历史" and not rest:
        return ShowLinkageHistory()
    if verb in {"检查", "运行"} and not rest:
        return CheckLinkage()
    raise InvalidInput(f"看不懂这条联动命令。{LINKAGE_USAGE}")


@text_command("门店", roles=ADMINS, refusal=REFUSAL, usage="门店｜门店 查看/新增/修改/停用/启用/历史/回滚",
              summary="门店管理（变更先预览，停用需确认）")
async def _stores(conv: Conversation, inc: Incoming) -> None:
    await conv.run(parse_org_command("store", inc.args), inc.person, inc.message)


@text_command("人员", roles=ADMINS, refusal=REFUSAL, usage="人员｜人员 查看/新增/修改/停用/启用/历史/回滚",
              summary="各角色人员管理（停用、改角色需确认）")
async def _people(conv: Conversation, inc: Incoming) -> None:
    await conv.run(parse_org_command("person", inc.args), inc.person, inc.message)


@text_command("联动", "联动规则", roles=ADMINS, refusal=REFUSAL, usage="联动｜联动 启用/停用 规则｜联动 历史",
              summary="主数据变更联动规则（过保、合同到期）", help=(
                  HelpLine("联动 检查", "立即按联动规则检查过保和合同到期", ADMINS),))
async def _linkage(conv: Conversation, inc: Incoming) -> None:
    await conv.run(parse_linkage_command(inc.args), inc.person, inc.message)


_has_pending = confirmations.admin_pending(pending_change)


async def _confirm(conv: Conversation, inc: Incoming) -> None:
    await conv.run(ConfirmOrgChange(), inc.person, inc.message)


async def _cancel(conv: Conversation, inc: Incoming) -> None:
    await conv.run(CancelOrgChange(), inc.person, inc.message)


confirmations.register(confirmations.Confirmable("门店与人员", _has_pending, _confirm, _cancel))
