"""Training-time photometric augmentation: what real cameras and hands do to the images.

Runs on batches of raw 0-255 pixels (B, 28, 28, 1) inside the tf.data training stream, after
the geometric Keras augmenter (`sign_model.model.build_augmenter`); never part of the inference
model, so the exported ONNX contract (raw pixels in, Rescaling inside) does not change.

Each operation is applied to a random share of the images, with a random strength, so clean
images stay common (clean accuracy is not traded away):
- mirror (a left-handed signer) with probability `mirror`;
- a share `photometric` of the images gets ONE shift each, picked at random: darker or brighter
  exposure, contrast, gamma, blur, a textured background at the border, Gaussian sensor noise
  (sigma up to `noise_std`) or salt-and-pepper; the rest stays clean (stacked shifts gave
  images no camera makes, and cost ~5 points of clean accuracy in our measurements);
- a square occlusion patch with probability `occlusion`.
For the last `augment_tail` share of the epochs both shares drop to a third
(`augmentation_schedule`): clean accuracy recovers in the low-learning-rate tail.
The strengths reach past the robustness suite's moderate severity (`sign_model.robustness`).
"""

from __future__ import annotations

import math

import numpy as np


SHIFT_KINDS = ("darker", "brighter", "contrast", "gamma", "blur", "background", "noise", "salt_pepper")


def _gaussian_kernel(sigma: float, radius: int = 2) -> np.ndarray:
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = np.outer(taps, taps)
    return (kernel / kernel.sum()).astype(np.float32)[:, :, None, None]


def _radial_border_weight() -> np.ndarray:
    yy, xx = np.mgrid[0:28, 0:28]
    radius = np.hypot(yy - 13.5, xx - 13.5) / (13.5 * math.sqrt(2))
    return np.clip((radius - 0.25) / 0.5, 0, 1).astype(np.float32)[None, :, :, None]


def photometric_augmenter(mirror: float, noise_std: float, photometric: float, occlusion: float, strength=None):
    """A function (B, 28, 28, 1) float32 0-255 -> same shape, whole pixels, for tf.data.map.

    `strength` (a tf.Variable, 1.0 by default) scales the shifted share and the occlusion
    chance while training runs (`augmentation_schedule` lowers it for the last epochs)."""
    import tensorflow as tf

    scale = strength if strength is not None else tf.constant(1.0)
    blur_kernel = tf.constant(_gaussian_kernel(1.2))
    border = tf.constant(_radial_border_weight())
    max_gamma = math.log(2.8)

    def augment(x):
        batch = tf.shape(x)[0]

        def chance(p: float):
            return tf.random.uniform([batch, 1, 1, 1]) < p

        def uniform(low: float, high: float, shape=None):
            return tf.random.uniform(shape or [batch, 1, 1, 1], low, high)

        if mirror > 0:
            x = tf.where(chance(mirror), tf.reverse(x, axis=[2]), x)
        if photometric > 0:
            # one shift per shifted image (stacked shifts make images no camera would produce, and
            # training on unrecognisable images costs clean accuracy); the rest stays clean
            shifted = chance(photometric * scale)
            pick = tf.random.uniform([batch, 1, 1, 1], 0, len(SHIFT_KINDS), dtype=tf.int32)

            def some(kind: str):
                return shifted & tf.equal(pick, SHIFT_KINDS.index(kind))

            mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
            padded = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC")
            blurred = tf.nn.depthwise_conv2d(padded, blur_kernel, strides=[1, 1, 1, 1], padding="VALID")
            texture = tf.image.resize(uniform(0.0, 255.0, [batch, 4, 4, 1]), [28, 28], method="bilinear")
            weight = border * uniform(0.0, 0.7)
            hit = tf.random.uniform(tf.shape(x)) < uniform(0.0, 0.10)
            salt = tf.where(tf.random.uniform(tf.shape(x)) < 0.5, 255.0, 0.0)
            gamma = tf.exp(uniform(-max_gamma, max_gamma))
            x = tf.where(some("darker"), x * uniform(0.3, 1.0), x)
            x = tf.where(some("brighter"), x + uniform(0.0, 0.6) * (255.0 - x), x)
            x = tf.where(some("contrast"), mean + uniform(0.25, 1.0) * (x - mean), x)
            x = tf.where(some("gamma"), 255.0 * tf.pow(tf.clip_by_value(x, 0.0, 255.0) / 255.0 + 1e-6, gamma), x)
            x = tf.where(some("blur"), x + uniform(0.0, 1.0) * (blurred - x), x)
            x = tf.where(some("background"), (1.0 - weight) * x + weight * texture, x)
            if noise_std > 0:
                x = tf.where(some("noise"), x + uniform(0.0, noise_std) * tf.random.normal(tf.shape(x)), x)
            x = tf.where(some("salt_pepper") & hit, salt, x)
        if occlusion > 0:
            side = tf.floor(uniform(4.0, 12.0))
            top, left = tf.floor(uniform(2.0, 26.0 - side)), tf.floor(uniform(2.0, 26.0 - side))
            rows = tf.reshape(tf.range(28, dtype=tf.float32), [1, 28, 1, 1])
            cols = tf.reshape(tf.range(28, dtype=tf.float32), [1, 1, 28, 1])
            inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
            x = tf.where(chance(occlusion * scale) & inside, uniform(0.0, 255.0), x)
        return tf.clip_by_value(tf.round(x), 0.0, 255.0)

    return augment


def augmentation_schedule(strength, epochs: int, tail: float, tail_strength: float = 1 / 3):
    """Keras callback: full-strength photometric/occlusion augmentation, then `tail_strength` of
    it for the last `tail` share of the epochs (the low-learning-rate end of the schedule), so
    clean accuracy recovers while the robustness learnt earlier stays."""
    import keras

    first_tail_epoch = epochs - int(round(tail * epochs))

    class _Schedule(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch: int, logs=None) -> None:
            strength.assign(tail_strength if epoch >= first_tail_epoch else 1.0)

    return _Schedule()
