"""Chat commands of dispatch: the technician directory, duty, the dispatch rules, the dry run, 接单/拒单.

Grammar (工号 = person id; fields are 字段=值, lists separated by 、 , ， ; ；):

  supervisors and admins (the registry refuses others; the conversation audits every refusal)
    技师 | 技师 列表                         the directory with duty and open load
    技师 查看 <工号>
    技师 添加 <工号> <姓名> [字段=值 …]
    技师 修改 <工号> 字段=值 …
    技师 停用 <工号> | 技师 启用 <工号>
    技师 在岗 <工号> | 技师 离岗 <工号>
        字段: 姓名 电话 资质 技能 不接 门店 主管 上限 在岗(是/否) 位置(纬度,经度) 企业微信 钉钉 飞书
    派单规则                                 weights, filters, offer timeout (policy.describe())
    派单规则 权重 资质=0.5 距离=0.2 负载=0.2 评分=0.1   (any subset; the four must sum to 1; 50% also works)
    派单规则 超时 20分钟                      offer timeout (秒/分钟/小时; a bare number is minutes)
    派单规则 历史 | 派单规则 回滚 <版本>        versions of config kind "dispatch" (0 = shipped defaults)
    测试派单 <工单号> | 派单试算 <工单号> | test dispatch <工单号>     dry run: candidates and exclusions
    转派 <工单号> <工号> [原因]                manual reassignment (offer to that technician)
  technicians
    上班 | 下班 | 在岗 | 离岗                  one's own duty
    接单 [工单号]                             accept the pending offer
    拒单 [工单号] <原因>                       decline it (the reason is required)
"""

from __future__ import annotations

import re
from dataclasses import replace

from bot.chat.conversation import TICKET_NUMBER, Conversation, Incoming, text_command
from core.dispatch.admin import (
    AddTechnician,
    DryRunDispatch,
    ListTechnicians,
    RollbackDispatchPolicy,
    SetDispatchWeights,
    SetDuty,
    SetOfferTimeout,
    SetTechnicianActive,
    ShowDispatchHistory,
    ShowDispatchPolicy,
    ShowTechnician,
    TechnicianFields,
    UpdateTechnician,
)
from core.dispatch.handlers import AcceptOffer, DeclineOffer, ReassignTicket
from core.errors import InvalidInput
from core.model import Role

STAFF = frozenset({Role.SUPERVISOR, Role.ADMIN})
TECHNICIANS = frozenset({Role.TECHNICIAN})
LIST_SEPARATORS = re.compile(r"[、,，;；|]")
ASSIGNMENT = re.compile(r"^([^=＝:：]+)[=＝:：](.*)$")
TRUE_WORDS = {"是", "在岗", "y", "yes", "true", "1", "on"}
FALSE_WORDS = {"否", "离岗", "n", "no", "false", "0", "off"}
FIELD_KEYS = {
    "姓名": "name", "电话": "phone", "手机": "phone", "资质": "certifications", "认证": "certifications",
    "技能": "skills", "类别": "skills", "不接": "excluded_categories", "排除": "excluded_categories",
    "门店": "store_id", "主管": "supervisor_id", "上限": "max_load", "最大负载": "max_load", "在岗": "on_duty",
    "位置": "position", "企业微信": "wecom", "钉钉": "dingtalk", "飞书": "feishu",
}
WEIGHT_KEYS = {"资质": "qualification", "资质匹配": "qualification", "qualification": "qualification",
               "距离": "distance", "distance": "distance", "负载": "load", "当前负载": "load", "load": "load",
               "评分": "rating", "rating": "rating"}
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)\s*(秒|s|分钟|分|min|m|小时|时|h)?$", re.IGNORECASE)
TECHNICIAN_USAGE = ("用法：技师｜技师 查看 工号｜"
                    "技师 添加 工号 姓名 资质=OBD认证 技能=电控类,机械类 门店=S01 主管=sup-li｜"
                    "技师 修改 工号 字段=值｜技师 停用/启用 工号｜技师 在岗/离岗 工号")
RULES_USAGE = ("用法：派单规则｜派单规则 权重 资质=0.4 距离=0.3 负载=0.2 评分=0.1｜派单规则 超时 15分钟｜"
               "派单规则 历史｜派单规则 回滚 版本号")


