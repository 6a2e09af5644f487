"""Architecture and recipe screen on a GPU, in PyTorch: many candidates x 3 seeds in minutes.

The product trains with Keras on the CPU (the Pareto sweep, research/sweeps/pareto.yaml, measures that, and its
numbers are the ones the README decides on). Two CPU cores allow about five trainings an hour,
too few to screen architectures and recipes over three seeds, so this script re-implements the
same training recipe in PyTorch and runs it on a lent GPU, several trainings at once:
- the same grouped split as the Pareto sweep (research/holdout.py) (fit part / 20 % grouped holdout) and the same
  grouped validation split per seed (`sign_mlops.sign_model.split.grouped_split`), taken from a data pack;
- the same augmentation: rotation 10 deg, shift 12 %, zoom 12 %, contrast 0.3, then one camera
  shift on a share of the images plus occlusion, a third of it for the last 30 % of the epochs
  (`sign_mlops.sign_model.augment`);
- the same optimiser (AdamW 2e-3, weight decay 1e-4, cosine with one warm-up epoch, label
  smoothing 0.05, batch 128, 20 epochs, model selection on validation loss from 60 % of the
  epochs with patience 4);
- the robustness suite's moderate shifts of the holdout (`sign_mlops.sign_model.robustness`), precomputed.
It is a screen: a candidate it ranks high is then trained by the product on the CPU.

    # here: build the pack (real Kaggle training file needed)
    .venv/bin/python research/gpu_screen.py pack .gpu/pack.npz
    # on the GPU machine (PyTorch there), writes one JSON line per training
    python3 research/gpu_screen.py run .gpu/pack.npz --out results.jsonl --workers 6
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]

# ---------------------------------------------------------------- the data pack (product code)


def build_pack(path: Path) -> None:
    sys.path.insert(0, str(ROOT))
    from benchmarks.common import real_or_synthetic_dataset
    from research.holdout import holdout_split
    from sign_mlops.sign_model.robustness import GATE_SEVERITY, KINDS, perturb, stress_rows
    from sign_mlops.sign_model.split import grouped_split, near_copy_groups
    from sign_mlops.sign_model.train import to_indices

    full, source = real_or_synthetic_dataset()
    fit_idx, hold_idx = holdout_split(full.images, full.labels)
    fit_x, fit_labels = full.images[fit_idx], full.labels[fit_idx]
    hold_x = full.images[hold_idx]
    pack = {"fit_x": fit_x.astype(np.uint8), "fit_y": to_indices(fit_labels),
            "hold_x": hold_x.astype(np.uint8), "hold_y": to_indices(full.labels[hold_idx]),
            "hold_groups": near_copy_groups(hold_x, full.labels[hold_idx])}
    for seed in range(3):
        pack[f"train_idx_{seed}"], pack[f"val_idx_{seed}"] = grouped_split(fit_x, fit_labels, 0.1, seed)
    rows = stress_rows(len(hold_x), 3000, 0)
    pack["stress_rows"] = rows
    for kind in KINDS:
        pack[f"shift_{kind}"] = perturb(hold_x[rows], kind, GATE_SEVERITY, 0).astype(np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(path, **pack)
    print(f"{source}: fit {len(fit_x)}, holdout {len(hold_x)} rows -> {path}")


# ---------------------------------------------------------------- models


def build_net(spec: str, dropout: float = 0.3):
    """A net from a compact spec: c<N> conv3x3-BN-ReLU, c<N>/2 the same with stride 2,
    s<N> depthwise 3x3-BN-ReLU + pointwise-BN-ReLU, p max-pool 2, then global average pooling,
    dropout and a 24-way linear layer (BN as in Keras: eps 1e-3, momentum 0.99)."""
    import torch.nn as nn

    layers, channels = [], 1
    for token in spec.split():
        if token == "p":
            layers.append(nn.MaxPool2d(2))
            continue
        kind, rest = token[0], token[1:]
        out, _, stride = rest.partition("/")
        out, stride = int(out), int(stride or 1)
        if kind == "c":
            layers += [nn.Conv2d(channels, out, 3, stride, 1, bias=False), nn.BatchNorm2d(out, 1e-3, 0.01), nn.ReLU()]
        elif kind == "s":
            layers += [nn.Conv2d(channels, channels, 3, stride, 1, groups=channels, bias=False),
                       nn.BatchNorm2d(channels, 1e-3, 0.01), nn.ReLU(),
                       nn.Conv2d(channels, out, 1, bias=False), nn.BatchNorm2d(out, 1e-3, 0.01), nn.ReLU()]
        else:
            raise ValueError(token)
        channels = out
    net = nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout), nn.Linear(channels, 24))
    for m in net.modules():  # Keras' glorot-uniform kernels, zero biases
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            nn.init.xavier_uniform_(m.weight)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
    return net


def count_macs(net) -> float:
    """Multiply-adds per image of the convolutions and the linear layer."""
    import torch
    import torch.nn as nn

    total = [0]

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            total[0] += output.numel() * module.in_channels // module.groups * module.kernel_size[0] * module.kernel_size[1]
        elif isinstance(module, nn.Linear):
            total[0] += module.in_features * module.out_features

    handles = [m.register_forward_hook(hook) for m in net.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    net.eval()
    with torch.no_grad():
        net(torch.zeros(1, 1, 28, 28, device=next(net.parameters()).device))
    for h in handles:
        h.remove()
    return total[0] / 1e6


# ---------------------------------------------------------------- augmentation (sign_mlops.sign_model.augment)
# A replica of sign_mlops.sign_model.augment as it was before its shifts came in several makes (motion
# blur, lower resolution, filled borders, brightness-dependent noise, occluders of other fills
# and shapes; research/shift_variants.py): screens run with it rank recipes under the older
# augmentation. Port those makes before trusting a new screen's robustness numbers.

SHIFT_KINDS = ("darker", "brighter", "contrast", "gamma", "blur", "background", "noise", "salt_pepper")


def augment(x, g, recipe: dict, strength: float):
    """(N, 1, 28, 28) float 0-255 -> augmented, whole pixels; the whole epoch in one go."""
    import torch
    import torch.nn.functional as F

    n, dev = x.shape[0], x.device

    def u(low, high, *shape):
        return torch.rand(*(shape or (n, 1, 1, 1)), generator=g, device=dev) * (high - low) + low

    # geometric (Keras RandomRotation / RandomTranslation / RandomZoom, bilinear, edge fill)
    angle = u(-1, 1, n) * math.radians(recipe["rotation_deg"])
    scale = 1 + u(-1, 1, n) * recipe["zoom"]
    shift = u(-1, 1, n, 2) * recipe["shift"] * 2
    cos, sin = torch.cos(angle) * scale, torch.sin(angle) * scale
    theta = torch.stack([torch.stack([cos, -sin, shift[:, 0]], 1), torch.stack([sin, cos, shift[:, 1]], 1)], 1)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    x = F.grid_sample(x, grid, mode="bilinear", padding_mode="border", align_corners=False)
    mean = x.mean(dim=(1, 2, 3), keepdim=True)
    x = ((x - mean) * u(1 - recipe["contrast"], 1 + recipe["contrast"]) + mean).clamp(0, 255)
    if recipe["mirror"] > 0:
        x = torch.where(u(0, 1) < recipe["mirror"], x.flip(3), x)
    if recipe["photometric"] > 0:
        shifted = u(0, 1) < recipe["photometric"] * strength
        pick = torch.randint(0, len(SHIFT_KINDS), (n, 1, 1, 1), generator=g, device=dev)

        def some(kind):
            return shifted & (pick == SHIFT_KINDS.index(kind))

        mean = x.mean(dim=(1, 2, 3), keepdim=True)
        taps = torch.exp(-0.5 * (torch.arange(-2, 3, device=dev, dtype=torch.float32) / 1.2) ** 2)
        kernel = torch.outer(taps, taps)
        blurred = F.conv2d(F.pad(x, (2, 2, 2, 2), mode="replicate"), (kernel / kernel.sum())[None, None])
        texture = F.interpolate(u(0, 255, n, 1, 4, 4), size=(28, 28), mode="bilinear", align_corners=False)
        yy, xx = torch.meshgrid(torch.arange(28, device=dev), torch.arange(28, device=dev), indexing="ij")
        radius = torch.hypot(yy - 13.5, xx - 13.5) / (13.5 * math.sqrt(2))
        weight = ((radius - 0.25) / 0.5).clamp(0, 1)[None, None] * u(0, 0.7)
        hit = torch.rand(x.shape, generator=g, device=dev) < u(0, 0.10)
        salt = torch.where(torch.rand(x.shape, generator=g, device=dev) < 0.5, 255.0, 0.0)
        gamma = torch.exp(u(-math.log(2.8), math.log(2.8)))
        x = torch.where(some("darker"), x * u(0.3, 1.0), x)
        x = torch.where(some("brighter"), x + u(0, 0.6) * (255 - x), x)
        x = torch.where(some("contrast"), mean + u(0.25, 1.0) * (x - mean), x)
        x = torch.where(some("gamma"), 255 * (x.clamp(0, 255) / 255 + 1e-6) ** gamma, x)
        x = torch.where(some("blur"), x + u(0, 1) * (blurred - x), x)
        x = torch.where(some("background"), (1 - weight) * x + weight * texture, x)
        x = torch.where(some("noise"), x + u(0, recipe["noise_std"]) * torch.randn(x.shape, generator=g, device=dev), x)
        x = torch.where(some("salt_pepper") & hit, salt, x)
    if recipe["occlusion"] > 0:
        side = torch.floor(u(4, 12))
        top, left = torch.floor(2 + u(0, 1) * (24 - side)), torch.floor(2 + u(0, 1) * (24 - side))
        rows = torch.arange(28, device=dev, dtype=torch.float32).view(1, 1, 28, 1)
        cols = torch.arange(28, device=dev, dtype=torch.float32).view(1, 1, 1, 28)
        inside = (rows >= top) & (rows < top + side) & (cols >= left) & (cols < left + side)
        occlusion_strength = 1.0 if recipe.get("occlusion_kept") else strength  # kept at full share in the tail
        x = torch.where((u(0, 1) < recipe["occlusion"] * occlusion_strength) & inside, u(0, 255), x)
    return x.round().clamp(0, 255)


# ---------------------------------------------------------------- training

RECIPES = {
    "camera": {"rotation_deg": 10.0, "shift": 0.12, "zoom": 0.12, "contrast": 0.3, "mirror": 0.0,
               "photometric": 0.3, "occlusion": 0.1, "noise_std": 20.0, "tail": 0.3},
    "camera-occ": {"rotation_deg": 12.0, "shift": 0.12, "zoom": 0.12, "contrast": 0.3, "mirror": 0.0,
                   "photometric": 0.3, "occlusion": 0.25, "noise_std": 20.0, "tail": 0.3},
    "camera-strong": {"rotation_deg": 15.0, "shift": 0.12, "zoom": 0.12, "contrast": 0.3, "mirror": 0.0,
                      "photometric": 0.4, "occlusion": 0.25, "noise_std": 20.0, "tail": 0.3},
}
# round 8, how far occlusion can go: half or all of the images occluded, with the tail's third
# (as the product does), or at the full share in the tail too ("-kept")
RECIPES["occ50"] = {**RECIPES["camera-occ"], "occlusion": 0.5}
RECIPES["occ50-kept"] = {**RECIPES["occ50"], "occlusion_kept": True}
RECIPES["occ100"] = {**RECIPES["camera-occ"], "occlusion": 1.0}


def train_one(net, data: dict, seed: int, recipe: dict, epochs: int, teacher=None, kd_alpha: float = 0.5,
              kd_temperature: float = 4.0, ema_decay: float = 0.999, offline: bool = False, rng_seed: int | None = None,
              mix: bool = False):
    """Train like sign_mlops.sign_model.train; returns (selected net, EMA net, info).

    With a teacher, the loss adds distillation: online, the teacher sees each augmented batch;
    offline, its soft targets are computed once on the clean training images and each augmented
    copy learns its clean image's targets (no teacher pass during training). With mix (offline
    too), the target itself is mixed: (1 - alpha) x the smoothed label + alpha x the teacher's
    soft targets, learnt with plain cross-entropy at temperature 1."""
    import copy

    import torch
    import torch.nn.functional as F

    dev = data["x"].device
    g = torch.Generator(device=dev)
    g.manual_seed(seed if rng_seed is None else rng_seed)  # seed picks the validation split
    train_idx, val_idx = data[f"train_idx_{seed}"], data[f"val_idx_{seed}"]
    steps_per_epoch = math.ceil(len(train_idx) / 128)
    total, warmup = epochs * steps_per_epoch, steps_per_epoch
    opt = torch.optim.AdamW(net.parameters(), lr=2e-3, weight_decay=1e-4, fused=True)

    def lr_at(step):  # Keras CosineDecay with a linear warm-up from lr/10, alpha 0.01
        if step < warmup:
            return 2e-4 + (2e-3 - 2e-4) * step / warmup
        progress = min(1.0, (step - warmup) / max(1, total - warmup))
        return 2e-3 * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))

    ema = copy.deepcopy(net)
    for p in ema.parameters():
        p.requires_grad_(False)
    ema_params, net_params = list(ema.parameters()), list(net.parameters())
    tail_from = epochs - int(round(recipe["tail"] * epochs))
    select_from = int(epochs * 0.6)
    best, best_loss, waited, step = None, math.inf, 0, 0
    x_val, y_val = data["x"][val_idx], data["y"][val_idx]
    soft_all = None
    if teacher is not None and (offline or mix):
        teacher.eval()
        with torch.no_grad():
            soft_all = torch.cat([F.softmax(teacher(data["x"][i:i + 2048] / 255.0) / kd_temperature, dim=1)
                                  for i in range(0, len(data["x"]), 2048)])
    for epoch in range(epochs):
        net.train()
        order = train_idx[torch.randperm(len(train_idx), generator=g, device=dev)]
        xs = augment(data["x"][order], g, recipe, 1 / 3 if epoch >= tail_from else 1.0) / 255.0
        ys = data["y"][order]
        softs = soft_all[order] if soft_all is not None else None
        for start in range(0, len(order), 128):
            xb, yb = xs[start:start + 128], ys[start:start + 128]
            for group in opt.param_groups:
                group["lr"] = lr_at(step)
            logits = net(xb)
            if mix:
                target = (1 - kd_alpha) * (F.one_hot(yb, 24) * 0.95 + 0.05 / 24) + kd_alpha * softs[start:start + 128]
                loss = F.cross_entropy(logits, target)
            else:
                loss = F.cross_entropy(logits, yb, label_smoothing=0.05)
            if teacher is not None and not mix:
                if softs is not None:
                    soft = softs[start:start + 128]
                else:
                    with torch.no_grad():
                        soft = F.softmax(teacher(xb) / kd_temperature, dim=1)
                kd = F.kl_div(F.log_softmax(logits / kd_temperature, dim=1), soft, reduction="batchmean")
                loss = (1 - kd_alpha) * loss + kd_alpha * kd_temperature ** 2 * kd
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            with torch.no_grad():
                decay = min(ema_decay, (1 + step) / (10 + step))
                torch._foreach_lerp_(ema_params, net_params, 1 - decay)
        val_loss = evaluate_loss(net, x_val, y_val)
        if epoch >= select_from:
            if val_loss < best_loss:
                best_loss, best, waited = val_loss, copy.deepcopy(net.state_dict()), 0
            else:
                waited += 1
                if waited >= 4:
                    break
    if best is not None:
        net.load_state_dict(best)
    recalibrate_bn(ema, data["x"][train_idx], g)
    return net, ema, {"epochs_run": epoch + 1, "val_loss": best_loss}


def evaluate_loss(net, x, y) -> float:
    import torch
    import torch.nn.functional as F

    net.eval()
    with torch.no_grad():
        return float(F.cross_entropy(net(x / 255.0), y))


def recalibrate_bn(net, x, g) -> None:
    """EMA weights need batch-norm statistics of their own: one pass over clean training images."""
    import torch

    for m in net.modules():
        if isinstance(m, torch.nn.BatchNorm2d):
            m.reset_running_stats()
            m.momentum = None  # cumulative average
    net.train()
    with torch.no_grad():
        for start in range(0, len(x), 512):
            net(x[start:start + 512] / 255.0)
    net.eval()


def predict(net, x):
    import torch

    net.eval()
    with torch.no_grad():
        return torch.cat([net(x[i:i + 2048] / 255.0).argmax(1) for i in range(0, len(x), 2048)])


def groups_wrong(right, groups) -> int:
    """Near-copy groups of the holdout (one source photo each) that the model gets mostly wrong."""
    import torch

    ids, inverse = torch.unique(groups, return_inverse=True)
    wrong = torch.zeros(len(ids), device=groups.device).index_add_(0, inverse, (~right).float())
    size = torch.zeros(len(ids), device=groups.device).index_add_(0, inverse, torch.ones_like(wrong[inverse]))
    return int((wrong > size / 2).sum())


def scores(net, data: dict) -> dict:
    right = predict(net, data["hold_x"]) == data["hold_y"]
    clean = float(right.float().mean())
    kinds = {}
    for kind, x in data["shifts"].items():
        if kind == "mirror":  # the hand detector un-mirrors; measured on its own
            continue
        kinds[kind] = float((predict(net, x) == data["stress_y"]).float().mean())
    worst = min(kinds, key=kinds.get)
    extra = {"groups_wrong": groups_wrong(right, data["hold_groups"])} if "hold_groups" in data else {}
    return {"clean": clean, **extra, "robust_mean": float(np.mean(list(kinds.values()))), "worst_kind": worst,
            "worst": kinds[worst], "kinds": kinds}


# ---------------------------------------------------------------- the screen

ARCHS = {
    "bn32": "c32 c32 p c64 c64 p c128",
    "bn16": "c16 c16 p c32 c32 p c64",
    "bn16-late": "c16 p c32 c32 p c64 c64",
    "bn16-late80": "c16 p c32 c32 p c64 c80",
    "mobile": "c24 p c32 s64 s96 p s160 s192",
    "mobile-wide": "c32 p s64 s128 p s192 s224",
    "stem2": "c32/2 c32 p c64 c96",
    "slim": "c24 p c48 p c96",
    "bn64": "c64 c64 p c128 c128 p c256",  # bn_cnn at twice the width (4x its MACs): is occlusion limited by capacity? (round 9)
}


def jobs() -> list[dict]:
    """Most informative first: the default's recipe on the cheap candidates, then distillation."""
    out = []
    for seed in range(3):
        out.append({"arch": "bn32", "recipe": "camera", "epochs": 20, "seed": seed,
                    "students": ["bn16", "bn16-late", "mobile"]})  # teacher, then distilled students
    for seed in range(3):
        for arch in ("bn16", "bn16-late", "mobile", "bn16-late80", "mobile-wide", "stem2"):
            out.append({"arch": arch, "recipe": "camera", "epochs": 20, "seed": seed})
    for seed in range(3):
        out.append({"arch": "bn16", "recipe": "camera", "epochs": 40, "seed": seed})
        out.append({"arch": "bn32", "recipe": "camera-occ", "epochs": 20, "seed": seed})
        out.append({"arch": "bn32", "recipe": "camera", "epochs": 40, "seed": seed})
        out.append({"arch": "bn16", "recipe": "camera-occ", "epochs": 20, "seed": seed})
    for seed in range(3):
        out.append({"arch": "bn32", "recipe": "camera-strong", "epochs": 20, "seed": seed})
        out.append({"arch": "mobile", "recipe": "camera", "epochs": 40, "seed": seed})
        out.append({"arch": "bn32", "recipe": "camera-occ", "epochs": 20, "seed": seed,
                    "students": ["bn16", "mobile"]})
    return out


