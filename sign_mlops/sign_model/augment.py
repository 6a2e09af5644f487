"""Training-time photometric augmentation: what real cameras and hands do to the images.

Runs on batches of raw 0-255 pixels (B, 28, 28, 1) inside the tf.data training stream, after
the geometric Keras augmenter (`sign_mlops.sign_model.model.build_augmenter`); never part of the inference
model, so the exported ONNX contract (raw pixels in, Rescaling inside) does not change.

Each operation is applied to a random share of the images, with a random strength, so clean
images stay common (clean accuracy is not traded away):
- mirror (a left-handed signer) with probability `mirror`;
- a share `photometric` of the images gets ONE shift each, picked at random (noise and
  salt-and-pepper twice as often as the others, `SHIFT_WEIGHTS`): darker or brighter
  exposure, contrast, gamma, blur (Gaussian, or a horizontal or vertical motion streak), a lower
  resolution, a textured background at the border, a border filled with black, white or grey
  (what a shift, zoom-out or rotation with constant fill leaves), sensor noise (sigma up to
  `noise_std`, additive or growing with brightness like shot and speckle noise, per pixel or in
  grainy blobs) or salt-and-pepper
  (or salt or pepper alone); the rest stays clean (stacked shifts gave images no camera makes,
  and cost ~5 points of clean accuracy in our measurements);
- an occluding patch with probability `occlusion`: a square, an oblong or a bar, filled with one
  grey, black, white, noise or stripes at any angle.
Each kind comes in several makes because an independent check makes its shifts its own way:
trained on one make, the model failed others of the same kind (research/shift_variants.py).
For the last `augment_tail` share of the epochs both shares drop to a third
(`augmentation_schedule`): clean accuracy recovers in the low-learning-rate tail.
The strengths reach past the robustness suite's moderate severity (`sign_mlops.sign_model.robustness`).
"""

from __future__ import annotations

import math

import numpy as np

SHIFT_KINDS = ("darker", "brighter", "contrast", "gamma", "blur", "low_resolution", "background", "fill_border",
               "noise", "salt_pepper")
# how often each shift is picked, relative to the others: sensor noise and salt-and-pepper come in
# the most makes (per pixel or grainy, additive or with brightness; salt, pepper or both) and are
# the kinds small models lose most to, so they get twice the share
SHIFT_WEIGHTS = {kind: 2.0 if kind in ("noise", "salt_pepper") else 1.0 for kind in SHIFT_KINDS}


def _gaussian_kernel(sigma: float, radius: int = 2) -> np.ndarray:
    taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
    kernel = np.outer(taps, taps)
    return (kernel / kernel.sum()).astype(np.float32)[:, :, None, None]


def _radial_border_weight() -> np.ndarray:
    yy, xx = np.mgrid[0:28, 0:28]
    radius = np.hypot(yy - 13.5, xx - 13.5) / (13.5 * math.sqrt(2))
    return np.clip((radius - 0.25) / 0.5, 0, 1).astype(np.float32)[None, :, :, None]


def photometric_augmenter(mirror: float, noise_std: float, photometric: float, occlusion: float, strength=None,
                          kinds: tuple[str, ...] = SHIFT_KINDS):
    """A function (B, 28, 28, 1) float32 0-255 -> same shape, whole pixels, for tf.data.map.

    `strength` (a tf.Variable, 1.0 by default) scales the shifted share and the occlusion
    chance while training runs (`augmentation_schedule` lowers it for the last epochs); `kinds`
    are the shifts the shifted share draws from (all of SHIFT_KINDS by default)."""
    import tensorflow as tf

    unknown = set(kinds) - set(SHIFT_KINDS)
    if unknown or not kinds:
        raise ValueError(f"unknown shift kinds {sorted(unknown)}; choose from {list(SHIFT_KINDS)}")
    scale = strength if strength is not None else tf.constant(1.0)
    shifts = _shift_functions(noise_std)

    def augment(x):
        uniform, _ = _draws(x)
        if mirror > 0:
            x = tf.where(uniform(0.0, 1.0) < mirror, tf.reverse(x, axis=[2]), x)
        if photometric > 0:
            # one shift per shifted image (stacked shifts make images no camera would produce, and
            # training on unrecognisable images costs clean accuracy); the rest stays clean
            shifted = uniform(0.0, 1.0) < photometric * scale
            odds = tf.math.log(tf.constant([[SHIFT_WEIGHTS[k] for k in kinds]]))
            drawn = tf.reshape(tf.random.categorical(odds, tf.shape(x)[0], dtype=tf.int32), [-1, 1, 1, 1])
            pick = tf.gather(tf.constant([SHIFT_KINDS.index(k) for k in kinds]), drawn)
            for kind in kinds:
                if kind in shifts:  # no noise shift when noise_std is 0: those images stay clean
                    x = _on_images(x, shifted & tf.equal(pick, SHIFT_KINDS.index(kind)), shifts[kind])
        if occlusion > 0:
            x = _on_images(x, uniform(0.0, 1.0) < occlusion * scale, _occluded)
        return tf.clip_by_value(tf.round(x), 0.0, 255.0)

    return augment


