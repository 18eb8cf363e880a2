"""bench/ scripts that compute something from files (no timing): cv_compare, accuracy's page."""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path


ROOT = Path(__file__).resolve().parents[1]


def _cv_report(path: Path, lr: float, f1s: list[float], seed: int = 1) -> None:
    per_epoch = [{"epoch": e + 1, "macro_f1": f, "loss": 1.0, "N_recall": 0.9,
                  "key_classes": {"S": {"Se": 0.5, "+P": 0.25, "F1": f / 2}, "V": {"Se": 0.8, "+P": 0.9, "F1": f}}}
                 for e, f in enumerate(f1s)]
    best = max(per_epoch, key=lambda r: r["macro_f1"])
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"args": {"lr": lr, "seed": seed, "out_dir": str(path.parent)},
                                "cv": {"k": 4, "per_epoch": per_epoch, "best": best, "chosen_epochs": best["epoch"]}}))


def test_cv_compare_ranks_settings_at_their_chosen_epoch(tmp_path):
    _cv_report(tmp_path / "a" / "cv_report_a.json", 0.001, [0.3, 0.4, 0.35])
    _cv_report(tmp_path / "b" / "cv_report_b.json", 0.003, [0.5, 0.45])
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "cv_compare.py"), *map(str, sorted(tmp_path.rglob("*.json")))],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith("| lr=")]
    # best first; only the flag that differs names the row (out_dir and seed are run details)
    assert rows == ["| lr=0.003 | 1 | 0.500 | 0.900 | 0.500 | 0.250 | 0.250 | 0.800 | 0.900 | 0.500 |",
                    "| lr=0.001 | 2 | 0.400 | 0.900 | 0.500 | 0.250 | 0.200 | 0.800 | 0.900 | 0.400 |"]
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "cv_compare.py"), str(tmp_path / "nope.json")],
                         capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and len(bad.stderr.strip().splitlines()) == 1


def _with_held_out(path: Path, pred: str, classes=("N", "S", "V", "F", "Q")) -> None:
    rep = json.loads(path.read_text())
    rep["classes"] = list(classes)
    rep["cv"]["held_out"] = {"beats": "same", "records": [[100, 4], [101, 4]], "y": "00110011", "pred": pred}
    path.write_text(json.dumps(rep))


