"""`emergence report`: one self-contained HTML file, a Markdown summary and figure files, from tidy
tables and run directories; escaped text, no network resources, no pyplot state, and (where
Chromium is installed) a clean load in a headless browser."""

import base64
import fcntl
import json
import os
import re
import select
import shutil
import subprocess
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from emergence import schema as S
from emergence.cli import main
from emergence.report.build import ReportConfig, build_report, read_predictions
from emergence.report.context import law_curves
from emergence.analysis.synthetic import composite

FIXTURES = Path(__file__).parent / "fixtures"
FAST = ReportConfig(n_boot=10, workers=1)
XSS = "<script>alert(1)</script>"


def _table(task="chain", family="synthetic", k=4, sizes=7):
    """A composite task (sub-task accuracies, exact match ~ p^k, a continuous bpb metric) on a
    family with sizes, tokens and a held-out loss that follows L(N) = 2 + (1e8/N)^0.3."""
    x, subs, comp = composite(k=k, points=sizes, n=1000, seed=3)
    noise = np.random.default_rng(0).normal(0, 0.01, len(x))
    rows = []
    for i, params in enumerate(x):
        loss = (2.0 + (1e8 / params) ** 0.3) * np.exp(noise[i])
        base = {S.FAMILY: family, S.MODEL: f"m{i}", S.CHECKPOINT: f"m{i}@step1000", S.STEP: 1000,
                S.PARAMS: params, S.TOKENS: 20 * params, S.LOSS: loss, S.TASK: task, S.N: 1000}
        rows.append({**base, S.SUBTASK: "", S.METRIC: "exact_match", S.VALUE: comp[i], S.CHANCE: 0.0})
        rows.append({**base, S.SUBTASK: "", S.METRIC: "gold_bpb", S.VALUE: 0.5 * loss, S.N: 1000})
        for j in range(k):
            rows.append({**base, S.SUBTASK: f"step_{j + 1}", S.METRIC: "acc", S.VALUE: subs[j, i], S.CHANCE: 0.0})
    return pd.DataFrame(rows)


@pytest.fixture(scope="module")
def synthetic_report(tmp_path_factory):
    root = tmp_path_factory.mktemp("report")
    path = root / "table.csv"
    _table().to_csv(path, index=False)
    pred = pd.DataFrame({"task": ["chain", "other"], "actual": [0.3, 0.6], "predicted": [0.25, 0.62],
                         "lo": [0.2, 0.55], "hi": [0.3, 0.7]})
    report = build_report([path], root / "out", predictions=pred, config=FAST)
    return report


def test_report_files_and_self_contained_html(synthetic_report):
    import matplotlib.pyplot as plt

    r = synthetic_report
    assert plt.get_fignums() == []  # no pyplot figure was opened (or left open)
    assert r.html.exists() and r.summary.exists()
    html = r.html.read_text()
    pngs = sorted(p.name for p in r.figures if p.suffix == ".png")
    svgs = sorted(p.name for p in r.figures if p.suffix == ".svg")
    assert pngs and svgs
    assert any("loss-scaling" in n for n in pngs) and any("composite" in n for n in pngs)
    assert any("predictions" in n for n in pngs) and any("metrics" in n for n in pngs)
    # every figure is inlined as a data URI, one <img> per PNG, and nothing is fetched
    srcs = re.findall(r'<img [^>]*src="([^"]*)"', html)
    assert len(srcs) == len(pngs) and all(s.startswith("data:image/png;base64,") for s in srcs)
    base64.b64decode(srcs[0].split(",", 1)[1], validate=True)
    assert not re.search(r"(src|href)\s*=\s*[\"']?\s*(https?:)?//", html, re.IGNORECASE)
    assert "http://" not in html and "https://" not in html
    assert not re.search(r"<(script|link rel=\"stylesheet\"|iframe|object|embed)\b", html, re.IGNORECASE)
    # verdicts, legend, audit, predictions and provenance are there
    for text in ("Verdicts at a glance", "metric-induced", "emergence report", "sha256", "Predictions vs actual",
                 "Full figures for", "Coverage: which model", "Checkpoints that are outliers on many tasks",
                 "<summary><b>vs params</b>"):
        assert text in html, text
    for label in ("emergent", "smooth", "flat", "undetermined", "inverse", "noisy"):
        assert f"<b>{label}</b>:" in html
    summary = r.summary.read_text()
    assert "## Verdicts" in summary and "emergence report" in summary
    assert "7 models x 1 tasks: 0 model x task cells missing" in summary
    assert all(f"figures/{n}" in summary for n in pngs)


