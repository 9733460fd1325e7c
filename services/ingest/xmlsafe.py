"""Safe XML for webhooks: no DTD, no entities, bounded size; a flat dict of the fields.

WeChat bodies are one level deep (``<xml><Field>value</Field>...</xml>``) except lists such as
WeCom's ``MemChangeList/Item``, which become Python lists (one ``Item`` is still a list).
"""

from __future__ import annotations

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import ParseError, fromstring

from services.ingest.errors import malformed

MAX_FIELDS = 200


def parse_fields(body: bytes | str) -> dict[str, object]:
    try:
        root = fromstring(body, forbid_dtd=True, forbid_entities=True, forbid_external=True)
    except DefusedXmlException as exc:
        raise malformed(f"XML with a DTD or entities is refused ({type(exc).__name__})") from None
    except (ParseError, ValueError) as exc:
        raise malformed(f"body is not well-formed XML: {exc}") from None
    if root.tag != "xml":
        raise malformed(f"expected an <xml> document, got <{root.tag}>")
    if len(root) > MAX_FIELDS:
        raise malformed(f"more than {MAX_FIELDS} fields")
    fields: dict[str, object] = {}
    for child in root:
        if len(child):
            fields[child.tag] = [(item.text or "").strip() for item in child]
        else:
            fields[child.tag] = child.text or ""
    return fields