def jobs_round2() -> list[dict]:
    """Second round: the cheap candidates under the heavier-occlusion recipe that won round one."""
    out = []
    for arch in ("mobile", "bn16-late", "mobile-wide"):
        out += [{"arch": arch, "recipe": "camera-occ", "epochs": 20, "seed": seed} for seed in range(3)]
    out += [{"arch": "bn32", "recipe": "camera-occ", "epochs": 20, "seed": seed, "students": ["mobile", "bn16-late"]}
            for seed in (1, 2)]
    out += [{"arch": "mobile", "recipe": "camera-occ", "epochs": 40, "seed": seed} for seed in range(3)]
    out += [{"arch": "bn16-late80", "recipe": "camera-occ", "epochs": 20, "seed": seed} for seed in range(3)]
    return out


def jobs_round3() -> list[dict]:
    """Third round: distillation without a teacher pass (soft targets of the clean images, computed
    once), against online distillation and hard labels, for the cheap model and for bn32 itself."""
    out = [{"arch": "bn32", "recipe": "camera", "epochs": 20, "seed": seed,
            "students": ["bn16-late", "bn16-late@offline", "bn32@offline"]} for seed in range(3)]
    out += [{"arch": "bn16-late", "recipe": "camera", "epochs": 20, "seed": seed} for seed in range(3)]
    out += [{"arch": "bn32", "recipe": "camera", "epochs": 20, "seed": seed,
             "students": ["bn16-late@offline:0.9"]} for seed in range(3)]
    return out


