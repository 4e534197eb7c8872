"""Address books on the fake platform servers, in each platform's own wire format.

`attach(fake)` adds the contact routes to a FakeWeCom / FakeFeishu / FakeDingTalkGateway before it
starts; the routes require the access token the fake issued, like the real APIs, and answer in
pages of `page_size` (smaller than the platforms' maxima, so a small directory spans many pages;
the real APIs may also answer fewer items than asked for). `fail_request(n)` makes the n-th
directory request from now fail the platform's way (HTTP 500; a DingTalk errcode), to test a sync
that breaks midway. Tests edit `departments` / `users` between runs (rename, remove, disable).

Wire formats (as documented by the platforms):
  * WeCom: GET /cgi-bin/department/list → {errcode, errmsg, department: [{id, name, parentid,
    order, department_leader}]}; GET /cgi-bin/user/list?department_id= → {errcode, errmsg,
    userlist: [{userid, name, department, main_department, position, status, mobile?,
    is_leader_in_dept, direct_leader}]} (not paged: one request per department).
  * Feishu: GET /open-apis/contact/v3/departments/{id}/children?fetch_child=true&page_size&page_token
    and GET /open-apis/contact/v3/users/find_by_department?department_id=&page_size&page_token →
    {code, msg, data: {has_more, page_token, items}} (Bearer tenant token checked by the fake's middleware).
  * DingTalk: POST /topapi/v2/department/listsub?access_token= {dept_id} → {errcode, errmsg, result:
    [{dept_id, name, parent_id}]}; POST /topapi/v2/user/list?access_token= {dept_id, cursor, size} →
    {errcode, errmsg, result: {has_more, next_cursor, list: [{userid, name, mobile?, title,
    dept_id_list, leader, active}]}}.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from tests.fakes.dingtalk_gateway import FakeDingTalkGateway
from tests.fakes.feishu_server import FakeFeishu
from tests.fakes.wecom_server import FakeWeCom


@dataclass
class _Directory:
    departments: list[dict[str, Any]] = field(default_factory=list)
    users: list[dict[str, Any]] = field(default_factory=list)
    page_size: int = 2
    requests: int = 0  # directory requests answered or failed
    _fail_at: set[int] = field(default_factory=set)

    def fail_request(self, n: int = 1) -> None:
        """The n-th directory request from now (1 = the next) fails."""
        self._fail_at.add(self.requests + n)

    def _count(self) -> bool:
        """Count a request; True when this one must fail."""
        self.requests += 1
        if self.requests in self._fail_at:
            self._fail_at.discard(self.requests)
            return True
        return False

    def user(self, user_id: str) -> dict[str, Any]:
        return next(u for u in self.users if self._id(u) == user_id)

    def remove(self, user_id: str) -> None:
        self.users = [u for u in self.users if self._id(u) != user_id]

    @staticmethod
    def _id(user: dict[str, Any]) -> str:
        return str(user.get("userid") or user.get("open_id"))


class WeComDirectoryServer(_Directory):
    def attach(self, fake: FakeWeCom) -> WeComDirectoryServer:
        self.fake = fake
        fake.extra_routes.append(self._routes)
        return self

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/cgi-bin/department/list", self._departments)
        app.router.add_get("/cgi-bin/user/list", self._users)

    def _gate(self, request: web.Request) -> web.Response | None:
        self.fake._record(request, None)
        if (denied := self.fake._gate(request)) is not None:
            return denied
        if self._count():
            return web.Response(status=500, text="internal error")
        return None

    async def _departments(self, request: web.Request) -> web.Response:
        if (denied := self._gate(request)) is not None:
            return denied
        return web.json_response({"errcode": 0, "errmsg": "ok", "department": self.departments})

    async def _users(self, request: web.Request) -> web.Response:
        if (denied := self._gate(request)) is not None:
            return denied
        try:
            department = int(request.query["department_id"])
        except (KeyError, ValueError):
            return web.json_response({"errcode": 40009, "errmsg": "invalid department"})
        if not any(d["id"] == department for d in self.departments):
            return web.json_response({"errcode": 60003, "errmsg": "department not found"})
        members = [u for u in self.users if department in u.get("department", [])]
        return web.json_response({"errcode": 0, "errmsg": "ok", "userlist": members})


class FeishuDirectoryServer(_Directory):
    def attach(self, fake: FakeFeishu) -> FeishuDirectoryServer:
        self.fake = fake
        fake.extra_routes.append(self._routes)
        return self

    def _routes(self, app: web.Application) -> None:
        app.router.add_get("/open-apis/contact/v3/departments/{department_id}/children", self._children)
        app.router.add_get("/open-apis/contact/v3/users/find_by_department", self._users)

    def _page(self, request: web.Request, items: list[dict[str, Any]]) -> web.Response:
        if self._count():
            return web.json_response({"code": 1, "msg": "internal error"}, status=500)
        try:
            size = int(request.query.get("page_size", "10"))
            start = int(request.query.get("page_token") or "0")
        except ValueError:
            return web.json_response({"code": 99992402, "msg": "field validation failed"}, status=400)
        if not 1 <= size <= 50:
            return web.json_response({"code": 99992402, "msg": "page_size out of range"}, status=400)
        end = start + min(size, self.page_size)
        has_more = end < len(items)
        data: dict[str, Any] = {"has_more": has_more, "items": items[start:end]}
        if has_more:
            data["page_token"] = str(end)
        return web.json_response({"code": 0, "msg": "success", "data": data})

    async def _children(self, request: web.Request) -> web.Response:
        if request.query.get("department_id_type") != "open_department_id":
            return web.json_response({"code": 99992402, "msg": "department_id_type expected"}, status=400)
        parent = request.match_info["department_id"]
        if request.query.get("fetch_child") == "true":
            found, frontier = [], {parent}
            while frontier:
                level = [d for d in self.departments if d["parent_department_id"] in frontier]
                found += level
                frontier = {d["open_department_id"] for d in level}
        else:
            found = [d for d in self.departments if d["parent_department_id"] == parent]
        return self._page(request, found)

    async def _users(self, request: web.Request) -> web.Response:
        if request.query.get("user_id_type") != "open_id":
            return web.json_response({"code": 99992402, "msg": "user_id_type expected"}, status=400)
        department = request.query.get("department_id", "")
        return self._page(request, [u for u in self.users if department in u.get("department_ids", [])])


class DingTalkDirectoryServer(_Directory):
    def attach(self, fake: FakeDingTalkGateway) -> DingTalkDirectoryServer:
        self.fake = fake
        fake.extra_routes.append(self._routes)
        return self

    def _routes(self, app: web.Application) -> None:
        app.router.add_post("/topapi/v2/department/listsub", self._listsub)
        app.router.add_post("/topapi/v2/user/list", self._users)

    async def _gate(self, request: web.Request) -> tuple[dict[str, Any], web.Response | None]:
        recorded = await self.fake._record(request)
        body = recorded.body if isinstance(recorded.body, dict) else {}
        if request.query.get("access_token") not in self.fake._tokens:
            return body, web.json_response({"errcode": 40014, "errmsg": "不合法的access_token"})
        if self._count():
            return body, web.json_response({"errcode": -1, "errmsg": "系统繁忙"})
        return body, None

    async def _listsub(self, request: web.Request) -> web.Response:
        body, denied = await self._gate(request)
        if denied is not None:
            return denied
        parent = body.get("dept_id")
        if not isinstance(parent, int):
            return web.json_response({"errcode": 400002, "errmsg": "无效的参数 dept_id"})
        found = [d for d in self.departments if d["parent_id"] == parent]
        return web.json_response({"errcode": 0, "errmsg": "ok", "result": found, "request_id": "fake"})

    async def _users(self, request: web.Request) -> web.Response:
        body, denied = await self._gate(request)
        if denied is not None:
            return denied
        dept, cursor, size = body.get("dept_id"), body.get("cursor"), body.get("size")
        if not all(isinstance(v, int) for v in (dept, cursor, size)) or not 1 <= int(size or 0) <= 100:
            return web.json_response({"errcode": 400002, "errmsg": "无效的参数"})
        members = [u for u in self.users if dept in u.get("dept_id_list", [])]
        end = cursor + min(size, self.page_size)
        result: dict[str, Any] = {"has_more": end < len(members), "list": members[cursor:end]}
        if result["has_more"]:
            result["next_cursor"] = end
        return web.Response(text=json.dumps({"errcode": 0, "errmsg": "ok", "result": result, "request_id": "fake"},
                                            ensure_ascii=False), content_type="application/json")
