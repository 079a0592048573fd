"""`resdyn demo --quick` runs every study end to end; `resdyn report` renders any output folder."""

import html
import json
import math
import os
import re
import shutil
import subprocess
import tempfile

import pytest
from click.testing import CliRunner
from conftest import assert_figure

from resdyn.cli import app
from resdyn.report import run_folders, side_by_side
from resdyn.studies import STUDIES
from resdyn.studies.demo import parts, run_demo

runner = CliRunner()


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    r = runner.invoke(app, ["demo", "--quick", "--out", str(out)])
    assert r.exit_code == 0, r.output
    return out, r.output


def test_quick_demo_runs_every_study(demo):
    out, output = demo
    names = [p.study.name for p in parts(quick=True)]
    assert {"stability", "identity", "identity-sweep", "stiffness", "stable-ode",
            "stable-compare"} <= set(names)
    assert [f.name for f in run_folders(out)] == [p.folder for p in parts(quick=True)]
    for p in parts(quick=True):
        folder = out / p.folder
        assert json.loads((folder / "run.json").read_text())["study"] == p.study.name
        assert not (folder / "errors.parquet").exists()
        for fig in p.study.figures:
            assert_figure(folder / f"{fig}.png")
        summary = json.loads((folder / "summary.json").read_text())
        assert [c["claim"] for c in summary["claims"]] == list(p.study.claims)
        for c in summary["claims"]:  # each verdict follows from its judgement: undecided
            # where its numbers' intervals straddle, not judged where it has none
            none = "undecided" if c["tests"] else "not judged"
            assert c["verdict"] == {True: "yes", False: "no", None: none}[c["held"]]
            assert all(t["what"] in c["numbers"] for t in c["tests"])
            assert bool(c["numbers"]) == bool(c["tests"])
        assert list(summary["figures"]) == list(p.study.figures)
    assert "report:" in output and "claims held" in output
    # the ODE examples' verdicts are exact: ẏ = K₊y separates nearby starts by e^(2T) = e^4 over
    # T = 2, and forward Euler on K₀ (|λ| = 1) grows distances by (1 + h²)^(N/2) = 1.01^10
    ode = json.loads((out / "004-ode" / "summary.json").read_text())["claims"]
    assert [c["verdict"] for c in ode] == ["yes", "yes"]
    assert f"distance × {math.exp(4):.1f}" in ode[0]["evidence"]
    assert f"Euler distance × {1.01 ** 10:.6f}" in ode[1]["evidence"]


def test_demo_report_holds_every_figure_and_claim(demo):
    out, _ = demo
    page = (out / "report.html").read_text()
    for p in parts(quick=True):
        assert f"id='run-{p.folder}'" in page
        for fig, spec in p.study.figures.items():
            assert f'alt="{fig}"' in page and spec.caption[:40] in page
        for claim in p.study.claims:
            assert claim[:40].replace("&", "&amp;") in page.replace("&#x27;", "'"), claim
    assert page.count("<img ") == sum(len(p.study.figures) for p in parts(quick=True))
    assert "src=\"http" not in page and "<link" not in page  # nothing outside the page


def test_report_puts_the_resnet_the_lm_and_the_vit_side_by_side(demo):
    out, _ = demo
    folders = run_folders(out)
    pairs = dict(side_by_side(folders))
    assert set(pairs) == {"stability", "identity", "stiffness"}
    page = (out / "report.html").read_text()
    table = page[page.index("<h2>Side by side</h2>"):page.index("<section")]
    for study, fs in pairs.items():
        assert [f.name for f in fs] == [fs[0].name, f"{fs[0].name}-lm", f"{fs[0].name}-vit"]
        assert f"<h3>{study}</h3>" in table
        for f in fs:  # each model's own verdict and evidence, in its column
            for c in json.loads((f / "summary.json").read_text())["claims"]:
                cell = f"<span class=\"{c['verdict'].replace(' ', '-')}\">{c['verdict']}</span>"
                numbers = (f"<br><small><b>{html.escape(c['numbers'])}</b></small>"
                           if c["numbers"] else "")
                assert f"<td>{cell}{numbers}: {html.escape(c['evidence'])}" in table.replace(
                    "<code>", "`").replace("</code>", "`"), (study, c["claim"])
    assert table.count("digits-vit") == 3 and table.count("digits-resnet20") == 3


def test_rerun_resumes_and_other_size_is_refused(demo):
    out, _ = demo
    results = run_demo(out, quick=True)
    assert sum(r.tasks_run for r in results) == 0
    assert all(r.stats.resumed == r.stats.total for r in results)
    r = runner.invoke(app, ["demo", "--out", str(out)])  # the full size into the quick folder
    assert r.exit_code == 2 and "quick" in r.output and "--fresh" in r.output, r.output


def test_report_of_one_study_folder(demo, tmp_path):
    out, _ = demo
    one = tmp_path / "stiffness"
    shutil.copytree(out / "003-stiffness", one)
    (one / "report.html").unlink()
    r = runner.invoke(app, ["report", str(one)])
    assert r.exit_code == 0, r.output
    page = (one / "report.html").read_text()
    study = STUDIES["stiffness"]
    assert page.count("<img ") == len(study.figures)
    for table in study.tables:
        assert f"<b>{table}</b>" in page
    assert "digits-resnet20" in page and "versions" in page and "last_run" in page
    empty = tmp_path / "empty"
    empty.mkdir()
    r = runner.invoke(app, ["report", str(empty)])
    assert r.exit_code == 2 and "holds no resdyn study run" in r.output


CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(CHROMIUM is None, reason="Debian's chromium is not installed "
                    "(apt-get install chromium): the report is not rendered in a browser")
def test_report_renders_in_chromium_with_every_figure_loaded(demo, tmp_path):
    out, _ = demo
    page = (out / "report.html").read_text()
    # the test's own probe: after load, count the images the browser decoded
    probe = ("<script>window.addEventListener('load',function(){var i=document.images,n=0;"
             "for(var k=0;k<i.length;k++){if(i[k].complete&&i[k].naturalWidth>0)n++;}"
             "document.body.setAttribute('data-loaded',n+'/'+i.length);});</script>")
    probed = tmp_path / "probed.html"
    probed.write_text(page.replace("</body>", probe + "</body>"))
    # chromium keeps its singleton socket under TMPDIR and the profile: a unix socket's path
    # has at most 107 bytes, so a deep temporary folder (as CI's) would silently end the
    # browser with an empty page; give it a short one of its own
    with tempfile.TemporaryDirectory(dir="/tmp" if os.path.isdir("/tmp") else None) as short:
        dom = subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             f"--user-data-dir={short}/profile", "--virtual-time-budget=5000",
             "--dump-dom", probed.as_uri()],
            capture_output=True, text=True, timeout=120, env={**os.environ, "TMPDIR": short}
        ).stdout
    loaded = re.search(r'data-loaded="(\d+)/(\d+)"', dom)
    assert loaded, dom[:500]
    n, total = map(int, loaded.groups())
    assert total == page.count("<img ") and n == total