def _draws(x):
    """Random draws for a batch x: uniform(low, high[, shape]) (one value per image unless a shape
    is given) and one_of(n) (an integer 0..n-1 per image)."""
    import tensorflow as tf

    per_image = tf.stack([tf.shape(x)[0], 1, 1, 1])

    def uniform(low: float, high: float, shape=None):
        return tf.random.uniform(per_image if shape is None else shape, low, high)

    def one_of(n: int):
        return tf.random.uniform(per_image, 0, n, dtype=tf.int32)

    return uniform, one_of


def _on_images(x, selected, shift):
    """`shift` (a batch -> the same batch shifted) applied to the images `selected` ((B, 1, 1, 1)
    bool) only, the rest untouched. Each shift runs on the few images that drew it, not on the
    whole batch: the training streams run 1.9-3.5x faster, though a 2-core CPU's training epochs
    do not (README, "What the augmentation costs")."""
    import tensorflow as tf

    x = tf.convert_to_tensor(x)
    where = tf.where(tf.reshape(selected, [-1]))
    # nothing to shift: skip (some TensorFlow ops mis-shape an empty batch)
    return tf.cond(tf.shape(where)[0] > 0, lambda: tf.tensor_scatter_nd_update(x, where, shift(tf.gather_nd(x, where))),
                   lambda: x)


def _shift_functions(noise_std: float) -> dict:
    """The shifted share's shifts by kind, each a batch -> the same batch shifted, with random
    strengths per image that reach past the robustness suite's moderate severity."""
    import tensorflow as tf

    gaussian = tf.constant(_gaussian_kernel(1.2))
    blurs = tf.constant(np.concatenate([_gaussian_kernel(1.2), *_motion_kernels()], axis=3))  # 3 kernels, (5, 5, 1, 3)
    border = tf.constant(_radial_border_weight())
    max_gamma = math.log(2.8)

    def darker(x):
        return x * _draws(x)[0](0.3, 1.0)

    def brighter(x):
        return x + _draws(x)[0](0.0, 0.6) * (255.0 - x)

    def contrast(x):
        mean = tf.reduce_mean(x, axis=[1, 2, 3], keepdims=True)
        return mean + _draws(x)[0](0.25, 1.0) * (x - mean)

    def gamma(x):
        power = tf.exp(_draws(x)[0](-max_gamma, max_gamma))
        return 255.0 * tf.pow(tf.clip_by_value(x, 0.0, 255.0) / 255.0 + 1e-6, power)

    def blur(x):
        uniform, one_of = _draws(x)
        return x + uniform(0.0, 1.0) * (_blurred(x, blurs, one_of(3)) - x)

    def background(x):
        uniform, _ = _draws(x)
        texture = tf.image.resize(uniform(0.0, 255.0, tf.stack([tf.shape(x)[0], 4, 4, 1])), [28, 28], method="bilinear")
        weight = border * uniform(0.0, 0.7)
        return (1.0 - weight) * x + weight * texture

    def noise(x):
        uniform, _ = _draws(x)
        return x + uniform(0.0, noise_std) * _noise_scale(x, uniform) * _noise_field(x, gaussian, uniform)

    def salt_pepper(x):
        uniform, one_of = _draws(x)
        hit = tf.random.uniform(tf.shape(x)) < uniform(0.0, 0.10)
        salt_share = tf.gather(tf.constant([0.5, 0.0, 1.0]), one_of(3))  # salt and pepper, pepper only, salt only
        return tf.where(hit, tf.where(tf.random.uniform(tf.shape(x)) < salt_share, 255.0, 0.0), x)

    shifts = {"darker": darker, "brighter": brighter, "contrast": contrast, "gamma": gamma, "blur": blur,
              "low_resolution": _lower_resolution, "background": background, "fill_border": _filled_border,
              "noise": noise, "salt_pepper": salt_pepper}
    return shifts if noise_std > 0 else {kind: f for kind, f in shifts.items() if kind != "noise"}


def _motion_kernels() -> list[np.ndarray]:
    """Horizontal and vertical motion streaks of 5 px, as 5 x 5 depthwise kernels."""
    line = np.zeros((5, 5), dtype=np.float32)
    line[2, :] = 0.2
    return [line[:, :, None, None], line.T.copy()[:, :, None, None]]


def _filtered(x, kernels):
    """Each 5 x 5 kernel (5, 5, 1, K) over the images, edges mirrored: (B, 28, 28, K)."""
    import tensorflow as tf

    padded = tf.pad(x, [[0, 0], [2, 2], [2, 2], [0, 0]], mode="SYMMETRIC")
    return tf.nn.depthwise_conv2d(padded, kernels, strides=[1, 1, 1, 1], padding="VALID")


def _blurred(x, kernels, which):
    """Gaussian (which 0), horizontal (1) or vertical (2) motion blur, per image; one pass for all three."""
    import tensorflow as tf

    return tf.reduce_sum(_filtered(x, kernels) * tf.one_hot(which[..., 0], 3), axis=3, keepdims=True)


