"""The self-contained HTML report: inline CSS, figures as base64 PNG, no external links."""
from __future__ import annotations

import base64
import html
import re

from reports.cells import NOT_REACHED, WITHIN_NOISE, Cell

CSS = """
body { font-family: -apple-system, 'Segoe UI', Helvetica, Arial, sans-serif; margin: 24px auto; max-width: 1280px;
       padding: 0 16px; color: #1d1d1f; font-size: 14px; line-height: 1.45; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 28px; border-bottom: 1px solid #ddd;
     padding-bottom: 3px; } h3 { font-size: 15px; margin-bottom: 4px; }
.sub { color: #666; margin-top: 0; }
dl.header { display: grid; grid-template-columns: max-content 1fr; gap: 2px 14px; margin: 10px 0; }
dl.header dt { font-weight: 600; color: #444; } dl.header dd { margin: 0; }
.warn { background: #fff4e5; border-left: 4px solid #f0a020; padding: 6px 10px; margin: 8px 0; }
.table-wrap { overflow-x: auto; }
table { border-collapse: collapse; font-size: 12.5px; margin: 8px 0; }
th, td { border: 1px solid #d8d8d8; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f3f3f5; font-weight: 600; }
td:first-child, th:first-child, .left { text-align: left; }
td.muted { background: #fafafa; }
td.text { text-align: left; white-space: normal; max-width: 420px; }
tr.best td { background: #fff7c2; }
.bold { font-weight: 700; } .muted { color: #777; }
.status-error { color: #b00020; font-weight: 600; } .status-running { color: #0060b0; }
.status-stopped { color: #8a6d00; }
.notes { font-size: 12.5px; color: #444; } .notes li { margin: 3px 0; }
figure { margin: 14px 0; } figure img { max-width: 100%; border: 1px solid #eee; }
figcaption { font-size: 12.5px; color: #555; margin-top: 4px; }
nav a { margin-right: 12px; }
.gallery { display: flex; flex-wrap: wrap; gap: 14px; } .gallery figure { margin: 4px 0; text-align: center; }
.gallery img { width: 274px; image-rendering: pixelated; } .caption { font-size: 12.5px; color: #555; }
details summary { cursor: pointer; font-weight: 600; margin: 8px 0; }
"""


def esc(text) -> str:
    return html.escape(str(text), quote=True)


def png_data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode("ascii")


NUMBER = re.compile(r"^[-+]?[\d.,]+(\s*±\s*[\d.,]+)?(\s*\(n=1\))?(\s*\[\w\])?(\s*\*)?(\s*\(\d+/\d+ seeds\))?$"
                    r"|^[\d,]+/[\d,]+$")

WORD_CELLS = ("—", "", NOT_REACHED, WITHIN_NOISE, "reference")  # no value: does not decide a column's alignment


def numeric_columns(rows: list[list[Cell]], width: int) -> list[bool]:
    """Columns whose every filled cell is a number (``12.3 ± 0.4``, ``7.1 (n=1)``, ``-3.1 ± 0.9 *``,
    ``1,200 (2/3 seeds)``, ``3/20``): right-aligned."""
    return [all(NUMBER.match(r[j].text) for r in rows if j < len(r) and r[j].text not in WORD_CELLS)
            for j in range(width)]


def table_html(headers: list[str], rows: list[list[Cell]], row_classes: list[str] | None = None,
               text_columns: tuple[int, ...] = ()) -> str:
    numeric = numeric_columns(rows, len(headers))
    out = ['<div class="table-wrap"><table>', "<thead><tr>"]
    out += [f"<th>{esc(h)}</th>" if numeric[j] else f'<th class="left">{esc(h)}</th>' for j, h in enumerate(headers)]
    out.append("</tr></thead><tbody>")
    for i, cells in enumerate(rows):
        cls = (row_classes or [""] * len(rows))[i]
        out.append(f'<tr class="{cls}">' if cls else "<tr>")
        for j, cell in enumerate(cells):
            classes = [c for c, on in (("bold", cell.bold), ("muted", cell.muted), ("text", j in text_columns),
                                       ("left", not numeric[j])) if on]
            if cell.text in ("error", "running", "stopped"):
                classes.append(f"status-{cell.text}")
            attr = f' class="{" ".join(classes)}"' if classes else ""
            out.append(f"<td{attr}>{esc(cell.text)}</td>")
        out.append("</tr>")
    out.append("</tbody></table></div>")
    return "".join(out)


def render_html(report) -> str:
    """HTML text of a ``reports.ReportContent``."""
    parts = ["<!DOCTYPE html>", '<html lang="en"><head><meta charset="utf-8">',
             f"<title>{esc(report.title)}</title><style>{CSS}</style></head><body>",
             f"<h1>{esc(report.title)}</h1>", f'<p class="sub">{esc(report.subtitle)}</p>']
    sections = [("results", "Results"), ("status", "Status"), *[(t["id"], t["title"]) for t in report.sections],
                *[(f["id"], f["title"]) for f in report.figures],
                ("trials", "All trials")]
    parts.append("<nav>" + "".join(f'<a href="#{esc(i)}">{esc(t)}</a>' for i, t in sections) + "</nav>")
    parts.append('<dl class="header">' + "".join(f"<dt>{esc(k)}</dt><dd>{esc(v)}</dd>" for k, v in report.header)
                 + "</dl>")
    parts += [f'<div class="warn">{esc(w)}</div>' for w in report.warnings]

    parts.append('<h2 id="results">Results: every configuration against the baselines</h2>')
    if report.table_rows:
        classes = ["best" if b else "" for b in report.table_best]
        parts.append(table_html(report.table_headers, report.table_rows, classes))
        parts.append('<ul class="notes">' + "".join(f"<li>{esc(n)}</li>" for n in report.table_notes) + "</ul>")
    else:
        parts.append("<p>No trials yet.</p>")

    parts.append('<h2 id="status">Status</h2>')
    parts.append(f"<p>{esc(report.status_line)}</p>")
    if report.status_rows:
        parts.append(table_html(report.status_headers, report.status_rows,
                                text_columns=(len(report.status_headers) - 1,)))

    for section in report.sections:
        parts.append(f'<h2 id="{esc(section["id"])}">{esc(section["title"])}</h2>')
        parts.append(f"<p>{esc(section['text'])}</p>")
        if section["rows"]:
            parts.append(table_html(section["headers"], section["rows"]))

    for fig in report.figures:
        parts.append(f'<h2 id="{esc(fig["id"])}">{esc(fig["title"])}</h2>')
        if fig.get("gallery"):
            parts.append('<div class="gallery">' + "".join(
                f'<figure><img src="{png_data_uri(png)}" alt="{esc(name)}"><figcaption>{esc(name)}</figcaption>'
                "</figure>" for name, png in fig["gallery"]) + "</div>")
            parts.append(f'<p class="caption">{esc(fig["caption"])}</p>')
        else:
            parts.append(f'<figure><img src="{png_data_uri(fig["png"])}" alt="{esc(fig["title"])}">'
                         f'<figcaption>{esc(fig["caption"])}</figcaption></figure>')

    parts.append('<h2 id="trials">All trials</h2>')
    parts.append(f"<details><summary>{len(report.trial_rows)} trials (one row per seed)</summary>")
    parts.append(table_html(report.trial_headers, report.trial_rows, text_columns=(len(report.trial_headers) - 1,)))
    parts.append("</details>")
    parts.append(f'<p class="sub">{esc(report.footer)}</p></body></html>')
    return "\n".join(parts)
