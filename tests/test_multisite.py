"""Several sites: reading one folder per hospital, and results split by site and muscle."""

from __future__ import annotations

import json
import warnings
from pathlib import Path
from typing import ClassVar

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from emgdx.cli import app
from emgdx.errors import ConfigError, SignalError
from emgdx.evaluation import (
    SubjectLeakError,
    cross_validate,
    few_shot_curve,
    leave_one_site_out,
    site_stratified_kfold,
)
from emgdx.evaluation.cv import subset_masks
from emgdx.io import read_cohort
from emgdx.recording import Windows, muscle_group

runner = CliRunner()


def _write_site(
    folder: Path, rows: list[tuple[str, str, str, str]], site_column: bool = False
) -> None:
    """NPY records (1 s at 1 kHz) and a manifest: (record, subject, label, muscle) per row."""
    folder.mkdir(parents=True)
    rng = np.random.default_rng(len(rows))
    for record, *_ in rows:
        np.save(folder / f"{record}.npy", rng.normal(0, 50, 1000).astype(np.float32))
    frame = pd.DataFrame(rows, columns=["record_id", "subject_id", "label", "muscle"])
    frame["fs_hz"] = 1000.0
    if site_column:
        frame["site"] = "Rigshospitalet"
    frame.to_csv(folder / "manifest.csv", index=False)


def test_two_folders_are_two_sites_and_shared_names_stay_apart(tmp_path: Path) -> None:
    _write_site(
        tmp_path / "copenhagen",
        [("r1", "S01", "healthy", "Biceps brachii (long head)"), ("r2", "S02", "myopathy", "")],
    )
    _write_site(
        tmp_path / "algiers",
        [("r1", "S01", "neurogenic", "deltoid"), ("r3", "S03", "healthy", "biceps brachii")],
    )
    with pytest.warns(UserWarning, match="more than one site") as caught:
        cohort = read_cohort([tmp_path / "copenhagen", tmp_path / "algiers"])
    assert len(caught) == 2  # one warning for subjects, one for records
    m = cohort.manifest
    assert list(m["site"]) == ["copenhagen", "copenhagen", "algiers", "algiers"]
    # two hospitals' "S01" are two people; names used by one site only are kept as they are
    assert sorted(m["subject_id"]) == ["S02", "S03", "algiers/S01", "copenhagen/S01"]
    assert sorted(m["record_id"]) == ["algiers/r1", "copenhagen/r1", "r2", "r3"]
    assert cohort["algiers/r1"].label == "neurogenic" and cohort["copenhagen/r1"].label == "healthy"
    assert len(cohort.subjects) == 4

    # one folder alone is not a multi-site read: no site is invented, nothing is renamed
    single = read_cohort(tmp_path / "copenhagen")
    assert single.manifest["site"].isna().all() and "r1" in single.manifest.index


def test_manifest_site_column_wins_and_folder_names_must_differ(tmp_path: Path) -> None:
    _write_site(tmp_path / "a" / "data", [("x1", "P1", "healthy", "deltoid")], site_column=True)
    _write_site(tmp_path / "b" / "data", [("x2", "P2", "myopathy", "deltoid")])
    with pytest.raises(ConfigError, match="share a name"):
        read_cohort([tmp_path / "a" / "data", tmp_path / "b" / "data"])
    (tmp_path / "b" / "data").rename(tmp_path / "b" / "algiers")
    cohort = read_cohort([tmp_path / "a" / "data", tmp_path / "b" / "algiers"])
    assert cohort["x1"].site == "Rigshospitalet"  # the manifest's column wins over "data"
    assert cohort["x2"].site == "algiers"
    with pytest.raises(ConfigError, match="at least one"):
        read_cohort([])


