"""The demo directory: loaded into an empty database so the playground is playable at once."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import literal, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlmodel import col

from bot.settings import is_loopback
from core.hub.api import API_PERSON_PREFIX
from core.model import Person, Role
from storage.tables import IdentityRow, PersonRow, StoreRow, TechnicianRow, TicketRow

STORES = [
    ("S01", "浦东张江店", 31.2040, 121.5908, "上海市浦东新区张江路 100 号"),
    ("S02", "徐汇漕河泾店", 31.1705, 121.3970, "上海市徐汇区宜山路 900 号"),
    ("S03", "杭州滨江店", 30.2084, 120.2106, "杭州市滨江区江南大道 588 号"),
]

# id, name, role, store, supervisor, certifications, skills, excluded categories
PEOPLE: list[tuple[str, str, Role, str | None, str | None, list[str], list[str], list[str]]] = [
    ("admin", "系统管理员 周敏", Role.ADMIN, None, None, [], [], []),
    ("sup-li", "主管 李强", Role.SUPERVISOR, "S01", None, [], [], []),
    ("sup-chen", "主管 陈静", Role.SUPERVISOR, "S03", None, [], [], []),
    ("wh-zhao", "仓管 赵敏", Role.WAREHOUSE, "S01", "sup-li", [], [], []),
    ("qa-sun", "质量改进组 孙悦", Role.QUALITY, None, None, [], [], []),
    ("tech-wang", "技师 王师傅", Role.TECHNICIAN, "S01", "sup-li", ["OBD认证"], ["电控类", "机械类"], []),
    ("tech-zhang", "技师 张师傅", Role.TECHNICIAN, "S01", "sup-li", [], ["机械类"], ["电控类"]),
    ("tech-liu", "技师 刘师傅", Role.TECHNICIAN, "S02", "sup-li", ["OBD认证", "空调R134a操作证"],
     ["电控类", "空调类"], ["机械类"]),
    ("tech-huang", "技师 黄师傅", Role.TECHNICIAN, "S02", "sup-li", ["空调R134a操作证"], ["机械类", "空调类"], []),
    ("tech-xu", "技师 徐师傅", Role.TECHNICIAN, "S03", "sup-chen", ["OBD认证", "电梯维保证"],
     ["电控类", "机械类", "电梯类"], []),
    ("cust-demo", "客户 演示", Role.CUSTOMER, None, None, [], [], []),
]


def demo_wanted(load_demo: str, bind: str | None) -> bool:
    """LOAD_DEMO: `on` loads the demo into an empty database whatever the bind; `auto` only when
    bound to a loopback address (a local trial: on a network bind, or with no bind at all as in
    `ticketbot dingtalk`, the database is a real directory, and demo technicians would get real
    jobs); anything else never."""
    value = load_demo.strip().lower()
    if value in {"on", "yes", "true", "1"}:
        return True
    return value == "auto" and bind is not None and is_loopback(bind)


async def directory_is_empty(sessions: async_sessionmaker[AsyncSession]) -> bool:
    """No organisation yet: no store, no ticket, nobody but the people that stand for API clients
    (`ticketbot api-client add` makes one, and may well run before the first `serve`: issue 20/23).
    Anything else is someone's real directory, and demo technicians would get its real jobs."""
    async with sessions() as session:
        for table in (StoreRow, TicketRow):
            if (await session.execute(select(literal(1)).select_from(table).limit(1))).first() is not None:
                return False
        someone = select(col(PersonRow.id)).where(col(PersonRow.id).not_like(f"{API_PERSON_PREFIX}%")).limit(1)
        return (await session.execute(someone)).first() is None


async def load_demo(sessions: async_sessionmaker[AsyncSession], now: datetime) -> int:
    """Insert the demo directory; existing ids are left alone. Returns people added."""
    added = 0
    async with sessions() as session, session.begin():
        for store_id, name, lat, lng, address in STORES:
            if await session.get(StoreRow, store_id) is None:
                session.add(StoreRow(id=store_id, name=name, lat=lat, lng=lng, address=address))
        stores = {s[0]: s for s in STORES}
        for pid, name, role, store, supervisor, certs, skills, excluded in PEOPLE:
            if await session.get(PersonRow, pid) is not None:
                continue
            person = Person(id=pid, name=name, role=role, store_id=store, supervisor_id=supervisor)
            session.add(PersonRow(id=person.id, name=person.name, role=role.value, store_id=store,
                                  supervisor_id=supervisor, phone=None, preferred_channel="local", created_at=now))
            session.add(IdentityRow(platform="local", external_id=pid, person_id=pid))
            if role == Role.TECHNICIAN:
                last_lat, last_lng = (stores[store][2], stores[store][3]) if store else (None, None)
                session.add(TechnicianRow(person_id=pid, certifications=certs, skills=skills,
                                          excluded_categories=excluded, last_lat=last_lat, last_lng=last_lng,
                                          last_position_at=None, on_duty=True, max_load=5,
                                          rating_sum=4.6 * 5, rating_count=5))
            added += 1
    return added
