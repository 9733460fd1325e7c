"""The console's message catalogues (docs/console.md "Languages"): the Chinese ``.po`` under
console/translations/ is the source; its compiled ``.mo`` is committed beside it, so a server
never writes into its own package (tests/unit/console/test_catalogue.py fails when the two differ).

``python -m console.catalogue`` lists the msgids the code and templates use without a
translation and compiles every ``.po`` to its ``.mo``.
"""

from __future__ import annotations

import io
import sys
from pathlib import Path

from babel.messages.extract import extract_from_dir
from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po

HERE = Path(__file__).resolve().parent
TRANSLATIONS = HERE / "translations"
METHODS = [("**.py", "python"), ("templates/**.html", "jinja2.ext:babel_extract")]
KEYWORDS = {
    "_": None,
    "gettext": None,
    "_l": None,
    "lazy_gettext": None,
    "ngettext": (1, 2),
    "pgettext": ((1, "c"), 2),
    "lazy_pgettext": ((1, "c"), 2),
    "npgettext": ((1, "c"), 2, 3),
}


def catalogues() -> list[Path]:
    return sorted(TRANSLATIONS.glob("*/LC_MESSAGES/messages.po"))


def compiled(po: Path) -> bytes:
    """The ``.mo`` of ``po``, as ``write_mo`` writes it."""
    with po.open("rb") as handle:
        catalog = read_po(handle)
    out = io.BytesIO()
    write_mo(out, catalog)
    return out.getvalue()


def used_msgids() -> set[tuple[str | None, str]]:
    """Every string the console's code and templates translate, as (context, msgid)."""
    found = extract_from_dir(
        str(HERE),
        METHODS,
        keywords=KEYWORDS,
        options_map={"templates/**.html": {"extensions": "jinja2.ext.i18n"}},
    )
    return {
        (context, message if isinstance(message, str) else message[0])
        for _file, _line, message, _comments, context in found
    }


def untranslated(po: Path) -> list[str]:
    with po.open("rb") as handle:
        catalog = read_po(handle)
    have = {(m.context, m.id if isinstance(m.id, str) else m.id[0]): m.string
            for m in catalog if m.id}  # fmt: skip
    return sorted(
        (f"{context}|{msgid}" if context else msgid)
        for context, msgid in used_msgids()
        if not have.get((context, msgid))
    )


def main() -> int:
    missing = 0
    for po in catalogues():
        for msgid in untranslated(po):
            print(f"{po.relative_to(HERE)}: no translation of {msgid!r}", file=sys.stderr)
            missing += 1
        po.with_suffix(".mo").write_bytes(compiled(po))
        print(f"compiled {po.with_suffix('.mo').relative_to(HERE)}")
    return 1 if missing else 0


if __name__ == "__main__":
    sys.exit(main())
