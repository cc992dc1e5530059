from __future__ import annotations

import pytest
import torch

from flywheel_core.train.module import PVSegmentationModule, build_network, prune_unused


def test_forward_shapes_and_probabilities():
    torch.manual_seed(0)
    m = PVSegmentationModule(in_channels=6, encoder_depth=2, decoder_channels=(16, 8))
    x = torch.rand(2, 6, 64, 64)
    assert m(x).shape == (2, 1, 64, 64)
    m.train()
    p = m.predict_proba(x)
    assert m.training, "predict_proba restores the mode"
    assert p.shape == (2, 1, 64, 64) and float(p.min()) >= 0 and float(p.max()) <= 1
    loss = m.loss(m(x), (x[:, :1] > 0.5).float())
    assert loss.ndim == 0 and torch.isfinite(loss)


def test_shallow_encoders_drop_unused_weights():
    net = build_network("Unet", "resnet18", 3, (64, 32, 16), 4)
    n = sum(p.numel() for p in net.parameters())
    assert n < 1.5e6, n  # the full resnet18 encoder alone is 11 M
    assert prune_unused(net, 4) == []
    assert build_network("FPN", "resnet18", 5, None, 4)(torch.rand(1, 4, 64, 64)).shape == (
        1,
        1,
        64,
        64,
    )


def test_checkpoint_round_trip(tmp_path):
    import lightning as L

    torch.manual_seed(0)
    m = PVSegmentationModule(
        in_channels=4, encoder_depth=2, decoder_channels=(16, 8), channels=list("rgbn")
    )
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(m)
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path, weights_only=True)
    back = PVSegmentationModule.load_from_checkpoint(path, map_location="cpu").eval()
    x = torch.rand(1, 4, 32, 32)
    assert torch.equal(back.predict_proba(x), m.predict_proba(x))
    assert back.channels == list("rgbn") and back.hparams.encoder_depth == 2


def test_encoder_weights_from_a_local_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="local state-dict file"):
        PVSegmentationModule(encoder_weights=str(tmp_path / "missing.pt"))
    torch.manual_seed(1)
    donor = build_network("Unet", "resnet18", 2, (16, 8), 3)
    path = tmp_path / "enc.pt"
    torch.save(donor.encoder.state_dict(), path)
    m = PVSegmentationModule(
        in_channels=4,
        encoder_name="resnet18",
        encoder_depth=2,
        decoder_channels=(16, 8),
        encoder_weights=str(path),
    )
    assert m.encoder_init == f"{path} (local file)"
    assert torch.equal(m.model.encoder.layer1[0].conv1.weight, donor.encoder.layer1[0].conv1.weight)
    # the 3-band first conv is adapted to 4 bands: RGB kept, NIR = their mean, scaled by 3/4
    rgb = donor.encoder.conv1.weight
    first = m.model.encoder.conv1.weight
    assert first.shape[1] == 4
    torch.testing.assert_close(first[:, :3], rgb * 0.75)
    torch.testing.assert_close(first[:, 3], rgb.mean(dim=1) * 0.75)


def test_a_restored_model_does_not_look_its_weights_up_again(tmp_path):
    import lightning as L

    path = tmp_path / "enc.pt"
    torch.save(build_network("Unet", "resnet18", 2, (16, 8), 3).encoder.state_dict(), path)
    m = PVSegmentationModule(encoder_depth=2, decoder_channels=(16, 8), encoder_weights=str(path))
    trainer = L.Trainer(logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer.strategy.connect(m)
    trainer.save_checkpoint(tmp_path / "m.ckpt", weights_only=True)
    path.unlink()  # gone: loading must not need it
    back = PVSegmentationModule.load_from_checkpoint(tmp_path / "m.ckpt", map_location="cpu")
    assert back.encoder_init == "restored from checkpoint"
    assert back.hparams.encoder_weights == str(path)  # still recorded
    assert torch.equal(back.model.encoder.conv1.weight, m.model.encoder.conv1.weight)
