"""The WeCom (企业微信) address book as a DirectorySnapshot, with the app's own secret and token.

Calls (the server API as documented today):
  * `GET department/list` — every department the app can see: id, name, parentid,
    department_leader (userids);
  * `GET user/list?department_id=D` per department — its direct members (the old fetch_child
    recursion is gone, so every department is asked; a member of several departments appears
    under each and is merged).
Why not `user/list_id` (cursor paging): it only answers the 通讯录同步 secret, and since 2022-08-15
new IPs of that secret may not read member details at all; the app's secret needs no extra credential.

What can be relied on: since 2022-06-20 apps created after that date no longer receive mobile,
email, avatar, gender or address from these calls (only after each member's own OAuth consent).
userid, name, department, main_department, position, status, is_leader_in_dept and direct_leader
still come; so `mobile` is taken when present and otherwise left as it is on our side (None here).
status: 1 active, 2 disabled, 4 not activated yet (still a member), 5 left → 2 and 5 are inactive.

Every page is fetched before anything is applied; any failure raises DirectoryFetchFailed.
"""

from __future__ import annotations

from typing import Any

from adapters.wecom.api import TOKEN_ERRCODES, WeComApi, WeComRejected, WeComUnavailable
from core.masterdata.directory import DirectoryDepartment, DirectoryFetchFailed, DirectoryPerson, DirectorySnapshot

PLATFORM = "wecom"
INACTIVE_STATUSES = frozenset({2, 5})
MAX_DEPARTMENTS = 50_000


class WeComDirectory:
    platform = PLATFORM

    def __init__(self, api: WeComApi) -> None:
        self._api = api

    async def fetch(self) -> DirectorySnapshot:
        try:
            answer = await self._get("department/list", {})
            raw_departments = [d for d in answer.get("department") or [] if isinstance(d, dict)]
            if len(raw_departments) > MAX_DEPARTMENTS:
                raise DirectoryFetchFailed(PLATFORM, f"department/list: {len(raw_departments)} departments")
            departments = tuple(_department(d) for d in raw_departments)
            people: list[DirectoryPerson] = []
            for department in departments:
                page = await self._get("user/list", {"department_id": department.external_id})
                people += [_person(u) for u in page.get("userlist") or [] if isinstance(u, dict) and u.get("userid")]
        except (WeComUnavailable, WeComRejected) as exc:
            raise DirectoryFetchFailed(PLATFORM, exc.reason) from exc
        roots = frozenset(d.external_id for d in departments if d.parent_id in (None, "0"))
        return DirectorySnapshot(PLATFORM, departments, tuple(people), root_ids=roots)

    async def _get(self, path: str, params: dict[str, str]) -> dict[str, Any]:
        """A GET with the access token, refreshed once when WeCom calls it invalid (like WeComApi.post)."""
        for attempt in (1, 2):
            token = await self._api.access_token()
            try:
                return await self._api._request("GET", path, params={"access_token": token, **params})
            except WeComRejected as exc:
                if exc.errcode in TOKEN_ERRCODES and attempt == 1:
                    await self._api._invalidate(token)
                    continue
                raise
        raise AssertionError("unreachable")


def _department(raw: dict[str, Any]) -> DirectoryDepartment:
    parent = raw.get("parentid")
    return DirectoryDepartment(
        platform=PLATFORM, external_id=str(raw.get("id")), name=str(raw.get("name") or ""),
        parent_id=None if parent is None else str(parent),
        leader_ids=tuple(str(x) for x in raw.get("department_leader") or []))


def _person(raw: dict[str, Any]) -> DirectoryPerson:
    departments = [str(d) for d in raw.get("department") or []]
    main = raw.get("main_department")
    if main is not None and str(main) in departments:
        departments.remove(str(main))
        departments.insert(0, str(main))
    leaders = raw.get("direct_leader") or []
    try:
        status = int(raw.get("status") or 1)
    except (TypeError, ValueError):
        status = 1
    return DirectoryPerson(
        platform=PLATFORM, external_id=str(raw["userid"]), name=str(raw.get("name") or ""),
        mobile=str(raw["mobile"]) if raw.get("mobile") else None, departments=tuple(departments),
        title=str(raw.get("position") or ""), active=status not in INACTIVE_STATUSES,
        leader_id=str(leaders[0]) if leaders else None)