def test_text_from_data_is_escaped(tmp_path):
    df = _table(task=XSS, family='fam"><img src=x onerror=alert(2)>').drop(columns=[S.LOSS])  # no fits: fast
    path = tmp_path / "xss.csv"
    df.to_csv(path, index=False)
    r = build_report([path], tmp_path / "out", config=FAST)
    html = r.html.read_text()
    assert XSS not in html and "<img src=x" not in html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in html
    assert "\\<script\\>alert(1)\\</script\\>" in r.summary.read_text()
    assert all(re.fullmatch(r"[a-z0-9.-]+", p.name) for p in r.figures)  # file names from data are slugs


def test_cli_reuses_analysis_and_refuses_a_foreign_one(tmp_path, capsys):
    table, other = tmp_path / "t.csv", tmp_path / "other.csv"
    _table().drop(columns=[S.LOSS]).to_csv(table, index=False)  # no loss, no fits: fast
    _table(task="different").drop(columns=[S.LOSS]).to_csv(other, index=False)
    assert main(["analyze", str(table)]) == 0  # writes tmp_path/analysis/
    capsys.readouterr()
    assert main(["report", str(table), "-o", str(tmp_path / "r1"), "--max-tasks", "1"]) == 0
    out = capsys.readouterr().out
    assert "re-used from" in out and "report.html" in out
    html = (tmp_path / "r1" / "report.html").read_text()
    assert f"emergence report {table} -o {tmp_path / 'r1'} --max-tasks 1" in html
    # the analysis/ folder beside other.csv belongs to t.csv: not used, and the report says why
    assert main(["report", str(other), "-o", str(tmp_path / "r2"), "--max-tasks", "0"]) == 0
    assert "computed from another table" in capsys.readouterr().out
    assert main(["report", str(other), "-o", str(tmp_path / "r3"), "--analysis", str(tmp_path / "analysis")]) == 1
    assert "cannot be used for this table" in capsys.readouterr().err


@pytest.fixture(scope="module")
def analysed(tmp_path_factory):
    """A table with loss (so scaling laws are fitted) and the analysis/ folder `emergence analyze` wrote."""
    root = tmp_path_factory.mktemp("analysed")
    _table(sizes=6).to_csv(root / "t.csv", index=False)
    assert main(["analyze", str(root / "t.csv"), "--n-boot", "5", "--workers", "1"]) == 0
    assert "ok" in set(pd.read_csv(root / "analysis" / "fits.csv")["status"])
    return root


@pytest.mark.parametrize("damage, why", [
    ("killed or older", "has no manifest.json"),   # analyze killed before its manifest (and fits.csv), or an old version
    ("missing csv", "its fits.csv is missing"),
    ("changed csv", "its fits.csv is not the one its manifest lists"),
    ("changed table", "computed from another table"),   # same curves, other numbers: stale fits
])
def test_an_analysis_folder_is_reused_only_whole_and_for_its_table(analysed, tmp_path, capsys, damage, why):
    shutil.copytree(analysed, tmp_path, dirs_exist_ok=True)
    table, folder = tmp_path / "t.csv", tmp_path / "analysis"
    if damage == "killed or older":
        (folder / "manifest.json").unlink(missing_ok=True)
        (folder / "fits.csv").unlink()
    elif damage == "missing csv":
        (folder / "fits.csv").unlink()
    elif damage == "changed csv":
        (folder / "fits.csv").write_text((folder / "fits.csv").read_text().replace("ok", "failed"))
    else:
        before = os.stat(folder / "verdicts.csv").st_mtime - 60
        df = pd.read_csv(table)
        df.assign(value=df[S.VALUE] * 0.9, loss=df[S.LOSS] * 1.1).to_csv(table, index=False)
        os.utime(table, (before, before))   # copied with its times kept: not newer than the analysis
    capsys.readouterr()
    assert main(["report", str(table), "-o", str(tmp_path / "r"), "--max-tasks", "0", "--n-boot", "5"]) == 0
    out = capsys.readouterr().out
    assert "not used" in out and why in out and "re-used" not in out
    html = (tmp_path / "r" / "report.html").read_text()
    assert why in (tmp_path / "r" / "summary.md").read_text() and why in html   # the provenance says why
    assert "No scaling law was fitted" not in html


def test_report_from_a_run_directory(tiny_family_dir, tmp_path):
    from emergence.run.config import BackendOptions, RunConfig
    from emergence.run.runner import run

    cfg = RunConfig(family=str(tiny_family_dir), tasks=("mc_arith",), out=str(tmp_path / "run"),
                    limit=4, backend=BackendOptions(batch_size=4))
    run(cfg, progress=False)
    t0 = time.perf_counter()
    r = build_report([tmp_path / "run"], tmp_path / "report", config=FAST)
    html = r.html.read_text()
    versions = json.loads((tmp_path / "run" / "run.json").read_text())["tasks"]
    assert "run directory" in html and "not recorded in a tidy table" not in html
    assert all(f"<td>{v}</td>" in html for v in versions.values())
    assert any(p.suffix == ".png" for p in r.figures)
    print(f"report on the run: {time.perf_counter() - t0:.1f} s", r.seconds)


