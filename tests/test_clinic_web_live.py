"""The clinic web page's Live view, end to end, in real headless Chromium (Playwright).

Reuses the fixtures of ``test_clinic_web.py`` (Chromium from ``scripts/chromium.sh``, a small
model, the real app under uvicorn on loopback). The browser signs in, creates a patient and a
visit, uploads a simulated record, opens Live, replays the record (canvas drawn, probabilities
with numbers, a state other than "starting", events), then follows a real LSL outlet pushing
from this test process. No console error, no CSP violation, nothing leaves the machine.

Set ``EMGDX_SCREENSHOTS_DIR`` to also save the screenshot there (for the documentation).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from clinic_support import LslOutlet
from emgdx.simulate import simulate_cohort, write_cohort
from test_clinic_web import (  # noqa: F401  (fixtures)
    CHROMIUM_ARGS,
    FS,
    _save_screenshot,
    _upload,
    chromium,
    model_dir,
    server,
    watched_page,
)

pytestmark = pytest.mark.slow

# Counts canvas pixels drawn in the trace colour (#1d4ed8: blue well above red and green).
TRACE_PIXELS = """(testid) => {
  const c = document.querySelector(`[data-testid="${testid}"]`);
  if (!c || !c.width) return 0;
  const d = c.getContext("2d").getImageData(0, 0, c.width, c.height).data;
  let n = 0;
  for (let i = 0; i < d.length; i += 4) if (d[i + 2] > 150 && d[i + 2] - d[i] > 100) n++;
  return n;
}"""

CSP_WATCH = """() => {
  window.__csp = [];
  document.addEventListener("securitypolicyviolation", (e) => {
    window.__csp.push(`${e.violatedDirective} ${e.blockedURI}`);
  });
}"""


@pytest.fixture(scope="module")
def live_record(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """An 8-s simulated neurogenic record (.hea, .dat)."""
    sim = simulate_cohort(1, 1, fs_hz=FS, duration_s=8.0, labels=("neurogenic",), seed=4)
    folder = write_cohort(sim, tmp_path_factory.mktemp("live") / "records")
    header = sorted(folder.glob("*.hea"))[0]
    return [header, header.with_suffix(".dat")]


def _drawn(page: Any, minimum: int) -> None:
    page.wait_for_function(
        f"() => ({TRACE_PIXELS})('live-canvas') > {minimum}", timeout=30_000, polling=200
    )


def test_live_view_replay_and_lsl_in_headless_chromium(
    chromium: str,  # noqa: F811
    server: dict[str, Any],  # noqa: F811
    live_record: list[Path],
    tmp_path: Path,
) -> None:
    pytest.importorskip("pylsl")
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright for Python")
    expect = sync_api.expect
    base, classes = server["base"], server["class_names"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page, watch = watched_page(browser, f"({CSP_WATCH})()")
        expect.set_options(timeout=30_000)

        # --- sign in, a patient, a visit, an uploaded record
        page.goto(f"{base}/")
        page.get_by_label("Access token").fill(server["token"])
        page.get_by_test_id("token-submit").click()
        expect(page.get_by_test_id("patients-view")).to_be_visible()
        page.get_by_test_id("patient-external-id").fill("MRN-LIVE-1")
        page.get_by_test_id("patient-submit").click()
        page.get_by_test_id("patient-link").filter(has_text="MRN-LIVE-1").click()
        page.get_by_test_id("visit-date").fill("2026-02-02")
        page.get_by_test_id("visit-submit").click()
        expect(page).to_have_url(re.compile(r"#/visits/[0-9a-f-]+$"))
        _upload(page, live_record, "tibialis anterior")

        # --- Live, from the main navigation: the current patient's recording is offered
        page.get_by_test_id("nav-live").click()
        expect(page).to_have_url(re.compile(r"#/live$"))
        expect(page.get_by_test_id("live-view")).to_be_visible()
        expect(page.get_by_test_id("nav-live")).to_have_attribute("aria-current", "page")
        expect(page.get_by_test_id("live-recording")).to_be_enabled()
        expect(page.get_by_test_id("live-recording")).to_contain_text(live_record[0].stem)
        page.get_by_test_id("live-speed").fill("2")
        page.get_by_test_id("live-start-replay").click()

        monitor = page.get_by_test_id("live-monitor")
        expect(monitor).to_be_visible()
        expect(page.get_by_test_id("live-source")).to_contain_text(live_record[0].stem)
        _drawn(page, 200)
        expect(page.get_by_test_id("live-prob-row")).to_have_count(len(classes))
        for text in page.get_by_test_id("live-prob-text").all():
            expect(text).to_have_text(re.compile(r"^(<1|\d{1,3}) %$"))
        expect(page.get_by_test_id("live-state")).not_to_have_attribute("data-state", "starting")
        state = page.get_by_test_id("live-state").get_attribute("data-state")
        assert state in [*classes, "uncertain", "no signal", "stalled", "ended"], state
        expect(page.get_by_test_id("live-event-row").first).to_be_visible()
        expect(page.get_by_test_id("live-qc")).to_have_text(
            re.compile(r"^[a-z_, ]+( mains \d+ Hz)?$")
        )
        expect(page.get_by_test_id("live-scale")).to_have_text(re.compile(r"^± [\d.]+ µV$"))
        expect(page.get_by_test_id("live-latency")).to_have_text(re.compile(r"^[\d.]+ ms$"))
        expect(page.get_by_test_id("live-session-row")).to_have_count(1)
        # The replay (8 s at 2×) reaches its end: the newest event is on top.
        expect(page.get_by_test_id("live-state")).to_have_attribute(
            "data-state", "ended", timeout=60_000
        )
        expect(page.get_by_test_id("live-event-row").first).to_have_attribute("data-kind", "end")
        stamps = page.locator('[data-testid="live-event-row"] .live-event-time')
        times = [float(t.split()[0]) for t in stamps.all_inner_texts()]
        assert times == sorted(times, reverse=True), times
        page.get_by_test_id("live-stop").click()
        expect(page.get_by_test_id("live-connection")).to_have_text("stopped")
        expect(page.get_by_test_id("live-sessions-empty")).to_be_visible()

        # --- a real LSL outlet in this process: listed after Refresh, monitored live
        with LslOutlet(seconds=6.0) as outlet:
            page.get_by_test_id("live-refresh-streams").click()
            expect(page.get_by_test_id("live-streams")).to_contain_text(outlet.name)
            page.get_by_test_id("live-streams").select_option(outlet.name)
            page.get_by_test_id("live-start-lsl").click()
            expect(page.get_by_test_id("live-source")).to_have_text(f"lsl:{outlet.name}")
            expect(page.get_by_test_id("live-connection")).to_have_text("live")
            expect(page.get_by_test_id("live-latency")).to_have_text(re.compile(r"^[\d.]+ ms$"))
            expect(page.get_by_test_id("live-state")).not_to_have_attribute(
                "data-state", "starting"
            )
            _drawn(page, 200)
            # Let 5 s of the stream fill the canvas for the picture.
            page.wait_for_function(
                """() => parseFloat(document.querySelector('[data-testid="live-clock"]')
                   .textContent.replace(/^t = /, "")) >= 5.5""",
                timeout=30_000,
            )
            columns = int(page.get_by_test_id("live-canvas").get_attribute("data-columns") or 0)
            assert columns > 0.9 * page.get_by_test_id("live-canvas").evaluate("c => c.width")
            _save_screenshot(page, tmp_path, "clinic_live.png")
            page.get_by_test_id("live-stop").click()
            expect(page.get_by_test_id("live-connection")).to_have_text("stopped")

        csp = page.evaluate("() => window.__csp")
        page.context.close()
        browser.close()

    assert not csp, f"CSP violations: {csp}"
    assert not watch.console_errors, watch.console_errors
    assert not watch.refused, watch.refused
    assert not watch.outside, f"requests left the machine: {watch.outside}"
    sockets = watch.sockets
    assert len(sockets) >= 2 and all(s.startswith("ws://127.0.0.1:") for s in sockets), sockets