# --- parsing ---------------------------------------------------------------------------------

def _words(value: str) -> frozenset[str]:
    return frozenset(w.strip() for w in LIST_SEPARATORS.split(value) if w.strip())


def parse_fields(tokens: list[str]) -> TechnicianFields:
    values: dict[str, object] = {}
    identities: list[tuple[str, str]] = []
    for token in tokens:
        match = ASSIGNMENT.match(token)
        if match is None:
            raise InvalidInput(f"看不懂「{token}」：字段请写成 字段=值，例如 门店=S01。{TECHNICIAN_USAGE}")
        key, value = FIELD_KEYS.get(match.group(1).strip()), match.group(2).strip()
        if key is None:
            raise InvalidInput(f"未知的字段「{match.group(1)}」。可用：{'、'.join(FIELD_KEYS)}")
        if key in {"wecom", "dingtalk", "feishu"}:
            if not value:
                raise InvalidInput(f"「{match.group(1)}」后请写账号。")
            identities.append((key, value))
        elif key in {"certifications", "skills", "excluded_categories"}:
            values[key] = frozenset() if value in {"", "无"} else _words(value)
        elif key == "max_load":
            if not re.fullmatch(r"\d{1,3}", value):
                raise InvalidInput(f"上限必须是正整数：{value}")
            values[key] = int(value)
        elif key == "on_duty":
            if value.lower() not in TRUE_WORDS | FALSE_WORDS:
                raise InvalidInput(f"在岗只能填 是/否：{value}")
            values[key] = value.lower() in TRUE_WORDS
        elif key == "position":
            parts = [p for p in re.split(r"[,，\s]+", value) if p]
            try:
                lat, lng = (float(p) for p in parts)
            except ValueError:
                raise InvalidInput(f"位置请写成 纬度,经度，例如 位置=31.23,121.47：{value}") from None
            values[key] = (lat, lng)
        else:
            values[key] = "" if value == "无" else value
    return TechnicianFields(identities=tuple(identities), **values)  # type: ignore[arg-type]


def parse_technician_command(args: list[str]) -> object:
    if not args or args == ["列表"]:
        return ListTechnicians()
    verb, rest = args[0], args[1:]
    if verb == "查看" and len(rest) == 1:
        return ShowTechnician(rest[0])
    if verb == "添加":
        if len(rest) < 2 or ASSIGNMENT.match(rest[1]):
            raise InvalidInput(f"添加技师需要工号和姓名。{TECHNICIAN_USAGE}")
        return AddTechnician(rest[0], replace(parse_fields(rest[2:]), name=rest[1]))
    if verb == "修改" and rest:
        return UpdateTechnician(rest[0], parse_fields(rest[1:]))
    if verb in {"停用", "启用"} and len(rest) == 1:
        return SetTechnicianActive(rest[0], verb == "启用")
    if verb in {"在岗", "离岗", "上班", "下班"} and len(rest) == 1:
        return SetDuty(verb in {"在岗", "上班"}, rest[0])
    raise InvalidInput(f"看不懂这条技师命令。{TECHNICIAN_USAGE}")


def parse_weight(text: str) -> float:
    value = text.strip()
    percent = value.endswith(("%", "％"))
    try:
        number = float(value.rstrip("%％"))
    except ValueError:
        raise InvalidInput(f"权重必须是数字，例如 0.4 或 40%：{text}") from None
    return number / 100 if percent or number > 1 else number


def parse_seconds(text: str) -> float:
    match = _DURATION.match(text.strip())
    if match is None:
        raise InvalidInput(f"无法识别的时长「{text}」，例如 15分钟、900秒、1小时。")
    unit = (match.group(2) or "分钟").lower()
    factor = 1 if unit in {"秒", "s"} else 3600 if unit in {"小时", "时", "h"} else 60
    return float(match.group(1)) * factor


