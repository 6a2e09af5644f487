"""Benchmark: how often the left-hand detector gets the hand right, clean and under camera shifts.

    .venv/bin/python research/hand_detector.py               # 3 seeds, the default width
    .venv/bin/python research/hand_detector.py --seeds 1 --width 8

Data: the real Kaggle training file (../shared) minus the same 20 % grouped holdout as
research/holdout.py; synthetic data when ../shared is absent (its glyphs have no clear
hand, so expect the detector to fail its check there). For each seed the detector is trained
exactly as `train_model` trains it (sign_mlops.sign_model.handedness.train_hand_detector, grouped validation
split of the fit part), then the table shows, on the holdout: its validation check, the share of
images called "right" and of their mirror images called "left" (equal by construction), the
same under each moderate shift of the robustness suite, and the training seconds. A false
"left" on a right hand costs that image in the composed model, so these are the upper bounds on
what the detector lets through.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.common import print_table, real_or_synthetic_dataset  # noqa: E402
from research.holdout import holdout_split  # noqa: E402  (the same holdout as the Pareto study)

SHIFTS = ("gaussian_noise", "salt_pepper", "blur", "darker", "contrast", "rotation", "zoom", "occlusion", "background")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--width", type=int, default=None, help="detector width (default: the default preset's)")
    parser.add_argument("--epochs", type=int, default=None, help="detector epochs (default: the default preset's)")
    args = parser.parse_args()

    from sign_mlops.sign_model.handedness import orientation_accuracy, train_hand_detector
    from sign_mlops.sign_model.quiet import quiet_tensorflow
    from sign_mlops.sign_model.robustness import perturb
    from sign_mlops.sign_model.split import grouped_split
    from sign_mlops.sign_model.train import set_seeds
    from sign_mlops.sign_model.train_config import resolve_config

    quiet_tensorflow()
    full, source = real_or_synthetic_dataset()
    fit_idx, holdout_idx = holdout_split(full.images, full.labels)
    fit_images, fit_labels, holdout = full.images[fit_idx], full.labels[fit_idx], full.images[holdout_idx]
    rows = []
    for seed in range(args.seeds):
        overrides = {"seed": seed, **({"hand_detector": args.width} if args.width else {}),
                     **({"hand_detector_epochs": args.epochs} if args.epochs else {})}
        config = resolve_config("default", overrides)
        set_seeds(seed)
        train_idx, val_idx = grouped_split(fit_images, fit_labels, config.val_fraction, seed)
        detector, hand = train_hand_detector(fit_images, train_idx, val_idx, config)
        cells = [f"{100 * min(orientation_accuracy(detector, perturb(holdout, kind, 'moderate', 0))):.2f}" for kind in SHIFTS]
        right, left = orientation_accuracy(detector, holdout)
        rows.append([str(seed), f"{config.hand_detector}", f"{100 * min(hand.right_accuracy, hand.left_accuracy):.2f}"
                     + ("" if hand.used else " (NOT used)"), f"{100 * right:.2f} / {100 * left:.2f}", *cells,
                     f"{hand.seconds:.0f}"])
        print(f"seed {seed}: {hand.reason}", flush=True)
    print_table(f"Left-hand detector ({source}; grouped holdout {len(holdout)} rows; % of images whose hand it gets right)",
                ["seed", "width", "validation check %", "holdout right / left %", *SHIFTS, "train s"], rows)


if __name__ == "__main__":
    main()
