"""summarize.py on real reports (two tiny runs: seed4 and aami5) and on bad folders; run_all_models.sh argument checks."""
from __future__ import annotations

import csv
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

import summarize
import trainer

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def reports(mitbih_dir, tmp_path_factory) -> Path:
    """A folder with two real reports: a 2-epoch liteecgnet run (aami5) and an --eval-only
    report of its checkpoint on other records (no history, no epoch time)."""
    out = tmp_path_factory.mktemp("reports")
    common = ["--device", "cpu", "--root", str(mitbih_dir), "--no-download", "--out-dir", str(out),
              "--train-recs", "101", "106", "--val-recs", "103"]
    assert trainer.main(["--model", "liteecgnet", "--epochs", "2", "--batch-size", "32", "--class-limit", "300",
                         "--classes", "aami5", "--test-recs", "100", "119", *common]) == 0
    (ckpt,) = [p for p in out.glob("ecg_lightweight_*.pt") if not p.name.endswith(".last.pt")]
    assert trainer.main(["--eval-only", str(ckpt), "--test-recs", "105", "119", *common]) == 0
    ckpt.unlink()
    assert len(list(out.glob("eval_report_*.json"))) == 2
    return out


def _load(folder: Path) -> list[dict]:
    return [json.loads(p.read_text()) for p in sorted(folder.glob("eval_report_*.json"))]


def test_leaderboard_tables_and_plots(reports, tmp_path, capsys):
    out = tmp_path / "summary"
    assert summarize.main([str(reports), "--out", str(out)]) == 0
    stdout = capsys.readouterr().out
    md = (out / "leaderboard.md").read_text()
    assert md in stdout  # the table is printed too
    lines = md.strip().splitlines()
    assert lines[0] == ("| model | split | classes | seed | macro-F1 [95% CI] | accuracy | S Se | S +P | V Se | V +P | "
                        "S F1 | V F1 | N Se | S F1 w/o 232 | params | MACs | latency ms (b=1) | epoch s | report |")
    assert len(lines) == 2 + 2

    reps = {p.name: json.loads(p.read_text()) for p in reports.glob("eval_report_*.json")}
    with open(out / "leaderboard.csv") as f:
        rows = list(csv.DictReader(f))
    assert {r["report"] for r in rows} == set(reps)
    # one split (the explicit record lists): best macro-F1 first
    assert [float(r["macro_f1"]) for r in rows] == sorted((r["test"]["macro_f1"] for r in reps.values()), reverse=True)
    assert [r["report"] for r in rows] == [l.rsplit("|", 2)[1].strip() for l in lines[2:]]  # same order
    for row in rows:
        rep = reps[row["report"]]
        g = rep["test"]["ec57"]["gross"]
        assert (row["model"], row["split"], row["classes"]) == ("liteecgnet", rep["dataset"]["split"], "aami5")
        assert row["seed"] == str(rep["args"]["seed"])
        assert float(row["macro_f1"]) == pytest.approx(rep["test"]["macro_f1"], rel=1e-5)
        assert float(row["accuracy"]) == pytest.approx(rep["test"]["accuracy"], rel=1e-5)
        assert float(row["macro_f1_low"]) == pytest.approx(rep["test"]["ci"]["macro_f1"]["low"], rel=1e-5)
        assert float(row["macro_f1_high"]) == pytest.approx(rep["test"]["ci"]["macro_f1"]["high"], rel=1e-5)
        for col, cls, stat in (("S_Se", "S", "Se"), ("S_+P", "S", "+P"), ("V_Se", "V", "Se"), ("V_+P", "V", "+P")):
            want = g[cls][stat]
            assert row[col] == "" if want is None else float(row[col]) == pytest.approx(want, rel=1e-5)
        for col, cls in (("S_F1", "S"), ("V_F1", "V")):
            assert float(row[col]) == pytest.approx(rep["test"]["per_class"][cls]["f1"], rel=1e-5)
        assert float(row["N_Se"]) == pytest.approx(g["N"]["Se"], rel=1e-5)
        assert row["S_F1_no232"] == ""  # record 232 is in neither test part
        assert int(row["params"]) == rep["model_metrics"]["params_total"]
        assert int(row["macs"]) == rep["model_metrics"]["macs"]
        assert float(row["latency_ms"]) == pytest.approx(rep["model_metrics"]["latency_median_ms"], rel=1e-5)
        want = rep["timing"]["epoch_seconds_mean"]  # None for the --eval-only report
        assert row["epoch_s"] == "" if want is None else float(row["epoch_s"]) == pytest.approx(want, rel=1e-5)
        ci = rep["test"]["ci"]["macro_f1"]
        assert f"{rep['test']['macro_f1']:.4f} [{ci['low']:.4f}-{ci['high']:.4f}]" in md

    pngs = sorted((out / "plots").glob("*.png"))
    names = [p.name for p in pngs]
    assert "frontier.png" in names
    assert sum(n.startswith("confusion_") for n in names) == 2  # one per run
    assert sum(n.startswith("curves_") for n in names) == 1     # the --eval-only run has no history
    for p in pngs:
        data = p.read_bytes()
        assert data[:8] == PNG and len(data) > 1024, p.name
    assert not list(out.rglob("*.tmp"))


