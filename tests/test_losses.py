import pytest
import torch
from monai.losses import DiceLoss, FocalLoss, TverskyLoss

from napari_brainseg.losses import (
    LOSS_NAMES,
    LossConfig,
    bce_loss,
    dice_loss,
    focal_loss,
    make_loss,
    tversky_loss,
)


def _case(seed, shape=(3, 1, 16, 20), empty_image=False):
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g) * 3
    target = (torch.rand(shape, generator=g) > 0.8).float()
    if empty_image:
        target[0] = 0
    return logits, target


CASES = [_case(0), _case(1, (1, 1, 8, 8)), _case(2, empty_image=True), _case(3, (2, 1, 33, 7))]


@pytest.mark.parametrize("case", range(len(CASES)))
def test_dice_equals_monai(case):
    x, t = CASES[case]
    ref = DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-5)(x, t)
    assert torch.allclose(dice_loss(x, t), ref, atol=1e-5)


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize(("gamma", "alpha"), [(2.0, None), (2.0, 0.25), (0.5, 0.75), (0.0, None)])
def test_focal_equals_monai(case, gamma, alpha):
    x, t = CASES[case]
    ref = FocalLoss(gamma=gamma, alpha=alpha, use_softmax=False)(x, t)
    assert torch.allclose(focal_loss(x, t, gamma, alpha), ref, atol=1e-5)


@pytest.mark.parametrize("case", range(len(CASES)))
@pytest.mark.parametrize(("alpha", "beta"), [(0.5, 0.5), (0.3, 0.7), (0.7, 0.3)])
def test_tversky_equals_monai(case, alpha, beta):
    x, t = CASES[case]
    ref = TverskyLoss(sigmoid=True, alpha=alpha, beta=beta, smooth_nr=1e-5, smooth_dr=1e-5)(x, t)
    assert torch.allclose(tversky_loss(x, t, alpha, beta), ref, atol=1e-5)


def test_focal_gamma0_no_alpha_is_bce():
    for x, t in CASES:
        assert torch.allclose(focal_loss(x, t, gamma=0.0), bce_loss(x, t), atol=1e-6)


def test_tversky_half_half_is_dice():
    for x, t in CASES:
        assert torch.allclose(tversky_loss(x, t, 0.5, 0.5), dice_loss(x, t), atol=1e-6)


def test_bce_pos_weight_matches_torch():
    x, t = CASES[0]
    ref = torch.nn.BCEWithLogitsLoss(pos_weight=torch.tensor(5.0))(x, t)
    assert torch.allclose(bce_loss(x, t, 5.0), ref)


def test_perfect_prediction_gives_small_loss():
    t = torch.zeros(1, 1, 8, 8)
    t[..., 2:5, 2:5] = 1
    x = (t * 2 - 1) * 20
    for name in LOSS_NAMES:
        assert make_loss(name)(x, t).item() < 1e-3, name


def test_combined_is_sum():
    x, t = CASES[0]
    assert torch.allclose(make_loss("dice+bce")(x, t), dice_loss(x, t) + bce_loss(x, t))
    assert torch.allclose(make_loss(LossConfig("dice+focal", alpha=0.25))(x, t),
                          dice_loss(x, t) + focal_loss(x, t, 2.0, 0.25))


def test_losses_are_differentiable_and_finite():
    x, t = CASES[0]
    x = x.clone().requires_grad_(True)
    for name in LOSS_NAMES:
        loss = make_loss(name, alpha=0.3 if name in ("tversky", "focal") else None)(x, t)
        (g,) = torch.autograd.grad(loss, x)
        assert torch.isfinite(loss) and torch.isfinite(g).all()


@pytest.mark.parametrize(
    ("fn", "kwargs", "match"),
    [
        (lambda: make_loss("hinge"), {}, "unknown loss"),
        (lambda: make_loss("focal", gamma=-1), {}, "gamma"),
        (lambda: make_loss("focal", alpha=1.5), {}, "alpha"),
        (lambda: make_loss("tversky", alpha=-0.1), {}, "alpha and beta"),
        (lambda: dice_loss(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 4, 5)), {}, "same shape"),
        (lambda: bce_loss(torch.zeros(4), torch.zeros(4)), {}, "N, C, H, W"),
    ],
)
def test_bad_options_and_shapes_raise(fn, kwargs, match):
    with pytest.raises(ValueError, match=match):
        fn()
