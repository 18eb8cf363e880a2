"""Patient-specific calibration against the literature and the issue's targets, from the reports.

    python bench/calibration.py --calibrated DIR --patient-specific DIR [--out FILE.md]

DIR of --calibrated: `calibrate.py --evaluate` reports of DS1-trained checkpoints on DS2 (one per
seed); DIR of --patient-specific: `trainer.py --split patient-specific` reports on the 44 records
(one per seed). Prints Markdown tables, mean ± std over the reports (seeds): the literature's
protocol on 44 records, on the 24-record subset 200-234 and on DS2's 22 beside the published
rows; DS2's minutes 5-30 uncalibrated, calibrated and by the literature's protocol on the same
records; record by record; the targets. Se and +P are EC57 gross (WFDB sumstats' counts), F1 is
2 Se +P / (Se + +P) from them. Nothing here chooses anything: it reads finished reports.
"""
from __future__ import annotations

import json
from pathlib import Path

from common import parser, run_script  # noqa: E402  (puts the repository on sys.path)

import numpy as np  # noqa: E402

from dataset import DS2, PACED  # noqa: E402
from utils import MITDB_RECORDS  # noqa: E402

SUBSET_24 = [r for r in MITDB_RECORDS if 200 <= int(r) <= 234 and r not in PACED]
PUBLISHED = [  # 44 non-paced records, gross (as tabulated by Kiranyaz et al. 2016): V Se, V +P, S Se, S +P
    ("Kiranyaz et al. 2016, 1-D CNN", 0.950, 0.895, 0.646, 0.621),
    ("Ince et al. 2009", 0.846, 0.874, 0.635, 0.537),
    ("Jiang & Kong 2007", 0.866, 0.933, 0.506, 0.679),
]


def f1(se, pp):
    return None if not se or not pp else 2 * se * pp / (se + pp)


def pooled(per_record: dict, records: list[str]) -> dict:
    """Gross S and V Se / +P / F1 over `records` from the per-record EC57 counts."""
    out = {}
    for key in ("S", "V"):
        tp, fn, fp = (sum(per_record[r]["key_classes"][key][c] for r in records if r in per_record)
                      for c in ("TP", "FN", "FP"))
        se = tp / (tp + fn) if tp + fn else None
        pp = tp / (tp + fp) if tp + fp else None
        out[key] = {"Se": se, "+P": pp, "F1": f1(se, pp), "TP": tp, "n": tp + fn}
    return out


def ms(values: list) -> str:
    v = [x for x in values if x is not None]
    if not v:
        return "-"
    return f"{np.mean(v):.3f}" + (f" ± {np.std(v, ddof=1):.3f}" if len(v) > 1 else "")


def row(name: str, stats: list[dict], extra: list[str] = ()) -> str:
    cells = [ms([s[k][m] for s in stats]) for k in ("S", "V") for m in ("Se", "+P", "F1")]
    return f"| {name} | " + " | ".join([*cells, *extra]) + " |"


HEAD = "| | S Se | S +P | S F1 | V Se | V +P | V F1 |"


def load(folder: str) -> list[dict]:
    reports = [json.loads(p.read_text()) for p in sorted(Path(folder).glob("eval_report_*.json"))]
    if not reports:
        raise SystemExit(f"bench/calibration.py: no eval_report_*.json in {folder}")
    return reports


