"""MobileNetV1 against the paper: cost tables (1, 2, 4, 5, 6, 7), structure, API, the student factory and its
registration with timm (mobilenet_v1_100 .. mobilenet_v1_025)."""

import math

import pytest
import timm
import torch
from torch import nn

from distill.cost import profile
from distill.models import MobileNetV1, create_student, list_students, timm_models

WIDTHS = (1.0, 0.75, 0.5, 0.25)
RESOLUTIONS = (224, 192, 160, 128)

# PAPER.md "Exact values": M mult-adds at 224/192/160/128 per width; M params with 1000 classes.
EXACT_MULT_ADDS_M = {
    1.0: (568.7, 418.1, 290.7, 186.4),
    0.75: (325.4, 239.3, 166.4, 106.8),
    0.5: (149.5, 110.0, 76.5, 49.2),
    0.25: (41.0, 30.2, 21.1, 13.6),
}
EXACT_PARAMS_M = {1.0: 4.210, 0.75: 2.569, 0.5: 1.321, 0.25: 0.465}
# Rounded values printed in the paper: Table 6 (widths at 224) and Table 7 (resolutions at width 1).
TABLE_MULT_ADDS_M = {
    (1.0, 224): 569,
    (0.75, 224): 325,
    (0.5, 224): 149,
    (0.25, 224): 41,
    (1.0, 192): 418,
    (1.0, 160): 290,
    (1.0, 128): 186,
}
TABLE6_PARAMS_M = {1.0: 4.2, 0.75: 2.6, 0.5: 1.3, 0.25: 0.5}

_MODELS: dict = {}


def model(**kwargs) -> MobileNetV1:
    """Build each configuration once per test session (construction dominates the test time)."""
    key = tuple(sorted(kwargs.items()))
    if key not in _MODELS:
        torch.manual_seed(0)
        _MODELS[key] = MobileNetV1(**kwargs).eval()
    return _MODELS[key]


_COSTS: dict = {}


def cost(width: float = 1.0, resolution: int = 224):
    """Profile each (width, resolution) point once: the mult-adds and params tests share it."""
    if (width, resolution) not in _COSTS:
        _COSTS[(width, resolution)] = profile(model(width_multiplier=width), (3, resolution, resolution))
    return _COSTS[(width, resolution)]


# ---------------------------------------------------------------- cost against the paper's tables


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("width", WIDTHS)
def test_mult_adds_match_paper(width, resolution):
    mult_adds_m = cost(width, resolution).mult_adds_m
    exact = EXACT_MULT_ADDS_M[width][RESOLUTIONS.index(resolution)]
    assert mult_adds_m == pytest.approx(exact, rel=0.005)
    if (width, resolution) in TABLE_MULT_ADDS_M:
        assert mult_adds_m == pytest.approx(TABLE_MULT_ADDS_M[(width, resolution)], rel=0.005)


@pytest.mark.parametrize("resolution", RESOLUTIONS)
@pytest.mark.parametrize("width", WIDTHS)
def test_params_match_paper(width, resolution):
    params_m = cost(width, resolution).params_m
    assert params_m == pytest.approx(EXACT_PARAMS_M[width], abs=0.05)
    assert round(params_m, 1) == TABLE6_PARAMS_M[width]


def test_params_exact_and_total_includes_bn():
    profiled = cost()
    assert profiled.params == 4_209_088  # PAPER.md: conv + FC weights of 1.0 MobileNet-224
    # BN (weight + bias per channel of every conv) and the FC bias come on top.
    bn_params = 2 * sum(m.num_features for m in model().modules() if isinstance(m, nn.BatchNorm2d))
    assert profiled.total_params == profiled.params + bn_params + 1000
    assert profiled.total_params == sum(p.numel() for p in model().parameters())


def test_table2_shares_by_layer_type():
    shares = cost().shares()
    expected = {"conv1x1": (94.86, 74.59), "conv_dw": (3.06, 1.06), "conv3x3": (1.91, 0.02), "fc": (0.18, 24.33)}
    for kind, (mult_adds_pct, params_pct) in expected.items():
        assert shares[kind][0] == pytest.approx(mult_adds_pct, abs=0.06), kind
        assert shares[kind][1] == pytest.approx(params_pct, abs=0.06), kind
    assert shares["other"] == (0.0, 0.0)


