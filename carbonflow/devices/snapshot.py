"""A tiny raster canvas with a built-in 5×7 bitmap font, written out as PNG by hand (zlib + CRC).

The simulated site cameras draw a metering device's display with it.  No imaging library: the output
is a plain truecolour PNG (colour type 2, 8 bits, no interlace, filter 0 on every row), which every
browser and image library decodes; the bytes are a pure function of what was drawn, so two snapshots
differ exactly when the scene (values, timestamp overlay) differs.  The font covers digits, Latin
capitals (lower case is drawn as capitals) and the punctuation meter displays need; anything else is
drawn as ``?``.
"""

from __future__ import annotations

import struct
import zlib

Color = tuple[int, int, int]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
GLYPH_W, GLYPH_H = 5, 7

# 5×7 glyphs (HD44780 style): 7 rows of 5 bits, most significant bit on the left, as 14 hex digits
_FONT_HEX = {
    "0": "0E11131519110E",
    "1": "040C040404040E",
    "2": "0E11010204081F",
    "3": "1F02040201110E",
    "4": "02060A121F0202",
    "5": "1F101E0101110E",
    "6": "0608101E11110E",
    "7": "1F010204080808",
    "8": "0E11110E11110E",
    "9": "0E11110F01020C",
    "A": "0E1111111F1111",
    "B": "1E11111E11111E",
    "C": "0E11101010110E",
    "D": "1C12111111121C",
    "E": "1F10101E10101F",
    "F": "1F10101E101010",
    "G": "0E11101711110F",
    "H": "1111111F111111",
    "I": "0E04040404040E",
    "J": "0702020202120C",
    "K": "11121418141211",
    "L": "1010101010101F",
    "M": "111B1515111111",
    "N": "11111915131111",
    "O": "0E11111111110E",
    "P": "1E11111E101010",
    "Q": "0E11111115120D",
    "R": "1E11111E141211",
    "S": "0F10100E01011E",
    "T": "1F040404040404",
    "U": "1111111111110E",
    "V": "11111111110A04",
    "W": "1111111515150A",
    "X": "11110A040A1111",
    "Y": "1111110A040404",
    "Z": "1F01020408101F",
    " ": "00000000000000",
    ".": "00000000000C0C",
    ",": "000000000C0408",
    ":": "000C0C000C0C00",
    "-": "0000001F000000",
    "+": "0004041F040400",
    "/": "00010204081000",
    "_": "0000000000001F",
    "(": "02040808080402",
    ")": "08040202020408",
    "%": "18190204081303",
    "=": "00001F001F0000",
    "#": "0A0A1F0A1F0A0A",
    "?": "0E110102040004",
    "*": "00150E1F0E1500",
}
FONT: dict[str, tuple[int, ...]] = {
    char: tuple(int(text[k : k + 2], 16) for k in range(0, 14, 2)) for char, text in _FONT_HEX.items()
}


class Canvas:
    """An RGB raster (row-major bytes) with rectangles and bitmap text."""

    def __init__(self, width: int, height: int, background: Color = (0, 0, 0)) -> None:
        if width < 1 or height < 1:
            raise ValueError(f"canvas size must be positive, got {width}×{height}")
        self.width, self.height = width, height
        self.pixels = bytearray(bytes(background) * (width * height))

    def rect(self, x: int, y: int, w: int, h: int, color: Color) -> None:
        """Fill a rectangle (clipped to the canvas)."""
        x0, y0 = max(0, x), max(0, y)
        x1, y1 = min(self.width, x + w), min(self.height, y + h)
        if x1 <= x0 or y1 <= y0:
            return
        run = bytes(color) * (x1 - x0)
        stride = self.width * 3
        for row in range(y0, y1):
            start = row * stride + x0 * 3
            self.pixels[start : start + len(run)] = run

    def text(self, x: int, y: int, text: str, color: Color, scale: int = 2) -> int:
        """Draw ``text`` with its top-left corner at (x, y); returns the x after the last glyph."""
        for char in text.upper():
            rows = FONT.get(char, FONT["?"])
            for r, bits in enumerate(rows):
                for c in range(GLYPH_W):
                    if bits & (0x10 >> c):
                        self.rect(x + c * scale, y + r * scale, scale, scale, color)
            x += (GLYPH_W + 1) * scale
        return x

    @staticmethod
    def text_width(text: str, scale: int = 2) -> int:
        return len(text) * (GLYPH_W + 1) * scale

    def png(self, level: int = 6) -> bytes:
        stride = self.width * 3
        raw = b"".join(
            b"\x00" + bytes(self.pixels[row * stride : (row + 1) * stride]) for row in range(self.height)
        )
        header = struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0)
        return b"".join(
            (
                PNG_SIGNATURE,
                _chunk(b"IHDR", header),
                _chunk(b"IDAT", zlib.compress(raw, level)),
                _chunk(b"IEND", b""),
            )
        )


def _chunk(kind: bytes, data: bytes) -> bytes:
    return (
        struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    )


def png_size(data: bytes) -> tuple[int, int]:
    """(width, height) of a PNG from its IHDR; ValueError if ``data`` is not a PNG."""
    if not data.startswith(PNG_SIGNATURE) or data[12:16] != b"IHDR":
        raise ValueError("not a PNG image")
    width, height = struct.unpack(">II", data[16:24])
    return width, height