def test_seed4_class_names_fill_the_s_and_v_columns(reports):
    """seed4 reports name the classes SVEB / VEB instead of S / V."""
    rep = json.loads(next(reports.glob("eval_report_*.json")).read_text())
    g = rep["test"]["ec57"]["gross"]
    rep["test"]["ec57"]["gross"] = {"N": g["N"], "SVEB": g["S"], "VEB": g["V"], "Other": g["Q"]}
    rep["classes"], rep["preprocessing"]["classes"] = ["N", "SVEB", "VEB", "Other"], "seed4"
    row = summarize.report_row(rep, Path("eval_report_x.json"))
    assert row["classes"] == "seed4"
    assert (row["S_Se"], row["S_+P"], row["V_Se"], row["V_+P"]) == (g["S"]["Se"], g["S"]["+P"], g["V"]["Se"], g["V"]["+P"])


def test_missing_optional_values_show_as_dash(reports, tmp_path, capsys):
    """bootstrap = 0 (no ci), --eval-only (no history, epoch time None): rows still build."""
    (src,) = [p for p in reports.glob("eval_report_*.json") if not p.name.endswith("_evalonly.json")]
    rep = json.loads(src.read_text())
    rep["test"].pop("ci", None)
    rep["history"] = []
    rep["timing"]["epoch_seconds_mean"] = None
    rep["test"]["ec57"]["gross"] = None
    (tmp_path / "eval_report_x_evalonly.json").write_text(json.dumps(rep))
    res = summarize.summarize(tmp_path, tmp_path / "out", log=lambda line: None)
    (row,) = res["rows"]
    assert row["macro_f1_low"] is None and row["epoch_s"] is None and row["S_Se"] is None
    line = res["markdown"].splitlines()[2]
    assert f"| {rep['test']['macro_f1']:.4f} |" in line and "| - |" in line
    assert not list((tmp_path / "out" / "plots").glob("curves_*.png"))  # no history, no curves
    assert len(list((tmp_path / "out" / "plots").glob("confusion_*.png"))) == 1


