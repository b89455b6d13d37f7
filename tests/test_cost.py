"""The cost profiler: hand-counted toy models, agreement with torch's FLOP counter, real teachers, the CLI."""

import dataclasses
import json
import subprocess
import sys

import pytest
import torch
from torch import nn
from torch.utils.flop_counter import FlopCounterMode

from distill.cost import CostProfile, main, profile
from distill.models import MobileNetV1, create_student


class Toy(nn.Module):
    """One layer of every category, a module called twice, and a transposed conv, on a 3x9x9 input."""

    def __init__(self):
        super().__init__()
        self.conv3 = nn.Conv2d(3, 8, 3, stride=2, padding=1)  # -> 8x5x5
        self.dw = nn.Conv2d(8, 8, 3, padding=1, groups=8, bias=False)  # -> 8x5x5
        self.pw = nn.Conv2d(8, 4, 1)  # -> 4x5x5
        self.odd = nn.Conv2d(4, 4, (1, 3), padding=(0, 1))  # -> 4x5x5, "other"
        self.grouped = nn.Conv2d(4, 4, 1, groups=2)  # grouped, not depthwise: "other"
        self.up = nn.ConvTranspose2d(4, 2, 2, stride=2)  # -> 2x10x10, "other"
        self.fc = nn.Linear(200, 3)

    def forward(self, x):
        x = torch.relu(self.conv3(x))
        x = self.pw(self.dw(x))
        x = self.grouped(self.grouped(self.odd(x)))
        return self.fc(self.up(x).flatten(1))


# Counted by hand: MACs = output elements x (in_channels / groups) x kernel area (transposed conv:
# input elements x (out_channels / groups) x kernel area; linear: outputs x in_features).
TOY_BY_TYPE = {
    "conv1x1": (4 * 25 * 8, 8 * 4),  # 800, 32
    "conv_dw": (8 * 25 * 9, 8 * 9),  # 1800, 72
    "conv3x3": (8 * 25 * 3 * 9, 8 * 3 * 9),  # 5400, 216
    "fc": (3 * 200, 3 * 200),  # 600, 600
    # odd 1x3: 1200 / 48; grouped twice: 2 x 200 MACs but its 8 weights once; transposed: 800 / 32
    "other": (4 * 25 * 4 * 3 + 2 * (4 * 25 * 2) + 4 * 25 * 2 * 4, 4 * 4 * 3 + 4 * 2 + 4 * 2 * 4),
}
TOY_BIASES = 8 + 4 + 4 + 4 + 2 + 3


def test_toy_model_counted_by_hand():
    cost = profile(Toy(), (3, 9, 9))
    assert cost.by_layer_type == TOY_BY_TYPE
    assert cost.mult_adds == 11_000
    assert cost.params == 1_008
    assert cost.total_params == 1_008 + TOY_BIASES
    assert cost.input_size == (3, 9, 9)
    assert cost.mult_adds_m == pytest.approx(0.011)
    assert cost.params_m == pytest.approx(0.001008)


def test_toy_model_agrees_with_torch_flop_counter():
    toy = Toy().eval()
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        toy(torch.zeros(1, 3, 9, 9))
    assert 2 * profile(toy, (3, 9, 9)).mult_adds == counter.get_total_flops()


def test_shares_and_plain_data():
    cost = profile(Toy(), (3, 9, 9))
    shares = cost.shares()
    assert list(shares) == ["conv1x1", "conv_dw", "conv3x3", "fc", "other"]
    assert shares["conv3x3"] == pytest.approx((100 * 5400 / 11000, 100 * 216 / 1008))
    assert sum(s[0] for s in shares.values()) == pytest.approx(100.0)
    assert sum(s[1] for s in shares.values()) == pytest.approx(100.0)
    data = json.loads(json.dumps(cost.as_dict()))
    assert data["mult_adds"] == 11_000 and data["by_layer_type"]["fc"] == [600, 600]
    with pytest.raises(dataclasses.FrozenInstanceError):
        cost.mult_adds = 0


def test_tied_weights_count_once():
    class Tied(nn.Module):
        def __init__(self):
            super().__init__()
            self.a = nn.Linear(4, 4, bias=False)
            self.b = nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight

        def forward(self, x):
            return self.b(self.a(x.flatten(1)[:, :4]))

    cost = profile(Tied(), (1, 2, 2))
    assert cost.by_layer_type["fc"] == (2 * 16, 16)