@pytest.fixture(scope="module")
def pythia_report(tmp_path_factory):
    """A family of training checkpoints: the Pythia fixture, 3 of its 9 tasks (a short analysis)."""
    root = tmp_path_factory.mktemp("pythia")
    df = pd.read_csv(FIXTURES / "pythia_small.csv.gz")
    df[df["task"].isin(["lambada_openai", "arc_easy", "mmlu"])].to_csv(root / "pythia.csv", index=False)
    return build_report([root / "pythia.csv"], root / "pythia", config=ReportConfig(max_tasks=1, workers=1))


def test_pythia_fixture_report(pythia_report):
    r = pythia_report
    html = r.html.read_text()
    assert "pythia-deduped" in html and "EleutherAI/pythia-12b" in html
    assert "Full figures for 1 of 3 tasks" in html and "in the verdict tables only" in html
    # a family of training checkpoints: its training curves first, then size with the verdict's fitted curve
    names = [p.name for p in r.figures if p.suffix == ".png"]
    assert [n.split("-", 1)[1] for n in names] == ["arc-easy-training.png", "arc-easy-size.png"]
    assert "training tokens" in r.figures[1].read_text()
    assert "fitted curve" in r.figures[3].read_text() and "verdict vs params: smooth" in r.figures[3].read_text()
    assert "Coverage: which model, task and setting" in html and "16 models x 3 tasks" in html
    # trimming sensitivity: each checkpoint axis judged again without each run's first judged checkpoints
    section = html[html.index('id="trimming"'):html.index('id="verdict-table"')]
    assert section.count("<td>tokens</td>") == 3 and "first 3 judged checkpoint(s) per run" in section
    assert "vs tokens, first 1 judged checkpoint(s) per run:" in r.summary.read_text()


def test_law_band_covers_the_line_and_widens_when_extrapolating(tmp_path):
    from emergence.analysis.analyze import analyze

    df = _table(sizes=8)
    band = law_curves(df, analyze(df, [S.PARAMS], n_boot=10).fits)
    size = band[band["form"] == "size"].sort_values(S.PARAMS)
    assert len(size) and (size["lo"] <= size[S.LOSS]).all() and (size[S.LOSS] <= size["hi"]).all()
    width = (size["hi"] - size["lo"]).to_numpy()
    beyond = size["extrapolated"].to_numpy()
    assert width[-1] > 1.5 * width[~beyond][-1]  # 10x the largest model vs the largest model
    np.testing.assert_allclose(size[S.LOSS], 2.0 + (1e8 / size[S.PARAMS]) ** 0.3, rtol=0.03)


def test_outputs_of_emergence_predict_are_read_as_backtests():
    from emergence.analysis import predict
    bt = predict.backtest_loss(_table(), 1e9, form="size", n_boot=10)
    p = read_predictions(bt)
    assert len(p) == bt["predicted"].notna().sum() > 0 and {"lo", "hi"} <= set(p.columns)
    assert p["task"].str.contains("@step").all()  # one row per held-out checkpoint
    validation = pd.DataFrame({"target": "13B-5T", "task": ["a", "b", "c"], "actual": [0.5, 0.6, 0.7],
                               "our_pred": [0.45, 0.62, np.nan], "paper_pred": [0.5, 0.58, 0.6],
                               "pred_low": [0.4, 0.6, np.nan], "pred_high": [0.5, 0.65, np.nan]})
    p = read_predictions(validation)
    assert list(p.columns) == ["task", "actual", "predicted", "lo", "hi", "reference"]
    assert len(p) == 2 and p.attrs["dropped"] == 1


def test_predictions_need_their_columns():
    with pytest.raises(ValueError, match="missing \\['predicted'\\]"):
        read_predictions(pd.DataFrame({"task": ["a"], "actual": [1.0]}))


# ---- headless Chromium -----------------------------------------------------------------------

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser", "google-chrome")) if p), None)
BASH = shutil.which("bash")


@pytest.mark.skipif(CHROMIUM is None or BASH is None,
                    reason="Chromium is not installed (apt-get install chromium chromium-driver)")
