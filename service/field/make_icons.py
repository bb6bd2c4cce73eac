"""Draws the field app's icons once (run by hand: `python -m service.field.make_icons`;
the PNGs are committed). A tally of four strokes and a fifth across, white on the
app's dark blue: counting, without a word in any language. Plain zlib PNGs, so no
imaging library is needed for two small squares."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "static" / "field"
BLUE = (0x0B, 0x3D, 0x66)
WHITE = (0xFF, 0xFF, 0xFF)
# In a 24-unit square: four upright strokes and one across (x0, y0, x1, y1).
STROKES = [(6, 6, 7.6, 18), (9.5, 6, 11.1, 18), (13, 6, 14.6, 18), (16.5, 6, 18.1, 18)]


def _inside(x: float, y: float) -> bool:
    for x0, y0, x1, y1 in STROKES:
        if x0 <= x <= x1 and y0 <= y <= y1:
            return True
    # the fifth stroke: a slanted band from (4.5, 16) to (19.5, 8)
    slope = (8 - 16) / (19.5 - 4.5)
    return 4.5 <= x <= 19.5 and abs(y - (16 + slope * (x - 4.5))) <= 0.9


def png(size: int) -> bytes:
    rows = []
    for py in range(size):
        row = bytearray([0])
        for px in range(size):
            x, y = (px + 0.5) * 24 / size, (py + 0.5) * 24 / size
            row += bytes(WHITE if _inside(x, y) else BLUE)
        rows.append(bytes(row))

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    header = struct.pack(">IIBBBBB", size, size, 8, 2, 0, 0, 0)
    data = zlib.compress(b"".join(rows), 9)
    signature = b"\x89PNG\r\n\x1a\n"
    return signature + chunk(b"IHDR", header) + chunk(b"IDAT", data) + chunk(b"IEND", b"")


SVG = """<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 24 24">
<rect width="24" height="24" fill="#0b3d66"/>
<g fill="#fff"><rect x="6" y="6" width="1.6" height="12"/>
<rect x="9.5" y="6" width="1.6" height="12"/>
<rect x="13" y="6" width="1.6" height="12"/><rect x="16.5" y="6" width="1.6" height="12"/></g>
<path d="M4.5 16 L19.5 8" stroke="#fff" stroke-width="1.8"/>
</svg>
"""


def main() -> None:
    for size in (192, 512):
        (OUT / f"icon-{size}.png").write_bytes(png(size))
    (OUT / "icon.svg").write_text(SVG)


if __name__ == "__main__":
    main()