def jobs_round4() -> list[dict]:
    """Fourth round: round three's comparison again on other initialisations (same three
    validation splits), plus offline distillation at temperature 2."""
    out = [{"arch": "bn32", "recipe": "camera", "epochs": 20, "seed": seed, "init": seed + 10,
            "students": ["bn16-late@offline", "bn32@offline", "bn16-late@offline:0.5:2"]} for seed in range(3)]
    out += [{"arch": "bn16-late", "recipe": "camera", "epochs": 20, "seed": seed, "init": seed + 10} for seed in range(3)]
    return out


def jobs_round5() -> list[dict]:
    """Fifth round: mixed soft targets (plain cross-entropy, no custom loss) against offline
    distillation, on new initialisations."""
    out = [{"arch": "bn32", "recipe": "camera", "epochs": 20, "seed": seed, "init": seed + 20,
            "students": ["bn16-late@offline", "bn16-late@mix:0.5:2", "bn16-late@mix:0.5:4", "bn32@mix:0.5:2"]}
           for seed in range(3)]
    out += [{"arch": "bn16-late", "recipe": "camera", "epochs": 20, "seed": seed, "init": seed + 20} for seed in range(3)]
    return out


def jobs_round6() -> list[dict]:
    """Sixth round: the product's method (mixed targets at T = 4, sign_model/distill.py) on six
    more initialisations, for the cheap model and for bn32 taught by itself."""
    out = []
    for offset in (30, 40):
        out += [{"arch": "bn32", "recipe": "camera", "epochs": 20, "seed": seed, "init": seed + offset,
                 "students": ["bn16-late@mix:0.5:4", "bn32@mix:0.5:4"]} for seed in range(3)]
        out += [{"arch": "bn16-late", "recipe": "camera", "epochs": 20, "seed": seed, "init": seed + offset}
                for seed in range(3)]
    return out