@pytest.mark.parametrize("which", ["synthetic_report", "pythia_report"])
def test_report_opens_cleanly_in_headless_chromium(which, request, tmp_path):
    report = request.getfixturevalue(which)
    events, page, shot = _load_in_chromium(report.html, tmp_path)
    errors = [e for e in events if e["kind"] in ("console-error", "exception", "log-error", "load-failed")]
    assert errors == []
    requests = [e["url"] for e in events if e["kind"] == "request"]
    assert requests and all(u.startswith(("file://", "data:")) for u in requests), requests
    # every figure loads, and is shown at its natural size (its 9 pt text stays 9 pt at 100%)
    assert len(page["images"]) >= 2
    assert all(i["naturalWidth"] > 0 and i["complete"] for i in page["images"]), page["images"]
    assert all(i["width"] == i["naturalWidth"] for i in page["images"]), page["images"]
    # nothing sticks out of the page except inside a scroll box (wide tables scroll in theirs)
    assert page["overflowing"] == [] and page["scrollWidth"] <= page["clientWidth"]
    assert shot[:8] == b"\x89PNG\r\n\x1a\n" and len(shot) > 10_000
    (tmp_path / "screenshot.png").write_bytes(shot)   # the artifact: the whole page as it looks
    print(f"screenshot: {tmp_path / 'screenshot.png'}")


@pytest.mark.skipif(CHROMIUM is None or BASH is None,
                    reason="Chromium is not installed (apt-get install chromium chromium-driver)")
def test_the_browser_check_sees_overflow_and_scaled_figures(tmp_path):
    """The page facts the report test relies on can fail: a table too wide outside a scroll box,
    a figure shown smaller than drawn and an image that does not load are all seen."""
    from emergence.report.render import FigureJob, render_figures

    src = render_figures([FigureJob("x", "x", "", "predictions_figure", (pd.DataFrame(
        {"task": ["a", "b"], "actual": [0.1, 0.2], "predicted": [0.2, 0.3]}),))], None, FAST)[0]["src"]
    page = tmp_path / "page.html"
    page.write_text(f'''<!DOCTYPE html><html><body style="margin: 0">
        <div style="overflow-x: auto"><table id="inside" style="width: 3000px"><tr><td>fine</td></tr></table></div>
        <details><summary>s</summary><table id="outside" style="width: 3000px"><tr><td>too wide</td></tr></table></details>
        <img alt="shrunk" src="{src}" style="width: 100px"><img alt="broken" src="data:image/png;base64,AAAA">
        </body></html>''')
    _, facts, _ = _load_in_chromium(page, tmp_path)
    assert [o.split(":")[0] for o in facts["overflowing"]] == ["TABLE#outside", "TBODY", "TR", "TD"]
    shrunk, broken = facts["images"]
    assert shrunk["width"] == 100 < shrunk["naturalWidth"] and broken["naturalWidth"] == 0


