"""The Feishu (飞书) contact directory as a DirectorySnapshot (contact v3, tenant_access_token).

Calls:
  * `GET /contact/v3/departments/0/children?fetch_child=true` — every department below the root the
    app's contact scope covers, paged with page_token (page_size ≤ 50);
  * `GET /contact/v3/users/find_by_department?department_id=D` for the root ("0") and each
    department — its direct members, paged the same way.
Ids are open_id (`user_id_type=open_id`): the id Feishu's message events carry as the sender, so a
synced person is recognised when they write. Departments are open_department_id.
What can be relied on: open_id, department_ids and status always; name needs the
contact:user.base:readonly scope, mobile contact:user.phone:readonly (absent → left as it is on our
side); job_title and leader_user_id when the app has the employee/organisation scopes.
Inactive: status.is_frozen, is_resigned or is_exited. Any failed page raises DirectoryFetchFailed.
"""

from __future__ import annotations

from typing import Any

from adapters.feishu.api import FeishuApi
from core.errors import DeliveryError
from core.masterdata.directory import DirectoryDepartment, DirectoryFetchFailed, DirectoryPerson, DirectorySnapshot

PLATFORM = "feishu"
ROOT = "0"
PAGE_SIZE = 50
MAX_PAGES = 10_000  # a paging loop that never ends is a fault, not a directory


class FeishuDirectory:
    platform = PLATFORM

    def __init__(self, api: FeishuApi) -> None:
        self._api = api

    async def fetch(self) -> DirectorySnapshot:
        try:
            raw_departments = await self._pages(f"/contact/v3/departments/{ROOT}/children", {
                "department_id_type": "open_department_id", "user_id_type": "open_id", "fetch_child": "true"})
            departments = tuple(_department(d) for d in raw_departments
                                if not (d.get("status") or {}).get("is_deleted"))
            people = []
            for department_id in (ROOT, *(d.external_id for d in departments)):
                for raw in await self._pages("/contact/v3/users/find_by_department", {
                        "department_id": department_id, "department_id_type": "open_department_id",
                        "user_id_type": "open_id"}):
                    if raw.get("open_id"):
                        people.append(_person(raw))
        except DeliveryError as exc:
            raise DirectoryFetchFailed(PLATFORM, exc.reason) from exc
        return DirectorySnapshot(PLATFORM, departments, tuple(people), root_ids=frozenset({ROOT}))

    async def _pages(self, path: str, params: dict[str, str]) -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = []
        token = ""
        seen: set[str] = set()
        for _ in range(MAX_PAGES):
            query = {**params, "page_size": str(PAGE_SIZE), **({"page_token": token} if token else {})}
            answer = await self._api.call("GET", path, params=query)
            data = answer.get("data") or {}
            items += [i for i in data.get("items") or [] if isinstance(i, dict)]
            token = str(data.get("page_token") or "")
            if not data.get("has_more"):
                return items
            if not token or token in seen:
                raise DirectoryFetchFailed(PLATFORM, f"{path}: has_more without a new page_token")
            seen.add(token)
        raise DirectoryFetchFailed(PLATFORM, f"{path}: more than {MAX_PAGES} pages")


def _department(raw: dict[str, Any]) -> DirectoryDepartment:
    parent = raw.get("parent_department_id")
    leader = raw.get("leader_user_id")
    return DirectoryDepartment(
        platform=PLATFORM, external_id=str(raw.get("open_department_id") or raw.get("department_id") or ""),
        name=str(raw.get("name") or ""), parent_id=None if parent is None else str(parent),
        leader_ids=(str(leader),) if leader else ())


def _person(raw: dict[str, Any]) -> DirectoryPerson:
    status = raw.get("status") or {}
    inactive = bool(status.get("is_frozen") or status.get("is_resigned") or status.get("is_exited"))
    leader = raw.get("leader_user_id")
    return DirectoryPerson(
        platform=PLATFORM, external_id=str(raw["open_id"]), name=str(raw.get("name") or ""),
        mobile=str(raw["mobile"]) if raw.get("mobile") else None,
        departments=tuple(str(d) for d in raw.get("department_ids") or []),
        title=str(raw.get("job_title") or ""), active=not inactive, leader_id=str(leader) if leader else None)