def jobs_round7() -> list[dict]:
    """Seventh round: the product's final method (Hinton's loss on the soft targets of the clean
    images, `+kd-offline`) on round six's initialisations, so that it has 15 paired runs."""
    return [{"arch": "bn32", "recipe": "camera", "epochs": 20, "seed": seed, "init": seed + offset,
             "students": ["bn16-late@offline"]} for offset in (30, 40) for seed in range(3)]


def jobs_round8() -> list[dict]:
    """Eighth round: how high occlusion can go, and what it costs clean, for bn_cnn and lite's
    classifier: occlusion on 25 % (camera-occ), 50 % and all of the images."""
    return [{"arch": arch, "recipe": recipe, "epochs": 20, "seed": seed}
            for seed in range(3) for arch in ("bn32", "bn16-late")
            for recipe in ("camera-occ", "occ50", "occ50-kept", "occ100")]


def jobs_round9() -> list[dict]:
    """Ninth round: does more capacity or more epochs lift the occlusion ceiling of round eight?"""
    return ([{"arch": "bn64", "recipe": recipe, "epochs": 20, "seed": seed}
             for seed in range(3) for recipe in ("camera-occ", "occ100")]
            + [{"arch": "bn32", "recipe": "occ100", "epochs": 40, "seed": seed} for seed in range(3)])


