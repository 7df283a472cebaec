"""The report in a real browser: headless Chromium loads the page from file://.

Chromium is driven through the DevTools protocol over ``--remote-debugging-pipe``
(stdlib only: JSON messages separated by NUL bytes on fds 3 and 4), which reports
exactly what the checks need: console errors and uncaught exceptions, JavaScript
dialogs (an executed ``alert``), network requests, and the DOM after plotly drew.
No virtual time is used, so ``performance.now()`` in the page is wall-clock time
since navigation start; ``Performance.getMetrics`` gives the renderer main thread's
CPU time.

Without Chromium (Debian package ``chromium``) the tests skip, or fail when ``CI`` is set.
"""

from __future__ import annotations

import base64
import json
import os
import select
import shutil
import subprocess
import time
from pathlib import Path
from typing import Any

import pytest
from test_report import EXPECTED_FIGURES, XSS_NAME, scale_report_page, write_synthetic_run

from landscape.report import build_report

CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--disable-dev-shm-usage",
    "--remote-debugging-pipe",
)
ARTIFACTS = Path(__file__).parent / "artifacts"
RENDER_LIMIT_MS = 3000
TIMEOUT_S = 30.0

# Runs in the page once plotly has drawn (or after 20 s): what the tests check.
_PROBE_JS = """
new Promise((resolve) => {
  const expected = %d;
  function check() {
    const plots = Array.from(document.querySelectorAll('.js-plotly-plot'));
    const drawn = plots.map((p) => p.querySelectorAll('g.trace, g.hm').length);
    const visible = plots.map((p) => (p._fullData || []).filter((t) => t.visible === true).length);
    if ((plots.length >= expected && drawn.every((n) => n > 0)) || performance.now() > 20000) {
      resolve({
        ms: performance.now(),
        plots: plots.length,
        drawn: drawn,
        visible: visible,
        scripts: document.scripts.length,
        imgs: document.images.length,
        text: document.body.innerText,
        title: document.title,
      });
    } else {
      requestAnimationFrame(check);
    }
  }
  requestAnimationFrame(check);
})
"""


