"""The Markdown summary: header, the configuration table, status, links to the figure files."""
from __future__ import annotations

from reports.cells import Cell


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


def table_markdown(headers: list[str], rows: list[list[Cell]]) -> str:
    lines = ["| " + " | ".join(_cell(h) for h in headers) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(headers))) + "|"]
    for cells in rows:
        lines.append("| " + " | ".join(f"**{_cell(c.text)}**" if c.bold and c.text != "—" else _cell(c.text)
                                       for c in cells) + " |")
    return "\n".join(lines)


def render_markdown(report, figure_paths: dict[str, str] | None = None) -> str:
    """Markdown text of a ``reports.ReportContent``; ``figure_paths`` maps figure id -> relative path."""
    figure_paths = figure_paths or {}
    out = [f"# {report.title}", "", f"_{report.subtitle}_", ""]
    out += [f"- **{k}:** {v}" for k, v in report.header]
    out.append("")
    out += [f"> **warning:** {w}" for w in report.warnings]
    out += ["", "## Results", ""]
    if report.table_rows:
        out.append(table_markdown(report.table_headers, report.table_rows))
        out.append("")
        out += [f"- {n}" for n in report.table_notes]
    else:
        out.append("No trials yet.")
    out += ["", "## Status", "", report.status_line, ""]
    if report.status_rows:
        out.append(table_markdown(report.status_headers, report.status_rows))
    for section in report.sections:
        out += ["", f"## {section['title']}", "", section["text"], ""]
        if section["rows"]:
            out.append(table_markdown(section["headers"], section["rows"]))
    if report.figures:
        out += ["", "## Figures", ""]
        for fig in report.figures:
            path = figure_paths.get(fig["id"])
            out.append(f"### {fig['title']}")
            out.append("")
            if path:
                out.append(f"![{fig['title']}]({path})")
                out.append("")
            out.append(f"_{fig['caption']}_")
            out.append("")
    out += ["", f"_{report.footer}_", ""]
    return "\n".join(out)
