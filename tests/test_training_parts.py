"""The pieces the default training is made of, each checked on its own (fast): the camera-like
augmentation, the weight average, label smoothing, the train-qat target lines."""

import numpy as np
import pytest

from host.artifacts import target_lines


def test_camera_augmentation_is_seeded_and_keeps_a_digit(mnist):
    from host.augment import MODES, augment

    x = mnist.x_train[:256]
    a = augment(x, np.random.default_rng(3), "camera")
    assert a.shape == x.shape and a.dtype == np.uint8
    assert np.array_equal(a, augment(x, np.random.default_rng(3), "camera"))  # deterministic per seed
    assert not np.array_equal(a, augment(x, np.random.default_rng(4), "camera"))
    assert not np.array_equal(a, augment(x, np.random.default_rng(3), "full"))
    # Still a white digit on black: the border stays dark and every image keeps real ink.
    assert a[:, 0, :].mean() < 5 and a[:, :, 0].mean() < 5
    assert (a.reshape(256, -1) > 128).sum(1).min() >= 15
    assert set(MODES) == {"camera", "full", "geometric", "none"}
    with pytest.raises(ValueError, match="camera"):
        augment(x, np.random.default_rng(0), "sharp")


def test_camera_augmentation_covers_thin_and_thick_strokes(mnist):
    from host.augment import CameraAugment, camera_batch

    x = mnist.x_train[:300]
    ink = lambda imgs: (imgs > 128).sum(axis=(1, 2)).astype(float)  # noqa: E731
    none = CameraAugment(rotate_deg=0, shift=0, zoom=0, thin=0, thick=0, saturate=0, blur=0,
                         shadow=0, noise=0, cut=0)
    same = camera_batch(x, np.random.default_rng(0), none)
    full = x.max(axis=(1, 2)) == 255  # the rest are levelled so their brightest ink is white
    assert np.array_equal(same[full], x[full]) and (same.max(axis=(1, 2)) == 255).all()
    thin = camera_batch(x, np.random.default_rng(0), CameraAugment(**{**none.__dict__, "thin": 1.0}))
    thick = camera_batch(x, np.random.default_rng(0), CameraAugment(**{**none.__dict__, "thick": 1.0}))
    assert np.median(ink(thin) / ink(x)) < 0.8 and np.median(ink(thick) / ink(x)) > 1.2


def test_refit_centres_by_mass_in_the_20_px_box(mnist):
    from host.augment import _cut, refit

    img = _cut(mnist.x_train[0], 0.3, 0)  # top 30 % of the digit gone
    out = refit(img)
    ys, xs = np.nonzero(out)
    assert max(ys.max() - ys.min(), xs.max() - xs.min()) + 1 == 20
    w = out.astype(float)
    cy, cx = (w.sum(1) * np.arange(28)).sum() / w.sum(), (w.sum(0) * np.arange(28)).sum() / w.sum()
    assert abs(cy - 13.5) <= 1.0 and abs(cx - 13.5) <= 1.0


def test_weight_average_keeps_the_average_and_validates_with_it():
    from host import tfenv  # noqa: F401
    import tf_keras as keras

    from host.train import WeightAverage

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1, use_bias=False)])
    cb = WeightAverage(0.5)
    cb.set_model(model)
    cb.on_train_begin()
    start = model.get_weights()[0].copy()
    expect = start.copy()
    for n, value in enumerate([1.0, 2.0, 3.0], start=1):
        model.set_weights([np.full((2, 1), value, np.float32)])
        cb.on_train_batch_end(n)
        d = min(0.5, (1 + n) / (10 + n))
        expect = d * expect + (1 - d) * value
    # Validation sees the average; training resumes from its own weights afterwards.
    cb.on_test_begin()
    np.testing.assert_allclose(model.get_weights()[0], expect, rtol=1e-6)
    cb.on_test_end()
    np.testing.assert_allclose(model.get_weights()[0], 3.0)
    cb.on_epoch_end(0, {"val_loss": 0.5})
    model.set_weights([np.full((2, 1), 9.0, np.float32)])
    cb.on_train_batch_end(4)
    cb.on_epoch_end(1, {"val_loss": 0.7})  # worse: the first epoch's average is kept
    cb.on_train_end()
    np.testing.assert_allclose(model.get_weights()[0], expect, rtol=1e-6)


def test_label_smoothing_loss():
    from host import tfenv  # noqa: F401
    import tf_keras as keras

    from host.train import compile_model

    model = keras.Sequential([keras.Input((3,)), keras.layers.Softmax()])
    probs = np.array([[0.7, 0.2, 0.1]], np.float32)
    x = np.log(probs)
    for ls in (0.0, 0.3):
        compile_model(model, 1e-3, ls)
        target = (1 - ls) * np.array([1.0, 0, 0]) + ls / 3
        loss = model.evaluate(x, np.array([0]), verbose=0)[0]
        assert loss == pytest.approx(-(target * np.log(probs)).sum(), rel=1e-5)


def _manifest(acc, size):
    return {"accuracy": {"tflite": acc}, "bytes": size}


def test_target_lines():
    assert target_lines(_manifest(0.9953, 63_384)) == [
        "target: INT8 accuracy 99.53 % >= 99.5 %: PASS",
        "target: model size 63,384 bytes <= 65,536 bytes (64 KB): PASS"]
    assert target_lines(_manifest(9950 / 10000, 65_536))[0].endswith("99.50 % >= 99.5 %: PASS")
    acc, size = target_lines(_manifest(0.9949, 65_537))
    assert acc == "target: INT8 accuracy 99.49 % >= 99.5 %: FAIL" and size.endswith(": FAIL")

