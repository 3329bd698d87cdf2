"""The curriculum's own code for 002 Q28 v2 (custom activations in ``SimpleNet``), Q33 (two-input
fusion) and Q48 (the BatchNorm wrapper), reproduced faithfully at the seed's sizes, against ours
(``mlp_784_256_10_act``, ``multi_input_fusion``, ``batchnorm1d_scratch``).

Its one bug here: ``SimpleNet`` flattens with ``view(-1, 784)``, so a wrong-sized image becomes
more rows instead of an error (the pattern of catalog B36, in Q27 v2). The rest pins parity: where
our model keeps the seed's architecture, the seed's weights load into ours unchanged and both
compute the same function; and it pins the one naming decision, "gelu" (the seed's tanh GELU is
our "gelu_tanh").
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F

from impl import count_parameters, get_spec

# ---- 002 Q28 v2, as written (the plotting and printing left out) ----


class Swish(nn.Module):
    def __init__(self, beta=1.0, trainable=False):
        super().__init__()
        self.trainable = trainable
        if trainable:
            self.beta = nn.Parameter(torch.tensor(beta))
        else:
            self.register_buffer("beta", torch.tensor(beta))

    def forward(self, x):
        return x * torch.sigmoid(self.beta * x)


class GELU(nn.Module):
    def __init__(self, approximate="tanh"):
        super().__init__()
        self.approximate = approximate

    def forward(self, x):
        if self.approximate == "tanh":
            return (
                0.5
                * x
                * (1 + torch.tanh(math.sqrt(2 / math.pi) * (x + 0.044715 * torch.pow(x, 3))))
            )
        else:
            return x * 0.5 * (1 + torch.erf(x / math.sqrt(2)))


class SimpleNet(nn.Module):
    def __init__(self, activation="swish"):
        super().__init__()
        self.fc1 = nn.Linear(784, 256)
        self.fc2 = nn.Linear(256, 10)
        if activation == "swish":
            self.activation = Swish(beta=1.0, trainable=True)
        elif activation == "gelu":
            self.activation = GELU()
        else:
            self.activation = nn.ReLU()

    def forward(self, x):
        x = x.view(-1, 784)
        x = self.activation(self.fc1(x))
        x = self.fc2(x)
        return x


# ---- 002 Q33, as written ----


class MultiInputModel(nn.Module):
    def __init__(self, img_feature_size, text_feature_size, hidden_size, num_classes):
        super(MultiInputModel, self).__init__()  # noqa: UP008 (the seed's spelling)
        self.img_fc = nn.Linear(img_feature_size, hidden_size)
        self.text_fc = nn.Linear(text_feature_size, hidden_size)
        self.classifier = nn.Linear(hidden_size * 2, num_classes)

    def forward(self, img_input, text_input):
        img_features = self.img_fc(img_input)
        text_features = self.text_fc(text_input)
        combined = torch.cat((img_features, text_features), dim=1)
        output = self.classifier(combined)
        return output


# ---- 002 Q48, as written ----


class BatchNormExample(nn.Module):
    def __init__(self, num_features):
        super(BatchNormExample, self).__init__()  # noqa: UP008 (the seed's spelling)
        self.bn = nn.BatchNorm1d(num_features)

    def forward(self, x):
        return self.bn(x)


# the seed's SimpleNet(activation) and our size with the same function
Q28_ACTIVATIONS = {"swish": "full_swish_trainable", "gelu": "full_gelu_tanh", "relu": "full_relu"}


def test_q28_view_turns_a_wrong_sized_image_into_more_rows_and_ours_refuses_it() -> None:
    """Catalog B36's pattern, in Q28 v2: two 2-channel 28x28 images are not MNIST digits, yet
    ``view(-1, 784)`` reads them as four and returns four rows of logits; we raise instead."""
    torch.manual_seed(0)
    wrong = torch.randn(2, 2, 28, 28)
    with torch.no_grad():
        assert SimpleNet("relu")(wrong).shape == (4, 10)  # two samples in, four predictions out
    ours = get_spec("mlp_784_256_10_act").create("full_relu")
    with pytest.raises(ValueError, match=r"expected input \(B, 784\) or \(B, 1, 28, 28\), got \["):
        ours(wrong)


@pytest.mark.parametrize("seed_activation", sorted(Q28_ACTIVATIONS))
def test_q28_seed_weights_load_into_ours_and_give_the_same_logits(seed_activation: str) -> None:
    """Same layers under the same names (fc1, activation, fc2: Swish's beta included), so the
    seed's state_dict loads strictly; the logits agree on images and on flat vectors."""
    torch.manual_seed(0)
    seed_model = SimpleNet(seed_activation).eval()
    ours = get_spec("mlp_784_256_10_act").create(Q28_ACTIVATIONS[seed_activation]).eval()
    assert count_parameters(ours) == count_parameters(seed_model)
    ours.load_state_dict(seed_model.state_dict())
    images = torch.randn(5, 1, 28, 28)
    with torch.no_grad():
        torch.testing.assert_close(ours(images), seed_model(images))
        torch.testing.assert_close(ours(images.flatten(1)), seed_model(images))


def test_q28_default_is_swish_with_a_trainable_beta_as_our_full_size() -> None:
    """``SimpleNet()`` has 203,530 + 1 parameters (the catalog's 203,530 plus beta): our "full"."""
    spec = get_spec("mlp_784_256_10_act")
    assert count_parameters(SimpleNet()) == spec.full_params == 203_531
    assert count_parameters(SimpleNet("relu")) == 203_530
    assert spec.config("full").activation == "swish_trainable"


def test_q28_seed_gelu_defaults_to_the_tanh_approximation_so_ours_names_it_gelu_tanh() -> None:
    """The seed's ``GELU()`` is tanh-approximated while ``nn.GELU()`` is exact: our names follow
    PyTorch, "gelu" exact and "gelu_tanh" approximate. They differ by up to 4.7e-4 on [-5, 5]."""
    x = torch.linspace(-5.0, 5.0, 10_001, dtype=torch.float64)
    torch.testing.assert_close(GELU()(x), F.gelu(x, approximate="tanh"))
    torch.testing.assert_close(GELU(approximate=None)(x), F.gelu(x))
    assert (GELU()(x) - F.gelu(x)).abs().max() > 4e-4
    spec = get_spec("mlp_784_256_10_act")
    ours_exact = spec.create("tiny_gelu").activation.double()
    ours_tanh = spec.create("tiny_gelu_tanh").activation.double()
    torch.testing.assert_close(ours_exact(x), GELU(approximate=None)(x))
    torch.testing.assert_close(ours_tanh(x), GELU()(x))


def test_q33_seed_weights_load_into_ours_and_give_the_same_logits() -> None:
    """The seed's own test: (8, 128) image and (8, 64) text features -> (8, 5); 6,533 params."""
    torch.manual_seed(0)
    seed_model = MultiInputModel(128, 64, 32, 5).eval()
    ours = get_spec("multi_input_fusion").create("full").eval()
    assert count_parameters(ours) == count_parameters(seed_model) == 6_533
    ours.load_state_dict(seed_model.state_dict())
    img_input, text_input = torch.randn(8, 128), torch.randn(8, 64)
    with torch.no_grad():
        out = ours(img_input, text_input)
        assert out.shape == (8, 5)
        torch.testing.assert_close(out, seed_model(img_input, text_input))


def test_q33_swapped_inputs_fail_with_the_shapes_named() -> None:
    """The seed fails deep in a matmul; ours names the input it expected."""
    seed_model, ours = (
        MultiInputModel(128, 64, 32, 5),
        get_spec("multi_input_fusion").create("full"),
    )
    img_input, text_input = torch.randn(8, 128), torch.randn(8, 64)
    with pytest.raises(RuntimeError, match="mat1 and mat2 shapes cannot be multiplied"):
        seed_model(text_input, img_input)
    with pytest.raises(ValueError, match=r"expected image features \(B, 128\), got \[8, 64\]"):
        ours(text_input, img_input)
    with pytest.raises(
        ValueError, match=r"expected text features \(B, 64\) with the image's B = 8"
    ):
        ours(img_input, text_input[:4])


def test_q48_seed_wrapper_and_our_layer_agree_on_its_example() -> None:
    """The seed's (8, 16) example through its ``nn.BatchNorm1d`` wrapper and through our layer,
    its state loaded (the ``bn.`` prefix dropped): three training steps, then eval."""
    torch.manual_seed(0)
    seed_model = BatchNormExample(16)
    ours = get_spec("batchnorm1d_scratch").create("full")
    assert count_parameters(ours) == count_parameters(seed_model) == 32
    ours.load_state_dict({k.removeprefix("bn."): v for k, v in seed_model.state_dict().items()})
    for _ in range(3):
        inputs = torch.randn(8, 16) * 3 + 1
        torch.testing.assert_close(ours.train()(inputs), seed_model.train()(inputs))
    for key, value in seed_model.bn.state_dict().items():
        torch.testing.assert_close(ours.state_dict()[key], value, msg=key)
    inputs = torch.randn(8, 16)
    with torch.no_grad():
        torch.testing.assert_close(ours.eval()(inputs), seed_model.eval()(inputs))
