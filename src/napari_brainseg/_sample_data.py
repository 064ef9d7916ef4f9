"""napari sample data adapter: seeded phantoms (image + ground-truth tumour labels)."""

from .synthetic import make_phantom


def _sample(tumour_type: str, seed: int) -> list[tuple]:
    ph = make_phantom((512, 512), tumour_type=tumour_type, seed=seed, skull=True)
    meta = {"tumour_type": ph.tumour_type, "source": "napari-brainseg synthetic phantom"}
    return [
        (ph.image, {"name": f"phantom {ph.tumour_type}", "colormap": "gray", "metadata": meta},
         "image"),
        (ph.tumour, {"name": f"phantom {ph.tumour_type} tumour (truth)", "metadata": meta,
                     "opacity": 0.5}, "labels"),
    ]


def meningioma_sample() -> list[tuple]:
    """Phantom slice with a meningioma and its ground-truth labels."""
    return _sample("meningioma", 1)


def glioma_sample() -> list[tuple]:
    """Phantom slice with a glioma and its ground-truth labels."""
    return _sample("glioma", 2)


def pituitary_sample() -> list[tuple]:
    """Phantom slice with a pituitary tumour and its ground-truth labels."""
    return _sample("pituitary", 3)
