"""Bulk import of master data as one audited command per batch of rows (`ticketbot import KIND`).

Each row is validated against the database and then written; every check of a row happens
before its first write (storage's upserts are written that way too), so a refused row leaves
nothing behind while the rows around it are saved. One audit event per batch names the keys
it created and updated (`<kind>_imported`): one per row would cost more than the row itself at
100,000 assets. Personal data (names, phones, addresses) never goes into the audit trail.

The batch takes the audit chain's lock first (the lock order of core/timers.py): two admins
importing at once on PostgreSQL then run batch after batch instead of deadlocking on rows both
write, and an upsert by natural key makes the later one update what the earlier one created.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field

from core.errors import InvalidInput
from core.masterdata.identifiers import normalise_plate, normalise_sn, normalise_vin
from core.masterdata.linkage import on_asset_changed, on_contract_changed
from core.masterdata.model import (
    AssetRecord,
    ContractRecord,
    CustomerRecord,
    PersonRecord,
    StoreRecord,
    TeamRecord,
    generated_asset_id,
)
from core.masterdata.store import MasterDataStore
from core.model import ROLE_LABELS, Role
from core.service import Context, handles

KINDS = ("stores", "teams", "people", "customers", "assets", "contracts")
PLATFORM_LABELS = {"wecom": "企业微信", "dingtalk": "钉钉", "feishu": "飞书"}
ImportRecord = StoreRecord | TeamRecord | PersonRecord | CustomerRecord | AssetRecord | ContractRecord


@dataclass(frozen=True, slots=True)
class ImportItem:
    row: int  # the row in the file (1 = the header), for the report
    record: ImportRecord  # assets: id "" = not given (found by SN/VIN/plate, else generated)


@dataclass(frozen=True, slots=True)
class ImportMasterData:
    kind: str
    items: tuple[ImportItem, ...]
    # people: every id in the file, so a supervisor listed in a later row (or batch) is known.
    file_ids: frozenset[str] = frozenset()


@dataclass(frozen=True, slots=True)
class RowFailure:
    row: int
    field: str | None
    message: str


@dataclass(slots=True)
class ImportResult:
    created: list[str] = field(default_factory=list)
    updated: list[str] = field(default_factory=list)
    failures: list[RowFailure] = field(default_factory=list)
    # people: technicians this batch deactivated or moved to another role. Their open jobs go back to
    # dispatch afterwards, one person per transaction (ReleaseJobsOf): releasing locks tickets, and
    # this batch holds the audit chain's head, which comes after tickets in the lock order.
    departed: list[str] = field(default_factory=list)


@handles(ImportMasterData)
async def import_master_data(ctx: Context, cmd: ImportMasterData) -> ImportResult:
    ctx.require_role(Role.ADMIN)
    if cmd.kind not in KINDS:
        raise InvalidInput(f"不支持导入「{cmd.kind}」", kind=cmd.kind)
    await ctx.uow.lock_audit_chain(ctx.now)
    md = ctx.uow.masterdata()
    result = ImportResult()
    for item in cmd.items:
        try:
            key, created = await _import_one(ctx, md, cmd, item.record, result)
        except InvalidInput as error:
            result.failures.append(RowFailure(item.row, error.data.get("field"), error.user_message))
            continue
        (result.created if created else result.updated).append(key)
    if result.created or result.updated:
        payload: dict[str, object] = {"created": result.created, "updated": result.updated,
                                      "rejected_rows": sorted({f.row for f in result.failures})}
        if cmd.kind == "people":
            # core/dispatch/live.py reloads the people an event names (person_ids).
            payload["person_ids"] = result.created + result.updated
        await ctx.audit(f"{cmd.kind}_imported", payload)
    return result


async def _import_one(ctx: Context, md: MasterDataStore, cmd: ImportMasterData,
                      record: ImportRecord, result: ImportResult) -> tuple[str, bool]:
    match record:
        case StoreRecord():
            return record.code, await md.upsert_store(record)
        case TeamRecord():
            return record.code, await md.upsert_team(record)
        case PersonRecord():
            await _check_person(ctx, cmd, record)
            before = await ctx.uow.get_person(record.id)
            created = await md.upsert_person(record, at=ctx.now)
            if (before is not None and before.role is Role.TECHNICIAN and before.active
                    and (record.role is not Role.TECHNICIAN or not record.active)):
                result.departed.append(record.id)
            return record.id, created
        case CustomerRecord():
            return record.id, await md.upsert_customer(record, at=ctx.now)
        case AssetRecord():
            asset = record if record.id else await _identify_asset(md, record)
            previous = await md.get_asset(asset.id)
            created = await md.upsert_asset(asset)
            await on_asset_changed(ctx, previous, asset)  # locks no ticket: the head-first order holds
            return asset.id, created
        case ContractRecord():
            assets = tuple([await _asset_reference(md, ref) for ref in record.asset_ids])
            contract = ContractRecord(record.number, record.customer_id, assets, record.level, record.valid_from,
                                      record.valid_to)
            old_contract = await md.get_contract(contract.number)
            created = await md.upsert_contract(contract)
            await on_contract_changed(ctx, old_contract, contract)
            return record.number, created
    raise InvalidInput("无法识别的导入记录")  # unreachable: the union is matched exhaustively above


async def _check_person(ctx: Context, cmd: ImportMasterData, person: PersonRecord) -> None:
    supervisor = person.supervisor_id
    if supervisor is not None:
        if supervisor == person.id:
            raise InvalidInput("直属主管不能是本人", field="supervisor")
        if supervisor not in cmd.file_ids:
            found = await ctx.uow.get_person(supervisor)
            if found is None:
                raise InvalidInput(f"直属主管「{supervisor}」不存在", field="supervisor", person=supervisor)
            if found.role == Role.CUSTOMER:
                raise InvalidInput(f"直属主管「{supervisor}」是客户，不是员工", field="supervisor", person=supervisor)
    for platform, external in person.identities:
        holder = await ctx.uow.person_by_identity(platform, external)
        if holder is not None and holder.id != person.id:
            label = PLATFORM_LABELS.get(platform, platform)
            owner = f"{ROLE_LABELS[holder.role]}「{holder.name}」（{holder.id}）"
            raise InvalidInput(f"{label}账号「{external}」已属于{owner}", field=f"{platform}_id")


async def _identify_asset(md: MasterDataStore, asset: AssetRecord) -> AssetRecord:
    """An asset given without an asset code is the one already holding its SN, VIN or plate, or a
    new one named after its key."""
    holders: dict[str, str] = {}
    for kind, key in (("sn", asset.sn), ("vin", asset.vin), ("plate", asset.plate)):
        if key is not None and (found := await md.find_asset(kind, key)) is not None:  # type: ignore[arg-type]
            holders[kind] = found.id
    if len(set(holders.values())) > 1:
        detail = "、".join(f"{k.upper()} 属于「{v}」" for k, v in holders.items())
        raise InvalidInput(f"这些编号分属不同设备：{detail}", field=next(iter(holders)))
    key = asset.sn or asset.vin or asset.plate
    if holders:
        asset_id = next(iter(holders.values()))
    elif key is not None:
        asset_id = generated_asset_id(key)
    else:
        raise InvalidInput("设备编号、SN、VIN、车牌至少填写一项", field="id")
    return AssetRecord(asset_id, asset.sn, asset.vin, asset.plate, asset.brand, asset.model, asset.store_code,
                       asset.customer_id, asset.installed_on, asset.purchased_on, asset.warranty_end,
                       asset.params, asset.display_id)


async def _asset_reference(md: MasterDataStore, reference: str) -> str:
    """A contract names its assets by asset code, or by SN, plate or VIN as the customer knows them."""
    if (asset := await md.get_asset(reference)) is not None:
        return asset.id
    candidates: list[tuple[str, str]] = []
    plate = normalise_plate(reference)
    if plate is not None:
        candidates.append(("plate", plate))
    with contextlib.suppress(ValueError):  # not a VIN
        candidates.append(("vin", normalise_vin(reference)))
    with contextlib.suppress(ValueError):  # nothing left of it
        candidates.append(("sn", normalise_sn(reference)))
    for kind, key in candidates:
        if (asset := await md.find_asset(kind, key)) is not None:  # type: ignore[arg-type]
            return asset.id
    raise InvalidInput(f"设备「{reference}」不存在，请先导入设备", field="assets", asset=reference)