def test_cv_compare_against_pairs_held_out_predictions(tmp_path):
    a, b = tmp_path / "a" / "cv_report_a.json", tmp_path / "b" / "cv_report_b.json"
    _cv_report(a, 0.001, [0.3])
    _cv_report(b, 0.003, [0.5])
    _with_held_out(a, "00000000")   # misses every S beat
    _with_held_out(b, "00110011")   # finds them all
    cmd = [sys.executable, str(ROOT / "bench" / "cv_compare.py"), "--against", str(a), str(b)]
    r = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    (row,) = [line for line in r.stdout.splitlines() if line.startswith(f"| {b} |")]
    # S F1 0 -> 1 on every draw of the two records; N F1 2/3 -> 1; macro over N and S: +(1/3 + 1)/2
    assert row == f"| {b} | +0.667 [+0.667, +0.667] | +1.000 [+1.000, +1.000] | - |"
    rep = json.loads(b.read_text())  # another set of beats: refused in one line
    rep["cv"]["held_out"]["beats"] = "other"
    b.write_text(json.dumps(rep))
    bad = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "same beats" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_cv_compare_vote_is_the_majority_of_held_out_predictions(tmp_path):
    paths = [tmp_path / n / f"cv_report_{n}.json" for n in "abc"]
    for p, pred in zip(paths, ["00000000", "00110011", "00110000"]):  # y = 00110011
        _cv_report(p, 0.001, [0.3])
        _with_held_out(p, pred)
    cmd = [sys.executable, str(ROOT / "bench" / "cv_compare.py"), "--vote"]
    r = subprocess.run([*cmd, *map(str, paths)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    # vote 00110000: S Se 2/4, +P 1, F1 2/3; N F1 = 8/10; macro over N and S (2/3 + 4/5) / 2;
    # V: no beats, none predicted (Se, +P undefined, F1 0 as metrics.f1_from_cm gives it)
    (row,) = [line for line in r.stdout.splitlines() if line.startswith("| majority vote")]
    assert row == "| majority vote of 3 reports | - | 0.733 | 1.000 | 0.500 | 1.000 | 0.667 | - | - | 0.000 |"
    _with_held_out(paths[2], "00220022")  # each S beat now gets 0, 1 and 2 once: the first report's 0 wins
    r = subprocess.run([*cmd, *map(str, paths)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    (row,) = [line for line in r.stdout.splitlines() if line.startswith("| majority vote")]
    assert row == "| majority vote of 3 reports | - | 0.333 | 1.000 | 0.000 | - | 0.000 | - | - | 0.000 |"
    rep = json.loads(paths[1].read_text())  # another set of beats: refused in one line
    rep["cv"]["held_out"]["beats"] = "other"
    paths[1].write_text(json.dumps(rep))
    bad = subprocess.run([*cmd, *map(str, paths)], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "same beats" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_cv_compare_seeds_against_tests_the_mean_difference_over_seeds(tmp_path):
    """--seeds-against: pairs by seed; differences +0.05, +0.02, -0.01 have mean 0.02 and sd 0.03, so
    t = 0.02 / (0.03 / sqrt 3) = 1.155 and, with 2 df, p = (1 - t / sqrt(t^2 + 2)) / 2 = 0.184 (by hand);
    S F1 is half of macro-F1 in these reports, V F1 equal to it."""
    base = [tmp_path / f"a{s}" / "cv_report.json" for s in (1, 2, 3)]
    new = [tmp_path / f"b{s}" / "cv_report.json" for s in (3, 1, 2)]  # any order: paired by seed
    for path, f, seed in [*zip(base, (0.3, 0.4, 0.5), (1, 2, 3)), *zip(new, (0.49, 0.35, 0.42), (3, 1, 2))]:
        _cv_report(path, 0.001 if path in base else 0.003, [f], seed=seed)
    cmd = [sys.executable, str(ROOT / "bench" / "cv_compare.py")]
    r = subprocess.run([*cmd, *map(str, new), "--seeds-against", *map(str, base)], capture_output=True, text=True,
                       cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    assert "| 1 | 0.3000 | 0.3500 | +0.0500 | +0.0250 | +0.0500 |" in r.stdout
    assert "| 3 | 0.5000 | 0.4900 | -0.0100 | -0.0050 | -0.0100 |" in r.stdout
    assert ("3 seeds: mean macro-F1 difference +0.0200 (sd 0.0300), positive at 2; one-sided paired t-test "
            "t = 1.15, p = 0.184; mean S F1 difference +0.0100, V F1 +0.0200") in r.stdout
    _cv_report(tmp_path / "dup" / "cv_report.json", 0.001, [0.6], seed=1)  # a second seed-1 report
    for reports, against, says in (([new[0], new[1]], base, "same two or more seeds"),
                                   (new, [*base, tmp_path / "dup" / "cv_report.json"], "holds a seed twice")):
        bad = subprocess.run([*cmd, *map(str, reports), "--seeds-against", *map(str, against)],
                             capture_output=True, text=True, cwd=ROOT, timeout=60)
        assert bad.returncode == 2 and says in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_cv_compare_records_lists_each_records_errors(tmp_path):
    a = tmp_path / "a" / "cv_report_a.json"
    _cv_report(a, 0.001, [0.3])
    _with_held_out(a, "12100010")  # y = 0011 (record 100) 0011 (record 101)
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "cv_compare.py"), "--records", str(a)],
                       capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert r.returncode == 0, r.stderr
    rows = [line for line in r.stdout.splitlines() if line.startswith(("| 100 ", "| 101 "))]
    # S: 100 finds 1 of 2 (the other called N) and calls one N beat S: 2 errors, listed first;
    # V: no V beat anywhere, one N beat of 100 called V; 101 has neither, so no V row
    assert rows == ["| 100 | 1 / 2 | N 1 | 1 | N 1 |", "| 101 | 1 / 2 | N 1 | 0 | - |", "| 100 | 0 / 0 | - | 1 | N 1 |"]
    _cv_report(tmp_path / "b" / "cv_report_b.json", 0.001, [0.3])  # no held-out predictions: one line
    bad = subprocess.run([sys.executable, str(ROOT / "bench" / "cv_compare.py"), "--records",
                          str(tmp_path / "b" / "cv_report_b.json")], capture_output=True, text=True, cwd=ROOT, timeout=60)
    assert bad.returncode == 2 and "held-out" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


def test_bench_script_whose_reader_left_exits_quietly(tmp_path):
    """`python bench/cv_compare.py ... | head`: the closed pipe ends the script with 141 (as a Unix
    tool killed by SIGPIPE) and no traceback (cli.run_cli, which every script's entry goes through)."""
    a = tmp_path / "a" / "cv_report_a.json"
    _cv_report(a, 0.001, [0.3, 0.4])
    p = subprocess.Popen([sys.executable, str(ROOT / "bench" / "cv_compare.py"), str(a)], cwd=ROOT,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    p.stdout.close()  # the reader is gone before the script writes its first line
    err = p.stderr.read().decode()
    assert p.wait(timeout=60) == 141 and err == ""


def test_accuracy_page_keeps_the_sections_of_protocols_not_rerun(tmp_path):
    """Sweeps live under data/ (outside git): regenerating the page without them must not erase
    the measured tables it already has."""
    page = tmp_path / "RESULTS.md"
    page.write_text((ROOT / "docs" / "RESULTS.md").read_text())
    before = page.read_text()
    r = subprocess.run([sys.executable, str(ROOT / "bench" / "accuracy.py"), "--skip-train", "--skip-bench",
                        "--out", str(tmp_path / "no_sweeps"), "--results", str(page),
                        "--notes", str(ROOT / "docs" / "results_notes.md")],
                       capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    keep = lambda text: [l for l in text.splitlines() if not l.startswith("Generated by")]  # noqa: E731
    assert keep(page.read_text()) == keep(before)
    for title in ("## Accuracy: stratified", "## Accuracy: random", "## Accuracy: interpatient", "## Model cost"):
        assert title in page.read_text()


def test_accuracy_page_puts_the_summary_first_and_the_notes_after_the_tables(tmp_path):
    """The hand-written summary opens the page, the generated tables follow, and the other hand-written
    measurements come after them; a missing notes file is left out, not an error."""
    page, summary, notes = tmp_path / "RESULTS.md", tmp_path / "summary.md", tmp_path / "notes.md"
    page.write_text((ROOT / "docs" / "RESULTS.md").read_text())
    summary.write_text("## Status XYZ\n\nsummary text\n")
    notes.write_text("## Other measurement QRS\n\nnotes text\n")
    cmd = [sys.executable, str(ROOT / "bench" / "accuracy.py"), "--skip-train", "--skip-bench",
           "--out", str(tmp_path / "no_sweeps"), "--results", str(page), "--summary", str(summary)]
    r = subprocess.run([*cmd, "--notes", str(notes)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    text = page.read_text()
    order = [text.index(t) for t in ("# LiteECG results", "## Status XYZ", "## Model cost", "## Accuracy: interpatient",
                                     "## How to read these numbers", "## Other measurement QRS")]
    assert order == sorted(order)
    r = subprocess.run([*cmd, "--notes", str(tmp_path / "absent.md")], capture_output=True, text=True, cwd=ROOT,
                       timeout=120)
    assert r.returncode == 0, r.stderr
    assert "QRS" not in page.read_text() and "## Status XYZ" in page.read_text()
    # a fresh inter-patient sweep: its tables, the per-record one included, replace the kept section
    sweep = tmp_path / "no_sweeps" / "interpatient"
    sweep.mkdir(parents=True)
    for name in ("leaderboard", "leaderboard_seeds", "leaderboard_classes", "leaderboard_records"):
        (sweep / f"{name}.md").write_text(f"table {name} here\n")
    r = subprocess.run([*cmd, "--notes", str(notes)], capture_output=True, text=True, cwd=ROOT, timeout=120)
    assert r.returncode == 0, r.stderr
    section = page.read_text().split("## Accuracy: interpatient\n", 1)[1].split("\n## ", 1)[0]
    assert all(f"table {n} here" in section for n in ("leaderboard", "leaderboard_seeds", "leaderboard_records"))
    assert section.index("table leaderboard_classes") < section.index("Per test record") < section.index("Published")
