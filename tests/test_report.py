"""Reference ranges, the clinical report (HTML and PDF, looked at through pypdfium2) and its CLI."""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pytest
import torch
from typer.testing import CliRunner

from emgdx.cli import app
from emgdx.errors import ConfigError
from emgdx.pipeline import Pipeline
from emgdx.preprocess import PreprocessConfig
from emgdx.recording import Recording, Windows
from emgdx.reference import MEASURES, compare_to_reference, record_measures, reference_ranges
from emgdx.report import (
    DISCLAIMER,
    build_report,
    render_html,
    render_pdf,
    write_report,
)
from emgdx.simulate import SimulatedCohort, simulate_cohort, write_cohort
from emgdx.training import TrainConfig

FS = 4000.0
PRE = PreprocessConfig(target_fs_hz=FS, band_hz=(20.0, 1800.0), window_s=0.5, hop_s=0.25)


@pytest.fixture(scope="module", autouse=True)
def _threads() -> None:
    torch.set_num_threads(2)


@pytest.fixture(scope="module")
def sim() -> SimulatedCohort:
    return simulate_cohort(3, 2, fs_hz=FS, duration_s=3.0, seed=11)


@pytest.fixture(scope="module")
def windows(sim: SimulatedCohort) -> Windows:
    return Pipeline(preprocess=PRE).prepare(sim.cohort)


@pytest.fixture(scope="module")
def cnn(windows: Windows) -> Pipeline:
    train = TrainConfig(epochs=3, batch_size=32, seed=0)
    return Pipeline(preprocess=PRE, model="cnn2d_stft", train=train).fit(windows)


# --------------------------------------------------------------------------- reference ranges


def test_reference_ranges_come_from_healthy_subjects_only(windows: Windows) -> None:
    ref = reference_ranges(windows)
    assert ref["available"] and ref["n_subjects"] == 3
    for level, ranges in ref["by_level"].items():
        assert set(ranges) <= set(MEASURES), level
        for r in ranges.values():
            assert r["low"] <= r["median"] <= r["high"]
    healthy = windows.select(windows.index["label"].eq("healthy").to_numpy())
    # Only healthy windows count: the ranges do not move when patients are removed.
    assert reference_ranges(healthy)["by_level"] == ref["by_level"]
    none = windows.select(~windows.index["label"].eq("healthy").to_numpy())
    assert reference_ranges(none) == {
        "available": False,
        "reason": "no healthy subject in the training data",
    }


def test_neurogenic_records_exceed_the_healthy_amplitude_range(sim: SimulatedCohort) -> None:
    """Reinnervated motor units are larger: their records lie above the healthy range."""
    big = simulate_cohort(4, 2, fs_hz=FS, duration_s=3.0, seed=5)
    wins = Pipeline(preprocess=PRE).prepare(big.cohort)
    train = ~wins.index["subject_id"].isin(["SIM-H04", "SIM-N04", "SIM-N03"]).to_numpy()
    ref = reference_ranges(wins.select(train))
    per_record = record_measures(wins.select(~train))
    flags = {
        row.record_id: compare_to_reference(row._asdict(), ref, row.level)
        .set_index("measure")
        .loc["spike_p2p_uv", "flag"]
        for row in per_record.itertuples(index=False)
    }
    neuro = [f for rid, f in flags.items() if "-N0" in rid]
    healthy = [f for rid, f in flags.items() if "-H0" in rid]
    assert np.mean([f == "high" for f in neuro]) > np.mean([f == "high" for f in healthy])


def test_compare_without_reference_marks_everything_unavailable() -> None:
    table = compare_to_reference({"rms_uv": 30.0}, None, "low")
    assert (table["flag"] == "n/a").all() and len(table) == len(MEASURES)
    with pytest.raises(ConfigError):
        compare_to_reference({"rms_uv": 30.0}, "ranges", None)  # type: ignore[arg-type]


def test_reference_and_weights_hash_survive_save_and_load(cnn: Pipeline, tmp_path: Path) -> None:
    before = cnn.weights_sha256()
    folder = cnn.save(tmp_path / "model")
    loaded = Pipeline.load(folder)
    assert loaded.reference_ == cnn.reference_ and loaded.reference_["available"]
    assert loaded.weights_sha256() == before == cnn.weights_sha256()


# --------------------------------------------------------------------------- report


def _pdf_text(data: bytes, tmp_path: Path) -> tuple[str, int]:
    import pypdfium2 as pdfium

    path = tmp_path / "r.pdf"
    path.write_bytes(data)
    pdf = pdfium.PdfDocument(str(path))
    try:
        pages = len(pdf)
        text = "".join(pdf[i].get_textpage().get_text_range() for i in range(pages))
        image = pdf[0].render(scale=1.0).to_pil()
        assert image.size[0] > 500 and image.size[1] > 700  # A4 portrait
        # Not a blank page: a good part of the page is ink.
        grey = np.asarray(image.convert("L"))
        assert (grey < 128).mean() > 0.01
    finally:
        pdf.close()
    return text, pages