def test_empty_folder_exits_2_with_one_line(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("no reports here")
    assert summarize.main([str(tmp_path)]) == 2
    captured = capsys.readouterr()
    assert captured.err == f"summarize.py: error: no eval_report_*.json in {tmp_path}\n" and not captured.out
    assert not (tmp_path / "leaderboard.md").exists()


def test_missing_folder_exits_2(tmp_path, capsys):
    assert summarize.main([str(tmp_path / "nope")]) == 2
    assert len(capsys.readouterr().err.strip().splitlines()) == 1


def test_malformed_reports_are_skipped_with_a_warning(reports, tmp_path, capsys):
    for p in reports.glob("eval_report_*.json"):
        shutil.copy(p, tmp_path / p.name)
    (tmp_path / "eval_report_broken.json").write_text('{"model": "liteecgnet", "test": ')
    good = json.loads(next(reports.glob("eval_report_*.json")).read_text())
    del good["test"]["macro_f1"]
    (tmp_path / "eval_report_nokey.json").write_text(json.dumps(good))
    (tmp_path / "eval_report_list.json").write_text("[1, 2]")
    assert summarize.main([str(tmp_path), "--no-plots"]) == 0
    out = capsys.readouterr()
    warns = out.err.strip().splitlines()
    assert len(warns) == 3 and all(w.startswith("summarize.py: warning: skipping eval_report_") for w in warns)
    assert any("eval_report_broken.json: not valid JSON" in w for w in warns)
    assert any("eval_report_nokey.json" in w and "test.macro_f1" in w for w in warns)
    assert any("eval_report_list.json" in w for w in warns)
    assert len((tmp_path / "leaderboard.md").read_text().strip().splitlines()) == 4


def test_only_malformed_reports_exits_2(tmp_path, capsys):
    (tmp_path / "eval_report_a.json").write_text("nope")
    assert summarize.main([str(tmp_path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("summarize.py: error: no readable report") and "eval_report_a.json" in err[0]


def test_class_table_holds_each_class_se_ppv_f1(reports, tmp_path):
    out = tmp_path / "summary"
    assert summarize.main([str(reports), "--out", str(out), "--no-plots"]) == 0
    lines = (out / "leaderboard_classes.md").read_text().strip().splitlines()
    assert lines[0].startswith("| model | split | macro-F1 [95% CI] | N Se / +P / F1 | S Se / +P / F1 |")
    reps = sorted(_load(reports), key=lambda r: -r["test"]["macro_f1"])
    assert len(lines) == 2 + len(reps)
    for line, rep in zip(lines[2:], reps):
        cells = [c.strip() for c in line.strip("|").split("|")]
        g, pc = rep["test"]["ec57"]["gross"], rep["test"]["per_class"]
        for c, cell in zip(rep["classes"], cells[3:]):
            want = [g[c]["Se"], g[c]["+P"], pc[c]["f1"]]
            got = [None if v == "-" else float(v) for v in cell.split(" / ")]
            assert got == [None if w is None else pytest.approx(w, abs=5e-4) for w in want], (c, cell)


def test_run_all_models_refuses_unknown_models_before_writing(tmp_path):
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "sweep"
    r = subprocess.run(["bash", str(root / "run_all_models.sh"), "--out-dir", str(out)], capture_output=True,
                       text=True, env={**os.environ, "MODELS": "liteecgnet nope"}, timeout=120)
    assert r.returncode == 2 and "unknown model 'nope'" in r.stderr
    assert "choose from: liteecgnet" in r.stderr and not out.exists()


def _sweep_cmd(root: Path, mitbih_dir: Path, out: Path, *extra: str) -> list[str]:
    return ["bash", str(root / "run_all_models.sh"), "--root", str(mitbih_dir), "--no-download", "--device", "cpu",
            "--class-limit", "100", "--train-recs", "101", "106", "--val-recs",
            "103", "--test-recs", "100", "--out-dir", str(out), *extra]


@pytest.mark.parametrize("jobs", ["0", "two", "-1"])
def test_run_all_models_refuses_a_bad_jobs_value(tmp_path, jobs):
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "sweep"
    r = subprocess.run(["bash", str(root / "run_all_models.sh"), "--out-dir", str(out)], capture_output=True,
                       text=True, env={**os.environ, "JOBS": jobs}, timeout=120)
    assert r.returncode == 2 and r.stderr.strip() == f"run_all_models.sh: JOBS must be a whole number >= 1, got '{jobs}'"
    assert not out.exists()


def test_run_all_models_jobs_2_runs_side_by_side_and_reports_a_failure(mitbih_dir, tmp_path):
    import sys
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "sweep"
    fake = tmp_path / "python"  # a Python that fails ldcnn's run only
    fake.write_text(f'#!/usr/bin/env bash\n[[ " $* " == *" --model ldcnn "* ]] && {{ echo boom >&2; exit 3; }}\n'
                    f'exec "{sys.executable}" "$@"\n')
    fake.chmod(0o755)
    r = subprocess.run(_sweep_cmd(root, mitbih_dir, out, "--epochs", "1"), capture_output=True, text=True,
                       timeout=600, env={**os.environ, "JOBS": "2", "MODELS": "liteecgnet ldcnn", "PYTHON": str(fake)})
    assert r.returncode == 1, r.stdout + r.stderr
    assert "=== liteecgnet started" in r.stdout and "=== ldcnn started" in r.stdout
    assert "!!! ldcnn failed (exit 3" in r.stdout and "FAILED: ldcnn" in r.stderr
    assert "=== liteecgnet done: test (records 100, " in r.stdout and "accuracy" in r.stdout
    assert (out / "train_ldcnn_seed1337.log").read_text().strip() == "boom"  # the default seed names the log
    (rep,) = out.glob("eval_report_*.json")
    report = json.loads(rep.read_text())
    assert report["model"] == "liteecgnet" and report["environment"]["threads"] == max(1, (os.cpu_count() or 1) // 2)
    assert "| liteecgnet  |" in r.stdout and (out / "leaderboard.md").is_file()
    assert not list(out.glob(".rc_*"))


@pytest.mark.parametrize("jobs", ["1", "2"])
def test_run_all_models_ctrl_c_stops_the_sweep_cleanly(mitbih_dir, tmp_path, jobs):
    """Ctrl-C as a terminal sends it: SIGINT to the sweep's process group. Running models stop the
    way one trainer does (best epoch evaluated, report and resume state written), none starts."""
    import signal
    import time
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "sweep"
    models = ["liteecgnet", "ldcnn"][:int(jobs)]
    p = subprocess.Popen(_sweep_cmd(root, mitbih_dir, out, "--epochs", "60", "--patience", "60"),
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True,
                         env={**os.environ, "JOBS": jobs, "MODELS": " ".join(models + ["resnet"])},
                         preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        deadline = time.time() + 300
        logs = [out / f"train_{m}_seed1337.log" for m in models]
        while not all(log.exists() and "epoch   2/60" in log.read_text() for log in logs):
            assert time.time() < deadline and p.poll() is None, "the runs did not reach epoch 2"
            time.sleep(0.5)
        os.killpg(p.pid, signal.SIGINT)
        stdout, stderr = p.communicate(timeout=300)
    finally:
        if p.poll() is None:
            os.killpg(p.pid, signal.SIGKILL)
    assert p.returncode == 130, stdout + stderr
    assert "interrupted; models not started: resnet" in stderr
    for m in models:
        assert f"!!! {m} interrupted" in stdout
        assert "interrupted: evaluating the best model so far" in (out / f"train_{m}_seed1337.log").read_text()
        (rep,) = out.glob(f"eval_report_{m}_*.json")
        assert json.loads(rep.read_text())["timing"]["interrupted"] is True
        assert len(list(out.glob(f"ecg_lightweight_{m}_*.last.pt"))) == 1
    assert not list(out.glob("train_resnet*.log"))


def test_runs_that_differ_only_in_seed_become_one_mean_std_row(reports, tmp_path):
    (src,) = [p for p in reports.glob("eval_report_*.json") if not p.name.endswith("_evalonly.json")]
    rep = json.loads(src.read_text())
    for i, (seed, f1) in enumerate(((1, 0.5), (2, 0.7), (3, 0.9))):
        r = json.loads(json.dumps(rep))
        r["args"]["seed"], r["args"]["out_dir"], r["test"]["macro_f1"] = seed, f"elsewhere{i}", f1
        r["test"]["key_classes_without_232"] = {"S": {"F1": f1 / 5}}  # as if 232 were tested: 0.1, 0.14, 0.18
        if seed == 1:  # a report from before --ema-epochs existed: the option at its default, same experiment
            del r["args"]["ema_epochs"]
        (tmp_path / f"eval_report_s{seed}.json").write_text(json.dumps(r))
    other = json.loads(json.dumps(rep))
    other["args"]["lr"] = 1.0  # another experiment: its own row
    (tmp_path / "eval_report_other.json").write_text(json.dumps(other))
    averaged = json.loads(json.dumps(rep))
    averaged["args"]["ema_epochs"] = 1.0  # the new option set: another experiment too
    (tmp_path / "eval_report_ema.json").write_text(json.dumps(averaged))
    pair = json.loads(json.dumps(rep))
    pair["args"]["ensemble"] = 2  # an --ensemble of two: its own row, named so
    (tmp_path / "eval_report_pair.json").write_text(json.dumps(pair))
    res = summarize.summarize(tmp_path, tmp_path / "out", plots=False, log=lambda line: None)
    groups = summarize.seed_groups(summarize.load_reports(tmp_path, print))
    assert sorted(g["n"] for g in groups) == [1, 1, 1, 3]
    assert sorted(g["model"] for g in groups).count(f"{rep['model']} x2") == 1
    (g,) = [g for g in groups if g["n"] == 3]
    assert g["seeds"] == "1 2 3" and g["macro_f1_mean"] == pytest.approx(0.7)
    assert g["macro_f1_std"] == pytest.approx(0.2)  # sample std of 0.5, 0.7, 0.9
    assert (g["S_F1_no232_mean"], g["S_F1_no232_std"]) == (pytest.approx(0.14), pytest.approx(0.04))
    one = [g for g in groups if g["n"] == 1][0]
    assert one["S_F1_no232_mean"] is None and one["N_Se_mean"] == pytest.approx(rep["test"]["ec57"]["gross"]["N"]["Se"])
    md = (tmp_path / "out" / "leaderboard_seeds.md").read_text()
    assert "| S F1 w/o 232 |" in md.splitlines()[0] and "| 0.140 ± 0.040 |" in md and "| - |" in md
    assert "0.700 ± 0.200" in md and any(f.name == "leaderboard_seeds.csv" for f in res["files"])
    # rows of one model name say which options tell them apart (ensemble makes its own model name)
    assert g["options"] == "ema_epochs=0.0, lr=" + str(rep["args"]["lr"])
    assert sorted(x["options"] for x in groups if x["n"] == 1) == ["-", "ema_epochs=0.0, lr=1.0", "ema_epochs=1.0, lr="
                                                                   + str(rep["args"]["lr"])]
    assert "| options |" in md.splitlines()[0] and "| ema_epochs=1.0, lr=" in md


def test_record_table_by_hand(reports, tmp_path):
    """leaderboard_records.md: per test record, S / V found of the record's beats (false calls), the
    mean over an experiment's runs; records with neither beats nor false calls of the class are
    left out, a stratified run is not tabled, and a report without per-record classes adds nothing."""
    (rep,) = [r for r in _load(reports) if r.get("history")]  # the trained run (aami5, test 100 and 119)
    kc = lambda n, tp, fp: {"n": n, "TP": tp, "FN": n - tp, "FP": fp}  # noqa: E731

    def put(seed, s100, s119, v119, split=None, name=None):
        r = json.loads(json.dumps(rep))
        r["args"]["seed"] = seed
        if split:
            r["dataset"]["split"] = split
        r["test"]["per_record"] = {"100": {"beats": 50, "accuracy": 0.9, "key_classes": {"S": s100, "V": kc(0, 0, 0)}},
                                   "119": {"beats": 60, "accuracy": 0.9, "key_classes": {"S": s119, "V": v119}}}
        (tmp_path / f"eval_report_{name or seed}.json").write_text(json.dumps(r))

    put(1, kc(10, 4, 1), kc(0, 0, 0), kc(20, 18, 0))
    put(2, kc(10, 6, 3), kc(0, 0, 1), kc(20, 16, 0))
    put(3, kc(10, 0, 0), kc(0, 0, 0), kc(20, 0, 0), split="stratified")  # not tabled
    old = json.loads(json.dumps(rep))
    old["args"]["seed"] = 4
    old["test"]["per_record"] = {"100": {"beats": 50, "accuracy": 0.9}}  # a report from before key_classes
    (tmp_path / "eval_report_old.json").write_text(json.dumps(old))
    summarize.summarize(tmp_path, tmp_path / "out", plots=False, log=lambda line: None)
    md = (tmp_path / "out" / "leaderboard_records.md").read_text()
    split = rep["dataset"]["split"]
    assert f"{split}, aami5: S beats found / the record's S beats (false S calls)" in md
    s_part, v_part = md.split(f"{split}, aami5: V beats")
    assert "| record | liteecgnet, 2 run(s) |" in s_part  # seeds 1 and 2; the old report has no figures
    assert "| 100 | 5 / 10 (2) |" in s_part  # (4 + 6) / 2 found, (1 + 3) / 2 false
    assert "| 119 | 0 / 0 (0) |" in s_part  # one false S call over two runs: 0.5 rounds to 0, the row stays
    assert "| 119 | 17 / 20 (0) |" in v_part and "| 100 |" not in v_part
    other = json.loads((tmp_path / "eval_report_1.json").read_text())  # another model, tested on 119 only
    other["model"], other["test"]["per_record"] = "ldcnn", {"119": {"beats": 60, "key_classes": {"S": kc(0, 0, 0)}}}
    (tmp_path / "eval_report_other.json").write_text(json.dumps(other))
    summarize.summarize(tmp_path, tmp_path / "out", plots=False, log=lambda line: None)
    s_part = (tmp_path / "out" / "leaderboard_records.md").read_text().split(f"{split}, aami5: V beats")[0]
    assert "| record | ldcnn, 1 run(s) | liteecgnet, 2 run(s) |" in s_part
    assert "| 100 | - | 5 / 10 (2) |" in s_part and "| 119 | 0 / 0 (0) | 0 / 0 (0) |" in s_part
    assert "stratified" not in md
    only_stratified = tmp_path / "strat"
    only_stratified.mkdir()
    shutil.copy(tmp_path / "eval_report_3.json", only_stratified / "eval_report_3.json")
    summarize.summarize(only_stratified, only_stratified, plots=False, log=lambda line: None)
    assert (only_stratified / "leaderboard_records.md").read_text().startswith("_no run tested whole records")


def test_run_all_models_seeds_gives_a_run_per_model_and_seed_and_their_mean_std(mitbih_dir, tmp_path):
    """SEEDS="1 2" with two models: four runs (two at a time), logs named by model and seed, and
    leaderboards with one mean ± std row per model over the two seeds."""
    import math
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "sweep"
    r = subprocess.run(_sweep_cmd(root, mitbih_dir, out, "--epochs", "1", "--threads", "1"),
                       capture_output=True, text=True, timeout=600,
                       env={**os.environ, "SEEDS": "1 2", "JOBS": "2", "MODELS": "liteecgnet ldcnn"})
    assert r.returncode == 0, r.stdout + r.stderr
    reps = [json.loads(p.read_text()) for p in out.glob("eval_report_*.json")]
    assert sorted((x["model"], x["args"]["seed"]) for x in reps) == [("ldcnn", 1), ("ldcnn", 2),
                                                                     ("liteecgnet", 1), ("liteecgnet", 2)]
    assert sorted(p.name for p in out.glob("train_*.log")) == [
        "train_ldcnn_seed1.log", "train_ldcnn_seed2.log", "train_liteecgnet_seed1.log", "train_liteecgnet_seed2.log"]
    assert "=== liteecgnet (seed 2) started" in r.stdout and "mean ± std over seeds" in r.stdout
    with open(out / "leaderboard_seeds.csv") as f:
        groups = {g["model"]: g for g in csv.DictReader(f)}
    assert sorted(groups) == ["ldcnn", "liteecgnet"]
    for model, g in groups.items():
        f1 = [x["test"]["macro_f1"] for x in reps if x["model"] == model]
        assert (g["n"], g["seeds"]) == ("2", "1 2") or (g["n"], g["seeds"]) == ("2", "2 1")
        assert float(g["macro_f1_mean"]) == pytest.approx(sum(f1) / 2)
        assert float(g["macro_f1_std"]) == pytest.approx(abs(f1[0] - f1[1]) / math.sqrt(2))  # sample std of two
    md = (out / "leaderboard_seeds.md").read_text()
    assert len(md.strip().splitlines()) == 2 + 2 and all(" ± " in line for line in md.strip().splitlines()[2:])
    assert (out / "plots" / "frontier.png").read_bytes()[:8] == PNG
    with open(out / "leaderboard.csv") as f:
        assert sorted(row["seed"] for row in csv.DictReader(f)) == ["1", "1", "2", "2"]  # the runs, beside


@pytest.mark.parametrize("seeds,extra,match", [
    ("1 x", [], "SEEDS must be whole numbers"),
    ("1 -2", [], "SEEDS must be whole numbers"),
    ("3 03", [], "seed 3 is twice in SEEDS"),
    ("1 2", ["--seed", "5"], "either in SEEDS or as --seed"),
])
def test_run_all_models_refuses_bad_seeds_before_writing(tmp_path, seeds, extra, match):
    root = Path(__file__).resolve().parents[1]
    out = tmp_path / "sweep"
    r = subprocess.run(["bash", str(root / "run_all_models.sh"), "--out-dir", str(out), *extra], capture_output=True,
                       text=True, env={**os.environ, "SEEDS": seeds}, timeout=120)
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and match in r.stderr, r.stderr
    assert not out.exists()