def test_table4_full_convolution_baseline():
    full = MobileNetV1(separable=False)
    profiled = profile(full)
    assert profiled.mult_adds_m == pytest.approx(4866, rel=0.005)
    assert profiled.params_m == pytest.approx(29.3, abs=0.05)
    # The baseline has no depthwise layer: every block is one standard 3x3 conv.
    assert profiled.by_layer_type["conv_dw"] == (0, 0)
    assert profiled.by_layer_type["conv1x1"] == (0, 0)


def test_table5_shallow_mobilenet():
    shallow = MobileNetV1(depth="shallow")
    profiled = profile(shallow)
    assert profiled.mult_adds_m == pytest.approx(307, rel=0.005)
    assert profiled.params_m == pytest.approx(2.9, abs=0.05)
    assert len(shallow.stage4) == 1  # the five 14x14x512 blocks are gone
    assert len(model().stage4) == 6


# ---------------------------------------------------------------- structure and API


def test_output_shapes_at_several_resolutions():
    net = model()
    with torch.no_grad():
        features = net.forward_features(torch.randn(2, 3, 224, 224))
        assert net.forward_head(features).shape == (2, 1000)
        for resolution in (128, 97):
            assert net(torch.randn(2, 3, resolution, resolution)).shape == (2, 1000)
    assert features.shape == (2, 1024, 7, 7)
    assert net.num_features == 1024 and net.embedding_dim == 1000 and net.num_classes == 1000


@pytest.mark.parametrize("resolution", (224, 97))
def test_stage_outputs_follow_feature_info(resolution):
    net = model()
    x = torch.randn(1, 3, resolution, resolution)
    with torch.no_grad():
        x = net.stem(x)
        assert x.shape[1:] == (32, math.ceil(resolution / 2), math.ceil(resolution / 2))
        for info in net.feature_info:
            x = getattr(net, info["module"])(x)
            # A padded stride-2 3x3 conv maps n pixels to ceil(n / 2).
            side = math.ceil(resolution / info["reduction"])
            assert x.shape[1:] == (info["num_chs"], side, side), info
    assert [info["module"] for info in net.feature_info] == ["stage1", "stage2", "stage3", "stage4", "stage5"]
    assert [info["num_chs"] for info in net.feature_info] == [64, 128, 256, 512, 1024]
    assert [info["reduction"] for info in net.feature_info] == [2, 4, 8, 16, 32]


def test_width_quarter_channels():
    net = model(width_multiplier=0.25)
    assert net.stem.conv.out_channels == 8  # int(32 * 0.25)
    assert [info["num_chs"] for info in net.feature_info] == [16, 32, 64, 128, 256]
    assert net.num_features == 256 and net.fc.in_features == 256
    with torch.no_grad():
        assert net.forward_features(torch.randn(1, 3, 64, 64)).shape == (1, 256, 2, 2)


def test_width_075_uses_int_truncation():
    net = model(width_multiplier=0.75)
    assert net.stem.conv.out_channels == 24
    assert [info["num_chs"] for info in net.feature_info] == [48, 96, 192, 384, 768]


def test_num_classes_zero_returns_pooled_features():
    net = MobileNetV1(width_multiplier=0.25, num_classes=0).eval()
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        out = net(x)
        pooled = net.forward_features(x).mean(dim=(2, 3))
    assert isinstance(net.fc, nn.Identity)
    assert out.shape == (3, 256) and net.embedding_dim == 256
    torch.testing.assert_close(out, pooled)


def test_forward_head_pre_logits_and_fc():
    net = model(width_multiplier=0.25)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        features = net.forward_features(x)
        pre = net.forward_head(features, pre_logits=True)
        logits = net(x)
    torch.testing.assert_close(pre, features.mean(dim=(2, 3)))
    torch.testing.assert_close(logits, pre @ net.fc.weight.T + net.fc.bias)