def _load_in_chromium(html: Path, tmp_path: Path, timeout: float = 60.0):
    """Open ``html`` in headless Chromium over the DevTools protocol on a pipe (no network, no
    websocket library); return the console/network events, facts about the page (``_PAGE_FACTS``)
    and a PNG screenshot of the whole page."""
    args = [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-quic", "--no-first-run", "--disable-component-update", "--disable-sync",
            "--disable-dev-shm-usage", "--disable-extensions", "--mute-audio", "--window-size=1280,1800",
            f"--user-data-dir={tmp_path / 'chromium-profile'}", "--remote-debugging-pipe", "about:blank"]
    to_child, from_parent = os.pipe()    # Chromium reads commands on fd 3
    to_parent, from_child = os.pipe()    # and writes replies and events on fd 4
    to_child, from_child = (_above_4(fd) for fd in (to_child, from_child))

    # bash puts the pipe ends on fds 3 and 4 and closes the originals before exec'ing Chromium
    # (dash's redirections take single-digit fds only).
    redirect = f'exec "$0" "$@" 3<&{to_child} 4>&{from_child} {to_child}<&- {from_child}>&-'
    proc = subprocess.Popen([BASH, "-c", redirect, *args], pass_fds=(to_child, from_child),
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    os.close(to_child)
    os.close(from_child)
    cdp = _Pipe(from_parent, to_parent, time.monotonic() + timeout)
    try:
        target = cdp.call("Target.createTarget", {"url": "about:blank"})["targetId"]
        session = cdp.call("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
        for domain in ("Runtime", "Log", "Network", "Page"):
            cdp.call(f"{domain}.enable", session=session)
        cdp.call("Page.navigate", {"url": html.resolve().as_uri()}, session=session)
        cdp.wait_for("Page.loadEventFired", session)
        cdp.drain(0.5)  # late console messages
        page = json.loads(cdp.call("Runtime.evaluate", {"expression": _PAGE_FACTS, "returnByValue": True},
                                   session=session)["result"]["value"])
        shot = base64.b64decode(cdp.call("Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True},
                                         session=session)["data"])
        try:
            cdp.call("Browser.close")
        except (OSError, TimeoutError, EOFError):
            pass
        return cdp.events, page, shot
    finally:
        os.close(from_parent)
        os.close(to_parent)
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


# Every <details> opened first, so that what it holds is laid out and measured too. An element
# overflows when its right edge passes the page's width and no ancestor scrolls it (overflow-x
# auto or scroll clips it to that box).
_PAGE_FACTS = """
(() => {
  document.querySelectorAll('details').forEach(d => d.open = true);
  const width = document.documentElement.clientWidth;
  const scrolls = el => { for (let p = el.parentElement; p; p = p.parentElement) {
      if (['auto', 'scroll', 'hidden'].includes(getComputedStyle(p).overflowX)) return true; } return false; };
  const overflowing = Array.from(document.body.querySelectorAll('*'))
    .filter(el => el.getBoundingClientRect().right > width + 1 && !scrolls(el))
    .map(el => el.tagName + (el.id ? '#' + el.id : '') + ': ' + (el.textContent || '').slice(0, 60));
  return JSON.stringify({clientWidth: width, scrollWidth: document.documentElement.scrollWidth, overflowing,
    images: Array.from(document.images).map(i => ({alt: i.alt, complete: i.complete, naturalWidth: i.naturalWidth,
                                                   width: i.width}))});
})()
"""


def _above_4(fd):
    """The same pipe end on a descriptor >= 10, so that putting the pipes on 3 and 4 clobbers neither."""
    high = fcntl.fcntl(fd, fcntl.F_DUPFD, 10)
    os.close(fd)
    return high


class _Pipe:
    """Minimal Chrome DevTools protocol client: JSON messages separated by NUL bytes."""

    def __init__(self, write_fd, read_fd, deadline):
        self.w, self.r, self.deadline, self.buf, self.next_id, self.events = write_fd, read_fd, deadline, b"", 0, []

    def call(self, method, params=None, session=None):
        self.next_id += 1
        msg = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            msg["sessionId"] = session
        os.write(self.w, json.dumps(msg).encode() + b"\0")
        while True:
            reply = self._read()
            if reply.get("id") == self.next_id:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})

    def wait_for(self, event, session):
        while True:
            if self._read().get("method") == event:
                return

    def drain(self, seconds):
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            if not select.select([self.r], [], [], max(0.0, end - time.monotonic()))[0]:
                return
            self._read()

    def _read(self):
        while b"\0" not in self.buf:
            left = self.deadline - time.monotonic()
            if left <= 0 or not select.select([self.r], [], [], left)[0]:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self.r, 1 << 20)
            if not chunk:
                raise EOFError("Chromium closed the pipe")
            self.buf += chunk
        raw, self.buf = self.buf.split(b"\0", 1)
        msg = json.loads(raw)
        self._record(msg)
        return msg

    def _record(self, msg):
        method, p = msg.get("method"), msg.get("params", {})
        if method == "Runtime.consoleAPICalled" and p.get("type") in ("error", "assert"):
            self.events.append({"kind": "console-error", "text": str(p.get("args"))})
        elif method == "Runtime.exceptionThrown":
            self.events.append({"kind": "exception", "text": str(p.get("exceptionDetails"))})
        elif method == "Log.entryAdded" and p.get("entry", {}).get("level") == "error":
            self.events.append({"kind": "log-error", "text": p["entry"].get("text"), "url": p["entry"].get("url")})
        elif method == "Network.loadingFailed":
            self.events.append({"kind": "load-failed", "text": p.get("errorText")})
        elif method == "Network.requestWillBeSent":
            self.events.append({"kind": "request", "url": p.get("request", {}).get("url", "")})


