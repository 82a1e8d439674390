"""Tests for emgdx.tasks and emgdx.models: the registry walk (forward, torch.export, ONNX), the
amplitude side input, seeding, errors, and the classical baselines on toy features."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from emgdx.errors import ConfigError
from emgdx.recording import LABELS
from emgdx.tasks import TASKS, class_names, encode_labels, n_classes

torch = pytest.importorskip("torch")
pytest.importorskip("sklearn")

from emgdx.models import (  # noqa: E402  (after the importorskip guards)
    MODELS,
    build_model,
    count_parameters,
    model_names,
    summary_table,
)
from emgdx.models.classical import feature_matrix  # noqa: E402
from emgdx.models.export import (  # noqa: E402
    example_inputs,
    export_onnx,
    export_program,
    onnx_logits,
)

# Small but realistic shapes: 0.5 s windows at 2 kHz, small time-frequency images.
FS_HZ = 2000.0
SHAPES = {
    "raw": {"x": (1, 1000), "aux": (1,)},
    "stft": {"x": (1, 24, 32), "aux": (1,)},
    "cwt": {"x": (1, 20, 40), "aux": (2,)},
    "features": {"x": (12,)},
}
TORCH_MODELS = model_names(kind="torch")
CLASSICAL_MODELS = model_names(kind="classical")


@pytest.fixture(autouse=True, scope="module")
def _one_torch_thread():  # type: ignore[no-untyped-def]
    # tiny batches gain nothing from threads, and OpenMP threads stall badly when the test
    # machine's cores are busy with other work (measured: 1.3 s alone vs 11 s under load)
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------- tasks


def test_class_names_follow_labels_and_put_als_at_one() -> None:
    assert class_names("3class") == tuple(LABELS)
    for task in ("als_vs_rest", "als_vs_healthy"):
        assert class_names(task)[1] == "neurogenic"
        assert n_classes(task) == 2
    assert set(TASKS) == {"3class", "als_vs_rest", "als_vs_healthy"}


def test_encode_labels_per_task() -> None:
    rng = np.random.default_rng(0)
    labels: list[str | None] = list(rng.choice(LABELS, size=40))
    labels[3] = None
    labels[7] = "Mainly bulbar ALS"  # free text is normalised
    norm = ["neurogenic" if i == 7 else lab for i, lab in enumerate(labels)]

    y, keep = encode_labels(labels, "3class")
    assert y.dtype == np.int64 and keep.dtype == bool
    assert not keep[3] and keep.sum() == 39
    assert y.tolist() == [LABELS.index(lab) for lab in norm if lab is not None]

    y, keep = encode_labels(labels, "als_vs_rest")
    assert y.tolist() == [int(lab == "neurogenic") for lab in norm if lab is not None]

    y, keep = encode_labels(np.array(labels, dtype=object), "als_vs_healthy")
    expected_keep = [lab in ("healthy", "neurogenic") for lab in norm]
    assert keep.tolist() == expected_keep
    assert y.tolist() == [int(lab == "neurogenic") for lab, k in zip(norm, keep, strict=True) if k]


def test_encode_labels_drops_nan_and_unknown_text() -> None:
    y, keep = encode_labels([float("nan"), "something odd", "myopathy"], "3class")
    assert keep.tolist() == [False, False, True]
    assert y.tolist() == [2]


def test_unknown_task_raises() -> None:
    with pytest.raises(ConfigError, match="unknown task"):
        class_names("4class")
    with pytest.raises(ConfigError, match="unknown task"):
        encode_labels(["healthy"], "als")


# ----------------------------------------------------------------------------- registry


def test_registry_holds_the_contract_models() -> None:
    assert set(TORCH_MODELS) == {"cnn1d", "cnn2d_stft", "cnn2d_cwt", "cnn_lstm"}
    assert set(CLASSICAL_MODELS) == {
        "svm",
        "random_forest",
        "gradient_boosting",
        "bagging",
        "adaboost",
    }
    assert MODELS["cnn2d_cwt"].input == "cwt" and MODELS["cnn_lstm"].input == "raw"
    assert all(spec.input == "features" for spec in MODELS.values() if spec.kind == "classical")


def test_summary_table_counts_parameters() -> None:
    table = summary_table()
    assert list(table["name"]) == list(MODELS)
    torch_rows = table[table["kind"] == "torch"]
    # modest sizes: CPU training of a LOSO fold must stay fast
    assert (torch_rows["n_parameters"] > 1000).all()
    assert (torch_rows["n_parameters"] < 300_000).all()
    assert table.loc[table["kind"] == "classical", "n_parameters"].isna().all()
    # the count is the model's real count, and follows the shapes it is given
    model = build_model(
        "cnn1d", input_shapes={"x": (1, 6000), "aux": (1,)}, n_classes=3, fs_hz=6000.0
    )
    row = table.set_index("name").loc["cnn1d"]
    assert row["n_parameters"] == sum(p.numel() for p in model.parameters())
    no_aux = summary_table({"raw": {"x": (1, 6000)}}).set_index("name")
    assert no_aux.loc["cnn1d", "n_parameters"] < row["n_parameters"]
    assert pd_isna(no_aux.loc["cnn2d_stft", "n_parameters"])


def pd_isna(value: object) -> bool:
    import pandas as pd

    return bool(pd.isna(value))


def test_model_parameters_listed_and_unknown_rejected() -> None:
    params = MODELS["cnn1d"].parameters()
    assert "dropout" in params and "n_times" not in params and "fs_hz" not in params
    with pytest.raises(ConfigError, match="unknown parameter"):
        build_model("cnn1d", input_shapes=SHAPES["raw"], n_classes=3, fs_hz=FS_HZ, depth=5)
    with pytest.raises(ConfigError, match="unknown model"):
        build_model("resnet", input_shapes=SHAPES["raw"], n_classes=3, fs_hz=FS_HZ)


@pytest.mark.parametrize(
    ("name", "shapes", "kwargs", "match"),
    [
        ("cnn1d", {"x": (1, 24, 32)}, {}, "2 positive dims"),
        ("cnn2d_stft", {"x": (1, 1000)}, {}, "3 positive dims"),
        ("cnn1d", {"aux": (1,)}, {}, "needs input 'x'"),
        ("cnn1d", {"x": (1, 1000), "aux": (1, 2)}, {}, "aux must be a vector"),
        ("cnn1d", {"x": (1, 20)}, {}, "too short"),
        ("cnn_lstm", {"x": (1, 40)}, {}, "LSTM step"),
        ("cnn1d", {"x": (1, 1000)}, {"dropout": 1.5}, "dropout"),
        ("cnn1d", {"x": (1, 1000)}, {"kernel_size": 4}, "odd"),
        ("svm", {"x": (1, 1000)}, {}, "1 positive dims"),
        ("svm", {"x": (12,)}, {"C": -1.0}, "C must be"),
    ],
)
def test_bad_configs_raise_config_error(
    name: str, shapes: dict[str, tuple[int, ...]], kwargs: dict[str, object], match: str
) -> None:
    with pytest.raises(ConfigError, match=match):
        build_model(name, input_shapes=shapes, n_classes=3, fs_hz=FS_HZ, **kwargs)


@pytest.mark.parametrize("bad", [{"n_classes": 1}, {"fs_hz": 0.0}])
def test_bad_context_raises(bad: dict[str, float]) -> None:
    args = {"n_classes": 3, "fs_hz": FS_HZ, **bad}
    with pytest.raises(ConfigError):
        build_model("cnn1d", input_shapes=SHAPES["raw"], **args)


# ----------------------------------------------------------------------------- torch walk


def _build(name: str, n_cls: int = 3, aux: bool = True, **params: object) -> torch.nn.Module:
    shapes = dict(SHAPES[MODELS[name].input])
    if not aux:
        shapes.pop("aux", None)
    return build_model(name, input_shapes=shapes, n_classes=n_cls, fs_hz=FS_HZ, **params)


def _inputs(name: str, n: int, aux: bool = True, seed: int = 1) -> dict[str, torch.Tensor]:
    shapes = dict(SHAPES[MODELS[name].input])
    if not aux:
        shapes.pop("aux", None)
    return example_inputs(shapes, n, seed=seed)


@pytest.mark.parametrize("name", TORCH_MODELS)
@pytest.mark.parametrize("n_cls", [3, 2])
@pytest.mark.parametrize("aux", [True, False])
def test_torch_forward_shape(name: str, n_cls: int, aux: bool) -> None:
    model = _build(name, n_cls, aux).eval()
    inputs = _inputs(name, 5, aux)
    with torch.no_grad():
        logits = model(**inputs)
    assert logits.shape == (5, n_cls)
    assert torch.isfinite(logits).all()


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_torch_models_have_batchnorm_dropout_and_unshared_activations(name: str) -> None:
    model = _build(name)
    kinds = {type(m).__name__ for m in model.modules()}
    assert kinds & {"BatchNorm1d", "BatchNorm2d"}
    assert "Dropout" in kinds
    # captum's DeepLift needs one activation module per use: no module appears twice
    all_modules = list(model.named_modules(remove_duplicate=False))
    assert len(all_modules) == len(list(model.named_modules()))


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_aux_is_required_when_declared(name: str) -> None:
    model = _build(name).eval()
    with pytest.raises(ValueError, match="pass aux"):
        model(_inputs(name, 3)["x"])


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_torch_export_and_onnx_match_eager(name: str) -> None:
    model = _build(name).eval()
    program = export_program(model, _inputs(name, 3, seed=1))
    data = export_onnx(model, _inputs(name, 3, seed=1))
    # a different batch size than at export: the batch dimension must be dynamic
    test_inputs = _inputs(name, 6, seed=2)
    with torch.no_grad():
        eager = model(**test_inputs).numpy()
        exported = program.module()(*test_inputs.values()).numpy()
    np.testing.assert_allclose(exported, eager, atol=1e-5)
    onnx_out = onnx_logits(data, {k: v.numpy() for k, v in test_inputs.items()})
    assert onnx_out.shape == (6, 3)
    np.testing.assert_allclose(onnx_out, eager, atol=1e-4)


def test_onnx_export_writes_file_atomically(tmp_path) -> None:  # type: ignore[no-untyped-def]
    model = _build("cnn2d_stft", 2, aux=False)
    path = tmp_path / "model.onnx"
    data = export_onnx(model, _inputs("cnn2d_stft", 2, aux=False), path)
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]  # no temp file left


@pytest.mark.parametrize("name", TORCH_MODELS)
def test_seeded_build_is_reproducible_and_leaves_global_rng(name: str) -> None:
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = _build(name, seed=7)
    after = torch.rand(1)
    assert torch.equal(before, after)  # building did not consume the caller's RNG
    b = _build(name, seed=7)
    c = _build(name, seed=8)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())


def test_cnn1d_kernels_follow_the_sampling_rate() -> None:
    def first_conv(fs: float) -> torch.nn.Conv1d:
        model = build_model("cnn1d", input_shapes={"x": (1, int(fs))}, n_classes=3, fs_hz=fs)
        return next(m for m in model.modules() if isinstance(m, torch.nn.Conv1d))

    slow, fast = first_conv(2000.0), first_conv(8000.0)
    # same duration in ms -> 4x the samples at 4x the rate (rounding aside)
    assert abs(fast.kernel_size[0] - 4 * slow.kernel_size[0]) <= 4
    assert fast.stride[0] == 4 * slow.stride[0] or abs(fast.stride[0] - 4 * slow.stride[0]) <= 2


def _train(model: torch.nn.Module, inputs: dict[str, torch.Tensor], y: torch.Tensor) -> float:
    """Full-batch Adam steps; returns training accuracy in eval mode."""
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    model.train()
    for _ in range(40):
        opt.zero_grad()
        torch.nn.functional.cross_entropy(model(**inputs), y).backward()
        opt.step()
    model.eval()
    with torch.no_grad():
        return float((model(**inputs).argmax(1) == y).float().mean())


def test_aux_branch_carries_information() -> None:
    # the class is visible only in aux (x is pure noise): the model must read aux to learn it
    torch.manual_seed(0)
    n = 48
    y = torch.arange(n) % 3
    inputs = {"x": torch.randn(n, 1, 400), "aux": (y.float() + 0.1 * torch.randn(n)).view(n, 1)}
    model = build_model(
        "cnn1d", input_shapes={"x": (1, 400), "aux": (1,)}, n_classes=3, fs_hz=FS_HZ, dropout=0.0
    )
    assert _train(model, inputs, y) > 0.95


@pytest.mark.parametrize("name", ["cnn1d", "cnn_lstm"])
def test_raw_models_learn_waveform_shape(name: str) -> None:
    # amplitude-matched windows: sparse spikes (MUAP-like) vs a smooth 80 Hz sine
    rng = np.random.default_rng(0)
    n, t = 32, 600
    y = np.arange(n) % 2
    x = np.zeros((n, 1, t), dtype=np.float32)
    time_s = np.arange(t) / FS_HZ
    for i in range(n):
        if y[i]:
            idx = rng.choice(t - 10, size=8, replace=False)
            x[i, 0, idx] = 5.0
            x[i, 0, idx + 3] = -5.0
        else:
            x[i, 0] = np.sin(2 * np.pi * 80.0 * time_s + rng.uniform(0, 2 * np.pi))
        x[i, 0] += 0.1 * rng.standard_normal(t)
        x[i, 0] /= x[i, 0].std()
    model = build_model(name, input_shapes={"x": (1, t)}, n_classes=2, fs_hz=FS_HZ, dropout=0.0)
    assert _train(model, {"x": torch.from_numpy(x)}, torch.from_numpy(y)) > 0.95


def test_count_parameters_matches_torch() -> None:
    model = _build("cnn2d_cwt")
    assert count_parameters(model) == sum(p.numel() for p in model.parameters())


# ----------------------------------------------------------------------------- classical


# smaller ensembles keep the tests fast; the defaults are exercised by the build tests
_FAST: dict[str, dict[str, int]] = {
    "random_forest": {"n_estimators": 30},
    "bagging": {"n_estimators": 20},
    "adaboost": {"n_estimators": 30},
    "gradient_boosting": {"max_iter": 40},
}


def _toy_features(n: int, n_cls: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    y = np.arange(n) % n_cls
    centres = rng.normal(scale=3.0, size=(n_cls, 12))
    # features on very different scales, as handcrafted EMG features are (Hz vs µV vs counts)
    scales = np.logspace(-2, 3, 12)
    x = (centres[y] + rng.standard_normal((n, 12))) * scales
    return x.astype(np.float32), y


@pytest.mark.parametrize("name", CLASSICAL_MODELS)
@pytest.mark.parametrize("n_cls", [3, 2])
def test_classical_fit_predict_proba(name: str, n_cls: int) -> None:
    x_all, y_all = _toy_features(150, n_cls, seed=0)
    # held-out rows drawn around the same class centres
    x, y, x_test, y_test = x_all[:100], y_all[:100], x_all[100:], y_all[100:]
    params = _FAST.get(name, {})
    model = build_model(
        name, input_shapes=SHAPES["features"], n_classes=n_cls, fs_hz=FS_HZ, seed=0, **params
    )
    model.fit(x, y)
    proba = model.predict_proba(x_test)
    assert proba.shape == (len(x_test), n_cls)
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-6)
    assert (proba.argmax(axis=1) == y_test).mean() > 0.8


@pytest.mark.parametrize("name", CLASSICAL_MODELS)
def test_classical_seeded_fit_is_reproducible(name: str) -> None:
    x, y = _toy_features(90, 3, seed=3)
    params = _FAST.get(name, {})

    def fit_predict(seed: int) -> np.ndarray:
        model = build_model(
            name, input_shapes=SHAPES["features"], n_classes=3, fs_hz=FS_HZ, seed=seed, **params
        )
        return model.fit(x, y).predict_proba(x)

    np.testing.assert_array_equal(fit_predict(5), fit_predict(5))


def test_feature_matrix_joins_x_and_aux() -> None:
    x = np.arange(12, dtype=np.float64).reshape(3, 4)
    aux = np.array([[10.0], [20.0], [30.0]])
    m = feature_matrix({"x": x, "aux": aux})
    assert m.dtype == np.float32 and m.shape == (3, 5)
    np.testing.assert_array_equal(m[:, :4], x)
    np.testing.assert_array_equal(m[:, 4], aux[:, 0])
    assert feature_matrix({"x": x}).shape == (3, 4)
    with pytest.raises(ConfigError, match="rows"):
        feature_matrix({"x": x, "aux": aux[:2]})
    with pytest.raises(ConfigError, match="'x'"):
        feature_matrix({"aux": aux})


# ----------------------------------------------------------------------------- integration


def test_models_accept_what_the_representations_produce() -> None:
    # the shape contract between emgdx.represent and the registry, on simulated EMG
    from emgdx.frontend import FrontEnd, PreprocessConfig
    from emgdx.represent import make_representation
    from emgdx.simulate import simulate_cohort

    cohort = simulate_cohort(1, 1, fs_hz=6000.0, duration_s=2.0, seed=0).cohort
    windows = FrontEnd(PreprocessConfig(window_s=0.5, hop_s=0.5), qc=False).prepare(cohort).windows
    data = windows.data[:6]
    for name, spec in MODELS.items():
        rep = make_representation(spec.input)
        shapes = rep.output_shape(data.shape[1], windows.fs_hz)
        inputs = rep.transform(data, windows.fs_hz)
        assert {k: v.shape[1:] for k, v in inputs.items()} == {
            k: tuple(v) for k, v in shapes.items()
        }
        model = build_model(name, input_shapes=shapes, n_classes=3, fs_hz=windows.fs_hz)
        if spec.kind == "torch":
            with torch.no_grad():
                out = model.eval()(**{k: torch.from_numpy(v) for k, v in inputs.items()})
            assert out.shape == (len(data), 3) and torch.isfinite(out).all()
        else:
            assert hasattr(model, "predict_proba")


def test_subject_balanced_weights_give_every_class_and_subject_its_share() -> None:
    from emgdx.tasks import subject_balanced_weights

    rng = np.random.default_rng(0)
    groups = np.array([f"s{i}" for i in rng.integers(0, 9, 500)])
    y = (np.char.lstrip(groups, "s").astype(int) % 3).astype(np.int64)
    w = subject_balanced_weights(y, groups)
    assert w.mean() == pytest.approx(1.0)
    per_class = [w[y == c].sum() for c in range(3)]
    np.testing.assert_allclose(per_class, per_class[0])
    for c in range(3):
        per_subject = [w[groups == s].sum() for s in np.unique(groups[y == c])]
        np.testing.assert_allclose(per_subject, per_subject[0])
    with pytest.raises(ConfigError, match="subject ids"):
        subject_balanced_weights(y, groups[:-1])


@pytest.mark.parametrize("name", ["random_forest", "svm"])
def test_classical_subject_balance_is_used_saved_and_refitted(name: str, tmp_path: Path) -> None:
    """One subject with 200 windows of class 0 where four class-1 subjects are: weighted by
    windows (classes balanced) that region is a tie; weighted by subjects it is class 1's."""
    from emgdx.models.adapters import build_adapter
    from emgdx.training import TrainConfig

    rng = np.random.default_rng(1)
    crowd = rng.normal(0.5, 0.3, (200, 12))  # one subject of class 0, many windows
    few0 = rng.normal(-3.0, 0.3, (12, 12))  # four subjects of class 0, 3 windows each
    few1 = rng.normal(0.5, 0.3, (12, 12))  # four subjects of class 1 beside the crowd
    x = np.vstack([crowd, few0, few1]).astype(np.float32)
    y = np.array([0] * 212 + [1] * 12)
    groups = np.array(["big"] * 200 + [f"a{i // 3}" for i in range(12)]
                      + [f"b{i // 3}" for i in range(12)])  # fmt: skip
    test = rng.normal(0.5, 0.3, (50, 12)).astype(np.float32)

    def fitted(balance: str) -> Any:
        model = build_adapter(name, input_shapes=SHAPES["features"], n_classes=2, fs_hz=FS_HZ,
                              seed=0, params=_FAST.get(name, {}))  # fmt: skip
        model.fit({"x": x}, y, groups, TrainConfig(balance=balance), fs_hz=FS_HZ)
        return model

    by_windows, by_subjects = fitted("weights"), fitted("subjects")
    p_windows = by_windows.predict_proba({"x": test})[:, 1].mean()
    p_subjects = by_subjects.predict_proba({"x": test})[:, 1].mean()
    assert p_subjects > p_windows + 0.1, (p_windows, p_subjects)
    state = by_subjects.get_state()
    assert "train_w" in state and "train_w" not in by_windows.get_state()
    by_subjects.save(tmp_path / "m.safetensors")
    again = build_adapter(name, input_shapes=SHAPES["features"], n_classes=2, fs_hz=FS_HZ,
                          seed=0, params=_FAST.get(name, {}))  # fmt: skip
    again.load(tmp_path / "m.safetensors")  # refits with the weights (checked by its probe)
    expected = by_subjects.predict_proba({"x": test})
    np.testing.assert_allclose(again.predict_proba({"x": test}), expected)
