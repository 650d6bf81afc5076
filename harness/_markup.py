"""A check's plain words made into safe HTML for the report: `backticks` become <code>,
a hint's lines after the first become a <pre> block (a config snippet keeps its lines and its
``#`` comments), and absolute paths of the session's submission copy become relative ones.

Everything is escaped first: a student's text never becomes markup.
"""

from __future__ import annotations

import re

from markupsafe import Markup, escape

_TICKS = re.compile(r"`([^`\n]+)`")


def inline(text: str) -> Markup:
    """One paragraph: escaped, with `code` spans."""
    return Markup(_TICKS.sub(lambda m: f"<code>{m.group(1)}</code>", str(escape(text))))


def hint_html(text: str) -> Markup:
    """A hint: its first line is prose; any lines after it are code, shown as they are."""
    first, _, rest = text.partition("\n")
    html = inline(first)
    if rest.strip("\n"):
        html += Markup("<pre><code>") + escape(rest.strip("\n")) + Markup("</code></pre>")
    return html


def relative_paths(text: str, folder: str) -> str:
    """``text`` with ``folder/`` (the session's copy of the submission) dropped from every path."""
    if not folder:
        return text
    return text.replace(folder.rstrip("/") + "/", "")