def _text_problems(fig):
    """Pairs of visible texts that overlap, and texts that stick out of the figure."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    renderer = fig.canvas.get_renderer()
    hidden = set()  # labels of ticks outside the view limits exist but are not drawn
    for ax in fig.axes:
        for axis in (ax.xaxis, ax.yaxis):
            lo, hi = sorted(axis.get_view_interval())
            for ticks, locs in ((axis.get_major_ticks(), axis.get_majorticklocs()),
                                (axis.get_minor_ticks(), axis.get_minorticklocs())):
                for tick, loc in zip(ticks, locs):
                    if not lo - 1e-9 * abs(lo) <= loc <= hi + 1e-9 * abs(hi):
                        hidden.update((id(tick.label1), id(tick.label2)))
    texts = [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip() and id(t) not in hidden]
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts]
    w, h = fig.bbox.width, fig.bbox.height
    outside = [s for s, b in boxes if b.x0 < -0.5 or b.y0 < -0.5 or b.x1 > w + 0.5 or b.y1 > h + 0.5]
    inner = [(s, b.padded(-1.0)) for s, b in boxes]  # touching by a pixel is not overlapping
    overlaps = [(s, r) for i, (s, b) in enumerate(inner) for r, c in inner[i + 1:] if b.overlaps(c)]
    return overlaps, outside


def test_figures_have_no_overlapping_or_clipped_labels():
    from emergence.report import figures as F
    from emergence.tidy import fill_chance

    df = fill_chance(pd.read_csv(FIXTURES / "pythia_small.csv.gz"))  # 16 models x 27 steps
    df[S.SUBTASK] = df[S.SUBTASK].fillna("")
    df[S.CHECKPOINT] = df[S.MODEL] + "@" + df[S.STEP].astype(str)
    lam = df[df[S.TASK] == "lambada_openai"]
    long_tasks = [f"a_rather_long_task_name_number_{i:02d}_5shot" for i in range(10)] + \
        [f"3B-{i}.5xC@step{1000 * i + 10086}" for i in range(10)]  # wide characters too
    rng = np.random.default_rng(0)
    pred = pd.DataFrame({"task": long_tasks, "actual": rng.random(20), "predicted": rng.random(20)})
    synthetic = _table()
    figures = {"size": F.metric_vs_size(lam[lam[S.METRIC] == "acc"]),
               "views": F.metric_views(lam, S.PARAMS),
               "predictions": F.predictions_figure(pred),
               "loss": F.loss_scaling_figure(synthetic),
               "composite": F.composite_figure(synthetic, S.LOSS, k_eff=3.5),
               "views vs loss": F.metric_views(synthetic[synthetic[S.SUBTASK] == ""], S.LOSS, pd.DataFrame(
                   [{S.FAMILY: "synthetic", S.METRIC: "exact_match", "label": "emergent", "eta": 2.6,
                     "eta_lo": 2.55, "eta_hi": 2.7}]))}
    runs = _runs()
    t1 = runs[runs[S.TASK] == "t1"].assign(**{S.LOSS: lambda d: 4.0 - 0.1 * np.log(d[S.TOKENS] * d[S.PARAMS] / 1e15)})
    loss_verdict = pd.DataFrame([{S.FAMILY: "f", S.METRIC: "acc", "label": "smooth", "eta": np.nan}])
    figures["training"] = F.metric_vs_tokens(t1, loss_verdict, pd.DataFrame({"checkpoint": ["m4e+08@step6"]}))
    figures["training, pythia"] = F.metric_vs_tokens(lam[lam[S.METRIC] == "acc"])
    size_verdict = pd.DataFrame([{S.FAMILY: "pythia", S.METRIC: "acc", "label": "emergent", "best_model": "threshold",
                                  "eta": 3e8, "eta_lo": 2e8, "eta_hi": 5e8}])
    line = (np.geomspace(7e7, 1.2e10, 20), np.linspace(0.2, 0.7, 20))
    figures["size fit"] = F.metric_vs_size_fit(lam[lam[S.METRIC] == "acc"], size_verdict, {"pythia": line})
    one = lam[(lam[S.METRIC] == "acc") & (lam[S.FAMILY] == "pythia")]     # one panel, the longest title
    long_title = size_verdict.assign(best_model="saturating_threshold", eta=6.7e8, eta_lo=4.33e8, eta_hi=8.11e8)
    figures["size fit, one panel"] = F.metric_vs_size_fit(one, long_title, {"pythia": line})
    for name, fig in figures.items():
        overlaps, outside = _text_problems(fig)
        assert overlaps == [] and outside == [], name
        sizes = {t.get_text(): t.get_fontsize() for t in _visible_texts(fig)}
        assert min(sizes.values()) >= F.P.TEXT_PT, (name, min(sizes.items(), key=lambda kv: kv[1]))
        assert fig.get_size_inches()[0] <= F.P.MAX_WIDTH_IN + 1e-6, name   # shown at natural size, not shrunk
    assert ReportConfig().dpi >= 100


def _visible_texts(fig):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.text import Text

    FigureCanvasAgg(fig)
    fig.draw_without_rendering()
    return [t for t in fig.findobj(Text) if t.get_visible() and t.get_text().strip()]


# ---- figure choice, outliers, coverage ---------------------------------------------------------

def _runs(sizes=(1e8, 4e8, 1.6e9), steps=12, tasks=("t1", "t2", "t3", "t4", "t5"), family="f", seed=0):
    """Training curves: per size one run of ``steps`` checkpoints; accuracy rises with tokens and size."""
    rng = np.random.default_rng(seed)
    rows = []
    for params in sizes:
        for s in range(1, steps + 1):
            tokens = 2e9 * s
            for j, task in enumerate(tasks):
                value = 0.25 + 0.5 * (1 - np.exp(-tokens * params / 4e18)) * (1 - 0.05 * j) + rng.normal(0, 0.004)
                rows.append({S.FAMILY: family, S.MODEL: f"m{params:.0e}", S.CHECKPOINT: f"m{params:.0e}@step{s}",
                             S.STEP: s, S.PARAMS: params, S.TOKENS: tokens, S.TASK: task, S.SUBTASK: "",
                             S.METRIC: "acc", S.VALUE: value, S.STDERR: 0.004, S.CHANCE: 0.25})
    return pd.DataFrame(rows)


def test_figures_are_chosen_by_what_the_data_holds():
    from emergence.report import figures as F
    from emergence.report.context import figure_plan

    runs = _runs()
    curve = runs[runs[S.TASK] == "t1"]
    assert figure_plan(curve, curve) == ["training", "size"]
    one_size = curve[curve[S.PARAMS] == 1e8]                    # a single-size family: never a size figure
    assert figure_plan(one_size, one_size) == ["training"]
    finals = curve[curve[S.STEP] == curve[S.STEP].max()]        # final checkpoints only: no training figure
    assert figure_plan(finals, finals) == ["size"]
    with_loss = finals.assign(**{S.LOSS: 3.0 - np.log10(finals[S.PARAMS]) / 10})
    assert figure_plan(with_loss, with_loss) == ["size", "loss"]
    both = pd.concat([with_loss, with_loss.assign(**{S.METRIC: "gold_bpb", S.VALUE: 1.0})])
    assert figure_plan(with_loss, both) == ["size", "metrics"]  # discontinuous beside continuous, vs loss
    assert figure_plan(finals.iloc[:1], finals.iloc[:1]) == []
    # a family with one size next to one with three: the size figure has a panel for the latter only
    mixed = pd.concat([curve, one_size.assign(**{S.FAMILY: "single"})])
    fig = F.metric_vs_size_fit(mixed)
    assert [ax.get_title().split(":")[0] for ax in fig.axes if ax.get_title()] == ["f"]
    fig = F.metric_views(mixed, S.PARAMS)
    assert {ax.get_title().split(":")[0] for ax in fig.axes if ax.get_title()} == {"f"}
    # against loss, a family without loss gets no panel
    lossy = pd.concat([curve.assign(**{S.LOSS: 5.0 - curve[S.STEP] / 10}), curve.assign(**{S.FAMILY: "no loss"})])
    fig = F.metric_vs_loss(lossy)
    assert {ax.get_title().split(":")[0] for ax in fig.axes if ax.get_title()} == {"f"}
    assert len(F.metric_vs_tokens(lossy).axes) == 2 + 2   # no loss for one family: tokens only, side by side
    one = one_size.assign(**{S.LOSS: 5.0 - one_size[S.STEP] / 10})
    assert F.loss_panels(F.checkpoints(one)) == [S.TOKENS]   # one size: no loss-vs-parameters panel
    assert F.loss_panels(F.checkpoints(lossy.dropna(subset=[S.LOSS]))) == [S.PARAMS, S.TOKENS]


def test_a_checkpoint_off_on_many_tasks_is_flagged_and_one_off_on_one_task_is_not():
    from emergence.report.tables import outlier_checkpoints

    df = _runs()
    broken = (df[S.CHECKPOINT] == "m4e+08@step6") & df[S.TASK].isin(["t1", "t2", "t3", "t4"])
    df.loc[broken, S.VALUE] = 0.25                          # a broken checkpoint: chance on 4 of 5 tasks
    once = (df[S.CHECKPOINT] == "m2e+09@step8") & (df[S.TASK] == "t1")
    df.loc[once, S.VALUE] -= 0.3                             # one bad value: the curve's business, not flagged
    tiny = df[S.CHECKPOINT] == "m1e+08@step9"
    df.loc[tiny, S.VALUE] += 0.02                            # beyond the noise on every task, but 2 points only
    out = outlier_checkpoints(df)
    assert list(out["checkpoint"]) == ["m4e+08@step6"]
    row = out.iloc[0]
    assert row["tasks_off"] == 4 and row["share"] == pytest.approx(0.8) and row["z"] > 6
    assert row["tasks"] == "t1, t2, t3, t4" and row["same_step"] == 0
    # perplexity is judged on log values: 1210 among neighbours at ~20
    ppl = df[df[S.TASK].isin(["t1", "t2", "t3"])].assign(**{S.METRIC: "ppl", S.CHANCE: np.nan})
    ppl[S.VALUE] = 20.0 * (1 + 0.01 * np.sin(np.arange(len(ppl))))
    ppl.loc[ppl[S.CHECKPOINT] == "m1e+08@step5", S.VALUE] = 1210.0
    out = outlier_checkpoints(ppl)
    assert list(out["checkpoint"]) == ["m1e+08@step5"] and "1210 (neighbours' median 20" in out["worst"].iloc[0]
    assert outlier_checkpoints(df.drop(columns=[S.STEP, S.TOKENS])).empty   # no order: nothing to compare


def test_coverage_table_shows_model_task_and_setting():
    from emergence.report.tables import coverage

    df = _runs(sizes=(1e8, 4e8), steps=3, tasks=("t1", "t2"))
    df = df[~((df[S.MODEL] == "m4e+08") & (df[S.TASK] == "t2"))]      # never run
    two_shots = pd.concat([df.assign(n_shot=0), df.assign(n_shot=5)])
    c = coverage(two_shots)
    assert c["tasks"] == ["t1", "t2"] and c["settings"] == ["n_shot"] and c["n_missing"] == 1
    first, second = c["rows"]
    assert (first["model"], first["cells"][0]["text"]) == ("m1e+08", "0-shot: 3 / 5-shot: 3")
    assert second["cells"][1] is None
    # a setting fixed per model (a ladder rung's recipe) describes the model: not split on
    per_model = df.assign(setting=df[S.MODEL].map({"m1e+08": "recipe A", "m4e+08": "recipe B"}))
    c = coverage(per_model)
    assert c["settings"] == [] and c["rows"][0]["cells"][0]["text"] == "3"


def test_the_size_figure_draws_the_stored_fit():
    from emergence.analysis.analyze import analyze
    from emergence.analysis.fitted import fitted_line

    df = _table(sizes=8)
    v = analyze(df, [S.PARAMS], n_boot=5, workers=1).verdicts
    row = v[(v[S.SUBTASK] == "") & (v[S.METRIC] == "exact_match")].iloc[0].to_dict()
    x, y = fitted_line(df, row)
    fin = df[(df[S.SUBTASK] == "") & (df[S.METRIC] == "exact_match")]
    assert x.min() == pytest.approx(fin[S.PARAMS].min()) and x.max() == pytest.approx(fin[S.PARAMS].max())
    assert np.abs(np.interp(fin[S.PARAMS], x, y) - fin[S.VALUE]).max() < 0.1   # the curve goes through the data
    assert fitted_line(df, {**row, "margin": row["margin"] + 1}) is None      # not the stored fit: not drawn
    assert fitted_line(df, {**row, "best_model": None}) is None


def test_the_glance_grid_is_one_per_axis_without_rows_that_nothing_judged():
    from emergence.report.tables import glance

    def row(task, metric, axis, label, n_shot=0):
        return {S.FAMILY: "f", S.TASK: task, S.SUBTASK: "", S.METRIC: metric, "axis": axis, "label": label,
                "n_shot": n_shot}
    v = pd.DataFrame([row("a", "acc", S.PARAMS, "smooth"), row("a", "acc", S.PARAMS, "emergent", 5),
                      row("a", "exact_match", S.PARAMS, "undetermined"),    # a metric nothing judged: no column
                      row("b", "acc", S.PARAMS, "undetermined"),            # a task nothing judged: no row
                      row("a", "acc", S.TOKENS, "smooth"), row("a", "acc", S.TOKENS, "flat")])
    g = glance(v, ["a", "b"])
    params, tokens = g["axes"]
    assert (params["axis"], tokens["axis"]) == (S.PARAMS, S.TOKENS) and g["settings"]
    assert [c["metric"] for c in params["columns"]] == ["acc"] and params["hidden"] == 2
    assert [(r["task"], r["setting"], r["cells"][0]["label"]) for r in params["rows"]] == [
        ("a", "0-shot", "smooth"), ("a", "5-shot", "emergent")]
    assert tokens["rows"][0]["cells"][0]["text"] in ("smooth 1/2", "flat 1/2") and tokens["hidden"] == 0


def test_a_reused_analysis_draws_its_fit_in_the_size_figure(analysed, tmp_path):
    r = build_report([analysed / "t.csv"], tmp_path / "r", config=ReportConfig(max_tasks=1, workers=1))
    assert r.analysis_source.startswith("re-used")                  # the verdicts came back from CSV
    size = next(p for p in r.figures if p.name.endswith("-size.svg")).read_text()
    assert "fitted curve" in size and "verdict vs params: " in size
