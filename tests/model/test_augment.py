"""Training-time photometric augmentation: valid pixels, nothing when switched off, exact mirroring."""

from __future__ import annotations

import numpy as np

from sign_model.augment import photometric_augmenter


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

    from sign_model.augment import augmentation_schedule

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
