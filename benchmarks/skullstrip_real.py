"""Skull strip on every real head in ../shared/data: learned (default) vs deepbet vs classical.

    python benchmarks/skullstrip_real.py [--folds build/skullstrip-cache/folds] [--no-classical]

3D: Dice of each method's mask against each head's reference brain mask, and seconds per volume
(the learned method's first call includes loading its networks). 2D: every single slice cut from
the heads in every plane that holds at least 1,000 reference brain pixels, stripped on its own:
median and 10th-percentile Dice. Tumour scans: the share of tumour voxels inside the mask.

With ``--folds DIR`` each head's 2D score comes from the leave-one-head-out model that never saw
it (``DIR/without_<head>.pt``, from ``scripts/train_skullstrip_model.py --exclude``); without it
the shipped model is used and those rows are in-sample (marked "in-sample"). deepbet is the peer
and also what the learned 3D method runs; the "deepbet" row is it alone, without this package's
enhancing-lesion rule. The classical method was tuned on Colin27: its Colin27 rows are in-sample.
"""

import argparse
import functools
import time
from pathlib import Path

import numpy as np
from _bench import print_table

from napari_brainseg import skullstrip_learned as learned
from napari_brainseg.io import read
from napari_brainseg.skullstrip import include_enhancing, run_skull_strip, skull_strip

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"
REAL = SHARED / "real"
HEADS = {  # name: (image, reference brain mask, fold name)
    "Colin27": (SHARED / "colin27" / "ch2.nii.gz", SHARED / "colin27" / "ch2bet.nii.gz", "colin27"),
    "ITK T1": (REAL / "itk_t1_head.nii.gz", REAL / "itk_t1_head_brainmask.nii.gz", "itk"),
    "ROBEX T1": (REAL / "robex_t1_head.nii.gz", REAL / "robex_t1_head_brainmask.nii.gz", "robex"),
}
TUMOURS = {
    f"mrbraintumor{i}": (REAL / f"mrbraintumor{i}_cet1.nii.gz",
                         REAL / f"mrbraintumor{i}_cet1_tumour.nii.gz") for i in (1, 2)
}
PLANES = {"axial": 0, "coronal": 1, "sagittal": 2}


def dice(a, b):
    s = a.sum() + b.sum()
    return 1.0 if s == 0 else 2.0 * np.logical_and(a, b).sum() / s


def timed(fn):
    t = time.perf_counter()
    out = fn()
    return out, time.perf_counter() - t


def deepbet_only(vol):
    return learned.strip_volume(vol.data, vol.affine)


def learned_3d(vol):
    return run_skull_strip(vol.data, vol.spacing, method="learned", affine=vol.affine)


def classical_3d(vol):
    return run_skull_strip(vol.data, vol.spacing, method="classical", keep_enhancing=False)


def slice_scores(vol, ref, strip2d, volume_mask=None):
    """Per plane: (median, p10, n, median seconds) of 2D Dice over slices with >= 1000 px.

    With ``volume_mask`` (a 3D mask) its slices are scored instead of stripping each slice.
    """
    out = {}
    for plane, ax in PLANES.items():
        sp = tuple(s for k, s in enumerate(vol.spacing) if k != ax)
        dices, secs = [], []
        for i in range(vol.data.shape[ax]):
            r = np.take(ref, i, axis=ax)
            if r.sum() < 1000:
                continue
            if volume_mask is not None:
                m, s = np.take(volume_mask, i, axis=ax), 0.0
            else:
                m, s = timed(functools.partial(strip2d, np.take(vol.data, i, axis=ax), sp))
            dices.append(dice(m, r))
            secs.append(s)
        d = np.array(dices)
        out[plane] = (float(np.median(d)), float(np.percentile(d, 10)), len(d),
                      float(np.median(secs)))
    return out


def learned_2d(model_path):
    def strip(img, sp):
        m = learned.strip_slice(img, sp, model_path)
        return include_enhancing(m, img, sp)
    return strip


def thicken(data, spacing, mm=6.0):
    """Box-average along Z (display axis 0) to ``mm`` slices: a thick-slice axial acquisition."""
    k = max(2, int(round(mm / spacing[0])))
    n = data.shape[0] // k
    out = data[: n * k].reshape(n, k, *data.shape[1:]).mean(axis=1)
    return out, (spacing[0] * k, *spacing[1:])


