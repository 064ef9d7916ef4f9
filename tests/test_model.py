import io
import pickle

import pytest
import torch

from napari_brainseg.model import (
    CheckpointError,
    UNet,
    UNetConfig,
    count_parameters,
    load_checkpoint,
    save_checkpoint,
)


def test_study_unet_parameter_count():
    # The study's Keras U-Net read RGB PNGs: 3 input channels, 1,941,105 parameters.
    assert count_parameters(UNet(UNetConfig(in_channels=3))) == 1_941_105
    assert count_parameters(UNet()) == 1_940_817


@pytest.mark.parametrize(
    "shape", [(1, 1, 64, 64), (2, 1, 100, 77), (1, 1, 512, 800), (1, 1, 17, 16)])
def test_any_size_in_same_size_out(shape):
    model = UNet(UNetConfig(base_filters=4)).eval()
    with torch.no_grad():
        assert model(torch.randn(shape)).shape == shape


def test_bad_input_shape_message():
    with pytest.raises(ValueError, match=r"x\[None, None\]"):
        UNet(UNetConfig(base_filters=4))(torch.randn(64, 64))


def test_config_validation():
    with pytest.raises(ValueError, match="depth"):
        UNetConfig(depth=0)
    with pytest.raises(ValueError, match="dropout needs"):
        UNetConfig(depth=3)
    UNetConfig(depth=3, dropout=(0, 0, 0, 0.1), batch_norm=True)


def test_checkpoint_round_trip(tmp_path):
    cfg = UNetConfig(base_filters=4, depth=3, dropout=(0.0, 0.1, 0.1, 0.2), batch_norm=True)
    model = UNet(cfg).eval()
    path = save_checkpoint(tmp_path / "m.pt", model, normalisation={"method": "percentile"},
                           training={"loss": {"name": "focal", "alpha": None}, "epochs": 3},
                           metrics={"val_dice": 0.8})
    ck = load_checkpoint(path)
    assert ck.config == cfg and ck.metrics["val_dice"] == 0.8
    assert ck.training["loss"]["name"] == "focal"
    x = torch.randn(1, 1, 40, 40)
    with torch.no_grad():
        assert torch.equal(ck.model(x), model(x))


class _Evil:
    def __reduce__(self):
        return (exec, ("open('PWNED', 'w').write('x')",))


def test_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    path = tmp_path / "evil.pt"
    with open(path, "wb") as f:
        pickle.dump({"format": "napari-brainseg-unet", "x": _Evil()}, f)
    with pytest.raises(CheckpointError, match="refused"):
        load_checkpoint(path)
    assert not (tmp_path / "PWNED").exists()


def test_truncated_checkpoint(tmp_path):
    path = save_checkpoint(tmp_path / "m.pt", UNet(UNetConfig(base_filters=2)))
    data = path.read_bytes()
    (tmp_path / "cut.pt").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path / "cut.pt")


def test_foreign_and_mismatched_checkpoints(tmp_path):
    torch.save(UNet(UNetConfig(base_filters=2)).state_dict(), tmp_path / "bare.pt")
    with pytest.raises(CheckpointError, match="not a napari-brainseg"):
        load_checkpoint(tmp_path / "bare.pt")
    path = save_checkpoint(tmp_path / "m.pt", UNet(UNetConfig(base_filters=2)))
    payload = torch.load(path, weights_only=True)
    payload["config"]["base_filters"] = 8  # a different architecture than the weights
    torch.save(payload, tmp_path / "other.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "other.pt")
    payload["schema"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="upgrade"):
        load_checkpoint(tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="no such"):
        load_checkpoint(tmp_path / "missing.pt")


def test_load_from_bytes():
    buf = io.BytesIO()
    path_model = UNet(UNetConfig(base_filters=2))
    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as d:
        p = save_checkpoint(Path(d) / "m.pt", path_model)
        buf.write(p.read_bytes())
    buf.seek(0)
    assert load_checkpoint(buf).config.base_filters == 2


def test_config_is_checked_against_the_weights_before_the_model_is_built(tmp_path, monkeypatch):
    """An edited config (base_filters=384 beside small weights) would build a 4.6 GB model."""
    import napari_brainseg.model as model_mod

    path = save_checkpoint(tmp_path / "m.pt", UNet(UNetConfig(base_filters=2)))
    payload = torch.load(path, weights_only=True)
    payload["config"]["base_filters"] = 384
    torch.save(payload, tmp_path / "wide.pt")
    built = []

    class Recording(UNet):
        def __init__(self, config=None):
            super().__init__(config)
            built.append(sum(p.numel() for p in self.parameters() if not p.is_meta))

    monkeypatch.setattr(model_mod, "UNet", Recording)
    with pytest.raises(CheckpointError, match=r"wide.pt: .*base_filters=384.*needs shape"):
        load_checkpoint(tmp_path / "wide.pt")
    assert built == [0]  # only the shape check, on the meta device: no memory


@pytest.mark.parametrize("edit, message", [
    (lambda p: p.update(normalisation="zscore"), "'normalisation' is not a dict"),
    (lambda p: p.update(normalisation={"method": "percentile", "low": 99, "high": 1}),
     "0 <= low < high <= 100"),
    (lambda p: p.update(metrics=[1, 2]), "'metrics' is not a dict"),
    (lambda p: p.update(resume="yes"), "'resume' is not a dict"),
    (lambda p: p.update(schema="1"), "schema '1' is not a schema version"),
    (lambda p: p.update(schema=True), "schema True is not a schema version"),
    (lambda p: p.update(config=[1]), "config is a list"),
    (lambda p: p.update(state_dict={"a": 1}), "state_dict is not a dict of tensors"),
    (lambda p: next(iter(p["state_dict"].values())).fill_(float("inf")),
     "NaN or infinite values"),
])
def test_edited_checkpoints_are_refused_naming_the_file(tmp_path, edit, message):
    path = save_checkpoint(tmp_path / "m.pt", UNet(UNetConfig(base_filters=2)))
    payload = torch.load(path, weights_only=True)
    edit(payload)
    torch.save(payload, tmp_path / "edited.pt")
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(tmp_path / "edited.pt")
    assert str(info.value).startswith("edited.pt: ")


def test_legacy_format_pickle_that_would_run_code_is_refused(tmp_path, monkeypatch):
    class Evil:
        def __reduce__(self):
            return (exec, ("open('PWNED', 'w').write('x')",))

    monkeypatch.chdir(tmp_path)
    payload = {"format": "napari-brainseg-unet", "schema": 1, "x": Evil(),
               "state_dict": UNet(UNetConfig(base_filters=2)).state_dict()}
    torch.save(payload, tmp_path / "legacy.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(tmp_path / "legacy.pt")
    assert not (tmp_path / "PWNED").exists()
    # a legacy-format file without code is still only "not readable", not called malicious
    torch.save({"a": torch.zeros(3)}, tmp_path / "plain.pt", _use_new_zipfile_serialization=False)
    with pytest.raises(CheckpointError, match="not a napari-brainseg"):
        load_checkpoint(tmp_path / "plain.pt")
