"""Benchmark: the robustness suite's kinds of shift, made another way. One table.

The robustness suite (sign_mlops.sign_model.robustness) fixes one implementation of each kind: geometric
shifts fill the uncovered border with the nearest edge pixel, occluding patches are one random
grey, noise is additive Gaussian, and so on; training augments the same way. An independent
check will make the same kinds of shift its own way. This scores ONNX models on variants that
differ from the suite where a camera or another tool plausibly differs: black or white fill for
rotation, translation and zoom-out (what scipy, PIL and torchvision do by default), black, white
or striped occluders of other shapes, Poisson (shot) and multiplicative (speckle) noise, motion
and box blur, additive exposure changes, contrast around mid-grey, a lower resolution, a lighting
gradient across the image, shear. Each variant is at about the suite's moderate severity, and the
table shows the suite's own moderate number for the kind next to it. Training (sign_mlops.sign_model.augment)
now draws from some of these makes ("make trained on"); the others (a vignette, wrap-around,
disks, a checkerboard, shear, the lighting gradient, additive exposure...) stay out of training,
to show whether training for one make carries over to the kind.

Data: the Pareto study's grouped holdout of the real Kaggle training file (synthetic data when
../shared is absent). Models: ONNX files trained on the fit part only (a sweep trial's
outputs/runs/<run id>/onnx/model.onnx, docs/research/pareto.md).

    sign-mlops sweep research/sweeps/pareto.yaml --train FIT.csv --test HOLDOUT.csv   # docs/research/pareto.md
    .venv/bin/python research/shift_variants.py /tmp/keep/bn_cnn16_late-camera+hands4-0.onnx
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_table  # noqa: E402
from research.holdout import kept_model_paths, load_holdout  # noqa: E402  (the same holdout as the Pareto study)

Variant = Callable[[np.ndarray, np.random.Generator], np.ndarray]


def _affine(x: np.ndarray, rng: np.random.Generator, angle: float = 0.0, scale: float = 1.0, shift: float = 0.0,
            shear: float = 0.0, fill: float = 0.0) -> np.ndarray:
    """Per image: rotate by +-angle, scale, shift by `shift` px in a random direction, shear by
    +-shear; the uncovered border filled with the constant `fill` (not the nearest edge)."""
    from scipy.ndimage import affine_transform

    out = np.empty_like(x)
    centre = np.array([13.5, 13.5])
    for i in range(len(x)):
        a = np.deg2rad(angle) * rng.choice([-1.0, 1.0])
        direction = rng.uniform(0, 2 * np.pi)
        matrix = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]]) / scale
        matrix = matrix @ np.array([[1.0, shear * rng.choice([-1.0, 1.0])], [0.0, 1.0]])
        move = shift * np.array([np.sin(direction), np.cos(direction)])
        out[i] = affine_transform(x[i], matrix, offset=centre - matrix @ (centre + move), order=1, mode="constant",
                                  cval=fill)
    return out


def _patch(x: np.ndarray, rng: np.random.Generator, height: int, width: int, fill: Callable[[int], np.ndarray]) -> np.ndarray:
    """A height x width occluder anywhere over the central 20 x 20, filled by `fill(n)` -> (n, h, w)."""
    out = x.copy()
    values = fill(len(x))
    for i in range(len(x)):
        top, left = rng.integers(4, 24 - height + 1), rng.integers(4, 24 - width + 1)
        out[i, top:top + height, left:left + width] = values[i]
    return out


def _stripes(n: int, height: int, width: int) -> np.ndarray:
    rows = (np.arange(height)[:, None] // 2) % 2 * 255.0
    return np.broadcast_to(rows, (n, height, width))


def _motion_blur(x: np.ndarray, rng: np.random.Generator, length: int = 5) -> np.ndarray:
    """A straight motion streak of `length` px, horizontal or vertical at random."""
    from scipy.ndimage import uniform_filter1d

    axis = np.where(rng.random(len(x)) < 0.5, 1, 2)
    out = np.empty_like(x)
    for i, image in enumerate(x):
        out[i] = uniform_filter1d(image, size=length, axis=axis[i] - 1, mode="nearest")
    return out


def _box_blur(x: np.ndarray, size: int) -> np.ndarray:
    from scipy.ndimage import uniform_filter

    return uniform_filter(x, (1, size, size))


def _lower_resolution(x: np.ndarray, size: int = 14) -> np.ndarray:
    from PIL import Image

    out = np.empty_like(x)
    for i, image in enumerate(np.clip(np.rint(x), 0, 255).astype(np.uint8)):
        small = Image.fromarray(image, mode="L").resize((size, size), Image.BILINEAR)
        out[i] = np.asarray(small.resize((28, 28), Image.BILINEAR), dtype=np.float64)
    return out


def _disk(n: int, radius: float, rng: np.random.Generator) -> np.ndarray:
    """Black disks of `radius` px anywhere over the central 20 x 20: a rounded occluder."""
    yy, xx = np.mgrid[0:28, 0:28]
    centre = rng.uniform(4 + radius, 24 - radius, (n, 2))
    return np.hypot(yy[None] - centre[:, 0, None, None], xx[None] - centre[:, 1, None, None]) <= radius


def _diagonal_stripes(n: int, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.broadcast_to(((yy + xx) // 2 % 2) * 255.0, (n, height, width))


def _checks(n: int, height: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:height, 0:width]
    return np.broadcast_to(((yy // 2 + xx // 2) % 2) * 255.0, (n, height, width))


def _vignette(x: np.ndarray, corner: float = 0.5) -> np.ndarray:
    yy, xx = np.mgrid[0:28, 0:28]
    radius = np.hypot(yy - 13.5, xx - 13.5) / np.hypot(13.5, 13.5)
    return x * (1 - (1 - corner) * radius ** 2)[None]


def _lighting_gradient(x: np.ndarray, rng: np.random.Generator, span: float = 120.0) -> np.ndarray:
    """Light from one side: a linear ramp of +-span/2 across the image in a random direction."""
    direction = rng.uniform(0, 2 * np.pi, len(x))
    yy, xx = np.mgrid[0:28, 0:28] / 27.0 - 0.5
    ramp = np.cos(direction)[:, None, None] * xx[None] + np.sin(direction)[:, None, None] * yy[None]
    return x + span * ramp


# variant -> (the suite's kind it is a version of, how it is made)
VARIANTS: dict[str, tuple[str, Variant]] = {
    "shot noise (Poisson, 60 photons at white)": ("gaussian_noise", lambda x, r: r.poisson(x / 255 * 60) * 255 / 60),
    "speckle noise (x(1 + N(0, 0.2)))": ("gaussian_noise", lambda x, r: x * (1 + r.normal(0, 0.2, x.shape))),
    "uniform noise +-30": ("gaussian_noise", lambda x, r: x + r.uniform(-30, 30, x.shape)),
    "pepper only, 5 %": ("salt_pepper", lambda x, r: np.where(r.random(x.shape) < 0.05, 0.0, x)),
    "salt only, 5 %": ("salt_pepper", lambda x, r: np.where(r.random(x.shape) < 0.05, 255.0, x)),
    "motion blur, 5 px": ("blur", lambda x, r: _motion_blur(x, r, 5)),
    "box blur 3 x 3": ("blur", lambda x, r: _box_blur(x, 3)),
    "half resolution (14 x 14 and back)": ("jpeg", lambda x, r: _lower_resolution(x, 14)),
    "darker, -70 levels": ("darker", lambda x, r: x - 70),
    "brighter, +70 levels (saturating)": ("brighter", lambda x, r: x + 70),
    "contrast x0.5 around mid-grey": ("contrast", lambda x, r: 128 + 0.5 * (x - 128)),
    "lighting gradient +-60 across": ("background", lambda x, r: _lighting_gradient(x, r, 120.0)),
    "rotation 15 deg, black corners": ("rotation", lambda x, r: _affine(x, r, angle=15, fill=0.0)),
    "rotation 15 deg, white corners": ("rotation", lambda x, r: _affine(x, r, angle=15, fill=255.0)),
    "translation 3 px, black border": ("translation", lambda x, r: _affine(x, r, shift=3, fill=0.0)),
    "zoom out 15 %, black border": ("zoom", lambda x, r: _affine(x, r, scale=1 / 1.15, fill=0.0)),
    "shear 0.2, black corners": ("rotation", lambda x, r: _affine(x, r, shear=0.2, fill=0.0)),
    "occluder 9 x 9, black": ("occlusion", lambda x, r: _patch(x, r, 9, 9, lambda n: np.zeros((n, 9, 9)))),
    "occluder 9 x 9, white": ("occlusion", lambda x, r: _patch(x, r, 9, 9, lambda n: np.full((n, 9, 9), 255.0))),
    "occluder bar 4 x 20, black": ("occlusion", lambda x, r: _patch(x, r, 4, 20, lambda n: np.zeros((n, 4, 20)))),
    "occluder 9 x 9, noise": ("occlusion", lambda x, r: _patch(x, r, 9, 9, lambda n: r.uniform(0, 255, (n, 9, 9)))),
    "occluder 9 x 9, stripes": ("occlusion", lambda x, r: _patch(x, r, 9, 9, lambda n: _stripes(n, 9, 9))),
    "mirror, then rotation 10 deg": ("mirror", lambda x, r: _affine(x[:, :, ::-1], r, angle=10, fill=0.0)),
    # added after the first measurement (training has since drawn from correlated noise and stripes
    # at any angle; the disk and the checkerboard stay out of it)
    "correlated noise (blurred, sigma 16)": ("gaussian_noise", lambda x, r: x + 16 * _unit_blurred_noise(x.shape, r)),
    "vignette (corners 50 % darker)": ("darker", lambda x, r: _vignette(x, 0.5)),
    "translation 3 px, wrap-around": ("translation", lambda x, r: np.roll(x, (3, -3), axis=(1, 2))),
    "occluder disk r 5, black": ("occlusion", lambda x, r: np.where(_disk(len(x), 5.0, r), 0.0, x)),
    "occluder 9 x 9, diagonal stripes": ("occlusion",
                                         lambda x, r: _patch(x, r, 9, 9, lambda n: _diagonal_stripes(n, 9, 9))),
    "occluder 9 x 9, checkerboard": ("occlusion", lambda x, r: _patch(x, r, 9, 9, lambda n: _checks(n, 9, 9))),
}
# makes sign_mlops.sign_model.augment trains on since the variants above were first measured; the rest are
# not in training, so they show whether training for one make carries over to others
TRAINED_MAKES = {"shot noise (Poisson, 60 photons at white)", "speckle noise (x(1 + N(0, 0.2)))",
                 "pepper only, 5 %", "salt only, 5 %", "motion blur, 5 px", "half resolution (14 x 14 and back)",
                 "rotation 15 deg, black corners", "rotation 15 deg, white corners", "translation 3 px, black border",
                 "zoom out 15 %, black border", "occluder 9 x 9, black", "occluder 9 x 9, white",
                 "occluder bar 4 x 20, black", "occluder 9 x 9, noise", "occluder 9 x 9, stripes",
                 "correlated noise (blurred, sigma 16)", "occluder 9 x 9, diagonal stripes"}


def _unit_blurred_noise(shape: tuple, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise blurred over ~1.5 px, rescaled to unit standard deviation (sensor noise after demosaicing)."""
    from scipy.ndimage import gaussian_filter

    noise = gaussian_filter(rng.normal(0, 1, shape), sigma=(0, 1.0, 1.0))
    return noise / noise.std()