def main() -> int:
    ap = parser(__doc__, root=False)
    ap.add_argument("--calibrated", required=True, help="folder of calibrate.py --evaluate reports (DS2)")
    ap.add_argument("--patient-specific", required=True, help="folder of --split patient-specific reports")
    ap.add_argument("--out", help="also write the tables to this Markdown file (default: print only)")
    a = ap.parse_args()
    cal, ps = load(a.calibrated), load(a.patient_specific)
    seeds = lambda reps: " ".join(str(r["args"]["seed"]) for r in reps)  # noqa: E731
    lines = [f"The literature's protocol (`python trainer.py --split patient-specific --seed S`, seeds {seeds(ps)}): "
             "a model per record from the common set and its first 5 minutes, tested on its minutes 5-30:", "",
             HEAD + " records |", "|---|---:|---:|---:|---:|---:|---:|---|"]
    everyone = [r for r in MITDB_RECORDS if r not in PACED]
    for name, recs in (("liteecgnet, 44 records", everyone), ("liteecgnet, 24 records (200-234)", SUBSET_24),
                       ("liteecgnet, DS2's 22 records", list(DS2))):
        lines.append(row(name, [pooled(r["test"]["per_record"], recs) for r in ps], [str(len(recs))]))
    for name, vse, vpp, sse, spp in PUBLISHED:
        lines.append(f"| published: {name} | {sse:.3f} | {spp:.3f} | {f1(sse, spp):.3f} | {vse:.3f} | {vpp:.3f} | "
                     f"{f1(vse, vpp):.3f} | 44 |")
    secs = [sum(v["seconds"] for v in r["patient_specific"]["records"].values()) for r in ps]
    lines += ["", f"Training the 44 models took {np.mean(secs) / 60:.1f} min of fitting per seed (one thread; "
              f"{np.median([v['seconds'] for r in ps for v in r['patient_specific']['records'].values()]):.2f} s "
              "median per record).", ""]

    no_s = {rep["args"]["seed"]: [r for r, v in rep["patient_specific"]["records"].items()
                                  if v["calibration_beats"]["S"] == 0] for rep in cal}
    lines += [f"DS2, minutes 5-30 of each record, the same beats: the DS1-trained liteecgnet (`python trainer.py "
              f"--config experiments/interpatient_cv.toml --seed S`, seeds {seeds(cal)}) before and after "
              "`python calibrate.py --evaluate --checkpoint CKPT`, and the literature's protocol on the same records:",
              "", HEAD + " S F1 without 232 | S Se, records with no S in minutes 0-5 |",
              "|---|---:|---:|---:|---:|---:|---:|---:|---:|"]
    without = [r for r in DS2 if r != "232"]
    for name, part in (("uncalibrated", "uncalibrated"), ("calibrated", "test")):
        stats = [pooled(rep[part]["per_record"], list(DS2)) for rep in cal]
        w232 = [pooled(rep[part]["per_record"], without)["S"]["F1"] for rep in cal]
        nos = [pooled(rep[part]["per_record"], no_s[rep["args"]["seed"]])["S"]["Se"] for rep in cal]
        lines.append(row(f"DS1 model, {name}", stats, [ms(w232), ms(nos)]))
    stats = [pooled(r["test"]["per_record"], list(DS2)) for r in ps]
    lines.append(row("literature's protocol (from scratch)", stats,
                     [ms([pooled(r["test"]["per_record"], without)["S"]["F1"] for r in ps]), "-"]))
    times = [v["seconds"] for rep in cal for v in rep["patient_specific"]["records"].values()]
    lines += ["", f"Records with no S beat in their first 5 minutes: {' '.join(sorted(set().union(*no_s.values()), key=int))}. "
              f"Calibrating one patient: {np.median(times):.2f} s median, {max(times):.2f} s max (one thread, "
              "the 100 optimiser steps; the report's `patient_specific.records.<r>.seconds`).", ""]

    lines += ["S beats found / the record's S beats (false S calls), V likewise, mean over the seeds, uncalibrated → "
              "calibrated:", "", "| record | S uncalibrated | S calibrated | V uncalibrated | V calibrated |",
              "|---|---|---|---|---|"]

    def cell(rep_part: list[dict], r: str, key: str) -> str:
        k = [p["per_record"][r]["key_classes"][key] for p in rep_part if r in p["per_record"]]
        return (f"{np.mean([x['TP'] for x in k]):.0f} / {k[0]['n']} ({np.mean([x['FP'] for x in k]):.0f})"
                if k else "-")
    for r in DS2:
        lines.append(f"| {r} | " + " | ".join(cell([rep[p] for rep in cal], r, key) for key in ("S", "V")
                                              for p in ("uncalibrated", "test")) + " |")
    text = "\n".join(lines) + "\n"
    print(text)
    if a.out:
        Path(a.out).write_text(text)
    return 0


if __name__ == "__main__":
    run_script(main)