def test_visit_report_html_and_pdf(cnn: Pipeline, sim: SimulatedCohort, tmp_path: Path) -> None:
    subject = "SIM-N01"
    recs = [r for r in sim.cohort.recordings if r.subject_id == subject]
    report = build_report(cnn, recs, patient={"id": "P-007"}, visit={"date": "2026-11-24"})
    assert len(report.records) == 2 and all(r.analysed for r in report.records)
    assert report.visit_probs is not None and np.isclose(sum(report.visit_probs.values()), 1.0)
    record = report.records[0]
    assert set(record.probs) == set(cnn.class_names)
    for c, (lo, hi) in record.intervals.items():
        assert lo <= record.probs[c] + 1e-9 and record.probs[c] <= hi + 1e-9
    assert len(record.figures) == 3 and all(f.png[:4] == b"\x89PNG" for f in record.figures)
    assert set(record.measures["measure"]) == set(MEASURES)
    assert "band-pass filtered from 20 to 1800 Hz" in report.methods
    assert "spectrogram" in report.methods and "integrated gradients" in report.methods
    assert len(report.references) == len(set(re.findall(r"\[([\d, ]+)\]", report.methods))) or (
        len(report.references) >= 3
    )

    page = render_html(report)
    assert DISCLAIMER.split(".")[0] in page and "P-007" in page
    assert cnn.weights_sha256() in page
    assert page.count("data:image/png;base64,") == 6
    assert "src='http" not in page and 'src="http' not in page and "<script" not in page
    html_path = write_report(report, tmp_path / "visit.html")
    assert html_path.read_text(encoding="utf-8") == page

    text, pages = _pdf_text(render_pdf(report), tmp_path)
    assert pages >= 2
    for needle in ("Decision support, not a diagnosis", "P-007", "Quantitative EMG", "Methods"):
        assert needle in text, needle
    assert cnn.weights_sha256()[:16] in text
    with pytest.raises(ConfigError, match=r"\.html or \.pdf"):
        write_report(report, tmp_path / "visit.docx")


def test_unusable_record_is_reported_not_analysed(cnn: Pipeline, tmp_path: Path) -> None:
    flat = Recording(np.zeros(int(2 * FS), np.float32), FS, "FLAT-R01", "P-9", label=None)
    report = build_report(cnn, [flat])
    (section,) = report.records
    assert not section.analysed and section.note.startswith("Not analysed")
    assert "empty" in section.qc_flags and "holds no signal" in " ".join(section.qc_messages)
    assert "0.5-s window" in section.note
    assert report.summary_line.startswith("No recording could be analysed")
    html = render_html(report)
    assert "Not analysed" in html and "Not read or not judged (1)" in html
    text, _ = _pdf_text(render_pdf(report), tmp_path)
    assert "Not analysed" in text and "Not read or not judged" in text


def test_noise_gets_no_probability_but_its_reason_on_the_first_page(
    cnn: Pipeline, tmp_path: Path
) -> None:
    """The new user's noise file: once "HEALTHY (1.00, 1.00-1.00)", now not interpretable."""
    noise = np.random.default_rng(5).normal(0, 40, int(6 * FS)).astype(np.float32)
    report = build_report(cnn, [Recording(noise, FS, "NOISE", "P-9")], n_figures=0)
    (section,) = report.records
    assert section.verdict.outcome == "not interpretable" and section.predicted is None
    assert report.summary_line.startswith("NOT INTERPRETABLE: no motor-unit activity")
    assert "Most consistent" not in render_html(report)
    data = render_pdf(report)
    text, _ = _pdf_text(data, tmp_path)
    first_page = text[: text.find("Methods")] if "Methods" in text else text
    assert "no motor-unit activity" in first_page and "HEALTHY" not in text


# --------------------------------------------------------------------------- CLI


def test_cli_explain_and_report(cnn: Pipeline, sim: SimulatedCohort, tmp_path: Path) -> None:
    model = cnn.save(tmp_path / "model")
    data = tmp_path / "data"
    write_cohort(sim, data)
    files = sorted(data.glob("SIM-M01*.hea"))
    runner = CliRunner()
    result = runner.invoke(
        app, ["explain", str(model), str(files[0]), "--out", str(tmp_path / "ex"), "--json"]
    )
    assert result.exit_code == 0, result.output
    assert (tmp_path / "ex" / "explanation.json").exists()
    assert len(list((tmp_path / "ex").glob("*.png"))) == 3  # signal, segments, spectrogram

    bad = tmp_path / "broken.hea"
    bad.write_text("this is not a header\n")
    out = tmp_path / "visit.pdf"
    args = ["report", str(model), *map(str, files), str(bad), "--out", str(out)]
    result = runner.invoke(app, [*args, "--patient", "P-1", "--figures", "1"])
    # The broken file is named and skipped; the others still make the report (exit code 1).
    assert result.exit_code == 1
    assert "broken.hea" in result.output and out.read_bytes()[:5] == b"%PDF-"
    # no terminal here: progress as plain lines, so a long report never looks hung
    assert f"analysing: 100 % ({len(files) + 1}/{len(files) + 1})" in result.stderr
    assert "writing: 100 % (1/1)" in result.stderr
    text, _ = _pdf_text(out.read_bytes(), tmp_path)
    assert "unreadable file" in text and "broken.hea" in text  # in the document itself
    result = runner.invoke(app, ["report", str(model), str(files[0]), "--out", "r.txt"])
    assert result.exit_code != 0 and ".html or .pdf" in result.output


def test_pdf_fonts_register_safely_from_several_threads() -> None:
    """Regression (seen under load in the clinic service): a thread arriving while another was
    between registering the regular and the bold font could not use the bold one."""
    import subprocess
    import sys

    script = """
import threading, time
from reportlab.pdfbase import pdfmetrics
from reportlab.platypus import Paragraph
from emgdx.report import pdf
real = pdfmetrics.registerFont
def slow(font):
    real(font)
    if font.fontName == "DejaVuSans":
        time.sleep(0.3)  # widen the window between the regular and the bold face
pdfmetrics.registerFont = slow
first = threading.Thread(target=pdf._register_fonts)
first.start()
time.sleep(0.1)
font, bold = pdf._register_fonts()
Paragraph("<b>x</b>", pdf._styles(font, bold)["h1"])
first.join()
print("ok", font, bold)
"""
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.split() == ["ok", "DejaVuSans", "DejaVuSans-Bold"]
