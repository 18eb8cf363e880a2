"""The WFDB files LiteECG reads and writes on its hot paths, without importing wfdb.

Importing wfdb (and pandas with it) costs about 0.4 s, a quarter of labelling a whole 30-min
record with an ONNX model (predict.py); these readers and the writer cover the plain files
MIT-BIH and most PhysioNet databases use, and hand anything else to wfdb:

- `read_header`: a single-segment .hea whose signal lines carry every field up to the
  description (MIT-BIH's do); other headers go to `wfdb.rdheader`.
- `read_annotations`: any MIT-format annotation file (.atr).
- `write_annotations`: an MIT-format file of (sample, symbol) pairs, byte for byte what
  `wfdb.wrann(..., fs=fs)` writes for them (tests compare the bytes).

Tests check all 48 MIT-BIH headers and annotation files against wfdb, field for field.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

# MIT annotation codes (WFDB's ecgcodes.h) -> symbol; codes 15 and 17 are unused. The same table
# as wfdb.io.annotation.ann_label_table (a test compares them).
ANN_SYMBOLS: dict[int, str] = {
    0: " ", 1: "N", 2: "L", 3: "R", 4: "a", 5: "V", 6: "F", 7: "J", 8: "A", 9: "S", 10: "E",
    11: "j", 12: "/", 13: "Q", 14: "~", 16: "|", 18: "s", 19: "T", 20: "*", 21: "D", 22: '"',
    23: "=", 24: "p", 25: "B", 26: "^", 27: "t", 28: "+", 29: "u", 30: "?", 31: "!", 32: "[",
    33: "]", 34: "e", 35: "n", 36: "@", 37: "x", 38: "f", 39: "(", 40: ")", 41: "r"}
ANN_CODES: dict[str, int] = {s: c for c, s in ANN_SYMBOLS.items()}
_SYMBOL_OF_CODE = np.array([ANN_SYMBOLS.get(c, "") for c in range(64)], dtype="<U1")  # (64,)
SKIP, AUX, NOTE = 59, 63, 22  # special annotation codes


@dataclass
class Header:
    """What LiteECG reads from a record header (wfdb.Record's field names)."""
    fs: float
    sig_len: int
    sig_name: list[str]
    file_name: list[str]
    fmt: list[str]
    adc_gain: list[float]
    baseline: list[int]
    samps_per_frame: list[int] = field(default_factory=list)
    skew: list[int] = field(default_factory=list)
    byte_offset: list[int] = field(default_factory=list)


def _parse_header(text: str) -> Header | None:
    """The fast parse, or None when the header is not the plain kind it handles."""
    lines = [l.split("#")[0].strip() for l in text.splitlines()]
    lines = [l for l in lines if l]
    if not lines:
        return None
    rec = lines[0].split()
    if len(rec) < 4 or "/" in rec[0]:  # multi-segment, or no sample count
        return None
    n_sig = int(rec[1])
    fs = float(rec[2].split("/")[0].split("(")[0])
    if n_sig < 1 or len(lines) < 1 + n_sig or fs <= 0:
        return None
    h = Header(fs=fs, sig_len=int(rec[3]), sig_name=[], file_name=[], fmt=[], adc_gain=[], baseline=[])
    for line in lines[1:1 + n_sig]:
        t = line.split(maxsplit=8)
        if len(t) < 9:  # a field left to its default: let wfdb apply the defaults
            return None
        fmt = t[1]
        spf = skew = offset = 0
        if "+" in fmt:
            fmt, offset = fmt.split("+")[0], int(fmt.split("+")[1])
        if ":" in fmt:
            fmt, skew = fmt.split(":")[0], int(fmt.split(":")[1])
        if "x" in fmt:
            fmt, spf = fmt.split("x")[0], int(fmt.split("x")[1])
        gain_txt = t[2].split("/")[0]
        baseline = int(gain_txt.split("(")[1].rstrip(")")) if "(" in gain_txt else int(t[4])  # default: ADC zero
        gain = float(gain_txt.split("(")[0])
        h.file_name.append(t[0])
        h.fmt.append(fmt)
        h.adc_gain.append(gain if gain != 0 else 200.0)  # WFDB: a gain of 0 means the default, 200
        h.baseline.append(baseline)
        h.samps_per_frame.append(spf or 1)
        h.skew.append(skew)
        h.byte_offset.append(offset)
        h.sig_name.append(t[8].strip())
    return h


def read_header(path: str | os.PathLike) -> Header:
    """The header of record `path` (no extension). Raises on an unreadable header."""
    hea = Path(f"{path}.hea")
    text = hea.read_text()  # FileNotFoundError for a missing header, as wfdb raises
    try:
        h = _parse_header(text)
    except (ValueError, IndexError):
        h = None
    if h is not None:
        return h
    import wfdb
    r = wfdb.rdheader(str(path))
    n = r.n_sig or 0

    def per_signal(name: str, default) -> list:
        values = list(getattr(r, name, None) or [])
        return [values[i] if i < len(values) and values[i] is not None else default for i in range(n)]
    return Header(fs=float(r.fs), sig_len=int(r.sig_len or 0), sig_name=list(r.sig_name or []),
                  file_name=list(r.file_name or []), fmt=[str(f) for f in (r.fmt or [])],
                  adc_gain=list(r.adc_gain or []), baseline=list(r.baseline or []),
                  samps_per_frame=per_signal("samps_per_frame", 1), skew=per_signal("skew", 0),
                  byte_offset=per_signal("byte_offset", 0))


def read_annotations(path: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Read a WFDB annotation file in MIT format: (sample int64 (k,), symbol <U1 (k,)).

    Same result as ``wfdb.rdann(...).sample/.symbol`` (tests check all 48 records) at a
    fraction of the cost: wfdb builds Python objects per annotation, and reading annotations
    was a third of the cold cache build. Each 16-bit word holds a 6-bit code A and a 10-bit
    value I: A in 1..49 is an annotation I samples after the previous one; 59 SKIP (a 32-bit
    interval follows, high word first), 60 NUM, 61 SUB, 62 CHN (modify the last annotation,
    ignored here), 63 AUX (I bytes of text follow, padded to even); A = I = 0 ends the file.
    """
    words = np.fromfile(path, dtype="<u2").tolist()
    t, i, n = 0, 0, len(words)
    samples, codes = [], []
    while i < n:
        a, v = words[i] >> 10, words[i] & 0x3FF
        i += 1
        if a == 0 and v == 0:
            break
        if a == SKIP:  # 32-bit interval, PDP-11 word order
            hi, lo = words[i], words[i + 1]
            skip = (hi << 16) | lo
            t += skip - (1 << 32) if skip & 0x80000000 else skip
            i += 2
        elif a == AUX:  # text: skip it
            i += (v + 1) // 2
        elif a >= 60:  # NUM / SUB / CHN: do not move time
            continue
        else:
            t += v
            samples.append(t)
            codes.append(a)
    return np.asarray(samples, dtype=np.int64), _SYMBOL_OF_CODE[np.asarray(codes, dtype=np.int64)]


def annotation_bytes(samples: np.ndarray, symbols: list[str], fs: float) -> bytes:
    """An MIT-format annotation file of these (sorted) beats, as wfdb.wrann(..., fs=fs) writes it:
    a NOTE carrying "## time resolution: <fs>" (how wfdb stores fs), a SKIP back to sample 0,
    one word per annotation (a SKIP first when the interval exceeds 1023 samples), and 0."""
    fs_txt = str(int(fs)) if round(fs, 8) == float(int(fs)) else str(fs)
    text = f"## time resolution: {fs_txt}".encode()
    words = [NOTE << 10, (AUX << 10) | len(text)]
    words += np.frombuffer(text + b"\0" * (len(text) % 2), "<u2").tolist()
    words += [SKIP << 10, 0xFFFF, 0xFFFF, 1]  # interval -1, then a NOTQRS 1 later: time is 0 again
    prev = 0
    for s, sym in zip(np.asarray(samples, dtype=np.int64).tolist(), symbols):
        d, code = s - prev, ANN_CODES[sym]
        if d < 0:
            raise ValueError("annotation samples must be sorted")
        if d > 1023:
            words += [SKIP << 10, (d >> 16) & 0xFFFF, d & 0xFFFF]
            d = 0
        words.append((code << 10) | d)
        prev = s
    words.append(0)
    return np.asarray(words, dtype="<u2").tobytes()
