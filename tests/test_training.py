"""Augmentation and the torch training loop, on small synthetic problems (fast, CPU)."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from torch import nn

from emgdx.augment import (
    AUGMENTATIONS,
    AmplitudeScale,
    Augmenter,
    BaselineWander,
    GaussianNoise,
    LineHum,
    PolarityInversion,
    RandomBandFilter,
    SegmentMask,
    TimeReversal,
    TimeShift,
    augmentation_to_dict,
    make_augmentation,
)
from emgdx.errors import ConfigError, SignalError
from emgdx.training import (
    TrainConfig,
    class_weights,
    fit_torch,
    predict_logits,
    predict_proba,
    resolve_device,
)

FS = 2000.0


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _sines(n: int = 8, t: int = 2000, f_hz: float = 100.0, amp: float = 3.0) -> torch.Tensor:
    time_s = torch.arange(t, dtype=torch.float32) / FS
    phases = torch.linspace(0, math.pi, n).unsqueeze(1)
    return (amp * torch.sin(2 * math.pi * f_hz * time_s + phases)).unsqueeze(1)  # [n, 1, T]


def _amplitude_at(x: torch.Tensor, f_hz: float) -> torch.Tensor:
    """Sine amplitude at ``f_hz`` per window (windows hold whole cycles, so the bin is exact)."""
    spec = torch.fft.rfft(x.squeeze(1).double(), dim=-1)
    k = round(f_hz * x.shape[-1] / FS)
    return 2 * spec[:, k].abs() / x.shape[-1]


# ---- augmentations --------------------------------------------------------------------------


def test_noise_reaches_the_requested_snr() -> None:
    x = _sines(16)
    out = GaussianNoise(p=1.0, snr_db=(20.0, 20.0))({"x": x}, FS, _gen())["x"]
    noise = out - x
    snr = 10 * torch.log10(x.pow(2).mean(dim=(1, 2)) / noise.pow(2).mean(dim=(1, 2)))
    assert torch.allclose(snr, torch.full_like(snr, 20.0), atol=0.6)


def test_probability_controls_how_many_windows_change() -> None:
    x = torch.randn(2000, 1, 50, generator=_gen(1))
    out = PolarityInversion(p=0.3)({"x": x}, None, _gen())["x"]
    flipped = torch.all(out == -x, dim=(1, 2))
    unchanged = torch.all(out == x, dim=(1, 2))
    assert torch.all(flipped | unchanged)
    assert 0.25 < flipped.float().mean().item() < 0.35
    assert torch.equal(PolarityInversion(p=0.0)({"x": x}, None, _gen())["x"], x)


def test_circular_shift_is_a_roll_within_the_limit() -> None:
    x = torch.randn(10, 1, 100, generator=_gen(2))
    out = TimeShift(p=1.0, max_shift_fraction=0.2)({"x": x}, None, _gen())["x"]
    for i in range(10):
        matches = [s for s in range(-20, 21) if torch.equal(out[i], torch.roll(x[i], s, -1))]
        assert matches, f"window {i} is not a roll of at most 20 samples"


def test_crop_pad_shift_fills_with_zeros() -> None:
    x = torch.ones(50, 1, 100)
    out = TimeShift(p=1.0, max_shift_fraction=0.3, mode="crop_pad")({"x": x}, None, _gen())["x"]
    zeros = (out == 0).sum(dim=(1, 2))
    assert zeros.max() <= 30 and zeros.max() > 0
    # Zeros sit at one end only: the kept samples form one contiguous run.
    for row in out[:, 0]:
        nz = torch.nonzero(row).flatten()
        assert nz.numel() == 0 or (nz[-1] - nz[0] + 1) == nz.numel()


def test_shift_and_mask_work_on_images_but_noise_is_refused() -> None:
    img = torch.randn(4, 1, 8, 32, generator=_gen(3))
    aug = Augmenter(["shift", {"name": "mask", "p": 1.0, "max_fraction": 0.25}], seed=0)
    aug.check(img.ndim)
    out = aug({"x": img})["x"]
    assert out.shape == img.shape
    with pytest.raises(ConfigError, match="noise"):
        Augmenter(["noise"], fs_hz=FS).check(img.ndim)
    with pytest.raises(ConfigError, match="fs_hz"):
        Augmenter(["hum"]).check(3)


def test_amplitude_scale_shifts_log_amplitude_aux_only() -> None:
    x = _sines(64)
    aux = torch.zeros(64, 2)
    out = AmplitudeScale(p=1.0, gain=(0.5, 2.0), target="aux")({"x": x, "aux": aux}, FS, _gen())
    assert torch.equal(out["x"], x)
    shift = out["aux"][:, 0]
    assert torch.equal(out["aux"][:, 0], out["aux"][:, 1])  # every log amplitude moves alike
    assert shift.min() >= math.log10(0.5) - 1e-6 and shift.max() <= math.log10(2.0) + 1e-6
    assert shift.std() > 0.05
    both = AmplitudeScale(p=1.0, target="both")({"x": x, "aux": aux}, FS, _gen())
    ratio = both["x"].abs().amax(dim=(1, 2)) / x.abs().amax(dim=(1, 2))
    assert torch.allclose(torch.log10(ratio), both["aux"][:, 0], atol=1e-5)
    with pytest.raises(ConfigError, match="aux"):
        AmplitudeScale(p=1.0, target="aux")({"x": x}, FS, _gen())


def test_band_filter_is_minus_3_db_at_its_edges() -> None:
    # Butterworth magnitude at the cut-off is 1/sqrt(2), whatever the order.
    aug = RandomBandFilter(p=1.0, low_hz=(100.0, 100.0), high_hz=(600.0, 600.0), order=3)
    for f_hz in (100.0, 600.0):
        x = _sines(4, f_hz=f_hz)
        gain = _amplitude_at(aug({"x": x}, FS, _gen())["x"], f_hz) / _amplitude_at(x, f_hz)
        assert torch.allclose(gain, torch.full_like(gain, 1 / math.sqrt(2)), atol=1e-3)
    x = _sines(4, f_hz=250.0)
    gain = _amplitude_at(aug({"x": x}, FS, _gen())["x"], 250.0) / _amplitude_at(x, 250.0)
    assert torch.all(gain > 0.95)
    with pytest.raises(ConfigError):
        RandomBandFilter(low_hz=(100.0, 900.0), high_hz=(500.0, 600.0))


def test_hum_adds_mains_lines_at_the_requested_snr() -> None:
    x = torch.randn(32, 1, 2000, generator=_gen(4))
    out = LineHum(p=1.0, line_hz=(50.0,), n_harmonics=2, snr_db=(10.0, 10.0))({"x": x}, FS, _gen())
    added = out["x"] - x
    snr = 10 * torch.log10(x.pow(2).mean(dim=(1, 2)) / added.pow(2).mean(dim=(1, 2)))
    assert torch.allclose(snr, torch.full_like(snr, 10.0), atol=0.01)
    spec = torch.fft.rfft(added.squeeze(1), dim=-1).abs()
    freqs = torch.fft.rfftfreq(2000, d=1 / FS)
    top2 = freqs[spec.mean(0).topk(2).indices].sort().values
    assert top2.tolist() == [50.0, 150.0]  # fundamental and 3rd harmonic


def test_wander_is_slow_and_relative_to_rms() -> None:
    x = torch.randn(16, 1, 4000, generator=_gen(5))
    aug = BaselineWander(p=1.0, freq_hz=(1.0, 1.0), amplitude_rel=(0.5, 0.5))
    added = aug({"x": x}, FS, _gen())["x"] - x
    rms = x.pow(2).mean(dim=(1, 2)).sqrt()
    assert torch.allclose(added.abs().amax(dim=(1, 2)), 0.5 * rms, rtol=1e-3)
    spec = torch.fft.rfft(added.squeeze(1), dim=-1).abs().mean(0)
    assert torch.fft.rfftfreq(4000, d=1 / FS)[spec.argmax()].item() == 1.0


def test_mask_zeroes_at_most_the_allowed_stretch() -> None:
    x = torch.ones(100, 1, 200)
    out = SegmentMask(p=1.0, max_fraction=0.1)({"x": x}, None, _gen())["x"]
    zeros = (out == 0).sum(dim=(1, 2))
    assert zeros.max() <= 20 and zeros.float().mean() > 5


def test_reversal_flips_time() -> None:
    x = torch.arange(10.0).view(1, 1, 10)
    assert torch.equal(TimeReversal(p=1.0)({"x": x}, None, _gen())["x"], x.flip(-1))


def test_augmenter_is_reproducible_and_leaves_inputs_alone() -> None:
    x = torch.randn(8, 1, 400, generator=_gen(6))
    before = x.clone()
    specs = ["noise", "shift", "polarity", "bandfilter", "wander", "hum", "mask"]
    a = Augmenter(specs, fs_hz=FS, seed=3)({"x": x})["x"]
    b = Augmenter(specs, fs_hz=FS, seed=3)({"x": x})["x"]
    c = Augmenter(specs, fs_hz=FS, seed=4)({"x": x})["x"]
    assert torch.equal(a, b) and not torch.equal(a, c)
    assert torch.equal(x, before)


def test_augmentation_specs_round_trip_and_validate() -> None:
    for name, cls in AUGMENTATIONS.items():
        aug = make_augmentation(name)
        assert isinstance(aug, cls)
        assert make_augmentation(augmentation_to_dict(aug)) == aug
    custom = make_augmentation({"name": "noise", "snr_db": [5, 10], "p": 0.2})
    assert custom == GaussianNoise(p=0.2, snr_db=(5.0, 10.0))
    with pytest.raises(ConfigError, match="unknown augmentation"):
        make_augmentation("jitter")
    with pytest.raises(ConfigError, match="unknown"):
        make_augmentation({"name": "noise", "snr": 3})
    with pytest.raises(ConfigError, match="p must"):
        make_augmentation({"name": "polarity", "p": 1.5})


# ---- training -------------------------------------------------------------------------------


class TinyNet(nn.Module):
    """A small conv net with an aux input, shaped like the registry's models."""

    def __init__(self, n_classes: int = 3, n_aux: int = 1) -> None:
        super().__init__()
        self.body = nn.Sequential(
            nn.Conv1d(1, 4, 9, stride=4),
            nn.BatchNorm1d(4),
            nn.ReLU(),
            nn.AdaptiveAvgPool1d(1),
            nn.Flatten(),
        )
        self.dropout = nn.Dropout(0.1)
        self.head = nn.Linear(4 + n_aux, n_classes)
        self.n_aux = n_aux

    def forward(self, x: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
        h = self.body(x)
        if self.n_aux:
            assert aux is not None
            h = torch.cat([h, aux], dim=1)
        return self.head(self.dropout(h))


def _problem(
    n_subjects_per_class: int = 3, per_subject: int = 30, seed: int = 0, learnable: bool = True
) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Windows whose class sets the frequency (learnable) or nothing (labels shuffled)."""
    rng = np.random.default_rng(seed)
    t = np.arange(256) / FS
    xs, ys, gs = [], [], []
    for c, f_hz in enumerate((40.0, 200.0, 600.0)):
        for s in range(n_subjects_per_class):
            for _ in range(per_subject):
                phase = rng.uniform(0, 2 * np.pi)
                xs.append(np.sin(2 * np.pi * f_hz * t + phase) + 0.3 * rng.standard_normal(t.size))
                ys.append(c)
                gs.append(f"S{c}{s}")
    x = np.asarray(xs, dtype=np.float32)[:, None, :]
    y = np.asarray(ys, dtype=np.int64)
    if not learnable:
        y = rng.permutation(y)
    aux = rng.standard_normal((len(y), 1)).astype(np.float32)
    return {"x": x, "aux": aux}, y, np.asarray(gs)


def _fit(config: TrainConfig, learnable: bool = True, **kw: object):  # type: ignore[no-untyped-def]
    inputs, y, groups = _problem(learnable=learnable)
    torch.manual_seed(config.seed)
    model = TinyNet()
    result = fit_torch(model, inputs, y, groups, config, fs_hz=FS, **kw)  # type: ignore[arg-type]
    return model, result, (inputs, y, groups)


def test_fit_learns_a_separable_problem_with_subject_wise_validation() -> None:
    torch.set_num_threads(1)
    calls: list[tuple[int, int]] = []
    cfg = TrainConfig(epochs=12, batch_size=32, lr=3e-2, val_fraction=0.34, patience=None)
    model, result, (inputs, y, groups) = _fit(cfg, on_progress=lambda d, t: calls.append((d, t)))
    assert calls == [(e, 12) for e in range(1, 13)]
    assert not set(result.train_subjects) & set(result.val_subjects)
    # Stratified: one validation subject from every class (3 subjects per class, fraction 1/3).
    assert sorted(s[1] for s in result.val_subjects) == ["0", "1", "2"]
    assert result.n_train + result.n_val == len(y)
    assert result.best["val_balanced_accuracy"] > 0.9
    assert result.history[-1]["train_loss"] < result.history[0]["train_loss"]
    # The model holds the best epoch's weights: recomputing the validation loss agrees.
    val = np.isin(groups, result.val_subjects)
    logits = torch.from_numpy(predict_logits(model, {k: v[val] for k, v in inputs.items()}))
    loss = nn.functional.cross_entropy(
        logits, torch.from_numpy(y[val]), weight=torch.tensor(result.class_weights)
    )
    assert loss.item() == pytest.approx(result.best["val_loss"], rel=1e-4)
    probs = predict_proba(model, inputs)
    assert probs.shape == (len(y), 3) and np.allclose(probs.sum(axis=1), 1.0, atol=1e-5)


def test_training_is_reproducible_given_the_seed() -> None:
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=3, batch_size=16, augment=("noise", "shift", "polarity"), seed=7)
    m1, r1, _ = _fit(cfg)
    m2, r2, _ = _fit(cfg)
    strip = [{k: v for k, v in row.items() if k != "seconds"} for row in r1.history]
    assert strip == [{k: v for k, v in row.items() if k != "seconds"} for row in r2.history]
    for (k1, v1), (_, v2) in zip(m1.state_dict().items(), m2.state_dict().items(), strict=True):
        assert torch.equal(v1, v2), k1
    _, r3, _ = _fit(TrainConfig(epochs=3, batch_size=16, seed=8))
    assert r3.history[0]["train_loss"] != r1.history[0]["train_loss"]


def test_fit_leaves_the_global_random_state_alone() -> None:
    inputs, y, groups = _problem(per_subject=5)
    model = TinyNet()
    state = torch.get_rng_state()
    fit_torch(model, inputs, y, groups, TrainConfig(epochs=2, batch_size=8))
    assert torch.equal(torch.get_rng_state(), state)


def test_early_stopping_on_an_unlearnable_problem() -> None:
    torch.set_num_threads(1)
    cfg = TrainConfig(epochs=40, batch_size=32, lr=5e-2, patience=2, schedule="plateau")
    calls: list[tuple[int, int]] = []
    _, result, _ = _fit(cfg, learnable=False, on_progress=lambda d, t: calls.append((d, t)))
    assert result.stopped_early
    assert len(result.history) == result.best_epoch + 2
    assert len(result.history) < 40
    # a progress bar ends at the epochs that ran, without a jump to 40/40
    ran = len(result.history)
    assert calls[-2:] == [(ran, 40), (ran, ran)]


@pytest.mark.parametrize(
    "changes",
    [
        {"optimizer": "sgd", "schedule": "onecycle", "balance": "sampler"},
        {"optimizer": "adamw", "schedule": "none", "monitor": "balanced_accuracy"},
        {"val_fraction": 0.0, "label_smoothing": 0.1, "max_grad_norm": None},
    ],
)
def test_other_settings_run(changes: dict[str, object]) -> None:
    torch.set_num_threads(1)
    _, result, _ = _fit(TrainConfig(epochs=2, batch_size=32, **changes))  # type: ignore[arg-type]
    assert all(np.isfinite(row["train_loss"]) for row in result.history)
    if changes.get("val_fraction") == 0.0:
        assert result.val_subjects == [] and result.best_epoch == 2


def test_windows_per_epoch_limits_the_work_per_epoch() -> None:
    torch.set_num_threads(1)
    seen: list[int] = []

    class Counting(TinyNet):
        def forward(self, x: torch.Tensor, aux: torch.Tensor | None = None) -> torch.Tensor:
            if self.training:
                seen.append(x.shape[0])
            return super().forward(x, aux)

    inputs, y, groups = _problem()
    cfg = TrainConfig(epochs=2, batch_size=16, windows_per_epoch=40, val_fraction=0.0)
    fit_torch(Counting(), inputs, y, groups, cfg)
    assert sum(seen) == 2 * 40 and max(seen) == 16


def test_no_validation_split_that_would_remove_a_class() -> None:
    # One subject per class: holding any out would leave its class untrained.
    inputs, y, groups = _problem(n_subjects_per_class=1, per_subject=10)
    result = fit_torch(TinyNet(), inputs, y, groups, TrainConfig(epochs=1, val_fraction=0.3))
    assert result.val_subjects == [] and result.n_train == len(y)


def test_class_weights_balance_the_classes() -> None:
    y = np.array([0] * 10 + [1] * 30 + [2] * 60)
    w = class_weights(y, 3)
    counts = np.bincount(y)
    assert np.allclose(w * counts, w[0] * counts[0])  # every class weighs the same in total
    assert np.isclose((w * counts).sum(), len(y))
    assert class_weights(np.array([0, 0, 2]), 3)[1] == 0.0


def test_train_config_round_trip_and_validation() -> None:
    cfg = TrainConfig(augment=("polarity", {"name": "noise", "snr_db": [10, 20]}), epochs=5)
    again = TrainConfig.from_json(cfg.to_json())
    assert again == cfg
    assert again.augment[1] == {"name": "noise", "p": 0.5, "snr_db": [10.0, 20.0]}
    for bad in (
        {"optimizer": "rmsprop"},
        {"lr": 0},
        {"epochs": 0},
        {"val_fraction": 1.0},
        {"device": "tpu"},
        {"augment": ("nope",)},
        {"patience": -1},
        {"windows_per_epoch": 0},
    ):
        with pytest.raises(ConfigError):
            TrainConfig(**bad)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="unknown"):
        TrainConfig.from_dict({"epoch": 3})


def test_bad_inputs_are_refused() -> None:
    inputs, y, groups = _problem(per_subject=5)
    with pytest.raises(SignalError, match="targets"):
        fit_torch(TinyNet(), inputs, y[:-1], groups, TrainConfig(epochs=1))
    bad = {"x": inputs["x"].copy(), "aux": inputs["aux"]}
    bad["x"][0, 0, 0] = np.nan
    with pytest.raises(SignalError, match="NaN"):
        fit_torch(TinyNet(), bad, y, groups, TrainConfig(epochs=1))
    with pytest.raises(ConfigError, match="fs_hz"):
        fit_torch(TinyNet(), inputs, y, groups, TrainConfig(epochs=1, augment=("hum",)))


def test_device_auto_follows_cuda_availability() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto").type == expected
    assert resolve_device("cpu").type == "cpu"
    if not torch.cuda.is_available():
        with pytest.raises(ConfigError, match="CUDA"):
            resolve_device("cuda")
