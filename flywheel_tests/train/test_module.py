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


def test_encoder_weights_are_local_only(tmp_path):
    with pytest.raises(FileNotFoundError, match="local"):
        PVSegmentationModule(encoder_weights="imagenet")
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
    assert torch.equal(m.model.encoder.layer1[0].conv1.weight, donor.encoder.layer1[0].conv1.weight)
    # the 3-band first conv does not fit a 4-band input and is left as initialised
    assert m.model.encoder.conv1.weight.shape[1] == 4
