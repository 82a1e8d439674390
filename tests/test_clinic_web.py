"""The clinic web page, end to end, in real headless Chromium driven by Playwright.

A small pipeline is fitted on simulated data and served by the real clinic app (uvicorn on a
free loopback port, a temporary SQLite database). The browser then does what a clinician does:
signs in with a token, creates a patient and a visit, uploads a WFDB record (watching the
progress bar), analyses it, reads the result and its evidence figures, opens the report, then
adds two more visits and checks the patient's timeline (table, trends, alerts and plot).

Chromium comes from the distribution (``scripts/chromium.sh``), never from ``playwright
install``. Without it the test skips, except under ``CI=true`` where it fails.

Set ``EMGDX_SCREENSHOTS_DIR`` to also save the screenshots there (for the documentation).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import threading
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import pytest

from emgdx.pipeline import Pipeline
from emgdx.preprocess import PreprocessConfig
from emgdx.simulate import simulate_cohort, write_cohort
from emgdx.training import TrainConfig

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}

FS = 4000.0
PRE = PreprocessConfig(target_fs_hz=FS, band_hz=(20.0, 1800.0), window_s=0.5, hop_s=0.25)
CLINIC = "Test clinic"
LOOPBACK = {"127.0.0.1", "localhost", "::1"}
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MAX_FILE_BYTES = 1_000_000  # small, so that the page's own size check can be shown
ANALYSIS_TIMEOUT_MS = 300_000  # two shared CPU cores: the model plus explanations take a while

pytestmark = pytest.mark.slow


def _unavailable(reason: str) -> None:
    """Skip, or fail under CI=true (where a missing browser is a broken set-up)."""
    if IN_CI:
        pytest.fail(f"CI=true but {reason}")
    pytest.skip(reason)


# --------------------------------------------------------------------------- fixtures


@pytest.fixture(scope="module")
def chromium() -> str:
    """Path of the Chromium binary, installed by scripts/chromium.sh if needed."""
    try:
        done = subprocess.run(
            [str(ROOT / "scripts" / "chromium.sh")],
            capture_output=True,
            text=True,
            timeout=900,
            check=False,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        _unavailable(f"scripts/chromium.sh could not run: {exc}")
    if done.returncode != 0:
        _unavailable(f"scripts/chromium.sh failed ({done.returncode}): {done.stderr[-500:]}")
    path = done.stdout.strip().splitlines()[-1] if done.stdout.strip() else ""
    if not path or not os.access(path, os.X_OK):
        _unavailable(f"scripts/chromium.sh printed no executable path: {done.stdout!r}")
    return path


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small CNN fitted on a simulated cohort, saved like `emgdx train` does."""
    import torch

    torch.set_num_threads(2)
    sim = simulate_cohort(3, 2, fs_hz=FS, duration_s=3.0, seed=11)
    windows = Pipeline(preprocess=PRE).prepare(sim.cohort)
    train = TrainConfig(epochs=8, batch_size=32, seed=0)
    pipeline = Pipeline(preprocess=PRE, model="cnn2d_stft", train=train).fit(windows)
    return pipeline.save(tmp_path_factory.mktemp("model") / "cnn")


@pytest.fixture(scope="module")
def records(tmp_path_factory: pytest.TempPathFactory) -> list[list[Path]]:
    """Three simulated records on disk, each as its WFDB pair (.hea, .dat): two healthy, then
    a neurogenic one, as if the disease appeared before the third visit."""
    sim = simulate_cohort(1, 2, fs_hz=FS, duration_s=3.0, labels=("healthy", "neurogenic"), seed=1)
    folder = write_cohort(sim, tmp_path_factory.mktemp("upload") / "records")
    names = ["SIM-H01-R01", "SIM-H01-R02", "SIM-N01-R01"]
    pairs = [[folder / f"{name}.hea", folder / f"{name}.dat"] for name in names]
    assert all(p.is_file() for pair in pairs for p in pair)
    return pairs


