"""Deployment (emgdx.deploy): ONNX export of every torch model, parity with torch, int8
agreement on N2001, backend choice on load, tamper checks and `emgdx export`."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")

from typer.testing import CliRunner  # noqa: E402

from emgdx.cli import app  # noqa: E402
from emgdx.deploy import (  # noqa: E402
    INT8_FILE,
    MANIFEST_FILE,
    ONNX_FILE,
    DeployError,
    export_pipeline,
)
from emgdx.models import adapters, model_names  # noqa: E402
from emgdx.pipeline import Pipeline, PipelineLoadError  # noqa: E402
from emgdx.preprocess import PreprocessConfig  # noqa: E402
from emgdx.recording import Cohort, Windows  # noqa: E402
from emgdx.simulate import SimulatedCohort, simulate_cohort  # noqa: E402
from emgdx.training import TrainConfig  # noqa: E402

FS = 4000.0
PRE = PreprocessConfig(target_fs_hz=FS, band_hz=(20.0, 1800.0), window_s=0.5, hop_s=0.5)
# eval batches of 32: several session calls per prediction, the last one shorter
TINY = TrainConfig(epochs=1, batch_size=16, eval_batch_size=32, seed=2)
runner = CliRunner()


@pytest.fixture(scope="module", autouse=True)
def _one_thread():  # type: ignore[no-untyped-def]
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="module")
def sim() -> SimulatedCohort:
    return simulate_cohort(2, 2, fs_hz=FS, duration_s=3.0, seed=4)


@pytest.fixture(scope="module")
def windows(sim: SimulatedCohort) -> Windows:
    return Pipeline(preprocess=PRE, model="random_forest").prepare(sim.cohort)


@pytest.fixture(scope="module")
def cnn_dir(windows: Windows, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small fitted cnn1d, saved (not exported)."""
    pipe = Pipeline(preprocess=PRE, model="cnn1d", train=TINY, model_params={"n_filters": (8, 8)})
    return pipe.fit(windows).save(tmp_path_factory.mktemp("deploy") / "cnn1d")


