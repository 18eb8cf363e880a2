"""wfdbio: LiteECG's own WFDB header / annotation readers and annotation writer, against wfdb."""
from __future__ import annotations

import numpy as np
import pytest

from utils import MITDB_RECORDS
from wfdbio import ANN_SYMBOLS, annotation_bytes, read_annotations, read_header


def test_code_table_is_wfdbs():
    from wfdb.io.annotation import ann_label_table as t
    assert ANN_SYMBOLS == dict(zip(t.label_store.tolist(), t.symbol.tolist()))


def test_headers_of_all_48_records_match_wfdb(mitbih_dir):
    import wfdb
    for rec in MITDB_RECORDS:
        h, r = read_header(mitbih_dir / rec), wfdb.rdheader(str(mitbih_dir / rec))
        assert (h.fs, h.sig_len, h.sig_name, h.file_name) == (r.fs, r.sig_len, r.sig_name, r.file_name), rec
        assert (h.fmt, h.adc_gain, h.baseline) == (r.fmt, r.adc_gain, r.baseline), rec
        assert h.samps_per_frame == [1] * r.n_sig and h.skew == h.byte_offset == [0] * r.n_sig, rec


@pytest.mark.parametrize("line,want", [
    ("x.dat 212x2:3+512 100(-5)/mV 12 7 0 0 0 V5", ("212", 100.0, -5, 2, 3, 512, "V5")),
    ("x.dat 16 0/uV 16 33 0 0 0 lead II", ("16", 200.0, 33, 1, 0, 0, "lead II")),  # gain 0 = 200; baseline = zero
])
def test_header_signal_line_fields(tmp_path, line, want):
    (tmp_path / "x.hea").write_text(f"x 1 250 1000\n{line}\n# a comment\n")
    h = read_header(tmp_path / "x")
    assert h.fs == 250 and h.sig_len == 1000
    assert (h.fmt[0], h.adc_gain[0], h.baseline[0], h.samps_per_frame[0], h.skew[0], h.byte_offset[0],
            h.sig_name[0]) == want


def test_short_header_goes_to_wfdb(tmp_path):
    """A signal line that leaves fields to their defaults is wfdb's to read (same values)."""
    import wfdb
    (tmp_path / "s.hea").write_text("s 1 360 100\ns.dat 16\n")
    h, r = read_header(tmp_path / "s"), wfdb.rdheader(str(tmp_path / "s"))
    assert (h.fs, h.sig_len, h.fmt, h.adc_gain, h.baseline) == (r.fs, r.sig_len, r.fmt, r.adc_gain, r.baseline)


def test_annotation_reader_reads_back_what_it_writes(tmp_path):
    samples = np.array([3, 500, 1524, 1525, 70_000, 650_000 - 9])
    symbols = ["N", "A", "V", "F", "Q", "N"]
    (tmp_path / "r.pred").write_bytes(annotation_bytes(samples, symbols, 360))
    s, y = read_annotations(tmp_path / "r.pred")
    # first the NOTE that carries fs and the NOTQRS that brings time back to 0 (not beats)
    assert y[:2].tolist() == ['"', " "] and s[:2].tolist() == [0, 0]
    assert s[2:].tolist() == samples.tolist() and y[2:].tolist() == symbols


@pytest.mark.parametrize("fs", [360, 360.0, 250.5])
def test_annotation_bytes_are_what_wfdb_wrann_writes(tmp_path, fs, mitbih_dir):
    """Byte for byte, on record 100's beats with every output symbol, long gaps (SKIPs) included."""
    import wfdb
    samples, _ = read_annotations(mitbih_dir / "100.atr")
    samples = np.unique(samples)
    samples = np.concatenate([samples[:50], samples[50:] + 5000])  # one 5,000-sample gap: a SKIP
    symbols = [("N", "A", "V", "F", "Q")[k % 5] for k in range(len(samples))]
    wfdb.wrann("w", "pred", sample=samples, symbol=symbols, fs=fs, write_dir=str(tmp_path))
    assert annotation_bytes(samples, symbols, fs) == (tmp_path / "w.pred").read_bytes()
    ann = wfdb.rdann(str(tmp_path / "w"), "pred")
    assert ann.fs == fs and ann.sample.tolist() == samples.tolist()
