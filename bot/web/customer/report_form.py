"""The report page's form, read from a streamed multipart body with our own limits.

The app's MAX_BODY_BYTES (1 MiB) is too small for phone photos, so the body is not read whole: each
part is streamed, a photo larger than REPORT_PAGE_MAX_PHOTO_BYTES is drained and named in an error
(the rest of the form still counts: nothing else is lost), and the whole body is capped at what
MAX_PHOTOS photos and the text fields can take. A body that is not valid multipart, or bigger than
the cap, is refused as a whole (FormUnreadable).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from aiohttp import BodyPartReader, web

MAX_PHOTOS = 6
MAX_FIELD_BYTES = 8 * 1024  # a text field (the description is ≤ 2000 characters)
TEXT_FIELDS = frozenset({"phone", "code", "subject", "description", "address", "lat", "lng", "website", "action",
                         "kept", "new_problem"})
CHUNK = 64 * 1024


class FormUnreadable(ValueError):
    """The body is not a form we can read (malformed multipart, too big). Carries the Chinese message."""

    def __init__(self, user_message: str, *, status: int = 400) -> None:
        super().__init__(user_message)
        self.user_message = user_message
        self.status = status


@dataclass(slots=True)
class Upload:
    filename: str
    data: bytes


@dataclass(slots=True)
class ReportForm:
    fields: dict[str, str] = field(default_factory=dict)
    kept: list[str] = field(default_factory=list)  # tokens of photos kept from an earlier round
    uploads: list[Upload] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)  # photos refused while reading (too big, too many)

    def get(self, name: str) -> str:
        return self.fields.get(name, "").strip()


def body_cap(max_photo_bytes: int) -> int:
    return MAX_PHOTOS * (max_photo_bytes + 64 * 1024) + 256 * 1024


async def read_form(request: web.Request, max_photo_bytes: int) -> ReportForm:
    form = ReportForm()
    content_type = request.content_type
    if content_type == "application/x-www-form-urlencoded":  # a form without photos (no JS, old browser)
        try:
            posted = await request.post()
        except web.HTTPRequestEntityTooLarge as error:
            raise FormUnreadable("提交的内容过大，请精简后重新提交。", status=413) from error
        for name in TEXT_FIELDS - {"kept"}:
            value = posted.get(name)
            if isinstance(value, str):
                form.fields[name] = value[:MAX_FIELD_BYTES]
        form.kept = [v for v in posted.getall("kept", []) if isinstance(v, str)]
        return form
    if content_type != "multipart/form-data":
        raise FormUnreadable("表单格式不正确，请在报修页面填写后提交。", status=415)
    if (request.content_length or 0) > body_cap(max_photo_bytes):
        raise FormUnreadable(f"提交的内容过大（最多 {MAX_PHOTOS} 张照片，每张不超过 {max_photo_bytes // 1048576} MB），"
                             "请减少照片后重新提交。", status=413)
    try:
        reader = await request.multipart()
        total = 0
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader):
                raise FormUnreadable("表单数据不完整，请重新填写提交。")
            name = part.name or ""
            if part.filename is not None or name == "photo":
                if not part.filename:  # an empty file input
                    await part.release()
                    continue
                data, size = await _read_limited(part, max_photo_bytes)
                total += size
                if total > body_cap(max_photo_bytes):
                    raise FormUnreadable("提交的内容过大，请减少照片后重新提交。", status=413)
                label = _label(part.filename)
                if data is None:
                    form.errors.append(f"照片「{label}」太大（{size // 1024} KB），每张不超过 "
                                       f"{max_photo_bytes // 1048576} MB，未保存。请压缩后重新选择。")
                elif not data:
                    continue
                elif len(form.uploads) + len(form.kept) >= MAX_PHOTOS:
                    form.errors.append(f"照片「{label}」未保存：最多 {MAX_PHOTOS} 张照片。")
                else:
                    form.uploads.append(Upload(label, data))
                continue
            raw, size = await _read_limited(part, MAX_FIELD_BYTES)
            total += size
            if name not in TEXT_FIELDS:
                continue
            text = (raw or b"")[:MAX_FIELD_BYTES].decode("utf-8", errors="replace")
            if name == "kept":
                form.kept.append(text)
            else:
                form.fields[name] = text
    except FormUnreadable:
        raise
    except (ValueError, AssertionError, RuntimeError, UnicodeError) as error:
        # aiohttp's multipart reader: a missing boundary, a truncated part, a broken header
        raise FormUnreadable("表单数据不完整或已损坏，请重新填写提交。") from error
    return form


async def _read_limited(part: BodyPartReader, limit: int) -> tuple[bytes | None, int]:
    """The part's bytes, or None (drained, not kept) when it is larger than `limit`; and its size."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = await part.read_chunk(CHUNK)
        if not chunk:
            break
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        else:
            chunks.clear()
    return (b"".join(chunks) if size <= limit else None), size


def _label(filename: str) -> str:
    """The name shown back to the person: its last path component, short."""
    name = filename.replace("\\", "/").rsplit("/", 1)[-1].strip() or "照片"
    return name if len(name) <= 40 else name[:37] + "…"