class Chromium:
    """A headless Chromium driven through the DevTools protocol on a pipe."""

    def __init__(self, user_data_dir: Path) -> None:
        to_chrome_r, self._to_chrome = os.pipe()
        self._from_chrome, from_chrome_w = os.pipe()

        def child_fds() -> None:  # Chromium reads commands on fd 3 and writes replies on fd 4
            a, b = os.dup(to_chrome_r), os.dup(from_chrome_w)
            os.dup2(a, 3)
            os.dup2(b, 4)

        self.proc = subprocess.Popen(
            [CHROMIUM, *FLAGS, f"--user-data-dir={user_data_dir}", "about:blank"],
            preexec_fn=child_fds,
            close_fds=False,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        os.close(to_chrome_r)
        os.close(from_chrome_w)
        self._buffer = b""
        self._next_id = 0
        self.events: list[dict[str, Any]] = []

    def _receive(self, deadline: float) -> dict[str, Any]:
        while b"\0" not in self._buffer:
            ready, _, _ = select.select([self._from_chrome], [], [], max(deadline - time.monotonic(), 0))
            if not ready:
                raise TimeoutError("Chromium did not answer in time")
            chunk = os.read(self._from_chrome, 1 << 20)
            if not chunk:
                raise EOFError(f"Chromium exited (status {self.proc.poll()})")
            self._buffer += chunk
        message, _, self._buffer = self._buffer.partition(b"\0")
        return json.loads(message)

    def _handle(self, message: dict[str, Any]) -> None:
        self.events.append(message)
        if message.get("method") == "Page.javascriptDialogOpening":  # dismiss it, keep the page going
            self.send("Page.handleJavaScriptDialog", {"accept": True}, message.get("sessionId"), wait=False)

    def send(
        self, method: str, params: dict[str, Any] | None = None, session: str | None = None, wait: bool = True
    ) -> dict[str, Any]:
        self._next_id += 1
        ident = self._next_id
        message: dict[str, Any] = {"id": ident, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self._to_chrome, json.dumps(message).encode() + b"\0")
        if not wait:
            return {}
        deadline = time.monotonic() + TIMEOUT_S
        while True:
            reply = self._receive(deadline)
            if reply.get("id") == ident:
                if "error" in reply:
                    raise RuntimeError(f"{method}: {reply['error']}")
                return reply.get("result", {})
            self._handle(reply)

    def wait_event(self, method: str, session: str) -> dict[str, Any]:
        deadline = time.monotonic() + TIMEOUT_S
        for event in self.events:
            if event.get("method") == method and event.get("sessionId") == session:
                return event
        while True:
            event = self._receive(deadline)
            self._handle(event)
            if event.get("method") == method and event.get("sessionId") == session:
                return event

    def close(self) -> None:
        try:
            self.send("Browser.close", wait=False)
            self.proc.wait(timeout=10)
        except (OSError, subprocess.TimeoutExpired):
            self.proc.kill()
            self.proc.wait()
        os.close(self._to_chrome)
        os.close(self._from_chrome)


def load(browser: Chromium, page: Path, expected_plots: int, screenshot: Path | None = None) -> dict[str, Any]:
    """Open ``page`` in a fresh tab (1400 x 3000) and return what the page and browser reported."""
    # A fresh browser context never shares a renderer process with earlier pages, so the
    # renderer's CPU time below is this page's alone.
    context = browser.send("Target.createBrowserContext")["browserContextId"]
    target = browser.send("Target.createTarget", {"url": "about:blank", "browserContextId": context})["targetId"]
    session = browser.send("Target.attachToTarget", {"targetId": target, "flatten": True})["sessionId"]
    for domain in ("Page", "Runtime", "Log", "Network", "Performance"):
        browser.send(f"{domain}.enable", session=session)
    cpu_before = _thread_time(browser, session)
    browser.send(
        "Emulation.setDeviceMetricsOverride",
        {"width": 1400, "height": 3000, "deviceScaleFactor": 1, "mobile": False},
        session=session,
    )
    first_event = len(browser.events)
    browser.send("Page.navigate", {"url": page.resolve().as_uri()}, session=session)
    browser.wait_event("Page.loadEventFired", session)
    result = browser.send(
        "Runtime.evaluate",
        {"expression": _PROBE_JS % expected_plots, "awaitPromise": True, "returnByValue": True},
        session=session,
    )
    if "exceptionDetails" in result:
        raise RuntimeError(f"probe script failed: {result['exceptionDetails']}")
    report = dict(result["result"]["value"])
    report["cpu_ms"] = 1000 * (_thread_time(browser, session) - cpu_before)
    if screenshot is not None:
        shot = browser.send("Page.captureScreenshot", {"format": "png"}, session=session)
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        screenshot.write_bytes(base64.b64decode(shot["data"]))
        print(f"screenshot: {screenshot}")
    events = [e for e in browser.events[first_event:] if e.get("sessionId") == session]
    report["errors"] = [
        json.dumps(e["params"])[:300]
        for e in events
        if e.get("method") == "Runtime.exceptionThrown"
        or (e.get("method") == "Runtime.consoleAPICalled" and e["params"]["type"] in ("error", "assert"))
        or (e.get("method") == "Log.entryAdded" and e["params"]["entry"]["level"] == "error")
    ]
    report["dialogs"] = [e["params"]["message"] for e in events if e.get("method") == "Page.javascriptDialogOpening"]
    report["requests"] = [
        e["params"]["request"]["url"]
        for e in events
        if e.get("method") == "Network.requestWillBeSent"
        and not e["params"]["request"]["url"].startswith(("file:", "data:", "blob:", "about:"))
    ]
    browser.send("Target.closeTarget", {"targetId": target})
    browser.send("Target.disposeBrowserContext", {"browserContextId": context})
    return report


def _thread_time(browser: Chromium, session: str) -> float:
    """CPU seconds of the page's renderer main thread (where plotly parses and draws)."""
    metrics = browser.send("Performance.getMetrics", session=session)["metrics"]
    return next(m["value"] for m in metrics if m["name"] == "ThreadTime")


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Chromium:
    if not (shutil.which(CHROMIUM) or Path(CHROMIUM).is_file()):
        message = f"headless Chromium not found at {CHROMIUM} (apt-get install -y chromium, or set CHROMIUM=path)"
        if os.environ.get("CI"):
            pytest.fail(message)
        pytest.skip(message)
    chromium = Chromium(tmp_path_factory.mktemp("chromium-profile"))
    yield chromium
    chromium.close()


def test_checks_catch_alerts_errors_and_requests(browser: Chromium, tmp_path: Path) -> None:
    """Negative control: the checks below do see an alert, a console error and a web request."""
    bad = tmp_path / "bad.html"
    bad.write_text(
        "<html><body><script>alert('pwned'); console.error('boom');</script>"
        '<img src="http://192.0.2.1/x.png"></body></html>'
    )
    report = load(browser, bad, expected_plots=0)
    assert report["dialogs"] == ["pwned"]
    assert any("boom" in e for e in report["errors"])
    assert report["requests"] == ["http://192.0.2.1/x.png"]


def test_report_renders_offline_without_errors(browser: Chromium, tmp_path: Path) -> None:
    runs = tmp_path / "exp"
    write_synthetic_run(runs / "a", name=XSS_NAME, norm="bn", steps=300)
    write_synthetic_run(runs / "b", name='"><img src=x onerror="alert(2)">', norm="none", steps=300)
    write_synthetic_run(runs / "c", norm="none", lr=0.5, steps=300, diverge_at=150)
    page = build_report([runs], tmp_path / "report.html", title=XSS_NAME)
    report = load(browser, page, EXPECTED_FIGURES, screenshot=ARTIFACTS / "report_browser.png")
    assert report["errors"] == []
    assert report["dialogs"] == []  # neither run name executed
    assert report["requests"] == []  # nothing fetched: no CDN, no fonts, no MathJax
    assert report["plots"] == EXPECTED_FIGURES
    assert all(n > 0 for n in report["drawn"]), report["drawn"]
    assert report["drawn"] == report["visible"]  # every visible trace was drawn
    assert report["scripts"] == 1 + EXPECTED_FIGURES and report["imgs"] == 0
    assert XSS_NAME in report["text"] and report["title"] == XSS_NAME
    assert "diverged at step 150" in report["text"]


def test_scale_report_renders_in_time(browser: Chromium, tmp_path_factory: pytest.TempPathFactory) -> None:
    """3 runs x 15k steps render in under 3 s.

    Measured: CPU time of the renderer's main thread (where plotly.js is parsed and every
    plot drawn) from before navigation until every plot is drawn. Wall-clock time from
    navigation start is printed too; on the 2 shared cores here it also counts other
    processes (about 1.5x the CPU time at load 5), so it is not what the test asserts.
    """
    page, _, _ = scale_report_page(tmp_path_factory.getbasetemp())
    report = load(browser, page, EXPECTED_FIGURES)
    print(
        f"scale report ({page.stat().st_size / 2**20:.2f} MiB): every plot drawn after "
        f"{report['cpu_ms']:.0f} ms of renderer CPU, {report['ms']:.0f} ms wall-clock from navigation start"
    )
    assert report["errors"] == [] and report["plots"] == EXPECTED_FIGURES
    assert all(n > 0 for n in report["drawn"])
    assert report["cpu_ms"] < RENDER_LIMIT_MS
