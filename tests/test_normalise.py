"""Tests of emgdx.normalise: the one normalisation concept (methods, scopes, fitted statistics)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from emgdx.errors import ConfigError
from emgdx.normalise import Normalisation, Normaliser, normalise_windows


def test_zscore_normaliser_uses_fitted_statistics_not_new_data() -> None:
    rng = np.random.default_rng(4)
    train = (5.0 + 2.0 * rng.standard_normal((40, 500))).astype(np.float32)
    test = (-3.0 + 10.0 * rng.standard_normal((10, 500))).astype(np.float32)
    norm = Normaliser("zscore").fit(train)
    assert norm.center == pytest.approx(float(np.mean(train, dtype=np.float64)), rel=1e-9)
    assert norm.scale == pytest.approx(float(np.std(train, dtype=np.float64)), rel=1e-9)
    out = norm.transform(test)
    expected = (test.astype(np.float64) - train.mean(dtype=np.float64)) / train.std(
        dtype=np.float64
    )
    np.testing.assert_allclose(out, expected, rtol=1e-4, atol=1e-4)
    # test data keeps its own offset and spread relative to the training statistics
    assert out.mean() == pytest.approx(-4.0, abs=0.2)
    assert out.std() == pytest.approx(5.0, rel=0.05)


def test_robust_normaliser_uses_median_and_iqr_of_training_data() -> None:
    rng = np.random.default_rng(5)
    train = rng.laplace(2.0, 3.0, size=20_000).astype(np.float32)
    train[:50] = 1e4  # outliers barely move median / IQR
    test = rng.laplace(0.0, 1.0, size=5000).astype(np.float32)
    norm = Normaliser("robust").fit([train[:7000], train[7000:]])  # a list of arrays works too
    q25, med, q75 = np.percentile(train, [25, 50, 75])
    assert norm.center == pytest.approx(med, rel=1e-6)
    assert norm.scale == pytest.approx(q75 - q25, rel=1e-6)
    np.testing.assert_allclose(
        norm.transform(test), (test - med) / (q75 - q25), rtol=1e-5, atol=1e-6
    )


def test_normaliser_round_trips_through_json() -> None:
    data = np.random.default_rng(6).normal(3.0, 7.0, 1000).astype(np.float32)
    norm = Normaliser("robust").fit(data)
    again = Normaliser.from_dict(json.loads(json.dumps(norm.to_dict())))
    assert again.method == "robust" and again.fitted
    probe = np.linspace(-20, 20, 11, dtype=np.float32)
    np.testing.assert_array_equal(again.transform(probe), norm.transform(probe))


def test_normaliser_guards() -> None:
    with pytest.raises(ConfigError, match="not fitted"):
        Normaliser("zscore").transform(np.zeros(3))
    with pytest.raises(ConfigError, match="method"):
        Normaliser("minmax")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown"):
        Normaliser.from_dict({"method": "zscore", "center": 0.0, "scale": 1.0, "mean": 3})
    flat = Normaliser("zscore").fit(np.full(100, 7.0, dtype=np.float32))
    out = flat.transform(np.full(5, 7.0, dtype=np.float32))
    assert np.isfinite(out).all() and np.all(out == 0)


@pytest.mark.parametrize("method", ["zscore", "robust"])
def test_per_window_normalisation_and_flat_windows(method: str) -> None:
    rng = np.random.default_rng(7)
    data = (rng.standard_normal((6, 400)) * np.arange(1, 7)[:, None] + 50).astype(np.float32)
    data[2] = 3.0  # flat window
    data[4, :300] = 0.0  # IQR is 0 but the window is not flat
    out = normalise_windows(data, method)
    assert np.isfinite(out).all()
    assert np.all(out[2] == 0)
    assert out[4].std() > 0.5  # not blown up, not collapsed
    for i in (0, 1, 3, 5):
        if method == "zscore":
            assert out[i].mean() == pytest.approx(0.0, abs=1e-4)
            assert out[i].std() == pytest.approx(1.0, rel=1e-4)
        else:
            q25, med, q75 = np.percentile(out[i], [25, 50, 75])
            assert med == pytest.approx(0.0, abs=1e-5)
            assert q75 - q25 == pytest.approx(1.0, rel=1e-4)


def test_normalisation_value_names_its_scope_and_what_it_keeps() -> None:
    assert Normalisation().keeps_uv and not Normalisation().active
    fitted = Normalisation("zscore", "fitted")
    assert fitted.fitted and fitted.keeps_uv  # µV until the fitted normaliser runs
    window = Normalisation("robust", "window")
    assert not window.keeps_uv and not window.fitted
    data = np.random.default_rng(0).normal(10.0, 4.0, (3, 200)).astype(np.float32)
    np.testing.assert_array_equal(window.windows(data), normalise_windows(data, "robust"))
    np.testing.assert_array_equal(fitted.windows(data), data)  # not this scope's job
    with pytest.raises(ConfigError, match="normalise_scope"):
        Normalisation("zscore", "subject")  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="normalise"):
        Normalisation("minmax")  # type: ignore[arg-type]


def test_record_scope_uses_usable_samples_only() -> None:
    rng = np.random.default_rng(1)
    y = rng.normal(0.0, 80.0, 12_000).astype(np.float32)
    usable = np.ones(y.size, dtype=bool)
    y[:2000], usable[:2000] = 5000.0, False  # junk that would dominate the statistics
    out, info = Normalisation("zscore", "record").record(y, usable)
    assert out[usable].mean() == pytest.approx(0.0, abs=1e-3)
    assert out[usable].std() == pytest.approx(1.0, rel=1e-3)
    assert info["scale"] == pytest.approx(80.0, rel=0.05) and info["scope"] == "record"
