"""Aligned PER (ITU-T X.691, ALIGNED variant) primitives: a bit reader and a bit writer.

The specialised KPM codec (`kpm_fast.py`) is built from these; asn1tools does the general case. Clause
numbers are X.691 (02/2021). `Unsupported` means "valid, but not what the fast path handles": the caller
falls back to asn1tools. `Malformed` means the bytes cannot be a valid encoding (truncated, out of range).
"""

from __future__ import annotations

import math

_LOG2_BASE = {2: 1, 8: 3, 16: 4}


class Malformed(ValueError):
    """The bytes are not a valid aligned PER encoding of the type being read."""


class Unsupported(Exception):
    """A valid encoding the fast path does not decode (extension additions, fragmented lengths, ...)."""


def _bits_for(r: int) -> int:
    """Bits of a constrained whole number with range r (10.5.7.1): ⌈log2 r⌉."""
    return (r - 1).bit_length()


class Reader:
    """Reads an aligned PER bit stream from `data`, most significant bit first."""

    __slots__ = ("data", "end", "pos")

    def __init__(self, data: bytes):
        self.data = data
        self.pos = 0  # bit position
        self.end = len(data) * 8

    def bit(self) -> int:
        p = self.pos
        if p >= self.end:
            raise Malformed("truncated")
        self.pos = p + 1
        return (self.data[p >> 3] >> (7 - (p & 7))) & 1

    def bits(self, n: int) -> int:
        """An n-bit unsigned field (not aligned)."""
        if n == 0:
            return 0
        p = self.pos
        e = p + n
        if e > self.end:
            raise Malformed("truncated")
        i, j = p >> 3, (e + 7) >> 3
        self.pos = e
        return (int.from_bytes(self.data[i:j], "big") >> ((j << 3) - e)) & ((1 << n) - 1)

    def align(self) -> None:
        """Skip the padding bits to the next octet boundary (10.1.3 / 10.9.3)."""
        self.pos = (self.pos + 7) & ~7

    def octets(self, n: int) -> bytes:
        """n octets, octet-aligned."""
        self.align()
        i = self.pos >> 3
        if i + n > len(self.data):
            raise Malformed("truncated")
        self.pos += 8 * n
        return self.data[i:i + n]

    def constrained(self, lb: int, ub: int) -> int:
        """A constrained whole number in lb..ub (10.5.7: bit-field, one or two aligned octets, or a
        length-prefixed aligned octet string when the range exceeds 64K)."""
        r = ub - lb + 1
        if r == 1:
            return lb
        if r <= 255:
            v = self.bits(_bits_for(r))
        elif r == 256:
            self.align()
            v = self.bits(8)
        elif r <= 65536:
            self.align()
            v = self.bits(16)
        else:
            n_octets = (_bits_for(r) + 7) // 8
            length = self.bits(_bits_for(n_octets)) + 1  # 10.5.7.4: length in 1..n_octets
            v = int.from_bytes(self.octets(length), "big")
        if v > ub - lb:
            raise Malformed(f"value {v + lb} outside {lb}..{ub}")
        return v + lb

    def length(self) -> int:
        """An unconstrained length determinant (10.9.3.5-10.9.3.8); fragmented lengths are Unsupported."""
        self.align()
        b = self.bits(8)
        if b < 0x80:
            return b
        if b < 0xC0:
            return ((b & 0x3F) << 8) | self.bits(8)
        raise Unsupported("fragmented length determinant")

    def size(self, lb: int, ub: int | None) -> int:
        """The length of a SEQUENCE OF / string with SIZE(lb..ub) (10.9.4.1 / 10.9.3.3): none when fixed, a
        constrained whole number below 64K, else unconstrained."""
        if ub is not None and ub < 65536:
            return lb if lb == ub else self.constrained(lb, ub)
        n = self.length()
        if n < lb or (ub is not None and n > ub):
            raise Malformed(f"size {n} outside {lb}..{ub}")
        return n

    def small(self) -> int:
        """A normally small non-negative whole number (10.6)."""
        if not self.bit():
            return self.bits(6)
        return int.from_bytes(self.octets(self.length()), "big")

    def unconstrained_int(self) -> int:
        """An unconstrained (two's complement) INTEGER (10.8)."""
        n = self.length()
        if n == 0:
            raise Malformed("empty INTEGER")
        return int.from_bytes(self.octets(n), "big", signed=True)

    def ext_int(self, lb: int, ub: int) -> int:
        """INTEGER (lb..ub, ...): extension bit, then in-root constrained or outside-root unconstrained (12.1)."""
        if self.bit():
            return self.unconstrained_int()
        return self.constrained(lb, ub)

    def open_type(self) -> bytes:
        """The octets of an open type field (11.2): extension additions, extension alternatives."""
        return self.octets(self.length())

    def real(self) -> float:
        """REAL (15, X.690 8.5): length-prefixed CER/DER contents, binary, special or decimal."""
        i = (self.pos + 7) >> 3  # the common case inline: a short length, base 2, F = 0, a 1-octet exponent
        data = self.data
        if i + 3 < len(data) and 3 <= data[i] < 0x80 and i + 1 + data[i] <= len(data) and data[i + 1] in (0x80, 0xC0):
            n = data[i]
            self.pos = (i + 1 + n) << 3
            e = data[i + 2]
            v = math.ldexp(float(int.from_bytes(data[i + 3:i + 1 + n], "big")), e - 256 if e & 0x80 else e)
            return -v if data[i + 1] & 0x40 else v
        return decode_real_contents(self.octets(self.length()))

    def printable(self, lb: int, ub: int, extensible: bool) -> str:
        """PrintableString (SIZE(lb..ub[, ...])): 8 bits a character in the ALIGNED variant (30.5.3)."""
        if extensible and self.bit():
            raise Unsupported("string size outside the root")
        if ub * 8 <= 16:
            raise Unsupported("a string of at most two characters is not octet-aligned (30.5.7)")
        n = self.size(lb, ub)
        if n == 0:
            return ""
        raw = self.octets(n)
        try:
            return raw.decode("ascii")
        except UnicodeDecodeError:
            raise Malformed("non-ASCII character in a PrintableString") from None