def load_data(pack_path: Path, device: str) -> dict:
    import torch

    pack = np.load(pack_path)

    def tensor(a, dtype=torch.float32):
        return torch.as_tensor(np.asarray(a), dtype=dtype, device=device)

    data = {"x": tensor(pack["fit_x"])[:, None], "y": tensor(pack["fit_y"], torch.long),
            "hold_x": tensor(pack["hold_x"])[:, None], "hold_y": tensor(pack["hold_y"], torch.long)}
    data["stress_y"] = data["hold_y"][tensor(pack["stress_rows"], torch.long)]
    if "hold_groups" in pack.files:
        data["hold_groups"] = tensor(pack["hold_groups"], torch.long)
    data["shifts"] = {k[len("shift_"):]: tensor(pack[k])[:, None] for k in pack.files if k.startswith("shift_")}
    for seed in range(3):
        data[f"train_idx_{seed}"] = tensor(pack[f"train_idx_{seed}"], torch.long)
        data[f"val_idx_{seed}"] = tensor(pack[f"val_idx_{seed}"], torch.long)
    return data


def run_job(job: dict, data: dict) -> list[dict]:
    import torch

    init = job.get("init", job["seed"])  # initialisation and augmentation draws; "seed" picks the split
    torch.manual_seed(init)
    recipe = RECIPES[job["recipe"]]
    results = []
    started = time.perf_counter()
    net = build_net(ARCHS[job["arch"]]).to(data["x"].device)
    net, ema, info = train_one(net, data, job["seed"], recipe, job["epochs"], rng_seed=init)
    base = {"arch": job["arch"], "recipe": job["recipe"], "epochs": job["epochs"], "seed": job["seed"], "init": init,
            "macs_m": count_macs(net), "params": sum(p.numel() for p in net.parameters()), **info}
    results.append({**base, "variant": "selected", "seconds": time.perf_counter() - started, **scores(net, data)})
    results.append({**base, "variant": "ema", **scores(ema, data)})
    for student in job.get("students", []):  # "arch", "arch@offline", "arch@offline:alpha[:temperature]"
        student_arch, _, mode = student.partition("@")
        mode, _, alpha = mode.partition(":")
        alpha, _, temperature = alpha.partition(":")
        started = time.perf_counter()
        torch.manual_seed(init)
        student = build_net(ARCHS[student_arch]).to(data["x"].device)
        net.eval()
        student, s_ema, s_info = train_one(student, data, job["seed"], recipe, job["epochs"], teacher=net,
                                           kd_alpha=float(alpha or 0.5), kd_temperature=float(temperature or 4),
                                           offline=mode == "offline", rng_seed=init, mix=mode == "mix")
        tag = ("+kd" + {"offline": "-offline", "mix": "-mix"}.get(mode, "") + (f"{float(alpha):g}" if alpha else "")
               + (f"-T{float(temperature):g}" if temperature else ""))
        s_base = {"arch": student_arch, "recipe": job["recipe"] + tag, "epochs": job["epochs"], "seed": job["seed"], "init": init,
                  "macs_m": count_macs(student), "params": sum(p.numel() for p in student.parameters()), **s_info}
        results.append({**s_base, "variant": "selected", "seconds": time.perf_counter() - started,
                        **scores(student, data)})
        results.append({**s_base, "variant": "ema", **scores(s_ema, data)})
    return results