def _lower_resolution(x):
    """Down to 10-20 px a side (one size per batch) and back up: a small or distant camera image."""
    import tensorflow as tf

    side = tf.random.uniform([], 10, 21, dtype=tf.int32)
    small = tf.image.resize(x, tf.stack([side, side]), method="bilinear", antialias=True)
    return tf.image.resize(small, [28, 28], method="bilinear")


def _noise_field(x, gaussian_kernel, uniform):
    """Unit Gaussian noise per pixel, or (1 image in 3) blurred over ~1 px and rescaled to unit
    deviation: the grainy blobs of sensor noise after demosaicing and denoising."""
    import tensorflow as tf

    white = tf.random.normal(tf.shape(x))
    smooth = _filtered(white, gaussian_kernel) / tf.sqrt(tf.reduce_sum(tf.square(gaussian_kernel)))
    return tf.where(uniform(0.0, 1.0) < 1 / 3, smooth, white)


def _noise_scale(x, uniform):
    """Per-pixel noise scale: 1 (additive sensor noise) blended, by a random share per image,
    towards 2.5 x brightness (shot and speckle noise grow with the light a pixel gets)."""
    import tensorflow as tf

    signal = uniform(0.0, 1.0)
    return (1.0 - signal) + signal * 2.5 * tf.clip_by_value(x / 255.0, 0.0, 1.0)


def _pixel_rows_and_columns():
    """Row and column index of every pixel, shaped to broadcast over (B, 28, 28, 1)."""
    import tensorflow as tf

    index = tf.range(28, dtype=tf.float32)
    return tf.reshape(index, [1, 28, 1, 1]), tf.reshape(index, [1, 1, 28, 1])


def _fill_value(which, uniform):
    """Black (which 0), white (1) or one random grey (2) per image: what a crop, a rotation or a patch fills with."""
    import tensorflow as tf

    return tf.where(tf.equal(which, 0), 0.0, tf.where(tf.equal(which, 1), 255.0, uniform(0.0, 255.0)))


def _filled_border(x):
    """The border a shift, zoom-out or rotation with constant fill leaves: bands of 0-5 px on each
    side and cut corners of 0-8 px, in black, white or one grey (training's geometric layers fill
    with the nearest edge pixel instead)."""
    import tensorflow as tf

    uniform, one_of = _draws(x)
    rows, cols = _pixel_rows_and_columns()

    def band():
        return tf.floor(uniform(0.0, 6.0)) * tf.cast(uniform(0.0, 1.0) < 0.5, tf.float32)

    corner = tf.floor(uniform(0.0, 9.0))
    inside = ((rows >= band()) & (rows < 28.0 - band()) & (cols >= band()) & (cols < 28.0 - band())
              & (rows + cols >= corner) & (27.0 - rows + cols >= corner) & (rows + 27.0 - cols >= corner)
              & (54.0 - rows - cols >= corner))
    return tf.where(inside, x, _fill_value(one_of(3), uniform))


def _occluded(x):
    """A patch over part of the image: a square or oblong of 4-11 px a side, or a bar of
    3-5 x 14-21 px, filled with one grey (4 in 10), black, white (1 each), noise or stripes (2 each)."""
    import tensorflow as tf

    uniform, one_of = _draws(x)
    rows, cols = _pixel_rows_and_columns()
    bar = uniform(0.0, 1.0) < 0.25
    long_side, short_side = tf.floor(uniform(14.0, 22.0)), tf.floor(uniform(3.0, 6.0))
    height = tf.where(bar, tf.where(uniform(0.0, 1.0) < 0.5, long_side, short_side), tf.floor(uniform(4.0, 12.0)))
    width = tf.where(bar, long_side + short_side - height, tf.floor(uniform(4.0, 12.0)))
    top, left = tf.floor(uniform(0.0, 1.0) * (25.0 - height)) + 2.0, tf.floor(uniform(0.0, 1.0) * (25.0 - width)) + 2.0
    inside = (rows >= top) & (rows < top + height) & (cols >= left) & (cols < left + width)
    width_px, angle = uniform(1.0, 3.0), uniform(0.0, math.pi)  # stripes 1-3 px wide, at any angle
    across = rows * tf.cos(angle) + cols * tf.sin(angle)
    stripes = tf.where(tf.math.floormod(tf.floor(across / width_px), 2.0) < 1.0, uniform(0.0, 80.0), uniform(175.0, 255.0))
    noise = tf.random.uniform(tf.shape(x), 0.0, 255.0)
    pattern = one_of(10)  # 4 in 10 one grey, 1 black, 1 white, 2 noise, 2 stripes
    flat = _fill_value(tf.gather(tf.constant([2, 2, 2, 2, 0, 1]), tf.minimum(pattern, 5)), uniform)  # grey, black, white
    fill = tf.where(pattern < 6, flat, tf.where(pattern < 8, noise, stripes))
    return tf.where(inside, fill, x)


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