def decode_real_contents(c: bytes) -> float:
    """The value of REAL contents octets (X.690 8.5): binary with base 2/8/16, scale F, any exponent form."""
    if not c:
        return 0.0
    first = c[0]
    if first & 0x80:
        sign = -1.0 if first & 0x40 else 1.0
        base = (2, 8, 16, 0)[(first >> 4) & 3]
        if base == 0:
            raise Malformed("REAL base 11 is reserved")
        scale = (first >> 2) & 3
        form = first & 3
        if form < 3:
            n_exp, off = form + 1, 1
        else:
            if len(c) < 2:
                raise Malformed("truncated REAL")
            n_exp, off = c[1], 2
        if len(c) < off + n_exp or n_exp == 0:
            raise Malformed("truncated REAL exponent")
        exp = int.from_bytes(c[off:off + n_exp], "big", signed=True)
        mantissa = int.from_bytes(c[off + n_exp:], "big") << scale
        try:
            return sign * math.ldexp(float(mantissa), exp * _LOG2_BASE[base]) if mantissa else sign * 0.0
        except OverflowError:
            return sign * math.inf
    if first & 0x40:
        special = {0x40: math.inf, 0x41: -math.inf, 0x42: math.nan, 0x43: -0.0}.get(first)
        if special is None or len(c) != 1:
            raise Malformed(f"unknown special REAL 0x{first:02x}")
        return special
    try:  # decimal (ISO 6093 NR1/NR2/NR3)
        return float(c[1:].decode("ascii").replace(",", "."))
    except (UnicodeDecodeError, ValueError):
        raise Malformed("bad decimal REAL") from None