@pytest.fixture(scope="module")
def server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """The real clinic app under uvicorn on a free loopback port, with one clinic and token."""
    pytest.importorskip("fastapi", reason="the clinic service needs the `serve` extra")
    uvicorn = pytest.importorskip("uvicorn", reason="the clinic service needs the `serve` extra")
    from emgdx.clinic.admin import create_clinic, create_token
    from emgdx.clinic.app import UVICORN_OPTIONS, create_app
    from emgdx.clinic.settings import ClinicSettings

    tmp = tmp_path_factory.mktemp("clinic")
    settings = ClinicSettings(
        database_url=f"sqlite:///{tmp}/clinic.db",
        model_dir=model_dir,
        max_file_bytes=MAX_FILE_BYTES,
    )
    app = create_app(settings)
    create_clinic(app.state.db, CLINIC)
    token = create_token(app.state.db, CLINIC, label="e2e test")

    # Bind the socket here (port 0: the system picks a free one) and hand it to uvicorn, so no
    # other process can take the port between choosing and binding it.
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    port = sock.getsockname()[1]
    config = uvicorn.Config(app, log_level="warning", lifespan="on", **UVICORN_OPTIONS)
    uv = uvicorn.Server(config)
    thread = threading.Thread(target=uv.run, kwargs={"sockets": [sock]}, daemon=True)
    thread.start()
    deadline = time.monotonic() + 60
    while not uv.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the clinic app did not start")
        time.sleep(0.05)
    base = f"http://127.0.0.1:{port}"
    with urllib.request.urlopen(f"{base}/api/v1/health", timeout=10) as answer:
        health = json.load(answer)
    try:
        yield {
            "base": base,
            "token": token,
            "class_names": health["model"]["class_names"],
            "app": app,
        }
    finally:
        uv.should_exit = True
        thread.join(timeout=30)
        sock.close()


# --------------------------------------------------------------------------- helpers


def _save_screenshot(page: Any, tmp_path: Path, name: str) -> Path:
    """Full-page screenshot into tmp_path, and into $EMGDX_SCREENSHOTS_DIR when it is set."""
    shot = tmp_path / name
    page.screenshot(path=str(shot), full_page=True)
    assert shot.stat().st_size > 10_000
    extra = os.environ.get("EMGDX_SCREENSHOTS_DIR")
    if extra:
        Path(extra).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(shot, Path(extra) / name)
    return shot


IMAGES_LOADED = """(testid) => {
  const imgs = [...document.querySelectorAll(`[data-testid="${testid}"]`)];
  return imgs.length > 0 && imgs.every((img) => img.complete && img.naturalWidth > 0);
}"""

# Remembers whether the Analyse button ever showed its busy state (the analysis may be quick).
WATCH_BUSY = """() => {
  window.__sawBusy = false;
  new MutationObserver(() => {
    if (document.querySelector('[data-testid="analyse-button"][aria-busy="true"]:disabled')) {
      window.__sawBusy = true;
    }
  }).observe(document.body, { subtree: true, childList: true, attributes: true });
}"""


def _upload(page: Any, files: list[Path], muscle: str) -> None:
    """Upload one record and wait until the progress bar is full and the recording is listed."""
    from playwright.sync_api import expect

    before = page.get_by_test_id("recording-row").count()
    page.get_by_test_id("upload-files").set_input_files([str(f) for f in files])
    page.get_by_label("Muscle").fill(muscle)
    page.get_by_test_id("upload-submit").click()
    expect(page.get_by_test_id("upload-progress-text")).to_contain_text("100 %", timeout=60_000)
    assert page.get_by_test_id("upload-progress").evaluate("el => el.value") == 100
    expect(page.get_by_test_id("recording-row")).to_have_count(before + 1, timeout=60_000)
    row = page.get_by_test_id("recording-row").filter(has_text=files[0].stem)
    expect(row).to_contain_text(muscle)
    expect(row.get_by_test_id("qc-flags")).not_to_be_empty()


def _analyse(page: Any, class_names: list[str]) -> str:
    """Click Analyse, check the busy state and the result; returns the predicted class."""
    from playwright.sync_api import expect

    page.evaluate(WATCH_BUSY)
    page.get_by_test_id("analyse-button").click()
    predicted = page.get_by_test_id("result-predicted")
    expect(predicted).to_be_visible(timeout=ANALYSIS_TIMEOUT_MS)
    assert page.evaluate("() => window.__sawBusy"), "the Analyse button showed no busy state"
    expect(page.get_by_test_id("analyse-button")).to_be_enabled()

    cls = predicted.get_attribute("data-class")
    assert cls in class_names, (cls, class_names)
    assert predicted.inner_text().strip().lower() == cls
    expect(page.get_by_test_id("prob-row")).to_have_count(len(class_names))
    expect(page.get_by_test_id("result-summary")).not_to_be_empty()
    expect(page.get_by_test_id("record-result")).to_have_count(
        page.get_by_test_id("recording-row").count()
    )
    expect(page.get_by_test_id("measures-table").first).to_be_visible()
    # Every evidence figure came through fetch + bearer token + blob URL and decoded.
    page.wait_for_function(IMAGES_LOADED, arg="evidence-figure", timeout=60_000)
    return cls


