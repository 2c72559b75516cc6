"""The cluster picture as SVG (pure): nodes with their blocks and pods, the BGP
sessions between them, and the external peers / reflectors.

Layout: nodes on an ellipse, peers and reflectors in a row at its centre,
staggered up and down (the ellipse grows to leave them room); a session is a line between the two
ends' centres, green when both ends that report it (every node; a reflector
or router that was asked) say Established, red and dashed otherwise. With
the mesh off there are no node-to-node lines: nobody reports such a session.
Self-contained SVG 1.1 (no scripts, no external fonts or images), so it can
go into a README or a ticket as it is.

Must never: draw a session no speaker reported, or put unescaped text in
the document.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from xml.sax.saxutils import escape, quoteattr

from pybgp.lab.report import NodeStatus

UP, DOWN = "#2e7d32", "#c62828"
BOX_W, LINE_H = 210, 15
PEER_W, PEER_GAP = 160, 8  # a peer's or reflector's pill, and the space between two
STAGGER = 40  # pills alternate this far above and below the centre


@dataclass(frozen=True)
class Peer:
    """An external router or a route reflector, at the centre of the picture."""

    name: str
    address: str
    kind: str  # e.g. "BIRD 2", "GoBGP", "reflector"
    # neighbor address → state, as this end reports its sessions (None: not asked)
    sessions: Mapping[str, str] | None = None
    reflector: bool = False


def sessions(nodes: Sequence[NodeStatus], peers: Sequence[Peer]
             ) -> dict[frozenset[str], bool]:
    """Unordered (end, end) → up, from every node's reported sessions and those
    of the peers that report theirs; names by address."""
    by_addr = {n.address: n.name for n in nodes} | {p.address: p.name for p in peers}
    out: dict[frozenset[str], bool] = {}

    def saw(a: str, b: str, state: str) -> None:
        key = frozenset((a, b))
        out[key] = out.get(key, True) and state == "Established"

    for n in nodes:
        for proto, state in n.sessions.items():
            saw(n.name, by_addr.get(n.peers.get(proto, ""), n.peers.get(proto, proto)), state)
    for p in peers:
        for address, state in (p.sessions or {}).items():
            if address in by_addr:  # a session with a lab node or router
                saw(p.name, by_addr[address], state)
    return out


def _text(x: float, y: float, s: str, *, size: int = 12, weight: str = "normal",
          anchor: str = "middle", fill: str = "#222") -> str:
    return (f'<text x="{x:.0f}" y="{y:.0f}" font-size="{size}" font-weight="{weight}" '
            f'text-anchor="{anchor}" fill="{fill}">{escape(s)}</text>')


def _control(a: tuple[float, float], b: tuple[float, float],
             obstacles: Sequence[tuple[float, float, float, float]]) -> tuple[float, float]:
    """The control point of a session's curve from ``a`` to ``b``: straight if
    that passes no other box or pill, else bent to one side, a little more at
    each try, until it passes none (the least bent of the tries otherwise)."""
    (x1, y1), (x2, y2) = a, b
    length = math.hypot(x2 - x1, y2 - y1) or 1.0
    nx, ny = -(y2 - y1) / length, (x2 - x1) / length  # unit normal
    mid = ((x1 + x2) / 2, (y1 + y2) / 2)
    best, best_hits = mid, len(obstacles) + 1
    for bend in (0, 40, -40, 80, -80, 130, -130, 190, -190):
        c = (mid[0] + nx * bend, mid[1] + ny * bend)
        hits = sum(1 for box in obstacles if _crosses(a, c, b, box))
        if hits == 0:
            return c
        if hits < best_hits:
            best, best_hits = c, hits
    return best


def _crosses(a: tuple[float, float], c: tuple[float, float], b: tuple[float, float],
             box: tuple[float, float, float, float], margin: float = 6.0) -> bool:
    """Whether the quadratic curve a→b (control c) passes through ``box``."""
    x0, y0, x1, y1 = box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin
    for i in range(1, 40):
        t = i / 40
        u = 1 - t
        x = u * u * a[0] + 2 * u * t * c[0] + t * t * b[0]
        y = u * u * a[1] + 2 * u * t * c[1] + t * t * b[1]
        if x0 <= x <= x1 and y0 <= y <= y1:
            return True
    return False


def render(nodes: Sequence[NodeStatus], pods: Mapping[str, Sequence[tuple[str, str]]],
           peers: Sequence[Peer] = (), title: str = "pybgp lab") -> str:
    """The SVG document. ``pods``: node name → [(pod name, address)]."""
    n = len(nodes)
    lines = {nd.name: [f"{nd.address}", *(f"block {b}" for b in nd.blocks),
                       *(f"{p}  {ip}" for p, ip in pods.get(nd.name, ()))] for nd in nodes}
    box_h = {k: 34 + LINE_H * len(v) for k, v in lines.items()}
    tallest = max(box_h.values(), default=60)
    row = len(peers) * (PEER_W + PEER_GAP) - PEER_GAP  # the centre row's width
    rx = max(260.0, BOX_W * 0.75 * n / math.pi, (row / 2 + BOX_W / 2 + 30) / 0.8) \
        if n > 1 else 0.0
    ry = max(170.0, tallest * 0.6 * n / math.pi) if n > 1 else 0.0
    if n <= 1 and peers:  # one node: above the row
        ry = tallest / 2 + 26 + 60
    width = int(max(2 * rx + BOX_W, row) + 80)
    cx, cy = width / 2, 60 + ry + tallest / 2
    height = int(cy + ry + tallest / 2 + 50)
    pos: dict[str, tuple[float, float]] = {}
    for i, nd in enumerate(nodes):
        a = -math.pi / 2 + 2 * math.pi * i / max(n, 1)
        pos[nd.name] = (cx + rx * math.cos(a), cy + ry * math.sin(a))
    for j, p in enumerate(peers):
        off = (j - (len(peers) - 1) / 2) * (PEER_W + PEER_GAP)
        # staggered up and down, so a line to one pill passes beside its neighbours
        lift = 0 if len(peers) == 1 else (-STAGGER if j % 2 == 0 else STAGGER)
        pos[p.name] = (cx + off, cy + lift)

    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
           f'viewBox="0 0 {width} {height}" font-family="DejaVu Sans, Arial, sans-serif">',
           f"<title>{escape(title)}</title>",
           f'<rect width="{width}" height="{height}" fill="#ffffff"/>',
           _text(cx, 28, title, size=16, weight="bold")]
    boxes = {nd.name: (pos[nd.name][0] - BOX_W / 2, pos[nd.name][1] - box_h[nd.name] / 2,
                       pos[nd.name][0] + BOX_W / 2, pos[nd.name][1] + box_h[nd.name] / 2)
             for nd in nodes}
    boxes |= {p.name: (pos[p.name][0] - PEER_W / 2, pos[p.name][1] - 26,
                       pos[p.name][0] + PEER_W / 2, pos[p.name][1] + 26) for p in peers}
    for key, up in sorted(sessions(nodes, peers).items(), key=lambda kv: sorted(kv[0])):
        ends = sorted(key)
        if len(ends) != 2 or not all(e in pos for e in ends):
            continue
        (x1, y1), (x2, y2) = pos[ends[0]], pos[ends[1]]
        others = [b for name, b in boxes.items() if name not in ends]
        mx, my = _control((x1, y1), (x2, y2), others)
        dash = "" if up else ' stroke-dasharray="6 4"'
        out.append(f'<path class="session" d="M {x1:.0f} {y1:.0f} Q {mx:.0f} {my:.0f} '
                   f'{x2:.0f} {y2:.0f}" fill="none" '
                   f'stroke="{UP if up else DOWN}" stroke-width="2"{dash}>'
                   f"<title>{escape(' — '.join(ends))}: "
                   f"{'Established' if up else 'not established'}</title></path>")
    for nd in nodes:
        x, y = pos[nd.name]
        h = box_h[nd.name]
        stroke = DOWN if nd.error else "#1565c0"
        out.append(f'<g class="node" id={quoteattr("node-" + nd.name)}>')
        out.append(f'<rect x="{x - BOX_W / 2:.0f}" y="{y - h / 2:.0f}" width="{BOX_W}" '
                   f'height="{h}" rx="8" fill="#e3f2fd" stroke="{stroke}" stroke-width="2"/>')
        top = y - h / 2
        out.append(_text(x, top + 18, nd.name, size=13, weight="bold"))
        for k, line in enumerate(lines[nd.name]):
            out.append(_text(x, top + 36 + LINE_H * k, line, size=11))
        out.append("</g>")
    for p in peers:
        x, y = pos[p.name]
        role, fill, stroke = (("reflector", "#ede7f6", "#5e35b1") if p.reflector
                              else ("peer", "#fff3e0", "#ef6c00"))
        out.append(f'<g class="{role}" id={quoteattr(role + "-" + p.name)}>')
        out.append(f'<rect x="{x - PEER_W / 2:.0f}" y="{y - 26:.0f}" width="{PEER_W}" '
                   f'height="52" rx="26" fill="{fill}" stroke="{stroke}" stroke-width="2"/>')
        out.append(_text(x, y - 4, f"{p.name} ({p.kind})", size=12, weight="bold"))
        out.append(_text(x, y + 13, p.address, size=11))
        out.append("</g>")
    legend_y = height - 20
    out.append(_text(20, legend_y, "— Established", size=11, anchor="start", fill=UP))
    out.append(_text(140, legend_y, "- - not established", size=11, anchor="start", fill=DOWN))
    out.append("</svg>")
    return "\n".join(out) + "\n"
