"""sdk.nets.vgg16: torchvision-compatible VGG16 trunk, small head, ImageNet start, transfer, freezing."""

import pytest
import torch
from torch import nn

from sdk.nets.vgg16 import VGG16, count_macs, freeze_blocks, load_imagenet_features, transfer_from

# torchvision's VGG16 ("D"), written out here independently of sdk.nets.vgg16: conv module index in
# `features` -> (out_channels, in_channels), grouped by block (each block ends in a max-pool).
TORCHVISION_BLOCKS = (
    {0: (64, 3), 2: (64, 64)},
    {5: (128, 64), 7: (128, 128)},
    {10: (256, 128), 12: (256, 256), 14: (256, 256)},
    {17: (512, 256), 19: (512, 512), 21: (512, 512)},
    {24: (512, 512), 26: (512, 512), 28: (512, 512)},
)
TORCHVISION_CLASSIFIER = {
    "classifier.0.weight": (4096, 25088),
    "classifier.0.bias": (4096,),
    "classifier.3.weight": (4096, 4096),
    "classifier.3.bias": (4096,),
    "classifier.6.weight": (1000, 4096),
    "classifier.6.bias": (1000,),
}


def torchvision_feature_shapes() -> dict[str, tuple[int, ...]]:
    shapes = {}
    for block in TORCHVISION_BLOCKS:
        for index, (c_out, c_in) in block.items():
            shapes[f"features.{index}.weight"] = (c_out, c_in, 3, 3)
            shapes[f"features.{index}.bias"] = (c_out,)
    return shapes


@pytest.fixture(scope="module")
def imagenet_state() -> dict[str, torch.Tensor]:
    """A state dict with exactly the keys and shapes of torchvision's vgg16-397923af.pth.

    Feature tensors hold distinct random values; the 120 M classifier values are one stored number
    broadcast to the real shapes (torch.save keeps the 1-element storage), so the file stays ~60 MB.
    """
    gen = torch.Generator().manual_seed(0)
    state = {k: torch.randn(shape, generator=gen) for k, shape in torchvision_feature_shapes().items()}
    state.update({k: torch.zeros(1).expand(*shape) for k, shape in TORCHVISION_CLASSIFIER.items()})
    return state


@pytest.fixture(scope="module")
def imagenet_file(imagenet_state, tmp_path_factory):
    path = tmp_path_factory.mktemp("weights") / "vgg16-397923af.pth"
    torch.save(imagenet_state, path)
    return path


def test_parameter_names_are_torchvision_features_plus_small_head():
    model = VGG16(2)
    state = model.state_dict()
    features = {k: tuple(v.shape) for k, v in state.items() if k.startswith("features.")}
    assert features == torchvision_feature_shapes()
    assert set(state) - set(features) == {"head.weight", "head.bias"}
    assert state["head.weight"].shape == (2, 512)
    assert sum(p.numel() for p in model.parameters()) == 14_714_688 + 2 * 512 + 2


def test_width_scales_channels_by_rounding():
    model = VGG16(4, width=0.125)
    convs = [m for m in model.features if isinstance(m, nn.Conv2d)]
    assert [c.out_channels for c in convs] == [8, 8, 16, 16, 32, 32, 32, 64, 64, 64, 64, 64, 64]
    assert [c.out_channels for c in VGG16(2, width=0.1).features if isinstance(c, nn.Conv2d)][:3] == [
        6,
        6,
        13,
    ]
    assert model.head.in_features == 64


@pytest.mark.parametrize("hw", [(32, 32), (33, 47), (64, 64), (100, 80)])
def test_forward_gives_logits_for_any_input_of_at_least_32_px(hw):
    model = VGG16(4, width=0.125).eval()
    with torch.inference_mode():
        logits = model(torch.randn(2, 3, *hw))
    assert logits.shape == (2, 4)
    assert torch.isfinite(logits).all()


def test_invalid_arguments_are_refused():
    with pytest.raises(ValueError, match="num_classes"):
        VGG16(1)
    with pytest.raises(ValueError, match="width"):
        VGG16(2, width=0)


def test_load_imagenet_features_copies_every_feature_tensor(imagenet_state, imagenet_file):
    model = VGG16(2)
    head_before = model.head.weight.clone()
    assert load_imagenet_features(model, imagenet_file) == 26
    for key, tensor in model.state_dict().items():
        if key.startswith("features."):
            assert torch.equal(tensor, imagenet_state[key]), key
    assert torch.equal(model.head.weight, head_before)  # classifier.* is not loaded into the head


