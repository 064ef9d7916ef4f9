"""Train the 2D skull-strip U-Net (seeded, resumable): real heads, all planes, synthetic variety.

    python scripts/train_skullstrip_model.py --out build/stage1.pt            # stage 1, all heads
    python scripts/train_skullstrip_model.py --init build/stage1.pt \
        --steps 500 --lr 1e-3 --hard-weight 3                                # stage 2: shipped
    python scripts/train_skullstrip_model.py --exclude itk ...               # a LOHO fold
    python scripts/train_skullstrip_model.py --resume ...                    # go on from .last.pt

The shipped model is stage 1 (1,500 steps, uniform slices) followed by stage 2 (500 steps from
those weights, slices where the brain is under 30 % of the head drawn 4x as often: the skull
base, face and top of the head, where stage 1 failed most).

Training heads (../shared/data): Colin27 (BET reference), ITK T1 head and ROBEX T1 head (their
reference masks), and MRHead with a deepbet pseudo-mask (it has no reference; it is never scored).
The two tumour scans are never trained on: they are the only real-tumour validation.

Every slice in every plane is put on the network's canvas (``skullstrip_learned.to_canvas``), from
the native volume and from thick-slice versions (3-7 mm box averages along one axis: partial
volume, as in clinical 2D acquisitions). Each batch is augmented on the fly, SynthStrip-style:
rotation, zoom, stretch, flips, random intensity curves (sometimes non-monotone), gamma, bias
field, blur, noise, skull-stripped inputs, and contrast-enhanced structures: bright dura and
vessels outside the brain (not brain) and enhancing lesions at the brain's edge (brain, so that
tumours stay inside the mask).

A leave-one-head-out fold (``--exclude``) leaves that head's every slice out; the benchmark
``benchmarks/skullstrip_real.py --folds DIR`` scores each head only with the fold that never saw it.
"""

import argparse
import json
import logging
import time
from pathlib import Path

import numpy as np
import torch
from scipy import ndimage as ndi
from torch.nn import functional as F  # noqa: N812