def _on_console(message: Any, errors: list[str], refused: list[str]) -> None:
    """Collect console errors; Chromium's own line for a 401/422 answer is expected here."""
    if message.type != "error":
        return
    if re.search(
        r"Failed to load resource: the server responded with a status of 4(01|22)\b", message.text
    ):
        refused.append(message.text)
    else:
        errors.append(message.text)


@dataclass
class PageWatch:
    """What a page did that its test must check afterwards."""

    console_errors: list[str] = field(default_factory=list)
    refused: list[str] = field(default_factory=list)  # Chromium's line for a 401/422 answer
    outside: list[str] = field(default_factory=list)  # requests to anything but loopback
    sockets: list[str] = field(default_factory=list)  # WebSocket URLs opened


def watched_page(browser: Any, *init_scripts: str, **context_options: Any) -> tuple[Any, PageWatch]:
    """A new page (in its own 1366x900 context) whose console, errors, requests and
    WebSockets are recorded in the returned :class:`PageWatch`."""
    watch = PageWatch()

    def on_request(request: Any) -> None:
        url = urlparse(request.url)
        if url.scheme in {"http", "https", "ws", "wss"} and url.hostname not in LOOPBACK:
            watch.outside.append(request.url)

    context = browser.new_context(viewport={"width": 1366, "height": 900}, **context_options)
    context.on("request", on_request)
    for script in init_scripts:
        context.add_init_script(script)
    page = context.new_page()
    page.on("console", lambda m: _on_console(m, watch.console_errors, watch.refused))
    page.on("pageerror", lambda exc: watch.console_errors.append(f"page error: {exc}"))
    page.on("websocket", lambda ws: watch.sockets.append(ws.url))
    return page, watch


# --------------------------------------------------------------------------- the test