def thick_rows(vol, ref, name, model_path):
    """Learned 3D vs the 2D network slice by slice on a 6 mm thick-slice version of a head."""
    from napari_brainseg.volume import Volume

    data, sp = thicken(vol.data, vol.spacing)
    tref = thicken(ref.astype(np.float32), vol.spacing)[0] > 0.5
    affine = None
    if vol.affine is not None:
        affine = vol.affine.copy()
        affine[:3, 0] *= sp[0] / vol.spacing[0]
    thick = Volume(data.astype(np.float32), sp, affine)
    rows = []
    m, s = timed(lambda: learned_3d(thick))
    rows.append([name, f"{data.shape} @ {tuple(round(x, 2) for x in sp)}", "learned 3D (deepbet)",
                 round(dice(m, tref), 4), round(s, 1)])
    strip = learned_2d(model_path)
    m, s = timed(lambda: np.stack([strip(data[z], sp[1:]) if data[z].max() > data[z].min()
                                   else np.zeros(data.shape[1:], bool)
                                   for z in range(data.shape[0])]))
    rows.append([name, "", "learned 2D, each axial slice", round(dice(m, tref), 4), round(s, 1)])
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--folds", type=Path, help="folder of leave-one-head-out 2D models")
    ap.add_argument("--no-classical", action="store_true", help="skip the classical rows")
    args = ap.parse_args()

    rows3d, rows2d, rows_t, rows_thick = [], [], [], []
    first = True
    for name, (img_path, ref_path, fold) in HEADS.items():
        (vol,) = read(img_path, with_mask=False)
        (rv,) = read(ref_path, with_mask=False)
        ref = rv.data > 0
        ref_cm3 = ref.sum() * np.prod(vol.spacing) / 1000
        if first:  # the first call loads deepbet's networks: count it, as a user would wait
            learned._deepbet.cache_clear()
            learned.load_strip_model.cache_clear()
            first = False
        methods = {"learned (default)": learned_3d, "deepbet 1.0.2 (peer)": deepbet_only}
        if not args.no_classical:
            methods["classical"] = classical_3d
        peer3d = None
        for mname, fn in methods.items():
            m, s = timed(functools.partial(fn, vol))
            if mname.startswith("deepbet"):
                peer3d = m
            tag = " (in-sample)" if mname == "classical" and name == "Colin27" else ""
            geom = f"{vol.data.shape} @ {tuple(round(x, 2) for x in vol.spacing)}"
            rows3d.append([name + tag, geom,
                           f"{ref_cm3:,.0f}", mname, round(dice(m, ref), 4), round(s, 1)])
        if args.folds:
            model = str(args.folds / f"without_{fold}.pt")
            label = "learned 2D (held out)"
        else:
            model, label = None, "learned 2D (in-sample)"
        methods2d = {label: learned_2d(model)}
        if not args.no_classical:
            methods2d["classical 2D" + (" (in-sample)" if name == "Colin27" else "")] = (
                lambda img, sp: skull_strip(img, sp))
        rows_thick += thick_rows(vol, ref, name, model)
        for mname, fn in methods2d.items():
            sc = slice_scores(vol, ref, fn)
            rows2d.append([name, mname] + [f"{sc[p][0]:.3f} / {sc[p][1]:.3f} ({sc[p][2]})"
                                           for p in PLANES]
                          + [f"{1000 * np.median([sc[p][3] for p in PLANES]):.0f}"])
        # The peer's 3D mask cut into the same slices: what a stripper that sees the whole
        # volume reaches on each slice (a reference for the 2D rows, not a 2D method).
        sc = slice_scores(vol, ref, None, peer3d)
        rows2d.append([name, "deepbet 3D mask, sliced (peer)"]
                      + [f"{sc[p][0]:.3f} / {sc[p][1]:.3f} ({sc[p][2]})" for p in PLANES]
                      + ["-"])

    for name, (img_path, t_path) in TUMOURS.items():
        (vol,) = read(img_path, with_mask=False)
        (tv,) = read(t_path, with_mask=False)
        tum = tv.data > 0
        methods = {"learned (default)": learned_3d, "deepbet 1.0.2 (peer)": deepbet_only}
        if not args.no_classical:
            methods["classical"] = classical_3d
        for mname, fn in methods.items():
            m, s = timed(functools.partial(fn, vol))
            rows_t.append([name, mname, f"{100 * (m & tum).sum() / tum.sum():.2f} %",
                           f"{m.sum() * np.prod(vol.spacing) / 1000:,.0f}", round(s, 1)])
        # 2D, axial slices through the tumour, each stripped on its own.
        model = None  # the tumour scans are never trained on: the shipped model is held out here
        inside = total = 0
        sp = vol.spacing[1:]
        for z in np.flatnonzero(tum.any(axis=(1, 2))):
            m = learned_2d(model)(vol.data[z], sp)
            inside += (m & tum[z]).sum()
            total += tum[z].sum()
        rows_t.append([name, "learned 2D, axial slices", f"{100 * inside / total:.2f} %", "", ""])

    print("3D: Dice against each head's reference brain mask (references follow different "
          "conventions; their volumes are given)\n")
    print_table(["head", "shape @ mm", "reference cm³", "method", "Dice", "s / volume"], rows3d)
    print("\n2D: single slices with >= 1,000 reference brain pixels, median / p10 Dice (n)\n")
    print_table(["head", "method", "axial", "coronal", "sagittal", "ms / slice"], rows2d)
    print("\nThick slices: each head box-averaged to about 6 mm axial slices (partial volume), "
          "against its reference averaged the same way\n")
    print_table(["head", "shape @ mm", "method", "Dice", "s / volume"], rows_thick)
    print("\nTumour scans (never trained on): tumour voxels inside the brain mask\n")
    print_table(["scan", "method", "tumour inside", "brain cm³", "s / volume"], rows_t)


if __name__ == "__main__":
    main()