def worker(args) -> None:
    rank, job_list, pack_path, out_path, device, deadline, train_rows = args
    import torch

    torch.backends.cudnn.benchmark = True
    torch.backends.cuda.matmul.allow_tf32 = True
    torch.backends.cudnn.allow_tf32 = True
    data = load_data(Path(pack_path), device)
    if train_rows:
        for seed in range(3):
            data[f"train_idx_{seed}"] = data[f"train_idx_{seed}"][:train_rows]
    for job in job_list:
        if time.time() > deadline:
            print(f"[{rank}] out of time, skipping {job}", flush=True)
            continue
        for row in run_job(job, data):
            line = json.dumps(row)
            with open(out_path, "a") as f:
                f.write(line + "\n")
            print(f"[{rank}] {row['arch']}/{row['recipe']}/{row['epochs']}ep seed {row['seed']} {row['variant']}: "
                  f"clean {100 * row['clean']:.2f} robust {100 * row['robust_mean']:.2f} "
                  f"worst {row['worst_kind']} {100 * row['worst']:.1f} ({row.get('seconds', 0):.0f} s)", flush=True)


def summarise(path: Path) -> None:
    rows = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault((r["arch"], r["recipe"], r["epochs"], r["variant"]), []).append(r)
    print("| arch | recipe | epochs | weights | M MACs | runs (seeds) | clean % mean / worst | holdout groups wrong | robust mean % | worst kind % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    for (arch, recipe, epochs, variant), rs in sorted(groups.items()):
        clean = [r["clean"] for r in rs]
        worst = min(rs, key=lambda r: r["worst"])
        seeds = ",".join(str(s) for s in sorted({r.get("init", r["seed"]) for r in rs}))
        print(f"| {arch} | {recipe} | {epochs} | {variant} | {rs[0]['macs_m']:.2f} | {len(rs)} ({seeds}) | "
              f"{100 * np.mean(clean):.2f} / {100 * min(clean):.2f} | "
              f"{'/'.join(str(r['groups_wrong']) for r in rs) if all('groups_wrong' in r for r in rs) else '-'} | "
              f"{100 * np.mean([r['robust_mean'] for r in rs]):.2f} | "
              f"{worst['worst_kind']} {100 * worst['worst']:.1f} |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    p_pack = sub.add_parser("pack", help="build the data pack from the real training file")
    p_pack.add_argument("path", type=Path)
    p_run = sub.add_parser("run", help="run the screen (PyTorch)")
    p_run.add_argument("pack", type=Path)
    p_run.add_argument("--out", type=Path, default=Path("screen.jsonl"))
    p_run.add_argument("--workers", type=int, default=6)
    p_run.add_argument("--round", type=int, default=1, choices=(1, 2, 3, 4, 5, 6, 7, 8, 9), help="which job list")
    p_run.add_argument("--seconds", type=float, default=400, help="start no job after this")
    p_run.add_argument("--device", default="cuda")
    p_run.add_argument("--limit", type=int, default=0, help="only the first N jobs (a local dry run)")
    p_run.add_argument("--epochs", type=int, default=0, help="override epochs (a local dry run)")
    p_run.add_argument("--train-rows", type=int, default=0, help="train on this many rows only (a local dry run)")
    p_sum = sub.add_parser("summary", help="the table from a results file")
    p_sum.add_argument("results", type=Path)
    args = parser.parse_args()
    if args.command == "pack":
        build_pack(args.path)
        return
    if args.command == "summary":
        summarise(args.results)
        return
    import multiprocessing as mp

    job_list = {1: jobs, 2: jobs_round2, 3: jobs_round3, 4: jobs_round4, 5: jobs_round5, 6: jobs_round6, 7: jobs_round7,
                8: jobs_round8, 9: jobs_round9}[args.round]()[: args.limit or None]
    if args.epochs:
        job_list = [{**j, "epochs": args.epochs} for j in job_list]
    deadline = time.time() + args.seconds
    shares = [job_list[i::args.workers] for i in range(args.workers)]
    ctx = mp.get_context("spawn")
    with ctx.Pool(args.workers) as pool:
        pool.map(worker, [(i, share, str(args.pack), str(args.out), args.device, deadline, args.train_rows)
                          for i, share in enumerate(shares) if share])
    summarise(args.out)


if __name__ == "__main__":
    main()