def test_subset_masks_split_by_site_muscle_and_level() -> None:
    index = pd.DataFrame(
        {
            "site": ["n2001", "n2001", "algiers", "algiers", None],
            "muscle": [
                "Biceps brachii (long head)",
                "Biceps brachii (short head)",
                "deltoid",
                "biceps brachii",
                None,
            ],
            "level": ["low", "moderate", None, None, None],
        }
    )
    masks = {k: v.tolist() for k, v in subset_masks(index).items()}
    assert masks == {
        "low": [True, False, False, False, False],
        "site=algiers": [False, False, True, True, False],
        "site=n2001": [True, True, False, False, False],
        "muscle=biceps brachii": [True, True, False, True, False],
        "muscle=deltoid": [False, False, True, False, False],
    }
    # one site and one muscle: nothing to split
    assert subset_masks(index.iloc[:2].assign(level=None)) == {}
    assert muscle_group(" Biceps  Brachii (caput longum) ") == "biceps brachii"


def test_real_sites_read_together(n2001: Path, algiers: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # the two hospitals share no subject or record name
        cohort = read_cohort([n2001, algiers])
    m = cohort.manifest
    assert m.groupby("site").size().to_dict() == {"algiers": 200, "n2001": 355}
    assert m.groupby("site")["subject_id"].nunique().to_dict() == {"algiers": 119, "n2001": 18}
    groups = {muscle_group(v) for v in m["muscle"]}
    assert groups == {"biceps brachii", "deltoid"}
    assert set(m.loc[m["site"] == "algiers", "fs_hz"]) == {32768.0}


@pytest.fixture(scope="module")
def two_sim_sites(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    """Two simulated 'hospitals' at different rates (same subject names: kept apart)."""
    root = tmp_path_factory.mktemp("sites")
    folders = []
    for name, fs, seed in (("site_a", "10000", "1"), ("site_b", "32768", "2")):
        out = root / name
        result = runner.invoke(
            app,
            [
                "simulate",
                str(out),
                "--subjects-per-class",
                "2",
                "--records-per-subject",
                "1",
                "--duration-s",
                "3",
                "--fs-hz",
                fs,
                "--seed",
                seed,
            ],
        )
        assert result.exit_code == 0, result.stdout + result.stderr
        folders.append(out)
    return folders


def test_evaluate_two_folders_reports_each_site(two_sim_sites: list[Path], tmp_path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # the shared simulated names
        result = runner.invoke(
            app,
            [
                "evaluate",
                *map(str, two_sim_sites),
                "--model",
                "random_forest",
                "--cv",
                "kfold",
                "--k",
                "3",
                "--n-boot",
                "20",
                "--out",
                str(tmp_path / "rep"),
                "--json",
            ],
        )
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    subsets = {row["subset"]: row for row in summary["metrics"] if row["level"] == "subject"}
    assert {"all", "site=site_a", "site=site_b"} <= set(subsets)
    assert subsets["all"]["n_subjects"] == 12
    assert subsets["site=site_a"]["n_subjects"] == subsets["site=site_b"]["n_subjects"] == 6
    saved = json.loads((tmp_path / "rep" / "results.json").read_text())
    assert saved["config"]["data"] == [str(p) for p in two_sim_sites]


def test_site_splits() -> None:
    groups = np.array(["a1", "a1", "a2", "b1", "b2", "b3"])
    sites = np.array(["A", "A", "A", "B", "B", "B"])
    folds = leave_one_site_out(groups, sites)
    assert [(tr.tolist(), te.tolist()) for tr, te in folds] == [
        ([3, 4, 5], [0, 1, 2]),
        ([0, 1, 2], [3, 4, 5]),
    ]
    with pytest.raises(SubjectLeakError):  # one person recorded at both sites
        leave_one_site_out(np.array(["x", "x", "y"]), np.array(["A", "B", "B"]))
    with pytest.raises(ConfigError, match="no site"):
        leave_one_site_out(groups, [None, "A", "A", "B", "B", "B"])
    with pytest.raises(ConfigError, match="at least 2 sites"):
        leave_one_site_out(groups, ["A"] * 6)

    # pooled k-fold: 2 sites x 2 classes x 4 subjects; every fold tests every site and class
    rows = [(f"{s}{c}{i}", s, c) for s in "AB" for c in (0, 1) for i in range(4)]
    g = np.repeat([r[0] for r in rows], 3)
    st = np.repeat([r[1] for r in rows], 3)
    y = np.repeat([r[2] for r in rows], 3)
    folds = site_stratified_kfold(g, y, st, k=4, seed=0)
    assert len(folds) == 4
    for train, test in folds:
        assert not set(g[train]) & set(g[test])
        assert {(s, c) for s, c in zip(st[test], y[test], strict=True)} == {
            ("A", 0),
            ("A", 1),
            ("B", 0),
            ("B", 1),
        }
    assert sorted(np.concatenate([te for _, te in folds]).tolist()) == list(range(g.size))


def test_without_hum_subset() -> None:
    index = pd.DataFrame({"qc_flags": ["", "line_noise", "clipping;line_noise", None]})
    assert subset_masks(index)["without_hum"].tolist() == [True, False, False, True]
    assert "without_hum" not in subset_masks(index.assign(qc_flags=""))


def test_cross_validate_by_site_and_few_shot_curve(two_sim_sites: list[Path]) -> None:
    from emgdx.pipeline import Pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cohort = read_cohort(two_sim_sites)

    def make() -> Pipeline:
        return Pipeline(model="random_forest", model_params={"n_estimators": 30})

    windows = make().prepare(cohort)
    result = cross_validate(make, windows, cv="site", n_boot=0)
    tested = [set(f["test_subjects"]) for f in result.folds]
    sites = windows.index.groupby("site")["subject_id"].agg(set).to_dict()
    assert tested == [sites["site_a"], sites["site_b"]]

    curve = few_shot_curve(make, windows, target="site_b", shots=(0, 1, 2), draws=2)
    rows = curve.rows
    assert rows["k"].tolist() == [0, 1, 1]  # k=2 leaves no test subject of a class
    assert 2 in curve.skipped and "site_b" in curve.skipped[2]
    assert rows["n_test_subjects"].tolist() == [6, 3, 3]
    assert rows.loc[0, "labelled_subjects"] == ""
    drawn = rows.loc[1:, "labelled_subjects"].str.split(";")
    assert all(len(d) == 3 and all(s.startswith("site_b/") for s in d) for d in drawn)
    # zero-shot equals the leave-one-site-out fold that tests site_b (same training data)
    loso_b = result.tables["site=site_b"]["mean"]["record"]
    zero = float(rows.loc[0, "record_balanced_accuracy"])
    assert zero == pytest.approx(
        result.evaluation["site=site_b"]["mean"]["record"]["metrics"]["balanced_accuracy"]
    )
    assert len(loso_b) == 6
    summary = curve.summary()
    assert summary["k"].tolist() == [0, 1] and summary["draws"].tolist() == [1, 2]
    json.dumps(curve.to_dict(), allow_nan=False)


def test_evaluate_cli_few_shot(two_sim_sites: list[Path], tmp_path: Path) -> None:
    args = ["evaluate", *map(str, two_sim_sites), "--model", "random_forest", "--cv", "fewshot",
            "--out", str(tmp_path)]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        missing = runner.invoke(app, args)
        bad = runner.invoke(app, [*args, "--target", "site_b", "--shots", "0,x"])
        ok = runner.invoke(app, [*args, "--target", "site_b", "--shots", "0,1", "--draws", "2"])
    assert missing.exit_code == 2 and "--target" in missing.stderr
    assert bad.exit_code == 2 and "--shots" in bad.stderr
    assert ok.exit_code == 0, ok.stdout + ok.stderr
    assert "few-shot calibration on site_b" in ok.stdout
    saved = json.loads((tmp_path / "fewshot.json").read_text())
    assert [row["k"] for row in saved["summary"]] == [0, 1]
    assert saved["config"]["model"] == "random_forest"


def test_few_shot_fine_tuning_starts_every_draw_from_one_model_of_the_other_site(
    two_sim_sites: list[Path], tmp_path: Path
) -> None:
    from emgdx.evaluation import fine_tuning_config
    from emgdx.pipeline import Pipeline
    from emgdx.training import TrainConfig

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        cohort = read_cohort(two_sim_sites)
    fitted: list[Pipeline] = []

    def make() -> Pipeline:
        pipe = Pipeline(model="cnn1d", train=TrainConfig(epochs=2, device="cpu"))
        fitted.append(pipe)
        return pipe

    def tuned() -> Pipeline:
        pipe = make()
        pipe.train = fine_tuning_config(pipe.train)
        return pipe

    windows = make().prepare(cohort)
    fitted.clear()
    curve = few_shot_curve(make, windows, target="site_b", shots=(0, 1), draws=2, fine_tune=tuned)
    assert curve.rows["k"].tolist() == [0, 1, 1]
    assert curve.config["labelled_subjects_used"] == "fine-tuned"
    base, *copies = fitted
    assert len(copies) == 2 and base.pretrained_ is None
    assert set(base.train_subjects_) == set(
        windows.index.loc[windows.index["site"] == "site_a", "subject_id"]
    )
    for pipe, labelled in zip(copies, curve.rows["labelled_subjects"][1:], strict=True):
        assert pipe.pretrained_ is not None
        assert pipe.pretrained_["weights_sha256"] == base.weights_sha256()
        assert sorted(pipe.train_subjects_) == labelled.split(";")  # the target's k only
        assert pipe.train.val_fraction == 0 and pipe.train_result_ is not None
        assert len(pipe.train_result_.history) == pipe.train.epochs  # every epoch runs

    args = ["evaluate", *map(str, two_sim_sites), "--model", "random_forest", "--cv", "fewshot",
            "--target", "site_b", "--fine-tune", "--out", str(tmp_path)]  # fmt: skip
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        refused = runner.invoke(app, args)
    assert refused.exit_code == 2 and "torch model" in refused.stderr


def test_adapt_batch_norm_takes_the_new_sites_statistics_and_nothing_else() -> None:
    import torch

    from emgdx.models import build_model
    from emgdx.training import adapt_batch_norm

    model = build_model(
        "cnn1d", input_shapes={"x": (1, 600), "aux": (1,)}, n_classes=3, fs_hz=6000.0, seed=0
    )
    rng = np.random.default_rng(0)
    inputs = {
        "x": rng.normal(0, 1, (40, 1, 600)).astype(np.float32),
        "aux": rng.normal(2.5, 0.3, (40, 1)).astype(np.float32),  # another amplifier's level
    }
    weights = {k: v.clone() for k, v in model.state_dict().items() if "running" not in k}
    n = adapt_batch_norm(model, inputs, batch_size=64, device="cpu")
    assert n == sum(isinstance(m, torch.nn.BatchNorm1d) for m in model.modules()) > 0
    aux_norm = model.head.aux[0]
    np.testing.assert_allclose(aux_norm.running_mean.numpy(), inputs["aux"].mean(0), rtol=1e-5)
    np.testing.assert_allclose(
        aux_norm.running_var.numpy(), inputs["aux"].var(0, ddof=1), rtol=1e-4
    )
    after = model.state_dict()
    assert all(torch.equal(after[k], v) for k, v in weights.items() if "num_batches" not in k)
    assert not model.training and aux_norm.momentum == 0.1
    with pytest.raises(SignalError, match="at least 2"):
        adapt_batch_norm(model, {k: v[:1] for k, v in inputs.items()})


def _shifted(cohort_dir: Path, factor: float, out: Path) -> Path:
    """A copy of a simulated site recorded with another gain (NPY + manifest)."""
    out.mkdir()
    cohort = read_cohort(cohort_dir)
    for rec in cohort:
        np.save(out / f"{rec.record_id}.npy", rec.signal * factor)
    m = cohort.manifest[["record_id", "subject_id", "label", "fs_hz"]]
    m.to_csv(out / "manifest.csv", index=False)
    return out


def test_pipeline_adapt_classical_alignment_survives_save_and_load(
    two_sim_sites: list[Path], tmp_path: Path
) -> None:
    from emgdx.pipeline import Pipeline

    train = read_cohort(two_sim_sites[0])
    new_site = read_cohort(_shifted(two_sim_sites[1], 8.0, tmp_path / "loud"))
    pipe = Pipeline(model="random_forest", model_params={"n_estimators": 30}).fit(train)
    windows = pipe.prepare(new_site)
    before = pipe.predict_windows(windows)
    pipe.adapt(new_site.subset(new_site.manifest.index[:4]), site="loud")
    after = pipe.predict_windows(windows)
    assert not np.allclose(before, after)
    assert pipe.adaptation_ is not None and pipe.adaptation_["site"] == "loud"
    assert pipe.adaptation_["n_records"] == 4
    # the aligned features of the adaptation records have the training features' mean
    adapted_on = pipe.prepare(new_site.subset(new_site.manifest.index[:4]))
    model = pipe.model_
    features = model.features(pipe.model_inputs(adapted_on))
    state = model.get_state()
    aligned = features * state["align_scale"] + state["align_shift"]
    np.testing.assert_allclose(aligned.mean(0), state["train_x"].mean(0), rtol=1e-3, atol=1e-3)

    pipe.save(tmp_path / "adapted")
    again = Pipeline.load(tmp_path / "adapted")
    np.testing.assert_array_equal(again.predict_windows(windows), after)
    assert again.adaptation_ == pipe.adaptation_
    saved = json.loads((tmp_path / "adapted" / "pipeline.json").read_text())
    assert "features aligned" in saved["adaptation"]["method"]


class _SpyPipeline:
    """A real pipeline that remembers what adapt() was given."""

    seen: ClassVar[list[pd.DataFrame]] = []

    def __init__(self) -> None:
        from emgdx.pipeline import Pipeline

        self.inner = Pipeline(model="random_forest", model_params={"n_estimators": 20})

    def fit(self, windows: object) -> _SpyPipeline:
        self.inner.fit(windows)
        return self

    def adapt(self, windows: object) -> None:
        _SpyPipeline.seen.append(windows.index.copy())  # type: ignore[attr-defined]
        self.inner.adapt(windows)

    def predict_windows(self, windows: object) -> np.ndarray:
        return self.inner.predict_windows(windows)


def test_cross_validate_adapts_each_site_fold_without_its_labels(two_sim_sites: list[Path]) -> None:
    from emgdx.pipeline import Pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        windows = Pipeline(model="random_forest").prepare(read_cohort(two_sim_sites))
    _SpyPipeline.seen.clear()
    result = cross_validate(_SpyPipeline, windows, cv="site", adapt=True, n_boot=0)
    assert len(_SpyPipeline.seen) == 2 and result.config["adapt"] is True
    for index, fold in zip(_SpyPipeline.seen, result.folds, strict=True):
        assert index["label"].isna().all()  # the answers are hidden from adaptation
        assert set(index["subject_id"]) == set(fold["test_subjects"])


def test_adapt_command_saves_an_adapted_model(two_sim_sites: list[Path], tmp_path: Path) -> None:
    model = tmp_path / "model"
    trained = runner.invoke(
        app, ["train", str(two_sim_sites[0]), "--model", "random_forest", "--out", str(model)]
    )
    assert trained.exit_code == 0, trained.stdout + trained.stderr
    out = tmp_path / "adapted"
    result = runner.invoke(
        app, ["adapt", str(model), str(two_sim_sites[1]), "--out", str(out), "--json"]
    )
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert summary["site"] == "site_b" and summary["n_records"] == 6
    saved = json.loads((out / "pipeline.json").read_text())
    assert saved["adaptation"]["windows_sha256"] == summary["windows_sha256"]
    assert (
        saved["weights_sha256"]
        != json.loads((model / "pipeline.json").read_text())["weights_sha256"]
    )


def _median_frequency(x: np.ndarray, fs_hz: float) -> np.ndarray:
    power = np.abs(np.fft.rfft(x, axis=-1)) ** 2
    cumulative = np.cumsum(power, axis=-1)
    freqs = np.fft.rfftfreq(x.shape[-1], 1 / fs_hz)
    return freqs[(cumulative < cumulative[..., -1:] / 2).sum(-1)]


def test_spectral_tilt_moves_power_down_or_up_and_keeps_the_level() -> None:
    import torch

    from emgdx.augment import SpectralTilt

    rng = np.random.default_rng(1)
    x = torch.from_numpy(rng.normal(0, 1, (8, 1, 6000)).astype(np.float32))
    gen = torch.Generator().manual_seed(0)
    down, _ = SpectralTilt(p=1.0, db_per_octave=(-3.0, -3.0)).transform(x, None, 6000.0, gen)
    up, _ = SpectralTilt(p=1.0, db_per_octave=(2.0, 2.0)).transform(x, None, 6000.0, gen)
    base = _median_frequency(x.numpy(), 6000.0)
    assert (_median_frequency(down.numpy(), 6000.0) < 0.5 * base).all()
    assert (_median_frequency(up.numpy(), 6000.0) > base).all()
    np.testing.assert_allclose((down**2).mean((1, 2)), (x**2).mean((1, 2)), rtol=1e-3)
    with pytest.raises(ConfigError, match="pivot_hz"):
        SpectralTilt(pivot_hz=0.0)


def test_acquisition_preset_expands_into_a_saved_chain() -> None:
    import torch

    from emgdx.augment import PRESETS, Augmenter
    from emgdx.training import TrainConfig

    cfg = TrainConfig(augment=("acquisition", "shift"))
    names = [spec["name"] for spec in cfg.augment]
    assert names == [spec["name"] for spec in PRESETS["acquisition"]] + ["shift"]
    assert TrainConfig.from_dict(cfg.to_dict()) == cfg  # stored expanded: reproducible
    augmenter = Augmenter(("acquisition",), fs_hz=6000.0, seed=0)
    batch = {"x": torch.randn(16, 1, 600), "aux": torch.zeros(16, 1)}
    out = augmenter(batch)
    assert out["x"].shape == batch["x"].shape and not torch.equal(out["x"], batch["x"])
    assert out["aux"].abs().max() > 0  # gain moved the amplitude input
    with pytest.raises(ConfigError, match="preset"):
        TrainConfig(augment=("acquisitions",))


def test_hospital_sites_hold_out_a_share_of_every_class(two_sim_sites: list[Path]) -> None:
    from emgdx.federated.core import hospital_sites

    sites = hospital_sites([str(p) for p in two_sim_sites], holdout_fraction=0.5, seed=0)
    assert [s.name for s in sites] == ["site_a", "site_b"]
    for site in sites:
        cohort = read_cohort(site.data_dir)
        label_of = cohort.manifest.groupby("subject_id")["label"].first()
        assert not set(site.train_subjects) & set(site.test_subjects)
        assert set(site.train_subjects) | set(site.test_subjects) == set(label_of.index)
        # 2 subjects per class: one of each class held out, one trains
        assert sorted(label_of[list(site.test_subjects)]) == ["healthy", "myopathy", "neurogenic"]
    with pytest.raises(ConfigError, match="holdout_fraction"):
        hospital_sites([str(two_sim_sites[0])], holdout_fraction=1.0)


def test_pooled_cross_validation_tests_every_site_in_every_fold(two_sim_sites: list[Path]) -> None:
    from emgdx.pipeline import Pipeline

    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        windows = Pipeline(model="random_forest").prepare(read_cohort(two_sim_sites))

    def make() -> Pipeline:
        return Pipeline(model="random_forest", model_params={"n_estimators": 20})

    result = cross_validate(make, windows, cv="pooled", k=2, n_boot=0)
    site_of = windows.index.groupby("subject_id")["site"].first()
    assert result.cv == "pooled" and len(result.folds) == 2
    for fold in result.folds:
        assert set(site_of[fold["test_subjects"]]) == {"site_a", "site_b"}
    assert result.config["k"] == 2
    unsited = Windows(windows.data, windows.fs_hz, windows.index.assign(site=None))
    with pytest.raises(ConfigError, match="no site"):
        cross_validate(make, unsited, cv="site", n_boot=0)


def test_federated_simulate_two_hospital_folders(two_sim_sites: list[Path], tmp_path: Path) -> None:
    result = runner.invoke(
        app,
        ["federated", "simulate", *map(str, two_sim_sites), "--out", str(tmp_path / "fed"),
         "--rounds", "1", "--holdout-fraction", "0.5", "--json"],
    )  # fmt: skip
    assert result.exit_code == 0, result.stdout + result.stderr
    summary = json.loads(result.stdout)
    assert set(summary["held_out_by_site"]) == {"site_a", "site_b"}
    assert summary["held_out_by_site"]["site_a"]["record"]["n"] == 3  # one subject per class