def test_tokens_and_patches_folded_into_batch_are_counted_in_full():
    class Patches(nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(2, 3, 1, bias=False)
            self.proj = nn.Linear(3, 5, bias=False)

        def forward(self, x):  # (1, 2, 4, 4) -> four 2x2 patches in the batch dimension
            patches = x.unfold(2, 2, 2).unfold(3, 2, 2).permute(0, 2, 3, 1, 4, 5).reshape(4, 2, 2, 2)
            tokens = self.conv(patches).flatten(2).transpose(1, 2)  # (4, 4 pixels, 3 channels)
            return self.proj(tokens)

    cost = profile(Patches(), (2, 4, 4))
    assert cost.by_layer_type["conv1x1"] == (16 * 3 * 2, 6)  # 16 pixels x 3 outputs x 2 inputs
    assert cost.by_layer_type["fc"] == (16 * 5 * 3, 15)  # 16 tokens x 5 outputs x 3 inputs


def test_restores_training_mode_and_leaves_no_hooks():
    net = MobileNetV1(width_multiplier=0.25, num_classes=10).train()
    net.stage2.eval()  # a mixed state, as with a frozen part of a model
    modes = {name: m.training for name, m in net.named_modules()}
    profile(net, (3, 32, 32))
    assert {name: m.training for name, m in net.named_modules()} == modes
    assert all(not m._forward_hooks for m in net.modules())
    # The pass ran in eval mode: BatchNorm statistics were not updated.
    assert int(net.stem.bn.num_batches_tracked) == 0
    assert torch.all(net.stem.bn.running_var == 1)


def test_uses_model_dtype():
    # A float64 model fails on a float32 input: the dummy input must follow the model's dtype.
    assert profile(Toy().double(), [3, 9, 9]) == profile(Toy(), (3, 9, 9))


@pytest.mark.parametrize(
    "input_size", [(3, 224), (1, 3, 224, 224), "3x224x224", (3, 0, 224), (3.0, 224, 224), (True, 8, 8), 224]
)
def test_bad_input_size(input_size):
    with pytest.raises(ValueError, match=r"input_size must be \(C, H, W\)"):
        profile(Toy(), input_size)


def test_forward_failure_names_input_size():
    net = MobileNetV1(width_multiplier=0.25, num_classes=10).train()
    with pytest.raises(ValueError, match=r"failed on input of size \(1, 1, 32, 32\): RuntimeError"):
        profile(net, (1, 32, 32))  # the stem expects 3 channels
    assert net.training and all(not m._forward_hooks for m in net.modules())


def test_not_a_module():
    with pytest.raises(ValueError, match="model must be a torch.nn.Module"):
        profile(lambda x: x, (3, 8, 8))


# ---------------------------------------------------------------- real architectures


@pytest.mark.parametrize("name", ["resnet18", "mobilenetv2_050"])
def test_timm_models_agree_with_torch_flop_counter(name):
    net = create_student(name, num_classes=10).eval()
    cost = profile(net, (3, 64, 64))
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        net(torch.zeros(1, 3, 64, 64))
    # FlopCounterMode counts 2 flops per multiply-accumulate of every conv and matmul and nothing else
    # (no bias, BN, activation or pooling), which is the paper's convention: exact equality.
    assert 2 * cost.mult_adds == counter.get_total_flops()
    if name == "resnet18":
        # 7x7 stem (category "other"): 64 x 32 x 32 outputs, each 3 x 7 x 7 MACs; fc: 10 x 512.
        assert cost.by_layer_type["other"] == (64 * 32 * 32 * 3 * 49, 64 * 3 * 49)
        assert cost.by_layer_type["fc"] == (10 * 512, 10 * 512)
        assert cost.by_layer_type["conv_dw"] == (0, 0)


def test_facenet_teacher_profile():
    facenet_pytorch = pytest.importorskip("facenet_pytorch")
    cost = profile(facenet_pytorch.InceptionResnetV1(), (3, 160, 160))
    # Measured with this profiler (torch FlopCounterMode gives the same 2 x 1,417,662,304 flops).
    # PAPER.md quotes 1600M for the in-house FaceNet teacher; the public InceptionResnetV1 is close.
    assert cost.mult_adds == pytest.approx(1_417_662_304, rel=0.01)
    assert cost.params_m == pytest.approx(23.43, abs=0.01)
    assert cost.by_layer_type["conv_dw"] == (0, 0)
    assert cost.by_layer_type["fc"] == (1792 * 512, 1792 * 512)  # last_linear, the embedding layer


# ---------------------------------------------------------------- command line


def _total_row(text: str) -> list[float]:
    row = next(line for line in text.splitlines() if line.startswith("total"))
    return [float(v) for v in row.split()[1:]]


def test_cli_prints_table_with_totals(capsys):
    assert main(["mobilenet_v1", "width_multiplier=0.5", "resolution=160"]) == 0
    out = capsys.readouterr().out
    assert "input 3x160x160" in out
    for kind in ("conv1x1", "conv_dw", "conv3x3", "fc", "other"):
        assert any(line.startswith(kind) for line in out.splitlines()), kind
    # PAPER.md: 0.5 MobileNet-160 has 76.5M mult-adds (Table 9: 76) and 1.32M params.
    mult_adds_m, share, params_m, params_share = _total_row(out)
    assert mult_adds_m == pytest.approx(76.5, abs=0.05)
    assert params_m == pytest.approx(1.32, abs=0.001)
    assert share == params_share == 100.0


def test_cli_parses_bool_and_int_overrides(capsys):
    main(["mobilenet_v1", "width_multiplier=0.25", "separable=false", "num_classes=10", "resolution=64"])
    expected = profile(MobileNetV1(0.25, num_classes=10, separable=False), (3, 64, 64))
    mult_adds_m, _, params_m, _ = _total_row(capsys.readouterr().out)
    assert mult_adds_m == pytest.approx(expected.mult_adds_m, abs=0.005)
    assert params_m == pytest.approx(expected.params_m, abs=0.0005)


def test_cli_help(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    assert "key=value" in capsys.readouterr().out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["mobilenet_v1", "width_multiplier"], "expected key=value"),
        (["mobilenet_v1", "resolution=big"], "resolution must be a positive int"),
        (["mobilenet_v2"], "unknown student 'mobilenet_v2'"),
        (["mobilenet_v1", "width_multiplier=0"], "width_multiplier must be > 0"),
    ],
)
def test_cli_bad_arguments(argv, message, capsys):
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_cli_as_module():
    result = subprocess.run(
        [sys.executable, "-m", "distill.cost", "mobilenet_v1", "width_multiplier=0.25", "resolution=128"],
        capture_output=True,
        text=True,
        check=True,
    )
    # PAPER.md: 0.25 MobileNet-128 has 13.6M mult-adds.
    assert _total_row(result.stdout)[0] == pytest.approx(13.6, abs=0.05)
    assert isinstance(profile(Toy(), (3, 9, 9)), CostProfile)