def parse_rules_command(args: list[str]) -> object:
    if not args:
        return ShowDispatchPolicy()
    verb, rest = args[0], args[1:]
    if verb == "权重":
        weights = []
        for token in rest:
            match = ASSIGNMENT.match(token)
            key = WEIGHT_KEYS.get(match.group(1).strip().lower()) if match else None
            if match is None or key is None:
                raise InvalidInput(f"看不懂「{token}」：权重请写成 资质=0.4 距离=0.3 负载=0.2 评分=0.1。")
            weights.append((key, parse_weight(match.group(2))))
        return SetDispatchWeights(tuple(weights))
    if verb in {"超时", "接单时限"} and len(rest) == 1:
        return SetOfferTimeout(parse_seconds(rest[0]))
    if verb == "历史" and not rest:
        return ShowDispatchHistory()
    if verb == "回滚" and len(rest) == 1:
        match = re.fullmatch(r"(?:v|版本)?(\d{1,9})", rest[0], re.IGNORECASE)
        if match is None:
            raise InvalidInput(f"请给出版本号，例如：派单规则 回滚 2（0 = 出厂默认）。{RULES_USAGE}")
        return RollbackDispatchPolicy(int(match.group(1)))
    raise InvalidInput(f"看不懂这条派单规则命令。{RULES_USAGE}")


def split_number(args: list[str]) -> tuple[str | None, str]:
    if args and TICKET_NUMBER.fullmatch(args[0]):
        return args[0].upper(), " ".join(args[1:])
    return None, " ".join(args)


# --- commands --------------------------------------------------------------------------------

@text_command("技师", roles=STAFF, usage="技师｜技师 查看/添加/修改/停用/启用/在岗/离岗 工号",
              summary="技师名单与管理")
async def _technicians(conv: Conversation, inc: Incoming) -> None:
    await conv.run(parse_technician_command(inc.args), inc.person, inc.message)


@text_command("上班", "下班", "在岗", "离岗", roles=TECHNICIANS, usage="上班｜下班",
              summary="设置自己的在岗状态（下班后不再派新单）")
async def _own_duty(conv: Conversation, inc: Incoming) -> None:
    word = inc.text.split(" ", 1)[0]
    if inc.args:
        raise InvalidInput(f"「{word}」后面不用加内容。管理人员设置他人请用「技师 {word} 工号」。")
    await conv.run(SetDuty(word in {"上班", "在岗"}), inc.person, inc.message)


@text_command("派单规则", roles=STAFF, usage="派单规则｜派单规则 权重/超时/历史/回滚", summary="查看/修改派单规则")
async def _rules(conv: Conversation, inc: Incoming) -> None:
    await conv.run(parse_rules_command(inc.args), inc.person, inc.message)


@text_command("测试派单", "派单试算", "test dispatch", "Test dispatch", "TEST DISPATCH", roles=STAFF,
              usage="测试派单 工单号", summary="派单试算：候选技师与排除原因（不改变工单）")
async def _dry_run(conv: Conversation, inc: Incoming) -> None:
    if len(inc.args) != 1 or not TICKET_NUMBER.fullmatch(inc.args[0]):
        raise InvalidInput("请写明工单号，例如：测试派单 GD-20260101-0001")
    await conv.run(DryRunDispatch(inc.args[0].upper()), inc.person, inc.message)


@text_command("转派", roles=STAFF, usage="转派 工单号 技师工号 [原因]", summary="把工单转派给指定技师")
async def _reassign(conv: Conversation, inc: Incoming) -> None:
    if len(inc.args) < 2 or not TICKET_NUMBER.fullmatch(inc.args[0]):
        raise InvalidInput("用法：转派 工单号 技师工号 [原因]，例如：转派 GD-20260101-0001 tech-wang 客户指定")
    await conv.run(ReassignTicket(inc.args[0].upper(), inc.args[1], " ".join(inc.args[2:])), inc.person, inc.message)


@text_command("接单", roles=TECHNICIANS, usage="接单 [工单号]", summary="接受派单",
              refusal="只有被派单的技师可以接单或拒单。")
async def _accept(conv: Conversation, inc: Incoming) -> None:
    number, rest = split_number(inc.args)
    if rest:
        raise InvalidInput("用法：接单 [工单号]，例如：接单 GD-20260101-0001")
    await conv.run(AcceptOffer(number), inc.person, inc.message)


@text_command("拒单", roles=TECHNICIANS, usage="拒单 [工单号] 原因", summary="拒绝派单（需写原因）",
              refusal="只有被派单的技师可以接单或拒单。")
async def _decline(conv: Conversation, inc: Incoming) -> None:
    number, reason = split_number(inc.args)
    await conv.run(DeclineOffer(reason, number), inc.person, inc.message)