from napari_brainseg.io import read
from napari_brainseg.model import UNet, UNetConfig, load_checkpoint, save_checkpoint
from napari_brainseg.skullstrip_learned import (
    CANVAS,
    canvas_geometry,
    normalise_slice,
    to_canvas,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = ROOT.parent / "shared" / "data"
DEFAULT_OUT = ROOT / "src" / "napari_brainseg" / "models" / "skullstrip_unet2d.pt"
CACHE = ROOT / "build" / "skullstrip-cache"
HEADS = {
    "colin27": (SHARED / "colin27" / "ch2.nii.gz", SHARED / "colin27" / "ch2bet.nii.gz"),
    "itk": (SHARED / "real" / "itk_t1_head.nii.gz",
            SHARED / "real" / "itk_t1_head_brainmask.nii.gz"),
    "robex": (SHARED / "real" / "robex_t1_head.nii.gz",
              SHARED / "real" / "robex_t1_head_brainmask.nii.gz"),
    "mrhead": (SHARED / "real" / "mrhead_t1.nii.gz", None),  # deepbet pseudo-mask
}
SCORED_HEADS = ("colin27", "itk", "robex")
CONFIG = UNetConfig(base_filters=8, batch_norm=True, dropout=(0.0, 0.0, 0.0, 0.1, 0.1))

log = logging.getLogger("train_skullstrip")


def load_head(name: str) -> tuple[np.ndarray, np.ndarray, tuple[float, ...]]:
    """Image, bool brain mask and spacing of a training head (display orientation)."""
    img_path, ref_path = HEADS[name]
    (vol,) = read(img_path, with_mask=False)
    if ref_path is not None:
        (ref,) = read(ref_path, with_mask=False)
        return vol.data, ref.data > 0, vol.spacing
    cached = CACHE / f"{name}_deepbet_mask.npy"
    if cached.is_file():
        return vol.data, np.load(cached), vol.spacing
    from napari_brainseg.skullstrip_learned import strip_volume

    mask = strip_volume(vol.data, vol.affine)
    CACHE.mkdir(parents=True, exist_ok=True)
    np.save(cached, mask)
    return vol.data, mask, vol.spacing


def thicken(img: np.ndarray, mask: np.ndarray, spacing, axis: int, mm: float):
    """Box-average ``k`` slices along ``axis`` (partial volume of a thick-slice acquisition)."""
    k = max(2, int(round(mm / spacing[axis])))
    n = img.shape[axis] // k
    shp = list(img.shape)
    shp[axis:axis + 1] = [n, k]
    cut = [slice(None)] * 3
    cut[axis] = slice(0, n * k)
    im = img[tuple(cut)].reshape(shp).mean(axis=axis + 1)
    ma = mask[tuple(cut)].reshape(shp).mean(axis=axis + 1) > 0.5
    sp = list(spacing)
    sp[axis] *= k
    return im.astype(np.float32), ma, tuple(sp)


def slices_of(img, mask, spacing, per_axis: int, rng: np.random.Generator):
    """Canvas (image, mask) pairs: up to ``per_axis`` brain slices per axis, plus a few empty."""
    out = []
    for axis in range(3):
        sp2 = tuple(s for k, s in enumerate(spacing) if k != axis)
        area = mask.sum(axis=tuple(k for k in range(3) if k != axis))
        others = tuple(k for k in range(3) if k != axis)
        head = (img > np.percentile(img, 60)).sum(axis=others)
        brain_idx = np.flatnonzero(area >= 30)
        empty_idx = np.flatnonzero((area == 0) & (head > 200))
        pick = brain_idx[np.linspace(0, len(brain_idx) - 1, min(per_axis, len(brain_idx)))
                         .round().astype(int)] if len(brain_idx) else brain_idx
        extra = rng.choice(empty_idx, min(len(empty_idx), max(1, per_axis // 12)),
                           replace=False) if len(empty_idx) else []
        for i in list(pick) + list(extra):
            sl = np.take(img, i, axis=axis)
            ms = np.take(mask, i, axis=axis)
            norm = normalise_slice(sl)
            geo = canvas_geometry(norm, sp2)
            out.append((to_canvas(norm, geo), to_canvas(ms.astype(np.float32), geo) > 0.5))
    return out


def build_bank(heads, seed: int):
    rng = np.random.default_rng(seed)
    images, masks = [], []
    for name in heads:
        img, mask, sp = load_head(name)
        pairs = slices_of(img, mask, sp, 70, rng)
        for axis in range(3):
            ti, tm, tsp = thicken(img, mask, sp, axis, float(rng.uniform(3.0, 7.0)))
            pairs += slices_of(ti, tm, tsp, 30, rng)
        log.info("%s: %d canvas slices", name, len(pairs))
        images += [p[0] for p in pairs]
        masks += [p[1] for p in pairs]
    return np.stack(images), np.stack(masks)


# --------------------------------------------------------------------------- augmentation


def _smooth_noise(rng, shape, sigma):
    n = ndi.gaussian_filter(rng.standard_normal(shape).astype(np.float32), sigma)
    return n / (n.std() + 1e-6)


def _disk(shape, cy, cx, ry, rx, angle):
    yy, xx = np.mgrid[: shape[0], : shape[1]].astype(np.float32)
    c, s = np.cos(angle), np.sin(angle)
    u = ((yy - cy) * c + (xx - cx) * s) / ry
    v = (-(yy - cy) * s + (xx - cx) * c) / rx
    return u * u + v * v


def add_enhancement(img, mask, rng):
    """Contrast-enhanced T1 look: bright dura/vessels (not brain) and edge lesions (brain)."""
    img = img.copy()
    mask = mask.copy()
    head = img > 0.08
    if rng.random() < 0.6:  # dura and sinuses: a broken bright rim just outside the brain
        r = int(rng.integers(1, 4))
        shell = ndi.binary_dilation(mask, iterations=r) & ~mask & head
        seg = shell & (_smooth_noise(rng, img.shape, 3.0) > rng.uniform(0.0, 1.0))
        img[seg] = np.maximum(img[seg], rng.uniform(0.9, 1.4))
    for _ in range(int(rng.integers(0, 7))):  # vessels, choroid plexus, fat specks
        ys, xs = np.nonzero(head)
        if len(ys) == 0:
            break
        j = rng.integers(len(ys))
        r = rng.uniform(0.8, 2.5)
        d = _disk(img.shape, ys[j], xs[j], r, r * rng.uniform(1, 4), rng.uniform(0, np.pi)) < 1
        img[d] = np.maximum(img[d], rng.uniform(0.9, 1.4))
    if mask.sum() > 300 and rng.random() < 0.4:  # an enhancing lesion touching the brain's edge
        depth = ndi.distance_transform_edt(mask)
        ys, xs = np.nonzero((depth > 0) & (depth < 12))
        j = rng.integers(len(ys))
        ry = rng.uniform(4, 16)
        q = _disk(img.shape, ys[j], xs[j], ry, ry * rng.uniform(0.6, 1.4), rng.uniform(0, np.pi))
        les = (q < 1) & head
        tex = 1.0 + 0.1 * _smooth_noise(rng, img.shape, 1.5)
        if rng.random() < 0.5:  # ring with a dark necrotic core
            img[les] = np.where(q[les] > 0.45, rng.uniform(0.9, 1.3), rng.uniform(0.1, 0.35))
        else:  # homogeneous avid enhancement (meningioma-like)
            img[les] = rng.uniform(0.85, 1.3)
        img[les] *= tex[les]
        mask |= les
    return img, mask


def _lut(img, rng):
    xs = np.linspace(0, 1.5, 7)
    if rng.random() < 0.2:  # non-monotone: another contrast altogether
        ys = rng.uniform(0, 1.2, 7)
        ys[0] = 0.0
    else:
        ys = np.concatenate([[0.0], np.sort(rng.uniform(0, 1.3, 6))])
    return np.interp(img, xs, ys).astype(np.float32)


def augment(img, mask, rng):
    """One training sample: geometry, CE structures, contrast, bias, blur, noise; renormalised."""
    if rng.random() < 0.5:
        img, mask = add_enhancement(img, mask, rng)
    if rng.random() < 0.1:  # an already skull-stripped input
        img = np.where(mask, img, 0.0).astype(np.float32)
    # Geometry: rotation, zoom, stretch, shift, mirror (one affine, image and mask together).
    a = np.deg2rad(rng.uniform(-20, 20))
    zoom = rng.uniform(0.8, 1.25) * np.array([rng.uniform(0.9, 1.1), 1.0])
    rot = np.array([[np.cos(a), -np.sin(a)], [np.sin(a), np.cos(a)]])
    mat = rot / zoom[:, None]
    if rng.random() < 0.5:
        mat = mat @ np.diag([1.0, -1.0])
    c = np.array(img.shape) / 2.0 - 0.5
    off = c - mat @ c + rng.uniform(-0.08, 0.08, 2) * img.shape[0]
    img = ndi.affine_transform(img, mat, off, order=1, cval=0.0)
    mask = ndi.affine_transform(mask.astype(np.float32), mat, off, order=1, cval=0.0) > 0.5
    # Contrast.
    if rng.random() < 0.5:
        img = _lut(np.clip(img, 0, 1.5), rng)
    if rng.random() < 0.5:
        img = np.clip(img, 0, None) ** np.exp(rng.normal(0, 0.35))
    if rng.random() < 0.7:
        field = ndi.zoom(rng.normal(0, rng.uniform(0.1, 0.4), (4, 4)), img.shape[0] / 4, order=3)
        img = img * np.exp(field[: img.shape[0], : img.shape[1]])
    if rng.random() < 0.25:
        img = ndi.gaussian_filter(img, rng.uniform(0.4, 1.2))
    if rng.random() < 0.6:
        img = img + rng.normal(0, rng.uniform(0.005, 0.06), img.shape)
        if rng.random() < 0.5:  # magnitude images: Rician-like background
            img = np.abs(img)
    return normalise_slice(img.astype(np.float32)), mask


def batch(images, masks, idx, rng):
    xs, ys = zip(*(augment(images[i], masks[i], rng) for i in idx), strict=True)
    return (torch.from_numpy(np.stack(xs))[:, None],
            torch.from_numpy(np.stack(ys).astype(np.float32))[:, None])


def loss_fn(logits, target):
    bce = F.binary_cross_entropy_with_logits(logits, target)
    p = torch.sigmoid(logits)
    inter = (p * target).sum((1, 2, 3))
    dice = 1 - (2 * inter + 1) / (p.sum((1, 2, 3)) + target.sum((1, 2, 3)) + 1)
    return bce + dice.mean()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--exclude", choices=SCORED_HEADS, help="leave this head out (a LOHO fold)")
    ap.add_argument("--steps", type=int, default=1800)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", type=Path)
    ap.add_argument("--resume", action="store_true", help="go on from OUT.last.pt")
    ap.add_argument("--init", type=Path, help="start from this model's weights (a second stage)")
    ap.add_argument("--hard-weight", type=float, default=0.0,
                    help="sample slices where the brain is under 30 %% of the head (skull base, "
                    "face, top of the head) 1 + this many times as often (default 0: uniform)")
    args = ap.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s")
    torch.set_num_threads(args.threads)
    out = args.out or (DEFAULT_OUT if args.exclude is None
                       else CACHE / "folds" / f"without_{args.exclude}.pt")
    last = out.with_suffix(".last.pt")
    heads = [h for h in HEADS if h != args.exclude]
    t0 = time.perf_counter()
    images, masks = build_bank(heads, args.seed)
    log.info("bank: %d slices from %s (%.0f s)", len(images), heads, time.perf_counter() - t0)

    head_px = (images > 0.12).sum(axis=(1, 2))
    hard = masks.sum(axis=(1, 2)) < 0.3 * np.maximum(head_px, 1)
    weights = 1.0 + args.hard_weight * hard
    weights /= weights.sum()
    log.info("%d of %d slices count as hard (brain under 30 %% of the head)", hard.sum(), len(hard))

    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed + 1)
    model = UNet(CONFIG)
    if args.init is not None:
        model.load_state_dict(load_checkpoint(args.init).model.state_dict())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=1e-4)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, args.lr, total_steps=args.steps,
                                                pct_start=0.05)
    step, elapsed = 0, 0.0
    if args.resume and last.is_file():
        ck = load_checkpoint(last)
        model.load_state_dict(ck.model.state_dict())
        opt.load_state_dict(ck.optimizer["opt"])
        sched.load_state_dict(ck.optimizer["sched"])
        step, elapsed = int(ck.resume["step"]), float(ck.resume["elapsed"])
        rng.bit_generator.state = json.loads(ck.resume["np_rng"])
        torch.set_rng_state(ck.resume["torch_rng"])
        log.info("resumed at step %d", step)
    training = {"task": "skull-strip", "canvas": CANVAS, "heads": heads,
                "excluded": args.exclude, "steps": args.steps, "batch_size": args.batch_size,
                "lr": args.lr, "seed": args.seed, "bank_slices": len(images),
                "init": str(args.init) if args.init else None, "hard_weight": args.hard_weight,
                "script": "scripts/train_skullstrip_model.py"}
    model.train()
    t_start = time.perf_counter() - elapsed
    running = []
    while step < args.steps:
        idx = (rng.integers(0, len(images), args.batch_size) if args.hard_weight == 0
               else rng.choice(len(images), args.batch_size, p=weights))
        x, y = batch(images, masks, idx, rng)
        loss = loss_fn(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        sched.step()
        step += 1
        running.append(float(loss))
        if step % 50 == 0 or step == args.steps:
            log.info("step %d/%d loss %.4f lr %.2e (%.0f s)", step, args.steps,
                     np.mean(running), sched.get_last_lr()[0], time.perf_counter() - t_start)
            running = []
        if step % 200 == 0 or step == args.steps:
            save_checkpoint(last, model, training=training,
                            optimizer={"opt": opt.state_dict(), "sched": sched.state_dict()},
                            resume={"step": step, "elapsed": time.perf_counter() - t_start,
                                    "np_rng": json.dumps(rng.bit_generator.state),
                                    "torch_rng": torch.get_rng_state()})
    model.eval()
    training["seconds"] = round(time.perf_counter() - t_start, 1)
    save_checkpoint(out, model, normalisation={"method": "skullstrip_learned.normalise_slice"},
                    training=training)
    log.info("saved %s (%.0f s training)", out, training["seconds"])


if __name__ == "__main__":
    main()
