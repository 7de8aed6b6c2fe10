"""`testtime report`: the HTML page is self-contained (every plot an inline PNG, nothing fetched), its Markdown
twin points at the same plots as files, and the tables carry the runs' numbers and metadata."""

from __future__ import annotations

import base64
import re

import pytest
from test_optimize import PROBLEMS, dev_rows, handler, scorer

from testtime import DataError
from testtime.cli import main
from testtime.engines import ScriptedEngine
from testtime.eval import EvalConfig, run_eval
from testtime.eval.difficulty import compute_difficulty
from testtime.eval.optimize import learn_policy
from testtime.eval.report import Reference, build_report

PNG = b"\x89PNG\r\n\x1a\n"


def make_runs(tmp_path):
    """A dev run (majority, weighted at N=2,4), its policy, and a test run of optimal with that policy."""
    rows = dev_rows(tmp_path)
    diff = compute_difficulty(rows, num_probe=2)
    policy = learn_policy(rows, diff, strategies=["majority", "weighted"], budgets=[2, 4], task="scripted", split="dev")
    path = policy.save(tmp_path / "policy.json")
    cfg = EvalConfig(task="scripted", strategies=["optimal"], n=[2, 4], out=str(tmp_path / "opt"), policy=str(path), batch_problems=5)
    run_eval(cfg, engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    return [tmp_path / "dev", tmp_path / "opt"], diff, policy


def inline_pngs(html: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'<img src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html)]


def test_report_is_self_contained_and_has_every_section(tmp_path):
    runs, diff, policy = make_runs(tmp_path)
    html_path, md_path = build_report(runs, tmp_path / "out" / "report.html", reference=Reference(0.55, "big model greedy"), difficulty=diff, policy=policy, title="T")
    html = html_path.read_text()
    pngs = inline_pngs(html)
    assert len(pngs) == 4 and all(p.startswith(PNG) and len(p) > 5000 for p in pngs)
    assert html.count("<img ") == 4
    assert not re.search(r'(src|href)="(?!data:)', html)  # nothing to fetch: no external file, script or style
    for heading in ["Accuracy vs budget", "Accuracy by difficulty level and budget", "Compute-optimal scaling", "Learned policy", "Runs"]:
        assert f"<h2>{heading}</h2>" in html
    # The summary table: optimal at N=4 gets A, B, C right (6/10), Wilson interval [0.313, 0.832].
    assert "<td>optimal</td><td>4</td><td>0.600</td><td>[0.313, 0.832]</td>" in html
    # Compute-optimal table: best single at N=4 is majority (0.4) and the hindsight bound is 0.6.
    assert "<td>4</td><td>majority 0.400</td><td>0.600 [0.313, 0.832]</td><td>0.600</td>" in html
    assert "Reference: big model greedy = 0.550." in html
    assert "<td>scripted / test</td><td>10</td>" in html and "torch" in html  # metadata with versions
    md = md_path.read_text()
    images = re.findall(r"!\[[^\]]*\]\((report_files/[a-z_]+\.png)\)", md)
    assert len(images) == 4 and all((html_path.parent / i).read_bytes().startswith(PNG) for i in images)
    assert "| optimal | 4 | 0.600 | [0.313, 0.832] |" in md


def test_report_cli_with_a_reference_run(tmp_path, capsys):
    runs, _, _ = make_runs(tmp_path)
    greedy = EvalConfig(task="scripted", strategies=["greedy"], n=[1], out=str(tmp_path / "big"), model="bigger-model")
    run_eval(greedy, engine=ScriptedEngine(handler), problems=PROBLEMS, progress=False, log=lambda *_: None)
    out = tmp_path / "r.html"
    assert main(["report", *map(str, runs), "--out", str(out), "--reference", str(tmp_path / "big"), "--policy", str(tmp_path / "policy.json")]) == 0
    assert capsys.readouterr().out.strip() == f"report: {out} (markdown: {tmp_path / 'r.md'})"
    html = out.read_text()
    assert "bigger-model greedy (10 problems): 0.400" not in html  # the label lives in the plot and the caption
    assert "Reference: bigger-model greedy (10 problems) = 0.400." in html  # greedy answers candidate 0: A, C right


@pytest.mark.parametrize(
    "argv, message",
    [
        pytest.param(["report", "nowhere"], "error: nowhere is not an eval run directory (no results.jsonl); pass the --out of `testtime eval`.", id="not-a-run"),
        pytest.param(["report", "RUN", "--reference-accuracy", "1.5"], "error: --reference-accuracy must be in [0, 1], got 1.5.", id="reference"),
        pytest.param(["report", "RUN", "--policy", "nope.json"], "error: policy file nope.json does not exist; write one with `testtime optimize`.", id="policy"),
    ],
)
def test_report_cli_errors_are_one_line(tmp_path, capsys, monkeypatch, argv, message):
    dev_rows(tmp_path)
    monkeypatch.chdir(tmp_path)
    argv = [str(tmp_path / "dev") if a == "RUN" else a for a in argv]
    assert main(argv) in (1, 2)
    assert capsys.readouterr().err.strip() == message


def test_load_run_of_an_empty_results_file_is_a_data_error(tmp_path):
    (tmp_path / "results.jsonl").write_text("")
    with pytest.raises(DataError, match="holds no results yet"):
        build_report([tmp_path], tmp_path / "r.html")


def test_compute_optimal_table_names_the_best_single_run_at_one_budget(tmp_path):
    """Single strategies evaluated at one budget only (the usual test run at N=16) still face optimal there."""
    runs, diff, policy = make_runs(tmp_path)
    cfg = EvalConfig(task="scripted", strategies=["majority", "weighted"], n=[4], out=str(tmp_path / "singles"), batch_problems=5)
    run_eval(cfg, engine=ScriptedEngine(handler), scorer=scorer(), problems=PROBLEMS, progress=False, log=lambda *_: None)
    html_path, _ = build_report([tmp_path / "singles", runs[1]], tmp_path / "out" / "report.html", difficulty=diff, policy=policy)
    html = html_path.read_text()
    # Majority at N=4 gets 4 of 10 here (as in the dev run); optimal 6 of 10; no single strategy ran at N=2.
    assert "<td>4</td><td>majority 0.400</td><td>0.600 [0.313, 0.832]</td>" in html
    assert re.search(r"<td>2</td><td>-</td><td>0\.\d{3} \[", html)
