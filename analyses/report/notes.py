"""Model notes: the docstrings' reStructuredText rendered to HTML (formulas as MathML) and Markdown.

The docstrings of the toolkit use a small part of reStructuredText: section titles underlined
with ``-`` or ``=``, paragraphs, bullet lists, literal blocks (a paragraph ending in ``::``),
``.. math::`` blocks, doctest lines, and the inline roles ``:math:``, ``:func:``/``:class:``/
``:mod:``/``:data:``/``:meth:``, ````code````, ``*emphasis*`` and ``**strong**``. This module renders
exactly that, with formulas typeset as MathML by ``latex2mathml`` (no scripts, nothing fetched);
``.. math::`` blocks with ``&`` alignment and ``\\\\`` line breaks become MathML tables.
"""

from __future__ import annotations

import html
import re

from latex2mathml.converter import convert

_ROLE = re.compile(r":(math|func|class|mod|meth|data|attr|obj|ref):`([^`]+)`")
_CODE = re.compile(r"``(.+?)``")
_STRONG = re.compile(r"\*\*(\S(?:.*?\S)?)\*\*")
_EMPH = re.compile(r"(?<![\w*])\*(\S(?:[^*]*?\S)?)\*(?![\w*])")
_TITLE = re.compile(r"^(=+|-+|~+|\^+)$")


def mathml(tex: str, *, display: bool = False) -> str:
    """LaTeX as MathML; a block with ``&``/``\\\\`` becomes an aligned table of its rows."""
    tex = tex.strip()
    try:
        if display and ("\\\\" in tex or re.search(r"(?<!\\)&", tex)):
            rows = [r for r in re.split(r"\\\\", tex) if r.strip()]
            trs = []
            for row in rows:
                cells = re.split(r"(?<!\\)&", row)
                tds = "".join(f'<mtd columnalign="{"right" if i % 2 == 0 else "left"}">{_inner(c)}</mtd>'
                              for i, c in enumerate(cells))
                trs.append(f"<mtr>{tds}</mtr>")
            return ('<math xmlns="http://www.w3.org/1998/Math/MathML" display="block"><mtable>'
                    + "".join(trs) + "</mtable></math>")
        return convert(tex, display="block" if display else "inline")
    except Exception:  # noqa: BLE001 - a formula the converter does not know is shown as code, not lost
        return f'<code class="tex">{html.escape(tex)}</code>'


def _inner(tex: str) -> str:
    out = convert(tex.strip() or "{}")
    return re.sub(r"^<math[^>]*>|</math>$", "", out)


def inline_html(text: str) -> str:
    """One paragraph's inline markup as HTML (escaped)."""
    parts, pos, out = [], 0, []
    pattern = re.compile(f"{_ROLE.pattern}|{_CODE.pattern}")
    for m in pattern.finditer(text):
        parts.append(("text", text[pos:m.start()]))
        if m.group(1) == "math":
            parts.append(("html", mathml(m.group(2))))
        elif m.group(1):
            parts.append(("html", f"<code>{html.escape(m.group(2).lstrip('~'))}</code>"))
        else:
            parts.append(("html", f"<code>{html.escape(m.group(3))}</code>"))
        pos = m.end()
    parts.append(("text", text[pos:]))
    for kind, chunk in parts:
        if kind == "html":
            out.append(chunk)
        else:
            chunk = html.escape(chunk, quote=False)
            chunk = _STRONG.sub(r"<strong>\1</strong>", chunk)
            chunk = _EMPH.sub(r"<em>\1</em>", chunk)
            out.append(chunk)
    return "".join(out)


def plain(text: str) -> str:
    """Roles and inline literals inside a notation block written plainly (``:func:`f``` -> ``f``)."""
    return _CODE.sub(r"\1", _ROLE.sub(lambda m: m.group(2).lstrip("~"), text))


def inline_markdown(text: str) -> str:
    text = _ROLE.sub(lambda m: f"${m.group(2)}$" if m.group(1) == "math" else f"`{m.group(2).lstrip('~')}`", text)
    return _CODE.sub(r"`\1`", text)