def test_load_imagenet_features_names_the_first_shape_mismatch(imagenet_file):
    with pytest.raises(ValueError, match=r"features\.0\.weight .*width 1\.0 only"):
        load_imagenet_features(VGG16(2, width=0.5), imagenet_file)


def test_load_imagenet_features_names_a_wrong_or_missing_tensor(imagenet_state, tmp_path):
    wrong_shape = dict(imagenet_state, **{"features.10.weight": torch.zeros(256, 128, 5, 5)})
    torch.save(wrong_shape, tmp_path / "wrong.pth")
    with pytest.raises(ValueError, match=r"features\.10\.weight is \(256, 128, 5, 5\)"):
        load_imagenet_features(VGG16(2), tmp_path / "wrong.pth")
    missing = {k: v for k, v in imagenet_state.items() if k != "features.28.bias"}
    torch.save(missing, tmp_path / "missing.pth")
    with pytest.raises(ValueError, match=r"no tensor 'features\.28\.bias'"):
        load_imagenet_features(VGG16(2), tmp_path / "missing.pth")


def test_load_imagenet_features_names_a_missing_file(tmp_path):
    with pytest.raises(ValueError, match="nowhere.pth.*does not exist"):
        load_imagenet_features(VGG16(2), tmp_path / "nowhere.pth")


def test_transfer_from_copies_the_trunk_and_makes_a_new_head():
    torch.manual_seed(0)
    stage1 = VGG16(2, width=0.125, dropout=0.3)
    with torch.no_grad():
        for p in stage1.parameters():
            p.add_(torch.randn_like(p))  # stand-in for stage-1 training
    freeze_blocks(stage1, 5)
    stage2 = transfer_from(stage1, 4)
    assert (stage2.width, stage2.dropout_p, stage2.num_classes) == (0.125, 0.3, 4)
    trunk1, trunk2 = stage1.features.state_dict(), stage2.features.state_dict()
    assert trunk1.keys() == trunk2.keys()
    assert all(torch.equal(trunk1[k], trunk2[k]) for k in trunk1)
    assert stage2.head.weight.shape == (4, 64)
    assert torch.all(stage2.head.bias == 0) and 0.005 < stage2.head.weight.std() < 0.02
    assert all(p.requires_grad for p in stage2.parameters())
    with torch.no_grad():
        stage2.features[0].weight.zero_()
    assert not torch.equal(stage1.features[0].weight, stage2.features[0].weight)  # a copy, not shared


@pytest.mark.parametrize("n_blocks", range(6))
def test_freeze_blocks_freezes_exactly_blocks_1_to_n(n_blocks):
    model = VGG16(2, width=0.125)
    freeze_blocks(model, 5)
    frozen = freeze_blocks(model, n_blocks)  # a later call also unfreezes
    expected = {
        f"features.{index}.{kind}"
        for block in TORCHVISION_BLOCKS[:n_blocks]
        for index in block
        for kind in ("weight", "bias")
    }
    assert set(frozen) == expected
    assert {name for name, p in model.named_parameters() if not p.requires_grad} == expected


def test_freeze_blocks_refuses_a_block_count_outside_0_to_5():
    with pytest.raises(ValueError, match="n_blocks"):
        freeze_blocks(VGG16(2, width=0.125), 6)


def test_count_macs_matches_vgg16_at_224():
    model = VGG16(2)
    trunk = count_macs(model, (224, 224)) - 512 * 2
    side = {1: 224, 2: 112, 3: 56, 4: 28, 5: 14}
    by_hand = sum(
        side[b] ** 2 * c_out * c_in * 9
        for b, block in enumerate(TORCHVISION_BLOCKS, 1)
        for c_out, c_in in block.values()
    )
    assert trunk == by_hand == 15_346_630_656
    assert trunk == pytest.approx(15.47e9, rel=0.01)  # the usual VGG16 figure, which includes...
    classifier = 25088 * 4096 + 4096 * 4096 + 4096 * 1000  # ...torchvision's 4096-wide classifier
    assert trunk + classifier == pytest.approx(15.47e9, rel=1e-3)


def test_count_macs_agrees_with_the_shapes_seen_in_a_forward_pass():
    model = VGG16(4, width=0.125).eval()
    seen = []

    def hook(module, inputs, output):
        if isinstance(module, nn.Conv2d):
            seen.append(output[0].numel() * module.in_channels * 9)
        else:
            seen.append(module.in_features * module.out_features)

    for m in model.modules():
        if isinstance(m, nn.Conv2d | nn.Linear):
            m.register_forward_hook(hook)
    with torch.inference_mode():
        model(torch.zeros(1, 3, 70, 90))
    assert count_macs(model, (70, 90)) == sum(seen)