def test_block_structure_separable_and_full():
    convs = [m for m in model(width_multiplier=0.25).modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 1 + 2 * 13
    assert all(c.bias is None for c in convs)  # BN follows every conv
    depthwise = [c for c in convs if c.groups > 1]
    assert len(depthwise) == 13 and all(c.groups == c.in_channels == c.out_channels for c in depthwise)
    # Strides of Table 1, the last block at stride 1.
    assert [c.stride[0] for c in depthwise] == [1, 2, 1, 2, 1, 2, 1, 1, 1, 1, 1, 2, 1]
    full_convs = [m for m in MobileNetV1(0.25, separable=False).modules() if isinstance(m, nn.Conv2d)]
    assert len(full_convs) == 14 and all(c.groups == 1 and c.kernel_size == (3, 3) for c in full_convs)
    bns = [m for m in model(width_multiplier=0.25).modules() if isinstance(m, nn.BatchNorm2d)]
    relus = [m for m in model(width_multiplier=0.25).modules() if isinstance(m, nn.ReLU)]
    assert len(bns) == len(relus) == len(convs)


def test_weight_init():
    net = model()
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            assert torch.all(m.weight == 1) and torch.all(m.bias == 0)
    last_pw = net.stage5[-1].pw.conv.weight  # 1024 x 1024 x 1 x 1, fan_out = 1024
    assert last_pw.std().item() == pytest.approx(math.sqrt(2 / 1024), rel=0.03)
    assert net.fc.weight.std().item() == pytest.approx(0.01, rel=0.03)
    assert torch.all(net.fc.bias == 0)


def test_dropout_and_in_chans():
    net = MobileNetV1(width_multiplier=0.25, dropout=0.2, in_chans=1, num_classes=5)
    assert isinstance(net.dropout, nn.Dropout) and net.dropout.p == 0.2
    assert isinstance(model().dropout, nn.Identity)
    assert net.eval()(torch.randn(1, 1, 32, 32)).shape == (1, 5)


def test_config_rebuilds_the_same_architecture():
    net = MobileNetV1(width_multiplier=0.5, num_classes=7, separable=False, depth="shallow", dropout=0.1)
    assert net.config == {
        "width_multiplier": 0.5,
        "num_classes": 7,
        "separable": False,
        "in_chans": 3,
        "dropout": 0.1,
        "depth": "shallow",
    }
    rebuilt = MobileNetV1(**net.config)
    rebuilt.load_state_dict(net.state_dict())  # strict: same names and shapes


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"width_multiplier": 0}, "width_multiplier must be > 0"),
        ({"width_multiplier": -0.5}, "width_multiplier must be > 0"),
        ({"width_multiplier": "0.5"}, "width_multiplier must be a number"),
        ({"width_multiplier": True}, "width_multiplier must be a number"),
        ({"width_multiplier": 0.01}, "width_multiplier must be >= 1/32"),
        ({"num_classes": -1}, "num_classes must be an int >= 0"),
        ({"num_classes": 2.5}, "num_classes must be an int >= 0"),
        ({"depth": "deep"}, r"depth must be one of \['full', 'shallow'\]"),
        ({"separable": "yes"}, "separable must be True"),
        ({"in_chans": 0}, "in_chans must be an int >= 1"),
        ({"dropout": 1.0}, r"dropout must be a probability in \[0, 1\)"),
    ],
)
def test_bad_arguments(kwargs, message):
    with pytest.raises(ValueError, match=message):
        MobileNetV1(**kwargs)


# ---------------------------------------------------------------- student factory


def test_create_student_mobilenet():
    net = create_student("mobilenet_v1", width_multiplier=0.25, num_classes=10)
    assert isinstance(net, MobileNetV1)
    assert net.config["width_multiplier"] == 0.25 and net.num_classes == 10
    assert list_students() == ["mobilenet_v1"]
    assert "mobilenetv2_050" in list_students(include_timm=True)


def test_create_student_timm():
    net = create_student("mobilenetv2_050", num_classes=10)
    assert type(net).__module__.startswith("timm.")
    assert net.num_classes == 10
    with torch.no_grad():
        assert net.eval()(torch.randn(1, 3, 64, 64)).shape == (1, 10)