def test_clinician_workflow_in_headless_chromium(
    chromium: str, server: dict[str, Any], records: list[list[Path]], tmp_path: Path
) -> None:
    sync_api = pytest.importorskip("playwright.sync_api", reason="needs playwright for Python")
    expect = sync_api.expect
    base, classes = server["base"], server["class_names"]

    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=chromium, headless=True, args=CHROMIUM_ARGS)
        page, watch = watched_page(browser, accept_downloads=True)
        expect.set_options(timeout=30_000)

        # --- sign in: a wrong token shows the API's message, the right one the clinic's name
        page.goto(f"{base}/")
        expect(page.get_by_test_id("disclaimer")).to_contain_text(
            "Decision support, not a diagnosis"
        )
        page.get_by_label("Access token").fill("emgdx_not-a-real-token")
        page.get_by_test_id("token-submit").click()
        expect(page.get_by_test_id("error-banner")).to_be_visible()
        expect(page.get_by_test_id("error-message")).to_have_text("invalid or revoked token")
        expect(page.get_by_test_id("login")).to_be_visible()
        page.get_by_label("Access token").fill(server["token"])
        page.get_by_test_id("token-submit").click()
        expect(page.get_by_test_id("clinic-name")).to_have_text(CLINIC)
        expect(page.get_by_test_id("error-banner")).to_be_hidden()
        expect(page.get_by_test_id("patients-view")).to_be_visible()

        # --- a patient: an invalid external id is refused with the API's message, then created
        page.get_by_test_id("patient-external-id").fill("bad id!")
        page.get_by_test_id("patient-submit").click()
        expect(page.get_by_test_id("error-message")).to_contain_text("external_id")
        page.get_by_test_id("patient-external-id").fill("MRN-0042")
        page.get_by_test_id("patient-name").fill("Jane Doe")
        page.get_by_test_id("patient-birth-year").fill("1961")
        page.get_by_test_id("patient-sex").select_option("female")
        page.get_by_test_id("patient-submit").click()
        expect(page.get_by_test_id("patient-form-status")).to_contain_text("MRN-0042 created")
        expect(page.get_by_test_id("error-banner")).to_be_hidden()
        page.get_by_test_id("patient-search").fill("jane")
        expect(page.get_by_test_id("patient-row")).to_have_count(1)
        page.get_by_test_id("patient-link").filter(has_text="MRN-0042").click()
        expect(page).to_have_url(re.compile(r"#/patients/[0-9a-f-]+$"))
        patient_url = page.url
        expect(page.get_by_test_id("timeline-empty")).to_be_visible()

        # --- first visit: upload, analyse, result, report
        page.get_by_test_id("visit-date").fill("2025-03-10")
        page.get_by_test_id("visit-notes").fill("Weakness of the right arm.")
        page.get_by_test_id("visit-submit").click()
        expect(page).to_have_url(re.compile(r"#/visits/[0-9a-f-]+$"))
        expect(page.get_by_test_id("analyse-button")).to_be_disabled()  # nothing uploaded yet
        # A file over the server's limit is refused by the page itself, before sending.
        page.get_by_test_id("upload-files").set_input_files(
            [
                {
                    "name": "huge.edf",
                    "mimeType": "application/octet-stream",
                    "buffer": b"0" * (MAX_FILE_BYTES + 1),
                }
            ]
        )
        page.get_by_test_id("upload-submit").click()
        expect(page.get_by_test_id("error-message")).to_contain_text(
            "huge.edf: larger than the limit"
        )
        expect(page.get_by_test_id("recording-row")).to_have_count(0)
        _upload(page, records[0], "biceps brachii")
        _analyse(page, classes)

        page.get_by_test_id("open-report").click()
        report = page.frame_locator('[data-testid="report-frame"]')
        expect(report.locator("body")).to_contain_text("Decision support", timeout=60_000)
        expect(page.get_by_test_id("report-new-tab")).to_have_attribute(
            "href", re.compile("^blob:")
        )
        with page.expect_download(timeout=120_000) as download:
            page.get_by_test_id("download-pdf").click()
        assert Path(download.value.path()).read_bytes()[:5] == b"%PDF-"

        # --- the analysis worker crashes: that analysis fails with its reason, the next runs
        os.kill(server["app"].state.runner.pool.pids()[0], signal.SIGSEGV)
        page.get_by_test_id("analyse-button").click()
        expect(page.get_by_test_id("result-failure")).to_contain_text(
            "SIGSEGV", timeout=ANALYSIS_TIMEOUT_MS
        )
        _analyse(page, classes)

        # --- back button: to the patient, whose timeline now has one analysed visit
        page.go_back()
        expect(page).to_have_url(patient_url)
        expect(page.get_by_test_id("timeline-row")).to_have_count(1)
        expect(page.get_by_test_id("alerts")).to_be_visible()
        page.wait_for_function(IMAGES_LOADED, arg="timeline-plot", timeout=60_000)

        # --- two more visits, each with another record: three points, their trends, alerts
        dates = ["2025-03-10", "2025-09-15", "2026-03-20"]
        for date, files in zip(dates[1:], records[1:], strict=True):
            page.get_by_test_id("visit-date").fill(date)
            page.get_by_test_id("visit-submit").click()
            expect(page).to_have_url(re.compile(r"#/visits/[0-9a-f-]+$"))
            _upload(page, files, "biceps brachii")
            _analyse(page, classes)
            if date == dates[-1]:  # the neurogenic record: the most telling result to show
                _save_screenshot(page, tmp_path, "clinic_visit_result.png")
            crumbs = page.get_by_role("navigation", name="Breadcrumb")
            crumbs.get_by_role("link", name="MRN-0042").click()
            expect(page).to_have_url(patient_url)
        rows = page.get_by_test_id("timeline-row")
        expect(rows).to_have_count(3)
        for i, date in enumerate(dates):
            expect(rows.nth(i)).to_contain_text(date)
            assert rows.nth(i).locator("[data-class]").get_attribute("data-class") in classes
        expect(page.get_by_test_id("trend-row").first).to_be_visible()
        expect(page.get_by_test_id("alerts")).to_be_visible()
        page.wait_for_function(IMAGES_LOADED, arg="timeline-plot", timeout=60_000)
        expect(page.get_by_test_id("visit-row")).to_have_count(3)
        _save_screenshot(page, tmp_path, "clinic_timeline.png")

        # --- sign out forgets the token
        page.get_by_test_id("sign-out").click()
        expect(page.get_by_test_id("login")).to_be_visible()
        assert page.evaluate("() => sessionStorage.length") == 0

        page.context.close()
        browser.close()

    assert not watch.console_errors, watch.console_errors
    assert len(watch.refused) <= 2, watch.refused  # the two deliberate API errors above
    assert not watch.outside, f"requests left the machine: {watch.outside}"
