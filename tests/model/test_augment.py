"""Training-time photometric augmentation: valid pixels, nothing when switched off, exact mirroring."""

from __future__ import annotations

import numpy as np

from sign_mlops.sign_model.augment import photometric_augmenter


def _batch(images):
    return images[:64, :, :, None].astype(np.float32)


def test_switched_off_it_changes_nothing(synthetic_datasets):
    x = _batch(synthetic_datasets[0].images)
    assert np.array_equal(np.asarray(photometric_augmenter(0.0, 0.0, 0.0, 0.0)(x)), x)


def test_mirror_only_flips_images_left_right(synthetic_datasets):
    x = _batch(synthetic_datasets[0].images)
    assert np.array_equal(np.asarray(photometric_augmenter(1.0, 0.0, 0.0, 0.0)(x)), x[:, :, ::-1])


def test_everything_on_gives_whole_pixels_in_range_and_varied_images(synthetic_datasets):
    x = _batch(synthetic_datasets[0].images)
    out = np.asarray(photometric_augmenter(0.5, 30.0, 1.0, 1.0)(x))
    assert out.shape == x.shape and out.min() >= 0 and out.max() <= 255
    assert np.array_equal(out, np.round(out))
    changed = np.abs(out - x).reshape(len(x), -1).mean(axis=1) > 0.5
    assert changed.mean() > 0.9


def test_schedule_lowers_augmentation_for_the_tail_epochs_only():
    import tensorflow as tf

    from sign_mlops.sign_model.augment import augmentation_schedule

    strength = tf.Variable(1.0)
    schedule = augmentation_schedule(strength, epochs=10, tail=0.3)
    seen = []
    for epoch in range(10):
        schedule.on_epoch_begin(epoch)
        seen.append(round(float(strength.numpy()), 4))
    assert seen == [1.0] * 7 + [0.3333] * 3


def test_strength_zero_leaves_the_shifted_share_clean(synthetic_datasets):
    import tensorflow as tf

    x = _batch(synthetic_datasets[0].images)
    off = photometric_augmenter(0.0, 0.0, 1.0, 1.0, tf.Variable(0.0))
    assert np.array_equal(np.asarray(off(x)), x)


def test_the_shifted_share_is_shifted_and_the_rest_left_exactly_as_it_was():
    x = np.random.default_rng(0).integers(0, 256, (2000, 28, 28, 1)).astype(np.float32)
    out = np.asarray(photometric_augmenter(0.0, 20.0, 0.375, 0.0, kinds=("noise", "salt_pepper", "darker"))(x))
    untouched = (out == x).reshape(len(x), -1).all(axis=1)
    assert 0.55 < untouched.mean() < 0.70  # 62.5 % of the images stay clean, bit for bit


def _flat(value: float, n: int = 400) -> np.ndarray:
    return np.full((n, 28, 28, 1), value, dtype=np.float32)


def test_occluders_come_in_several_fills_and_shapes():
    """An independent check occludes its own way: black, white, textured patches and bars."""
    out = np.asarray(photometric_augmenter(0.0, 0.0, 0.0, 1.0)(_flat(128.0)))[..., 0]
    fills, shapes = set(), set()
    for image in out:
        rows, cols = np.nonzero(image != 128.0)
        if len(rows) == 0:
            continue
        patch = image[rows.min():rows.max() + 1, cols.min():cols.max() + 1]
        fills.add("black" if (patch == 0).all() else "white" if (patch == 255).all()
                  else "grey" if len(np.unique(patch)) == 1 else "textured")
        height, width = patch.shape
        shapes.add("bar" if max(height, width) >= 3 * min(height, width) else "patch")
    assert fills == {"black", "white", "grey", "textured"} and shapes == {"bar", "patch"}


def test_sensor_noise_grows_with_brightness_in_some_images():
    """Shot and speckle noise are stronger where the light is: not only additive noise."""
    x = _flat(30.0)
    x[:, :, 14:] = 225.0
    out = np.asarray(photometric_augmenter(0.0, 20.0, 1.0, 0.0, kinds=("noise",))(x))
    dark, bright = (out - x)[:, :, :14].std(axis=(1, 2, 3)), (out - x)[:, :, 14:].std(axis=(1, 2, 3))
    noisy = dark > 1.0
    assert np.median(bright[noisy] / dark[noisy]) > 1.3


def test_blur_includes_horizontal_and_vertical_motion_streaks():
    x = _flat(0.0)
    x[:, 14, 14] = 255.0
    out = np.asarray(photometric_augmenter(0.0, 0.0, 1.0, 0.0, kinds=("blur",))(x))[..., 0]
    lit = out > 0
    along_row = lit.any(axis=2).sum(axis=1) == 1  # every lit pixel in one row
    along_column = lit.any(axis=1).sum(axis=1) == 1
    spread = lit.sum(axis=(1, 2)) > 1
    assert (along_row & spread).any() and (along_column & spread).any() and (spread & ~along_row & ~along_column).any()


def test_filled_border_leaves_the_centre_and_fills_with_one_value():
    out = np.asarray(photometric_augmenter(0.0, 0.0, 1.0, 0.0, kinds=("fill_border",))(_flat(128.0)))[..., 0]
    assert (out[:, 9:19, 9:19] == 128.0).all()
    changed = out != 128.0
    assert changed.any(axis=(1, 2)).mean() > 0.5
    for image, mask in zip(out, changed):
        assert len(np.unique(image[mask])) <= 1
    assert {0.0, 255.0} <= set(np.unique(out[changed]).tolist())


def test_lower_resolution_removes_fine_detail():
    checks = np.indices((28, 28)).sum(axis=0) % 2 * 255.0
    x = np.broadcast_to(checks[None, :, :, None], (64, 28, 28, 1)).astype(np.float32)
    out = np.asarray(photometric_augmenter(0.0, 0.0, 1.0, 0.0, kinds=("low_resolution",))(x))
    assert (out.std(axis=(1, 2, 3)) < 0.5 * x.std(axis=(1, 2, 3))).all()


def test_unknown_shift_kinds_are_refused():
    import pytest

    with pytest.raises(ValueError, match="unknown shift kinds"):
        photometric_augmenter(0.0, 0.0, 1.0, 0.0, kinds=("snow",))


def test_sensor_noise_comes_per_pixel_and_in_grainy_blobs():
    out = np.asarray(photometric_augmenter(0.0, 20.0, 1.0, 0.0, kinds=("noise",))(_flat(128.0)))[..., 0] - 128.0
    noisy = [image for image in out if image.std() > 1.0]
    neighbours = np.array([np.corrcoef(image[:, :-1].ravel(), image[:, 1:].ravel())[0, 1] for image in noisy])
    assert 0.1 < (neighbours > 0.4).mean() < 0.6 and (neighbours < 0.15).mean() > 0.4


def test_noise_is_picked_twice_as_often_as_an_exposure_shift():
    out = np.asarray(photometric_augmenter(0.0, 20.0, 1.0, 0.0, kinds=("noise", "darker"))(_flat(128.0, 3000)))
    spread = out.reshape(len(out), -1).std(axis=1)
    noisy, darker = (spread > 0.5).sum(), ((spread == 0) & (out[:, 0, 0, 0] < 127.5)).sum()
    assert 1.6 < noisy / darker < 2.5