def test_create_student_errors():
    with pytest.raises(ValueError, match="timm puts the width in the model name"):
        create_student("mobilenetv2_050", width_multiplier=0.5)
    with pytest.raises(ValueError, match=r"unknown student 'mobilenet_v2'.*mobilenet_v1.*any timm model name") as info:
        create_student("mobilenet_v2")
    assert "Did you mean" in str(info.value) and "mobilenetv2_100" in str(info.value)
    with pytest.raises(ValueError, match=r"unknown argument\(s\) \['width'\] for student 'mobilenet_v1'"):
        create_student("mobilenet_v1", width=0.5)
    with pytest.raises(ValueError, match=r"bad argument\(s\) \['foo'\] for timm model 'resnet18'"):
        create_student("resnet18", foo=1)
    with pytest.raises(ValueError, match="non-empty string"):
        create_student("")


def test_create_student_takes_a_width_for_our_timm_names():
    net = create_student("mobilenet_v1_050", width_multiplier=0.25, num_classes=10)
    assert isinstance(net, MobileNetV1) and net.config["width_multiplier"] == 0.25 and net.num_classes == 10


# ---------------------------------------------------------------- registered with timm


def test_timm_builds_the_paper_mobilenet_by_name():
    net = timm.create_model("mobilenet_v1_050")
    assert type(net) is MobileNetV1 and net.config == MobileNetV1(width_multiplier=0.5).config
    ours, reference = profile(net.eval(), (3, 224, 224)), cost(0.5, 224)
    assert (ours.mult_adds, ours.params) == (reference.mult_adds, reference.params)
    assert ours.mult_adds_m == pytest.approx(149.5, rel=0.005)  # Table 6: 149M mult-adds, 1.3M params
    assert ours.params / 1e6 == pytest.approx(EXACT_PARAMS_M[0.5], rel=0.005)
    for name, width in (("mobilenet_v1_100", 1.0), ("mobilenet_v1_075", 0.75), ("mobilenet_v1_025", 0.25)):
        assert timm.create_model(name, num_classes=0).config["width_multiplier"] == width


def test_a_width_argument_overrides_the_timm_names_width():
    torch.manual_seed(0)
    from_timm = timm.create_model("mobilenet_v1_100", width_multiplier=0.25, num_classes=7, drop_rate=0.1)
    torch.manual_seed(0)
    direct = MobileNetV1(width_multiplier=0.25, num_classes=7, dropout=0.1)
    assert from_timm.config == direct.config
    state, expected = from_timm.state_dict(), direct.state_dict()
    assert state.keys() == expected.keys() and all(torch.equal(state[k], expected[k]) for k in state)
    images = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(from_timm.eval()(images), direct.eval()(images))


def test_timm_registration_is_ours_and_leaves_timms_mobilenetv1_alone():
    assert timm.list_models("mobilenet_v1_*") == ["mobilenet_v1_025", "mobilenet_v1_050", "mobilenet_v1_075",
                                                  "mobilenet_v1_100"]
    for name in timm.list_models("mobilenet_v1_*"):
        assert timm.models.model_entrypoint(name).__module__ == "distill.models.timm_models"
        assert name not in timm.list_pretrained()
    # timm's own MobileNetV1 (no underscore before v1) is still timm's and a different network
    assert timm.models.model_entrypoint("mobilenetv1_100").__module__.startswith("timm.")
    assert not isinstance(timm.create_model("mobilenetv1_100", num_classes=10), MobileNetV1)
    with pytest.raises(ValueError, match="ships no pretrained MobileNetV1 weights"):
        timm.create_model("mobilenet_v1_100", pretrained=True)
    with pytest.raises(TypeError, match=r"unknown argument\(s\) \['img_size'\]"):
        timm.create_model("mobilenet_v1_050", img_size=224)

    def resnet18(pretrained=False, **kwargs):
        return MobileNetV1(**kwargs)

    with pytest.raises(RuntimeError, match="timm already has a model named 'resnet18'.*will not overwrite it"):
        timm_models._register_with_timm(resnet18)
    assert timm.models.model_entrypoint("resnet18").__module__.startswith("timm.")
