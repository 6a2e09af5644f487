"""Candidate architectures from the Pareto study and the GPU screen that no preset uses
(findings: docs/research/pareto.md). Kept for the record; the product's architectures are in
sign_mlops/sign_model/model.py (bn_cnn, bn_cnn16_late, seed_cnn, tiny_cnn).

They no longer train through `sign-mlops train` (TrainConfig accepts the product's names only);
a study that needs them again builds them from here."""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from sign_mlops.contract.labels import NUM_CLASSES
from sign_mlops.sign_model.model import (
    INPUT_SHAPE,
    _bn_blocks,
    _conv_bn,
    _inputs,
    _pooled_classifier,
    build_bn_cnn,
    mirror_lr,
)


def build_bn_cnn16(dropout: float = 0.3) -> keras.Model:
    """bn_cnn at half width (16-16 / 32-32 / 64): ~5.5 M multiply-adds per image, a quarter of bn_cnn's."""
    return build_bn_cnn(dropout=dropout, width=16, name="bn_cnn16")


def build_slim_cnn(dropout: float = 0.2, width: int = 24) -> keras.Model:
    """One batch-norm conv per resolution (24 / 48 / 96), global pooling: ~4.2 M multiply-adds."""
    inputs, x = _inputs()
    x = _conv_bn(x, width, "s1")
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = _conv_bn(x, 2 * width, "s2")
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = _conv_bn(x, 4 * width, "s3")
    return _pooled_classifier(inputs, x, dropout, "slim_cnn")


def _sep_bn(x: keras.KerasTensor, filters: int, name: str) -> keras.KerasTensor:
    x = layers.SeparableConv2D(filters, 3, padding="same", use_bias=False, name=f"{name}_sep")(x)
    x = layers.BatchNormalization(name=f"{name}_bn")(x)
    return layers.Activation("relu", name=f"{name}_relu")(x)


def build_sep_cnn(dropout: float = 0.2) -> keras.Model:
    """Full convolutions where they are cheap (28x28 in, 14x14), depthwise-separable ones for the
    wide layers (48->96 at 14x14, 96->128->160 at 7x7): ~4.9 M multiply-adds, ~60 k parameters."""
    inputs, x = _inputs()
    x = _conv_bn(x, 24, "c1")
    x = layers.MaxPooling2D(2, name="pool1")(x)
    x = _conv_bn(x, 48, "c2")
    x = _sep_bn(x, 96, "s2")
    x = layers.MaxPooling2D(2, name="pool2")(x)
    x = _sep_bn(x, 128, "s3a")
    x = _sep_bn(x, 160, "s3b")
    return _pooled_classifier(inputs, x, dropout, "sep_cnn")


def build_mirror_symmetric(trunk_builder: Callable[..., keras.Model], name: str, dropout: float) -> keras.Model:
    """Exactly mirror-invariant by construction: the trunk's logits on the image and on its
    mirror image are averaged before the softmax (a left-handed signer gets the same answer).
    The trunk can stay specialised on one hand, so no capacity goes into learning both; the
    cost is two trunk passes."""
    trunk = trunk_builder(dropout=dropout)
    inputs, x = _inputs()
    logits_fn = keras.Model(trunk.inputs, trunk.get_layer("logits").output, name=f"{name}_trunk")
    mirrored = mirror_lr("mirror")(inputs)
    mirrored = layers.Rescaling(1.0 / 255, name="rescale_mirror")(mirrored)
    averaged = layers.Average(name="mean_logits")([logits_fn(x), logits_fn(mirrored)])
    outputs = layers.Activation("softmax", name="probabilities")(averaged)
    return keras.Model(inputs, outputs, name=name)


def _logits_trunk(width: int, dropout: float, name: str) -> keras.Model:
    """bn_cnn's blocks at a given width, taking 0-1 pixels, ending in a `logits` layer."""
    inputs = keras.Input(shape=INPUT_SHAPE, dtype="float32")
    return keras.Model(inputs, layers.Dense(NUM_CLASSES, name="logits")(_bn_blocks(inputs, width, dropout)), name=name)


def build_sym_cnn(dropout: float = 0.3) -> keras.Model:
    """Mirror-symmetric bn_cnn at width 11 (two passes of ~2.6 M): ~5.3 M multiply-adds per image."""
    return build_mirror_symmetric(lambda dropout: _logits_trunk(11, dropout, "bn11"), "sym_cnn", dropout)


CANDIDATES: dict[str, Callable[..., keras.Model]] = {
    "bn_cnn16": build_bn_cnn16,
    "slim_cnn": build_slim_cnn,
    "sep_cnn": build_sep_cnn,
    "sym_cnn": build_sym_cnn,
}