def _blocks(doc: str) -> list[tuple[str, object]]:
    """Split a docstring into (kind, content): title, para, bullets, literal, math."""
    lines = doc.expandtabs().splitlines()
    out: list[tuple[str, object]] = []
    i, n = 0, len(lines)

    def indent(s: str) -> int:
        return len(s) - len(s.lstrip())

    def indented_block(j: int, base: int) -> tuple[list[str], int]:
        body = []
        while j < n and (not lines[j].strip() or indent(lines[j]) > base):
            body.append(lines[j])
            j += 1
        while body and not body[-1].strip():
            body.pop()
        while body and not body[0].strip():
            body.pop(0)
        cut = min((indent(b) for b in body if b.strip()), default=0)
        return [b[cut:] for b in body], j

    while i < n:
        line = lines[i]
        if not line.strip():
            i += 1
            continue
        base = indent(line)
        stripped = line.strip()
        if i + 1 < n and _TITLE.match(lines[i + 1].strip()) and len(lines[i + 1].strip()) >= len(stripped) - 2:
            out.append(("title", stripped))
            i += 2
            continue
        if stripped.startswith(".. math::"):
            body, i = indented_block(i + 1, base)
            first = stripped[len(".. math::"):].strip()
            text = "\n".join(([first] if first else []) + body)
            out += [("math", eq) for eq in re.split(r"\n\s*\n", text) if eq.strip()]
            continue
        if stripped.startswith(".. "):   # other directives: their body as a literal block
            body, i = indented_block(i + 1, base)
            out.append(("literal", "\n".join(body)))
            continue
        if stripped.startswith(">>>"):
            body = []
            while i < n and lines[i].strip():
                body.append(lines[i].strip())
                i += 1
            out.append(("literal", "\n".join(body)))
            continue
        if re.match(r"[-*+] ", stripped):
            items: list[str] = []
            while i < n and lines[i].strip() and indent(lines[i]) >= base:
                s = lines[i].strip()
                if indent(lines[i]) == base and re.match(r"[-*+] ", s):
                    items.append(s[2:])
                elif indent(lines[i]) == base and not items:
                    break
                elif indent(lines[i]) == base:
                    break
                else:
                    items[-1] += " " + s
                i += 1
            out.append(("bullets", items))
            continue
        para, last_indent = [], base
        while i < n and lines[i].strip() and not (para and indent(lines[i]) > last_indent and para[-1].endswith("::")):
            if para and i + 1 < n and _TITLE.match(lines[i + 1].strip()):
                break
            if para and re.match(r"[-*+] ", lines[i].strip()) and indent(lines[i]) == base:
                break
            para.append(lines[i].strip())
            last_indent = indent(lines[i])
            i += 1
        text = " ".join(para)
        literal = text.endswith("::")
        if literal:
            text = text[:-2].rstrip()
            if text.endswith(" "):
                text = text.rstrip()
            text = text + ":" if text and not text.endswith(":") else text
        if text:
            out.append(("para", text))
        if literal:
            item = re.match(r"(\d+[.)]|#\.)\s+", para[0])      # inside a numbered item: its content's indent
            body, i = indented_block(i, max(last_indent, base + len(item.group(0)) if item else base))
            if body:
                out.append(("literal", "\n".join(body)))
    return out


def notes_html(doc: str) -> str:
    """A docstring as HTML: titles, paragraphs, lists, code and typeset formulas."""
    out = []
    for kind, content in _blocks(doc):
        if kind == "title":
            out.append(f'<h5 class="note-title">{inline_html(str(content))}</h5>')
        elif kind == "para":
            out.append(f"<p>{inline_html(str(content))}</p>")
        elif kind == "bullets":
            out.append("<ul>" + "".join(f"<li>{inline_html(x)}</li>" for x in content) + "</ul>")
        elif kind == "literal":
            out.append(f'<pre class="notation">{html.escape(plain(str(content)))}</pre>')
        elif kind == "math":
            out.append(f'<div class="math">{mathml(str(content), display=True)}</div>')
    return "\n".join(out)


def notes_markdown(doc: str) -> str:
    """A docstring as Markdown (formulas as ``$...$`` / ``$$...$$``)."""
    out = []
    for kind, content in _blocks(doc):
        if kind == "title":
            out.append(f"**{inline_markdown(str(content))}**")
        elif kind == "para":
            out.append(inline_markdown(str(content)))
        elif kind == "bullets":
            out.append("\n".join(f"- {inline_markdown(x)}" for x in content))
        elif kind == "literal":
            out.append("```text\n" + plain(str(content)) + "\n```")
        elif kind == "math":
            out.append("$$\n" + str(content) + "\n$$")
    return "\n\n".join(out)
