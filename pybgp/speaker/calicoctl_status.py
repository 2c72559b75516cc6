"""The ``calicoctl node status`` peer table, pure.

Owns: turning BIRD ``show protocols`` rows into calicoctl's table exactly as
calicoctl does it: rows whose proto is ``BGP`` and whose name matches
``^(Global|Node|Mesh)_(.+)$`` become peers (address = the name's tail with
``_`` → ``.``), the line is split on whitespace (state, since, BGP state,
rest joined by single spaces), and the table is drawn like
olekukonko/tablewriter 0.0.x: upper-case centred headings, cells padded
left-aligned (numbers right-aligned), cells over 30 columns wrapped with
minimum raggedness.

Must never: talk to BIRD or the speaker; it formats given values.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence

from pybgp.speaker.birdfmt import ProtocolInfo, protocol_row

_PEER_RE = re.compile(r"^(Global|Node|Mesh)_(.+)$")
_TYPES = {"Global": "global", "Mesh": "node-to-node mesh", "Node": "node specific"}
_DECIMAL = re.compile(r"^-?(?:\d{1,3}(?:,\d{3})*|\d+)(?:\.\d+)?$")
_PERCENT = re.compile(r"^-?\d+\.?\d*$%$")
MAX_CELL = 30
HEADERS = ("Peer address", "Peer type", "State", "Since", "Info")


def peer_rows(protocols: Iterable[ProtocolInfo], ip_sep: str = ".") -> list[list[str]]:
    rows: list[list[str]] = []
    for p in protocols:
        cols = protocol_row(p).split()
        if len(cols) < 6 or cols[1] != "BGP":
            continue
        m = _PEER_RE.match(cols[0])
        if not m:
            continue
        info = cols[5] + (" " + " ".join(cols[6:]) if len(cols) > 6 else "")
        rows.append([m.group(2).replace("_", ip_sep), _TYPES[m.group(1)], cols[3], cols[4],
                     info])
    return rows


def wrap_words(words: Sequence[str], lim: int, pen: int = 100_000) -> list[list[str]]:
    """Minimum-raggedness line breaking (as tablewriter's WrapWords)."""
    n = len(words)
    length = [[0] * n for _ in range(n)]
    for i in range(n):
        length[i][i] = len(words[i])
        for j in range(i + 1, n):
            length[i][j] = length[i][j - 1] + 1 + len(words[j])
    nbrk = [0] * n
    cost = [2**31 - 1] * n
    for i in range(n - 1, -1, -1):
        if length[i][n - 1] <= lim:
            cost[i], nbrk[i] = 0, n
            continue
        for j in range(i + 1, n):
            d = lim - length[i][j - 1]
            c = d * d + cost[j] + (pen if length[i][j - 1] > lim else 0)
            if c < cost[i]:
                cost[i], nbrk[i] = c, j
    lines, i = [], 0
    while i < n:
        lines.append(list(words[i:nbrk[i]]))
        i = nbrk[i]
    return lines


def _wrap_cell(text: str) -> tuple[list[str], int]:
    """Wrapped lines and the width the cell asks for (at least the capped
    width of the text, as tablewriter counts it)."""
    width = min(max((len(x) for x in text.split("\n")), default=0), MAX_CELL)
    out: list[str] = []
    for para in text.split("\n"):
        words = para.split(" ")
        lim = max([width, *(len(w) for w in words)])
        out += [" ".join(line) for line in wrap_words(words, lim)] or [""]
    return out, max([width, *(len(x) for x in out)])


def render_table(headers: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    heads = [h.upper() for h in headers]
    widths = [len(h) for h in heads]
    wrapped = [[_wrap_cell(c) for c in row] for row in rows]
    cells = [[lines for lines, _ in row] for row in wrapped]
    for row in wrapped:
        for i, (_, w) in enumerate(row):
            widths[i] = max(widths[i], w)
    sep = "+" + "+".join("-" * (w + 2) for w in widths) + "+"

    def center(s: str, w: int) -> str:
        gap = w - len(s)
        return " " * (gap // 2) + s + " " * (gap - gap // 2)

    def cell(s: str, w: int) -> str:
        t = s.strip()
        return s.rjust(w) if _DECIMAL.match(t) or _PERCENT.match(t) else s.ljust(w)

    heading = " | ".join(center(h, w) for h, w in zip(heads, widths, strict=True))
    out = [sep, f"| {heading} |", sep]
    for row_lines in cells:
        for k in range(max(len(x) for x in row_lines)):
            out.append("| " + " | ".join(
                cell(lines[k] if k < len(lines) else "", w)
                for lines, w in zip(row_lines, widths, strict=True)) + " |")
    out.append(sep)
    return "\n".join(out) + "\n"


def calicoctl_status_table(protocols: Iterable[ProtocolInfo], ip_version: int = 4) -> str:
    """The peer table of ``calicoctl node status`` (or its "no peers" line)."""
    rows = peer_rows(protocols, ":" if ip_version == 6 else ".")
    if not rows:
        return f"No IPv{ip_version} peers found.\n"
    return render_table(HEADERS, rows)
