"""Study: where the default's clean errors come from (issue #29, item 1). One table per seed.

The default is the classifier (bn_cnn, trained with camera shifts) behind the left-hand detector.
On the grouped holdout every image is a right hand, so each clean error is one of:

- **detector**: the detector called a right hand "left", the classifier saw the mirror image and
  got it wrong, though it reads the image as given correctly (the switch is forced shut to check);
- **camera shifts**: the classifier itself is wrong, and the same recipe without camera shifts
  (preset `studio`: same seed, so the same validation split, fit rows and initialisation) reads
  the image correctly;
- **classifier**: both recipes get the image wrong (the photo is hard for this classifier).

Coverage: the seed also decides which near-copy groups of the fit part go to the training run's
validation split (10 %, never trained on). For every holdout photo the study finds its closest
relative in the fit part (same letter, highest thumbnail correlation) and whether that relative
sat in validation for this seed: if misread photos lose their relative to validation far more
often than photos read right, the errors come from which photos the classifier learnt from.

It also counts the reverse (`studio` errors the camera recipe fixes) and names the wrong photos
(near-copy groups mostly misread, `research/holdout.wrong_photos`), since holdout accuracy moves in
steps of one photo (19-124 rows).

Models: ONNX files of a sweep's trials, trained on the fit part only, default and studio seed by
seed (research/sweeps/clean_errors.yaml; docs/research/clean-errors.md):

    .venv/bin/python research/clean_errors.py --default D0.onnx D1.onnx D2.onnx --control S0.onnx S1.onnx S2.onnx
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_table, real_or_synthetic_dataset  # noqa: E402
from research.holdout import Holdout, holdout_split, wrong_photos  # noqa: E402

SWITCH_FORCE = "force_switch"  # the extra input that replaces the detector's decision
MARGINS = (0.0, 1.0, 2.0, 3.0)  # candidate: flip only when the logit exceeds this (P(left) > 0.5, 0.73, 0.88, 0.95)


def with_forced_switch(path: Path, out: Path) -> bool:
    """Copy of the model whose hand switch comes from an input (so it can be forced shut), with the
    detector's decision and its logit (P(left) = sigmoid(logit)) as extra outputs. False for a model
    without a detector."""
    import onnx
    from onnx import TensorProto, helper

    proto = onnx.load(str(path))
    flip = [node for node in proto.graph.node if "flip_if_left" in node.name]
    if not flip:
        return False
    producer = {output: node for node in proto.graph.node for output in node.output}
    switch = next(name for name in flip[0].input if "left_switch" in producer[name].name)
    for node in proto.graph.node:
        node.input[:] = [SWITCH_FORCE if name == switch else name for name in node.input]
    proto.graph.input.append(helper.make_tensor_value_info(SWITCH_FORCE, TensorProto.FLOAT, ["N", 1, 1, 1]))
    logit = next(out for node in proto.graph.node if "hand_logit" in node.name for out in node.output)
    proto.graph.output.extend([helper.make_tensor_value_info(switch, TensorProto.FLOAT, None),
                               helper.make_tensor_value_info(logit, TensorProto.FLOAT, None)])
    onnx.save(proto, str(out))
    return True


@dataclass
class Reading:
    predicted: np.ndarray  # the model as shipped
    as_given: np.ndarray  # the classifier on the image as given (switch shut)
    flipped: np.ndarray  # the detector called the (right) hand "left"
    left_logit: np.ndarray  # the detector's logit: P(left) = sigmoid(left_logit); > 0 flips


def read(path: Path, images: np.ndarray, batch_size: int = 512) -> Reading:
    from sign_mlops.sign_model.export import onnx_probabilities, onnx_session

    with tempfile.TemporaryDirectory() as tmp:
        surgery = Path(tmp) / "forced.onnx"
        if not with_forced_switch(path, surgery):
            predicted = onnx_probabilities(path, images).argmax(1)
            return Reading(predicted, predicted, np.zeros(len(images), bool), np.full(len(images), -np.inf))
        session = onnx_session(surgery)
        image_input = next(i.name for i in session.get_inputs() if i.name != SWITCH_FORCE)
        x = images.reshape(-1, 28, 28, 1).astype(np.float32)
        shipped, shut, switch, logits = [], [], [], []
        for i in range(0, len(x), batch_size):
            batch = x[i : i + batch_size]
            # switch shut: the classifier on the image as given, plus the detector's own decision ...
            as_given, decided, logit = session.run(None, {image_input: batch, SWITCH_FORCE: np.zeros((len(batch), 1, 1, 1), np.float32)})
            decided = decided.reshape(len(batch), 1, 1, 1).astype(np.float32)
            # ... which, fed back in, gives the model as shipped
            shipped.append(session.run(None, {image_input: batch, SWITCH_FORCE: decided})[0])
            shut.append(as_given)
            switch.append(decided.reshape(-1))
            logits.append(logit.reshape(-1))
    check = onnx_probabilities(path, images[:512]).argmax(1)
    predicted = np.concatenate(shipped).argmax(1)
    assert (check == predicted[:512]).all(), "the surgery changed the shipped model's answers"
    return Reading(predicted, np.concatenate(shut).argmax(1), np.concatenate(switch) > 0.5, np.concatenate(logits))


def accuracy_with_margin(given: Reading, mirrored: Reading, true: np.ndarray, margin: float) -> tuple[float, float]:
    """Clean (right hands) and mirrored (left hands) accuracy %, had the detector flipped only
    above `margin`: the classifier's reading of each orientation comes from the switch-shut pass
    over the image and over its mirror image."""
    right = np.where(given.left_logit > margin, mirrored.as_given, given.as_given)
    left = np.where(mirrored.left_logit > margin, given.as_given, mirrored.as_given)
    return 100 * float((right == true).mean()), 100 * float((left == true).mean())


def relative_in_validation(holdout_images: np.ndarray, holdout_labels: np.ndarray, holdout_groups: np.ndarray,
                           fit_images: np.ndarray, fit_labels: np.ndarray, val_mask: np.ndarray) -> dict[int, bool]:
    """Per holdout group: whether its closest same-letter fit row (thumbnail correlation, the
    near-copy grouping's feature) is in the validation split `val_mask`."""
    from sign_mlops.sign_model.split import thumbnails

    held, fit = thumbnails(holdout_images), thumbnails(fit_images)
    found = {}
    for group in np.unique(holdout_groups):
        rows = np.flatnonzero(holdout_groups == group)
        same = np.flatnonzero(fit_labels == holdout_labels[rows[0]])
        closest = same[(held[rows] @ fit[same].T).max(axis=0).argmax()]
        found[int(group)] = bool(val_mask[closest])
    return found


def coverage(wrong: np.ndarray, groups: np.ndarray, in_validation: dict[int, bool]) -> tuple[str, str]:
    """'k / n' of the mostly-misread photos, and of the others, whose closest relative sat in validation."""
    ids, inverse = np.unique(groups, return_inverse=True)
    misread = np.bincount(inverse, weights=wrong) > np.bincount(inverse) / 2
    lost = np.array([in_validation[int(i)] for i in ids])
    return f"{int((lost & misread).sum())} / {int(misread.sum())}", f"{int((lost & ~misread).sum())} / {int((~misread).sum())}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--default", nargs="+", type=Path, required=True, help="the default's ONNX files, one per seed")
    parser.add_argument("--control", nargs="+", type=Path, required=True,
                        help="studio's ONNX files (no camera shifts), the same seeds in the same order")
    args = parser.parse_args()
    if len(args.default) != len(args.control):
        parser.error("give one control model per default model (the same seeds, in the same order)")
    from sign_mlops.sign_model.quiet import quiet_tensorflow
    from sign_mlops.sign_model.split import grouped_split, near_copy_groups
    from sign_mlops.sign_model.train_config import PRESETS

    quiet_tensorflow()
    full, source = real_or_synthetic_dataset()  # read once: the holdout and the fit part the runs trained on
    fit_rows, holdout_rows = holdout_split(full.images, full.labels)
    holdout = Holdout(full.images[holdout_rows], full.labels[holdout_rows], source)
    fit_images, fit_labels = full.images[fit_rows], full.labels[fit_rows]
    true = holdout.true_index
    groups = near_copy_groups(holdout.images, holdout.labels)
    rows, photos, margins = [], [], []
    for seed, (default_path, control_path) in enumerate(zip(args.default, args.control)):
        d, c = read(default_path, holdout.images), read(control_path, holdout.images)
        wrong, wrong_given, wrong_control = d.predicted != true, d.as_given != true, c.predicted != true
        detector = wrong & ~wrong_given  # flipped and misread, right when shown as given
        camera = wrong & wrong_given & ~wrong_control
        shared = wrong & wrong_given & wrong_control
        rows.append([str(seed), f"{100 * (1 - wrong.mean()):.2f}", str(int(wrong.sum())),
                     f"{int(d.flipped.sum())} / {int(detector.sum())}", str(int(camera.sum())), str(int(shared.sum())),
                     f"{100 * (1 - wrong_control.mean()):.2f}", str(int((wrong_control & ~wrong).sum())),
                     f"{100 * (1 - wrong_given.mean()):.2f}"])
        _, val_rows = grouped_split(fit_images, fit_labels, PRESETS["default"].val_fraction, seed)
        val_mask = np.zeros(len(fit_labels), bool)
        val_mask[val_rows] = True
        lost_wrong, lost_right = coverage(wrong, groups, relative_in_validation(
            holdout.images, holdout.labels, groups, fit_images, fit_labels, val_mask))
        rows[-1] += [lost_wrong, lost_right]
        m = read(default_path, holdout.images[:, :, ::-1])
        for margin in MARGINS:
            clean, left = accuracy_with_margin(d, m, true, margin)
            margins.append([str(seed), f"{margin:g}", f"{clean:.2f}", f"{left:.2f}",
                            str(int((d.left_logit > margin).sum())), str(int((m.left_logit <= margin).sum()))])
        photos.append([str(seed), ", ".join(wrong_photos(d.predicted, true, groups)) or "-",
                       ", ".join(wrong_photos(c.predicted, true, groups)) or "-"])
    print_table(f"Clean errors on the grouped holdout: {len(true):,} rows ({holdout.source}), "
                f"{len(np.unique(groups))} near-copy groups", ["seed", "default %", "errors", "detector flips / errors", "camera-shift errors",
                 "classifier errors (both)", "studio %", "studio errors default fixes", "default, switch shut %",
                 "misread photos: relative in validation", "other photos: relative in validation"], rows)
    print_table("Candidate: the detector flips only above a margin (logit units; 0 = as shipped)",
                ["seed", "margin", "clean %", "left hands %", "right hands flipped", "left hands not flipped"], margins)
    print_table("Photos mostly misread (true letter -> letter read, rows)", ["seed", "default's wrong photos", "studio's wrong photos"], photos)


if __name__ == "__main__":
    main()
