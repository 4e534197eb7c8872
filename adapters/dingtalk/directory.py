"""The DingTalk (钉钉) address book as a DirectorySnapshot (the topapi v2 contact calls on oapi).

Calls (POST, `?access_token=`, JSON bodies, `{errcode, errmsg, result}` answers):
  * `topapi/v2/department/listsub {"dept_id": D}` — the direct sub-departments of D, walked from
    the root (1) breadth first;
  * `topapi/v2/user/list {"dept_id": D, "cursor": C, "size": 100}` for the root and each
    department — its direct members, paged with `result.has_more` / `result.next_cursor`.
The access token is the sender's (`/v1.0/oauth2/accessToken`, shared through the TokenCache): the
new-style token of an internal app is accepted by the oapi calls too.
What can be relied on: userid (the id robot messages carry as senderStaffId), name, dept_id_list,
title, leader; mobile only with the 通讯录个人信息读 permission (absent → left as it is on our side).
`active` in these answers means "has activated DingTalk", not "employed": people who left are simply
no longer listed, so every listed member counts as active.
"""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from adapters.dingtalk.sender import DingTalkSender
from core.errors import DeliveryError
from core.masterdata.directory import DirectoryDepartment, DirectoryFetchFailed, DirectoryPerson, DirectorySnapshot

PLATFORM = "dingtalk"
ROOT = "1"
PAGE_SIZE = 100
MAX_PAGES = 10_000
MAX_DEPARTMENTS = 50_000
DEFAULT_OAPI_BASE = "https://oapi.dingtalk.com"
# 40014 invalid access_token, 42001 expired, 40001 invalid credential: fetch a new token once.
TOKEN_ERRCODES = frozenset({40001, 40014, 42001})


class DingTalkDirectory:
    platform = PLATFORM

    def __init__(self, sender: DingTalkSender, oapi_base: str = DEFAULT_OAPI_BASE) -> None:
        self._sender = sender
        self._base = oapi_base.rstrip("/")

    async def fetch(self) -> DirectorySnapshot:
        try:
            departments: list[DirectoryDepartment] = []
            queue = [ROOT]
            seen = {ROOT}
            while queue:
                parent = queue.pop(0)
                answer = await self._call("topapi/v2/department/listsub", {"dept_id": int(parent)})
                for raw in answer.get("result") or []:
                    if not isinstance(raw, dict) or raw.get("dept_id") is None:
                        continue
                    department = _department(raw)
                    if department.external_id in seen:
                        continue
                    seen.add(department.external_id)
                    departments.append(department)
                    queue.append(department.external_id)
                if len(departments) > MAX_DEPARTMENTS:
                    raise DirectoryFetchFailed(PLATFORM, f"more than {MAX_DEPARTMENTS} departments")
            people: list[DirectoryPerson] = []
            leaders: dict[str, list[str]] = {}
            for department_id in (ROOT, *(d.external_id for d in departments)):
                for raw in await self._members(department_id):
                    people.append(_person(raw))
                    if raw.get("leader"):
                        leaders.setdefault(department_id, []).append(str(raw["userid"]))
        except DeliveryError as exc:
            raise DirectoryFetchFailed(PLATFORM, exc.reason) from exc
        with_leaders = tuple(DirectoryDepartment(d.platform, d.external_id, d.name, d.parent_id,
                                                 tuple(leaders.get(d.external_id, ()))) for d in departments)
        return DirectorySnapshot(PLATFORM, with_leaders, tuple(people), root_ids=frozenset({ROOT}))

    async def _members(self, department_id: str) -> list[dict[str, Any]]:
        members: list[dict[str, Any]] = []
        cursor = 0
        seen: set[int] = set()
        for _ in range(MAX_PAGES):
            answer = await self._call("topapi/v2/user/list", {"dept_id": int(department_id), "cursor": cursor,
                                                              "size": PAGE_SIZE, "contain_access_limit": False,
                                                              "language": "zh_CN"})
            result = answer.get("result") or {}
            members += [m for m in result.get("list") or [] if isinstance(m, dict) and m.get("userid")]
            if not result.get("has_more"):
                return members
            cursor = int(result.get("next_cursor") or 0)
            if cursor in seen or cursor <= 0:
                raise DirectoryFetchFailed(PLATFORM, f"user/list: has_more without a new cursor (dept {department_id})")
            seen.add(cursor)
        raise DirectoryFetchFailed(PLATFORM, f"user/list: more than {MAX_PAGES} pages (dept {department_id})")

    async def _call(self, path: str, body: dict[str, Any]) -> dict[str, Any]:
        token = await self._sender._access_token()
        answer = await self._post(path, body, token)
        if int(answer.get("errcode") or 0) in TOKEN_ERRCODES:
            token = await self._sender._access_token(stale=token)
            answer = await self._post(path, body, token)
        errcode = int(answer.get("errcode") or 0)
        if errcode:
            raise DirectoryFetchFailed(PLATFORM, f"{path}: errcode {errcode} {answer.get('errmsg', '')}".strip())
        return answer

    async def _post(self, path: str, body: dict[str, Any], token: str) -> dict[str, Any]:
        url = f"{self._base}/{path}"
        try:
            async with self._sender._http().post(url, params={"access_token": token}, json=body) as response:
                text = await response.text()
                status = response.status
        except (aiohttp.ClientError, TimeoutError) as exc:
            raise DirectoryFetchFailed(PLATFORM, f"{path}: network error {exc!r}") from exc
        if status != 200:
            raise DirectoryFetchFailed(PLATFORM, f"{path}: HTTP {status} {text[:200]}")
        try:
            data = json.loads(text) if text else {}
        except ValueError as exc:
            raise DirectoryFetchFailed(PLATFORM, f"{path}: answer is not JSON") from exc
        if not isinstance(data, dict):
            raise DirectoryFetchFailed(PLATFORM, f"{path}: unexpected answer")
        return data


def _department(raw: dict[str, Any]) -> DirectoryDepartment:
    parent = raw.get("parent_id")
    return DirectoryDepartment(platform=PLATFORM, external_id=str(raw["dept_id"]), name=str(raw.get("name") or ""),
                               parent_id=None if parent is None else str(parent))


def _person(raw: dict[str, Any]) -> DirectoryPerson:
    return DirectoryPerson(
        platform=PLATFORM, external_id=str(raw["userid"]), name=str(raw.get("name") or ""),
        mobile=str(raw["mobile"]) if raw.get("mobile") else None,
        departments=tuple(str(d) for d in raw.get("dept_id_list") or []),
        title=str(raw.get("title") or ""), active=True)
