import torch

from vaeedof.nets.unet import FusionUNet, fill_inputs
from vaeedof.training.augment import augment
from vaeedof.training.state import ema_decay, make_ema, update_ema


def test_unet_shapes_and_mean_start():
    model = FusionUNet(16, max_inputs=7, widths=(16, 32, 64), attention_heads=2)
    latents = torch.randn(2, 7, 16, 12, 20)
    out = model(latents)
    assert out.shape == (2, 16, 12, 20)
    # The last convolution starts at zero: an untrained network returns the mean input latent.
    assert torch.allclose(out, latents.mean(dim=1), atol=1e-5)
    odd = torch.randn(1, 7, 16, 5, 9)
    assert model(odd).shape == (1, 16, 5, 9)


def test_unet_has_three_levels_and_attention():
    model = FusionUNet(4, max_inputs=3, widths=(8, 16, 32), attention_heads=2)
    assert len(model.down_blocks) == 3 and len(model.up_blocks) == 3
    assert any(type(m).__name__ == "SelfAttention" for m in model.mid)


def test_fill_inputs_duplicates_existing():
    x = torch.arange(3).float().view(1, 3, 1, 1, 1).expand(1, 3, 2, 2, 2)
    filled = fill_inputs(x, 7)
    assert filled.shape[1] == 7
    assert filled[0, :, 0, 0, 0].tolist() == [0, 1, 2, 0, 1, 2, 0]
    random = fill_inputs(x, 7, torch.Generator().manual_seed(0))
    assert set(random[0, :, 0, 0, 0].tolist()) <= {0.0, 1.0, 2.0}


def test_augment_is_consistent_between_inputs_and_target():
    # Inputs identical to the target: after any flip/rotation they must still be identical.
    target = torch.randn(4, 1, 8, 6, 6)
    batch = torch.cat([target.expand(4, 5, 8, 6, 6), target], dim=1)
    inputs, out_target = augment(batch, 7, torch.Generator().manual_seed(3))
    assert inputs.shape == (4, 7, 8, 6, 6) and out_target.shape == (4, 8, 6, 6)
    for k in range(7):
        assert torch.equal(inputs[:, k], out_target)
    # Different generators give different augmentations; the same gives the same.
    a = augment(batch, 7, torch.Generator().manual_seed(1))[1]
    b = augment(batch, 7, torch.Generator().manual_seed(1))[1]
    assert torch.equal(a, b)


def test_ema_arithmetic():
    model = torch.nn.Linear(2, 1, bias=False)
    torch.nn.init.constant_(model.weight, 1.0)
    ema = make_ema(model)
    torch.nn.init.constant_(model.weight, 3.0)
    decay = update_ema(ema, model, step=1, decay=0.999)
    assert decay == ema_decay(1, 0.999) == 2 / 11
    expected = decay * 1.0 + (1 - decay) * 3.0
    assert torch.allclose(ema.weight, torch.full_like(ema.weight, expected))
    assert ema_decay(10**6, 0.999) == 0.999
    assert not ema.weight.requires_grad
