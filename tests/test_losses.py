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


# --------------------------------------------------------------------------- modules


def test_make_loss_builds_documented_modules():
    from napari_brainseg.losses import (
        BCELoss,
        DiceBCELoss,
        DiceFocalLoss,
        DiceLoss,
        FocalLoss,
        TverskyLoss,
    )

    kinds = {"bce": BCELoss, "dice": DiceLoss, "focal": FocalLoss, "tversky": TverskyLoss,
             "dice+bce": DiceBCELoss, "dice+focal": DiceFocalLoss}
    assert set(kinds) == set(LOSS_NAMES)
    for name, kind in kinds.items():
        loss = make_loss(name)
        assert isinstance(loss, torch.nn.Module) and type(loss) is kind, name
        assert kind.__doc__ and "Raises" in kind.__doc__
    assert "alpha=0.3, beta=0.7" in repr(make_loss("tversky"))  # the documented defaults


@pytest.mark.parametrize("case", range(len(CASES)))
def test_modules_equal_monai_with_monai_parameter_names(case):
    from napari_brainseg import losses

    x, t = CASES[case]
    pairs = [
        (losses.DiceLoss(smooth_nr=1e-5, smooth_dr=1e-3),
         DiceLoss(sigmoid=True, smooth_nr=1e-5, smooth_dr=1e-3)),
        (losses.FocalLoss(gamma=1.5, alpha=0.25),
         FocalLoss(gamma=1.5, alpha=0.25, use_softmax=False)),
        (losses.TverskyLoss(alpha=0.3, beta=0.7, smooth_nr=1e-4, smooth_dr=1e-4),
         TverskyLoss(sigmoid=True, alpha=0.3, beta=0.7, smooth_nr=1e-4, smooth_dr=1e-4)),
    ]
    for ours, ref in pairs:
        assert torch.allclose(ours(x, t), ref(x, t), atol=1e-5), ours


def test_modules_equal_the_functions_bit_for_bit():
    from napari_brainseg import losses

    x, t = CASES[0]
    assert torch.equal(make_loss("dice+focal", alpha=0.25, gamma=3.0, lambda_dice=0.5,
                                 lambda_other=2.0)(x, t),
                       0.5 * dice_loss(x, t) + 2.0 * focal_loss(x, t, 3.0, 0.25))
    assert torch.equal(losses.DiceBCELoss(pos_weight=3.0)(x, t),
                       dice_loss(x, t) + bce_loss(x, t, 3.0))
    assert torch.equal(make_loss("tversky")(x, t), tversky_loss(x, t, 0.3, 0.7))


@pytest.mark.parametrize(
    ("build", "match"),
    [
        ("FocalLoss(gamma=float('nan'))", "gamma"),
        ("FocalLoss(gamma=-0.5)", "gamma"),
        ("FocalLoss(alpha=-0.1)", "alpha"),
        ("BCELoss(pos_weight=0)", "pos_weight"),
        ("BCELoss(pos_weight=float('inf'))", "pos_weight"),
        ("DiceLoss(smooth_nr=-1)", "smooth_nr"),
        ("TverskyLoss(beta=float('nan'))", "alpha and beta"),
        ("DiceBCELoss(lambda_bce=-1)", "lambda_bce"),
        ("DiceFocalLoss(lambda_dice=float('nan'))", "lambda_dice"),
        ("DiceFocalLoss(alpha=2)", "alpha"),
    ],
)
def test_modules_validate_their_parameters_when_built(build, match):
    from napari_brainseg import losses

    with pytest.raises(ValueError, match=match):
        eval(f"losses.{build}", {"losses": losses})


@pytest.mark.parametrize(
    ("config", "ignored"),
    [
        (LossConfig("bce", alpha=0.3), ["alpha=0.3"]),
        (LossConfig("dice", alpha=0.3, gamma=3.0), ["alpha=0.3", "gamma=3"]),
        (LossConfig("focal", beta=0.4, pos_weight=2.0), ["beta=0.4", "pos_weight=2"]),
        (LossConfig("tversky", gamma=1.0, lambda_dice=2.0), ["gamma=1", "lambda_dice=2"]),
        (LossConfig("focal", alpha=0.3, gamma=3.0), []),
        (LossConfig("dice+bce", pos_weight=2.0, lambda_other=0.5), []),
        (LossConfig("bce"), []),
    ],
)
def test_ignored_parameters_are_named(config, ignored, caplog):
    assert config.ignored() == ignored
    with caplog.at_level("WARNING", logger="napari_brainseg"):
        make_loss(config)
    warned = [r.getMessage() for r in caplog.records if r.name == "napari_brainseg.losses"]
    if ignored:
        assert len(warned) == 1 and f"the {config.name} loss ignores" in warned[0]
        assert all(item in warned[0] for item in ignored)
    else:
        assert warned == []


def test_cli_train_says_that_alpha_does_nothing_with_bce(tmp_path, capsys):
    from napari_brainseg.cli import main

    main(["sample-data", str(tmp_path / "d"), "--n", "4", "--size", "48x48"])
    capsys.readouterr()
    assert main(["train", str(tmp_path / "d"), "--out", str(tmp_path / "m.pt"), "--loss", "bce",
                 "--alpha", "0.3", "--epochs", "1", "--patch-size", "32", "--base-filters",
                 "2", "--batch-size", "4", "-q"]) == 0
    err = capsys.readouterr().err
    assert "the bce loss ignores alpha=0.3 (alpha applies to focal, tversky, dice+focal)" in err


def test_study_warns_about_alphas_of_a_loss_without_alpha():
    from napari_brainseg.study import StudyConfig

    cfg = StudyConfig(losses=["bce", "focal"], alphas={"bce": [None, 0.3], "dice": [0.5],
                                                       "focal": [None, 0.25]})
    assert cfg.ignored_alphas() == ["bce=none,0.3"]  # dice is not compared; focal takes alpha
    assert StudyConfig(gamma=3.0).loss_config("bce", None).ignored() == []
    assert StudyConfig(gamma=3.0).loss_config("focal", None).gamma == 3.0