@pytest.fixture(scope="module")
def exported_dir(cnn_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """``cnn_dir`` exported as ONNX fp32 + int8 (tests copy it before changing it)."""
    folder = _copy(cnn_dir, tmp_path_factory.mktemp("deploy") / "exported")
    export_pipeline(Pipeline.load(folder), folder, int8=True)
    return folder


def _copy(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


# ----------------------------------------------------------------------------- parity


@pytest.mark.parametrize("name", model_names(kind="torch"))
def test_fp32_onnx_matches_torch_for_every_torch_model(
    name: str, windows: Windows, tmp_path: Path
) -> None:
    pipe = Pipeline(preprocess=PRE, model=name, train=TINY).fit(windows)
    folder = pipe.save(tmp_path / name)
    result = export_pipeline(pipe, folder, check_windows=windows)
    assert set(result.files) == {"onnx"} and (folder / ONNX_FILE).is_file()
    assert not (folder / INT8_FILE).exists()

    loaded = Pipeline.load(folder, backend="onnx")
    assert loaded.backend == "onnx" and loaded.model_ is not loaded.model_.native()
    # all the model's inputs go in (cnn1d/cnn2d/cnn_lstm take the log-RMS side input too)
    assert set(loaded.model_.runtime.input_names) == set(pipe.input_shapes_ or {})
    p_onnx, p_torch = loaded.predict_windows(windows), pipe.predict_windows(windows)
    assert p_onnx.shape == p_torch.shape == (len(windows), 3)
    assert np.abs(p_onnx - p_torch).max() <= 1e-4
    assert result.parity["onnx"]["max_abs_prob_diff"] <= 1e-4
    # the torch model stays loaded (explanations need gradients)
    assert isinstance(loaded.model_.module, torch.nn.Module)


@pytest.mark.realdata
def test_int8_agrees_with_torch_on_held_out_n2001_windows(n2001: Path, tmp_path: Path) -> None:
    from emgdx.io import read

    def records(subjects: list[str], n: int) -> Cohort:
        recs = []
        for subject in subjects:
            for hea in sorted(n2001.glob(f"{subject}*.hea"))[:n]:
                recs.extend(read(hea))
        return Cohort.from_recordings(recs)

    pre = PreprocessConfig(window_s=0.5, hop_s=0.5)
    train = records(["N2001A03", "N2001C02", "N2001M03"], 3)
    test = records(["N2001A04", "N2001C03", "N2001M04", "N2001A06", "N2001M05"], 3)
    assert not set(train.manifest["subject_id"]) & set(test.manifest["subject_id"])
    cfg = TrainConfig(epochs=2, batch_size=32, seed=0)
    pipe = Pipeline(preprocess=pre, model="cnn1d", train=cfg).fit(train)
    folder = pipe.save(tmp_path / "n2001")
    export_pipeline(pipe, folder, int8=True)
    held = pipe.prepare(test)
    assert len(held) >= 200
    p_torch = pipe.predict_windows(held)
    p_int8 = Pipeline.load(folder, backend="onnx-int8").predict_windows(held)
    agreement = float(np.mean(p_int8.argmax(1) == p_torch.argmax(1)))
    print(f"int8 vs torch argmax agreement: {agreement:.4f} on {len(held)} held-out windows")
    assert agreement >= 0.99, agreement
    assert (folder / INT8_FILE).stat().st_size < 0.5 * (folder / ONNX_FILE).stat().st_size


# ----------------------------------------------------------------------------- backends


def test_backend_choice_on_load(
    cnn_dir: Path, exported_dir: Path, windows: Windows, tmp_path: Path
) -> None:
    folder = cnn_dir
    torch_pipe = Pipeline.load(folder)
    assert torch_pipe.backend == "torch" and torch_pipe.model_.native() is torch_pipe.model_
    # nothing exported yet: auto is torch, an explicit ONNX backend is an error
    assert Pipeline.load(folder, backend="auto").backend == "torch"
    with pytest.raises(DeployError, match="emgdx export"):
        Pipeline.load(folder, backend="onnx")
    with pytest.raises(Exception, match="backend must be one of"):
        Pipeline.load(folder, backend="tensorrt")

    folder = _copy(exported_dir, tmp_path / "m")
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["weights_sha256"] == torch_pipe.weights_sha256()
    assert set(manifest["files"]) == {"onnx", "onnx-int8"}
    assert manifest["files"]["onnx"]["bytes"] == (folder / ONNX_FILE).stat().st_size

    auto = Pipeline.load(folder, backend="auto")
    assert auto.backend == "onnx"
    int8 = Pipeline.load(folder, backend="onnx-int8")
    assert int8.backend == "onnx-int8"
    p_torch = torch_pipe.predict_windows(windows)
    assert np.abs(auto.predict_windows(windows) - p_torch).max() <= 1e-4
    assert np.abs(int8.predict_windows(windows) - p_torch).max() <= 0.05
    # record level goes through the same path
    rec_torch, rec_onnx = torch_pipe.predict(windows).records, auto.predict(windows).records
    cols = [c for c in rec_torch if c.startswith("p_")]
    np.testing.assert_allclose(rec_onnx[cols], rec_torch[cols], atol=1e-4)
    # an empty batch keeps its shape
    assert auto.predict_windows(windows.select(np.zeros(len(windows), bool))).shape == (0, 3)

    # without onnxruntime, auto falls back to torch
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(adapters, "onnx_available", lambda: False)
        assert Pipeline.load(folder, backend="auto").backend == "torch"
        with pytest.raises(DeployError, match="onnxruntime"):
            Pipeline.load(folder, backend="onnx")

    # refitting drops the ONNX model: it belonged to the old weights
    auto.fit(windows)
    assert auto.backend == "torch" and auto.model_.native() is auto.model_

    # a re-export without --int8 removes the stale int8 file
    export_pipeline(torch_pipe, folder)
    assert not (folder / INT8_FILE).exists()
    assert set(json.loads((folder / MANIFEST_FILE).read_text())["files"]) == {"onnx"}


def test_tampered_or_foreign_onnx_is_refused(
    cnn_dir: Path, exported_dir: Path, windows: Windows, tmp_path: Path
) -> None:
    folder = _copy(exported_dir, tmp_path / "m")
    data = bytearray((folder / ONNX_FILE).read_bytes())
    data[-10] ^= 0xFF
    (folder / ONNX_FILE).write_bytes(bytes(data))
    for backend in ("onnx", "auto"):
        with pytest.raises(PipelineLoadError, match="SHA-256"):
            Pipeline.load(folder, backend=backend)
    # the untouched int8 file and the torch backend still load
    assert Pipeline.load(folder, backend="onnx-int8").backend == "onnx-int8"
    assert Pipeline.load(folder).backend == "torch"

    # ONNX files (with their manifest) moved next to other weights: refused
    other = Pipeline(
        preprocess=PRE,
        model="cnn1d",
        train=dataclasses.replace(TINY, seed=9),
        model_params={"n_filters": (8, 8)},
    ).fit(windows)
    other_dir = other.save(tmp_path / "other")
    for name in (ONNX_FILE, MANIFEST_FILE):
        shutil.copy(exported_dir / name, other_dir / name)
    with pytest.raises(PipelineLoadError, match="other weights"):
        Pipeline.load(other_dir, backend="onnx")
    # and exporting one pipeline into another's folder is refused
    with pytest.raises(DeployError, match="other weights"):
        export_pipeline(other, cnn_dir)


def test_classical_models_are_refused(windows: Windows, tmp_path: Path) -> None:
    pipe = Pipeline(preprocess=PRE, model="random_forest", model_params={"n_estimators": 5})
    folder = pipe.fit(windows).save(tmp_path / "rf")
    with pytest.raises(DeployError, match="scikit-learn"):
        export_pipeline(pipe, folder)
    assert Pipeline.load(folder, backend="auto").backend == "sklearn"  # auto: nothing to switch
    with pytest.raises(DeployError, match="torch models only"):
        Pipeline.load(folder, backend="onnx")
    code, _, stderr = _invoke("export", str(folder), "--onnx")
    assert code == 2 and "scikit-learn" in stderr


# ----------------------------------------------------------------------------- CLI


def _invoke(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_cli_export_then_predict_uses_onnx(cnn_dir: Path, tmp_path: Path) -> None:
    folder = _copy(cnn_dir, tmp_path / "m")
    code, _, stderr = _invoke("export", str(folder))
    assert code == 2 and "--onnx" in stderr
    code, stdout, stderr = _invoke("export", str(folder), "--onnx", "--int8")
    assert code == 0, stdout + stderr
    assert ONNX_FILE in stdout and INT8_FILE in stdout and "max |Δp|" in stdout
    manifest = json.loads((folder / MANIFEST_FILE).read_text())
    assert manifest["parity"]["onnx"]["max_abs_prob_diff"] <= 1e-4
    assert f"{manifest['files']['onnx-int8']['bytes'] / 1024:.0f} KiB" in stdout

    sim_dir = tmp_path / "sim"
    code, stdout, stderr = _invoke(
        "simulate", str(sim_dir), "--subjects-per-class", "1", "--records-per-subject", "1",
        "--duration-s", "2", "--fs-hz", "4000", "--seed", "3",
    )  # fmt: skip
    assert code == 0, stdout + stderr
    files = sorted(sim_dir.glob("*.hea"))
    assert files
    runs = {}
    for backend in ("torch", "auto", "onnx-int8"):
        code, stdout, stderr = _invoke(
            "predict", str(folder), *map(str, files), "--json", "--backend", backend
        )
        assert code == 0, stdout + stderr
        runs[backend] = json.loads(stdout)
    assert {b: r["model"]["backend"] for b, r in runs.items()} == {
        "torch": "torch",
        "auto": "onnx",
        "onnx-int8": "onnx-int8",
    }
    p = {
        b: np.array([[row[f"p_{c}"] for c in r["model"]["classes"]] for row in r["records"]])
        for b, r in runs.items()
    }
    assert np.abs(p["auto"] - p["torch"]).max() <= 1e-4
    assert np.abs(p["onnx-int8"] - p["torch"]).max() <= 0.05


def test_clinic_service_uses_the_onnx_backend(exported_dir: Path) -> None:
    pytest.importorskip("fastapi")
    from emgdx.clinic.app import create_app
    from emgdx.clinic.settings import ClinicSettings
    from emgdx.errors import ConfigError

    folder = exported_dir
    for backend, expected in (("auto", "onnx"), ("onnx-int8", "onnx-int8"), ("torch", "torch")):
        settings = ClinicSettings(
            database_url="sqlite://", model_dir=folder, backend=backend, isolate_analyses=False
        )
        runner_ = create_app(settings).state.runner
        assert runner_.model_info["backend"] == expected
        assert runner_.pipeline.backend == expected
    with pytest.raises(ConfigError, match="backend"):
        ClinicSettings(database_url="sqlite://", backend="gpu")