def encode_real_contents(v: float) -> bytes:
    """CER/DER contents octets of a REAL (X.690 11.3.1): base 2, F = 0, odd mantissa in the fewest octets,
    exponent in the fewest octets; specials for ±inf, NaN, -0."""
    if v != v:
        return b"\x42"
    if v == math.inf:
        return b"\x40"
    if v == -math.inf:
        return b"\x41"
    if v == 0.0:
        return b"\x43" if math.copysign(1.0, v) < 0 else b""
    m, e = math.frexp(abs(v))
    n = int(m * (1 << 53))
    e -= 53
    tz = (n & -n).bit_length() - 1
    n >>= tz
    e += tz
    n_exp = max(1, (e.bit_length() + 8) // 8) if e >= 0 else max(1, ((~e).bit_length() + 8) // 8)
    if n_exp > 3:
        first, exp = 0x83, bytes([n_exp]) + e.to_bytes(n_exp, "big", signed=True)
    else:
        first, exp = 0x80 | (n_exp - 1), e.to_bytes(n_exp, "big", signed=True)
    if v < 0:
        first |= 0x40
    return bytes([first]) + exp + n.to_bytes((n.bit_length() + 7) // 8, "big")


class Writer:
    """Writes an aligned PER bit stream; `tobytes()` pads the last octet with zeros. Whole octets go to a
    bytearray, the bits of the octet being written wait in a small int (no quadratic big-int shifts)."""

    __slots__ = ("buf", "cur", "ncur")

    def __init__(self):
        self.buf = bytearray()
        self.cur = 0  # pending bits, most significant first
        self.ncur = 0

    @property
    def nbits(self) -> int:
        return 8 * len(self.buf) + self.ncur

    def bits(self, v: int, n: int) -> None:
        if n:
            self.cur = (self.cur << n) | v
            self.ncur += n
            if self.ncur >= 32:
                full = self.ncur >> 3
                rest = self.ncur & 7
                self.buf += (self.cur >> rest).to_bytes(full, "big")
                self.cur &= (1 << rest) - 1
                self.ncur = rest

    def align(self) -> None:
        pad = -self.ncur & 7
        if self.ncur:
            self.buf += (self.cur << pad).to_bytes((self.ncur + pad) >> 3, "big")
            self.cur = self.ncur = 0

    def octets(self, b: bytes) -> None:
        self.align()
        self.buf += b
    def constrained(self, v: int, lb: int, ub: int) -> None:
        if not lb <= v <= ub:
            raise ValueError(f"{v} outside {lb}..{ub}")
        r, v = ub - lb + 1, v - lb
        if r == 1:
            return
        if r <= 255:
            self.bits(v, _bits_for(r))
        elif r == 256:
            self.align()
            self.bits(v, 8)
        elif r <= 65536:
            self.align()
            self.bits(v, 16)
        else:
            n_octets = (_bits_for(r) + 7) // 8
            n = max(1, (v.bit_length() + 7) // 8)
            self.bits(n - 1, _bits_for(n_octets))
            self.octets(v.to_bytes(n, "big"))

    def length(self, n: int) -> None:
        self.align()
        if n < 128:
            self.bits(n, 8)
        elif n < 16384:
            self.bits(0x8000 | n, 16)
        else:
            raise ValueError("fragmented lengths are not written")

    def size(self, n: int, lb: int, ub: int | None) -> None:
        if ub is not None and ub < 65536:
            if lb != ub:
                self.constrained(n, lb, ub)
        else:
            self.length(n)

    def small(self, v: int) -> None:
        if v < 64:
            self.bits(v, 7)
        else:
            self.bits(1, 1)
            body = v.to_bytes((v.bit_length() + 7) // 8, "big")
            self.length(len(body))
            self.octets(body)

    def ext_int(self, v: int, lb: int, ub: int) -> None:
        if lb <= v <= ub:
            self.bits(0, 1)
            self.constrained(v, lb, ub)
        else:
            self.bits(1, 1)
            body = v.to_bytes((v.bit_length() + 8) // 8, "big", signed=True)
            self.length(len(body))
            self.octets(body)

    def real(self, v: float) -> None:
        c = encode_real_contents(v)
        self.length(len(c))
        self.octets(c)

    def printable(self, s: str, lb: int, ub: int, extensible: bool) -> None:
        raw = s.encode("ascii")
        if extensible:
            self.bits(0, 1)
        self.size(len(raw), lb, ub)
        if raw:
            self.octets(raw)

    def open_type(self, encoded: bytes) -> None:
        self.length(len(encoded))
        self.octets(encoded)

    def tobytes(self) -> bytes:
        self.align()
        return bytes(self.buf)