def make_variant(images: np.ndarray, name: str, seed: int = 0) -> np.ndarray:
    """The images (N, 28, 28) under one variant, as whole 0-255 pixels; seeded per variant."""
    import zlib

    rng = np.random.default_rng([seed, zlib.crc32(name.encode())])
    x = np.asarray(images, dtype=np.float64).reshape(-1, 28, 28)
    return np.clip(np.rint(VARIANTS[name][1](x, rng)), 0, 255)


def main() -> None:
    models = kept_model_paths(__doc__)

    from sign_mlops.sign_model.export import onnx_predictor
    from sign_mlops.sign_model.robustness import GATE_SEVERITY, perturb

    holdout = load_holdout()
    images, true_index, source = holdout.images, holdout.true_index, holdout.source
    predictors = {path.stem: onnx_predictor(path) for path in models}

    def accuracy(predict, x: np.ndarray) -> float:
        return float((predict(x.astype(np.float32)).argmax(1) == true_index).mean())

    def scored(shifted: np.ndarray) -> list[float]:
        return [accuracy(p, shifted) for p in predictors.values()]

    suite = {kind: scored(perturb(images, kind, GATE_SEVERITY)) for kind in {kind for kind, _ in VARIANTS.values()}}
    rows = [["clean", "-", "-", *(f"{score:.2%}" for score in scored(images))]]
    scores = {name: scored(make_variant(images, name)) for name in VARIANTS}
    for name, (kind, _) in VARIANTS.items():
        cells = [f"{score:.2%} ({own:.1%})" for score, own in zip(scores[name], suite[kind])]
        rows.append([name, kind, "yes" if name in TRAINED_MAKES else "no", *cells])
    for trained, label in ((True, "yes"), (False, "no")):
        chosen = np.array([scores[name] for name in VARIANTS if (name in TRAINED_MAKES) == trained])
        rows.append([f"mean over {len(chosen)} variants", "-", label, *(f"{m:.2%}" for m in chosen.mean(axis=0))])
        rows.append([f"worst of {len(chosen)} variants", "-", label, *(f"{m:.2%}" for m in chosen.min(axis=0))])
    print_table(f"Accuracy on {len(images)} grouped-holdout rows under variants of the suite's shifts "
                f"(in brackets: the suite's own {GATE_SEVERITY} shift of that kind); {source}",
                ["variant", "suite kind", "make trained on", *predictors], rows)


if __name__ == "__main__":
    main()
