"""The curriculum's GANs (002 Q34 v1 and v2) beside ours (``impl/models/gan.py``; catalog rows
``gan_mlp_small``, ``gan_mlp_mnist``, technique ``gan_training``, bug B26).

Both seed versions are kept as written, as source text, and run: v1 stops at its first line
(``import tensor``: ModuleNotFoundError) and, with its imports corrected, builds the catalog's
networks; v2's ``generate_samples`` reads a global ``device`` that nothing defines (NameError).
Their weights load into ours and give the same images and, through a sigmoid, the same
probabilities; v2's own ``train_gan``, with MNIST swapped for load_digits, takes the step ours
takes. Ours trains on load_digits in [-1, 1]: a D step lowers D's loss and a G step G's.
Every other property comes from the registry's generated checks.
"""

from __future__ import annotations

import ast
import types

import pytest
import torch
from torch import nn

from impl import count_parameters, get_spec
from impl.models.gan import GANPair, real_digits

MODELS = ("gan_mlp_small", "gan_mlp_mnist")

# ---- 002 Q34, as written (trailing spaces dropped) ----

# v1: the whole answer.
SEED_Q34_V1 = """
import tensor
import tensor.nn as nn

class Generator(nn.Module):
    def __init__(self, noise_dim, output_dim):
        super(Generator, self).__init__()
        self.fc = nn.Sequential(
            nn.Linear(noise_dim, 128),
            nn.ReLU(),
            nn.Linear(128, 256),
            nn.ReLU(),
            nn.Linear(256, output_dim),
            nn.Tanh()
        )

    def forward(self, x):
        return self.fc(x)

class Discriminator(nn.Module):
    def __init__(self, input_dim):
        super(Discriminator, self).__init__()
        self.fc = nn.Sequential(
            nn.Linear(input_dim, 256),
            nn.LeakyReLU(0.2),
            nn.Linear(256, 128),
            nn.LeakyReLU(0.2),
            nn.Linear(128, 1),
            nn.Sigmoid()
        )

    def forward(self, x):
        return self.fc(x)

# 測試 GAN 模型
noise_dim = 100
output_dim = 28 * 28
generator = Generator(noise_dim, output_dim)
discriminator = Discriminator(output_dim)

# 模擬訓練
noise = torch.randn(16, noise_dim)
fake_images = generator(noise)
print("Fake Image Shape:", fake_images.shape)
real_or_fake = discriminator(fake_images)
print("Discriminator Output Shape:", real_or_fake.shape)

"""

# v2 (the "perplexity" answer): both of its code blocks.
SEED_Q34_V2 = """
import torch
import torch.nn as nn
import torch.optim as optim
import torchvision
import torchvision.transforms as transforms
import matplotlib.pyplot as plt
import numpy as np

class Generator(nn.Module):
    def __init__(self, noise_dim):
        super(Generator, self).__init__()
        self.main = nn.Sequential(
            nn.Linear(noise_dim, 256),
            nn.ReLU(),
            nn.Linear(256, 512),
            nn.ReLU(),
            nn.Linear(512, 1024),
            nn.ReLU(),
            nn.Linear(1024, 784),
            nn.Tanh()
        )

    def forward(self, x):
        return self.main(x).view(-1, 1, 28, 28)

class Discriminator(nn.Module):
    def __init__(self):
        super(Discriminator, self).__init__()
        self.main = nn.Sequential(
            nn.Linear(784, 512),
            nn.LeakyReLU(0.2),
            nn.Linear(512, 256),
            nn.LeakyReLU(0.2),
            nn.Linear(256, 1),
            nn.Sigmoid()
        )

    def forward(self, x):
        x = x.view(-1, 784)
        return self.main(x)

def train_gan(epochs=100, batch_size=64, noise_dim=100):
    # 資料載入
    transform = transforms.Compose([
        transforms.ToTensor(),
        transforms.Normalize((0.5,), (0.5,))
    ])

    dataset = torchvision.datasets.MNIST(root='./data',
                                       train=True,
                                       transform=transform,
                                       download=True)

    dataloader = torch.utils.data.DataLoader(dataset,
                                           batch_size=batch_size,
                                           shuffle=True)

    # 初始化模型
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    generator = Generator(noise_dim).to(device)
    discriminator = Discriminator().to(device)

    # 損失函數和優化器
    criterion = nn.BCELoss()
    g_optimizer = optim.Adam(generator.parameters(), lr=0.0002)
    d_optimizer = optim.Adam(discriminator.parameters(), lr=0.0002)

    for epoch in range(epochs):
        for i, (real_images, _) in enumerate(dataloader):
            batch_size = real_images.size(0)
            real_label = torch.ones(batch_size, 1).to(device)
            fake_label = torch.zeros(batch_size, 1).to(device)

            # 訓練判別器
            real_images = real_images.to(device)
            d_output_real = discriminator(real_images)
            d_loss_real = criterion(d_output_real, real_label)

            noise = torch.randn(batch_size, noise_dim).to(device)
            fake_images = generator(noise)
            d_output_fake = discriminator(fake_images.detach())
            d_loss_fake = criterion(d_output_fake, fake_label)

            d_loss = d_loss_real + d_loss_fake
            d_optimizer.zero_grad()
            d_loss.backward()
            d_optimizer.step()

            # 訓練生成器
            g_output = discriminator(fake_images)
            g_loss = criterion(g_output, real_label)
            g_optimizer.zero_grad()
            g_loss.backward()
            g_optimizer.step()

        if (epoch + 1) % 10 == 0:
            print(f'Epoch [{epoch+1}/{epochs}], d_loss: {d_loss.item():.4f}, g_loss: {g_loss.item():.4f}')

    return generator, discriminator


def generate_samples(generator, noise_dim=100, num_samples=16):
    with torch.no_grad():
        noise = torch.randn(num_samples, noise_dim).to(device)
        generated_images = generator(noise)
        generated_images = generated_images.cpu().numpy()

    plt.figure(figsize=(4, 4))
    for i in range(num_samples):
        plt.subplot(4, 4, i+1)
        plt.imshow(generated_images[i][0], cmap='gray')
        plt.axis('off')
    plt.show()

"""  # noqa: E501 (the seed's print line)

V1_IMPORTS = "import tensor\nimport tensor.nn as nn\n"
V1_FIXED_IMPORTS = "import torch\nimport torch.nn as nn\n"


def _run(source: str, name: str) -> dict:
    """Execute a seed's source as a module named ``name`` (imported, not run as a script)."""
    namespace = {"__name__": name}
    exec(compile(source, name, "exec"), namespace)
    return namespace


def _seed_v1() -> dict:
    """v1 with its imports corrected: the namespace after it ran (it prints two shapes)."""
    return _run(SEED_Q34_V1.replace(V1_IMPORTS, V1_FIXED_IMPORTS), "seed_q34_v1")


def _seed_v2() -> dict:
    """v2's definitions (nothing runs at module level: MNIST is loaded inside ``train_gan``)."""
    return _run(SEED_Q34_V2, "seed_q34_v2")


def _ours_with_the_seeds_weights(name: str, seed_g: nn.Module, seed_d: nn.Module) -> GANPair:
    """Our full-size pair holding a seed's weights: its ``fc.`` (v1) or ``main.`` (v2) Sequential
    is our ``net.``, layer indices alike, so the state_dicts load strictly."""

    def renamed(module: nn.Module) -> dict[str, torch.Tensor]:
        return {f"net.{k.partition('.')[2]}": v for k, v in module.state_dict().items()}

    ours = get_spec(name).create("full")
    ours.generator.load_state_dict(renamed(seed_g))
    ours.discriminator.load_state_dict(renamed(seed_d))
    return ours


# ---- B26: neither version runs as written ----


def test_gan_mlp_small_b26_seed_v1_imports_a_module_named_tensor(capsys) -> None:
    """Catalog B26: v1's first line, ``import tensor``, raises ModuleNotFoundError, so nothing
    after it runs. The file then uses ``torch`` (``torch.randn``), which it never imports: the
    fix is the import lines. With ``import torch`` and ``import torch.nn as nn`` it runs and
    builds the catalog's networks: G 247,440 and D 233,985 parameters, fake (16, 784), D
    (16, 1), ours' counts and shapes."""
    with pytest.raises(ModuleNotFoundError, match="No module named 'tensor'"):
        _run(SEED_Q34_V1, "seed_q34_v1")
    tree = ast.parse(SEED_Q34_V1)
    imported = {
        a.asname or a.name for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names
    }
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    assert imported == {"tensor", "nn"} and "torch" in used

    capsys.readouterr()
    seed = _seed_v1()
    printed = capsys.readouterr().out.splitlines()
    assert printed == [
        "Fake Image Shape: torch.Size([16, 784])",
        "Discriminator Output Shape: torch.Size([16, 1])",
    ]
    assert count_parameters(seed["generator"]) == 247_440
    assert count_parameters(seed["discriminator"]) == 233_985
    ours = get_spec("gan_mlp_small").create("full")
    assert count_parameters(ours.generator) == 247_440
    assert count_parameters(ours.discriminator) == 233_985
    with torch.no_grad():
        out = ours(torch.randn(16, 100))
    assert out["fake"].shape == (16, 784) and out["logits"].shape == (16, 1)


def test_gan_mlp_mnist_b26_seed_v2_generate_samples_reads_an_undefined_global_device() -> None:
    """Catalog B26: v2's ``generate_samples`` moves its noise ``.to(device)``, and ``device`` is
    a local of ``train_gan``: no module-level statement defines it, so the call raises NameError
    before drawing anything. Ours samples on the pair's own device (the meta device stands in for
    a GPU here): (N, 1, 28, 28) in [-1, 1]."""
    tree = ast.parse(SEED_Q34_V2)
    module_level = {
        target.id
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }
    train_gan = next(n for n in tree.body if getattr(n, "name", "") == "train_gan")
    in_train_gan = {n.id for n in ast.walk(train_gan) if isinstance(n, ast.Name)}
    assert "device" not in module_level and "device" in in_train_gan

    seed = _seed_v2()
    torch.manual_seed(0)
    with pytest.raises(NameError, match="name 'device' is not defined"):
        seed["generate_samples"](seed["Generator"](100))

    pair = get_spec("gan_mlp_mnist").create("full")
    images = pair.sample(16, generator=torch.Generator().manual_seed(0))
    assert images.shape == (16, 1, 28, 28) and images.abs().max() <= 1
    assert not images.requires_grad
    on_meta = pair.to("meta").sample(4)
    assert on_meta.device.type == "meta" and on_meta.shape == (4, 1, 28, 28)


# ---- the seeds' networks and step are ours ----


@pytest.mark.parametrize(
    ("name", "networks"),
    [
        (
            "gan_mlp_small",
            lambda: (_seed_v1()["Generator"](100, 784), _seed_v1()["Discriminator"](784)),
        ),
        ("gan_mlp_mnist", lambda: (_seed_v2()["Generator"](100), _seed_v2()["Discriminator"]())),
    ],
    ids=MODELS,
)
def test_gan_equals_the_seeds_networks_with_their_weights(name: str, networks) -> None:
    """The seed's state_dicts load into ours strictly (prefix renamed); on the same noise ours
    makes the seed's images, bit for bit, and sigmoid of our logit is the seed's Sigmoid
    output. v2's D also takes the flat images v1 makes, and ours the same."""
    torch.manual_seed(0)
    seed_g, seed_d = networks()
    ours = _ours_with_the_seeds_weights(name, seed_g, seed_d).eval()
    z = torch.randn(5, 100, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        out = ours(z)
        fake = seed_g(z)
        assert torch.equal(out["fake"], fake)
        probability = seed_d(fake)
        assert torch.equal(torch.sigmoid(out["logits"]), probability)
        assert torch.equal(ours.real_probability(fake), probability)
        assert torch.equal(ours.discriminator(fake.flatten(1)), out["logits"])


def test_gan_mlp_mnist_discriminator_refuses_what_the_seeds_view_folds_across_samples() -> None:
    """v2's D reshapes with ``x.view(-1, 784)``: two 2-channel 28x28 images become four rows
    and four verdicts, silently. Ours flattens each sample (``flatten(1)``): 1,568 values per
    sample do not fit D's 784 inputs, and it raises."""
    torch.manual_seed(0)
    seed_d = _seed_v2()["Discriminator"]()
    ours = get_spec("gan_mlp_mnist").create("full")
    two_channel = torch.rand(2, 2, 28, 28) * 2 - 1
    with torch.no_grad():
        assert seed_d(two_channel).shape == (4, 1)
        with pytest.raises(RuntimeError, match="cannot be multiplied"):
            ours.discriminator(two_channel)


def test_gan_mlp_mnist_step_is_the_seeds_train_gan_step_on_load_digits() -> None:
    """v2's own ``train_gan``, run for one epoch of one batch with MNIST swapped for 64
    load_digits images (28x28 in [-1, 1], what its ToTensor + Normalize(0.5, 0.5) makes of MNIST)
    and its noise recorded, in float64. Ours, from the same seed (same initial weights: G then D,
    layer by layer, as the seed builds them), takes one ``GANTrainer`` step on the same images and
    noise: D on real and ``fake.detach()``, then G, each with its own Adam(lr 2e-4), D scored
    with BCE-with-logits where the seed has Sigmoid and BCELoss. The weights after agree."""
    images = real_digits(28)[:64].double().reshape(64, 1, 28, 28)

    class RecordingTorch(types.ModuleType):
        """``torch`` for the seed's globals, keeping what ``torch.randn`` returns."""

        def __init__(self) -> None:
            super().__init__("torch")
            self.noise: list[torch.Tensor] = []

        def __getattr__(self, name: str):
            return getattr(torch, name)

        def randn(self, *args, **kwargs) -> torch.Tensor:
            self.noise.append(torch.randn(*args, **kwargs))
            return self.noise[-1]

    seed = _seed_v2()
    recording = RecordingTorch()
    seed["torch"] = recording
    dataset = torch.utils.data.TensorDataset(images, torch.zeros(64, dtype=torch.long))
    seed["torchvision"] = types.SimpleNamespace(
        datasets=types.SimpleNamespace(MNIST=lambda **kwargs: dataset)
    )
    default = torch.get_default_dtype()
    torch.set_default_dtype(torch.float64)
    try:
        torch.manual_seed(0)
        seed_g, seed_d = seed["train_gan"](epochs=1, batch_size=64)
        torch.manual_seed(0)
        ours = get_spec("gan_mlp_mnist").create("full")
        initial = [p.detach().clone() for p in ours.parameters()]
        (noise,) = recording.noise
        trainer = ours.trainer()
        fake = ours.generator(noise)
        trainer.discriminator_step(images, fake)
        trainer.generator_step(fake)
        expected = _ours_with_the_seeds_weights("gan_mlp_mnist", seed_g, seed_d)
    finally:
        torch.set_default_dtype(default)
    for (key, p), q, p0 in zip(
        ours.named_parameters(), expected.parameters(), initial, strict=True
    ):
        assert p.dtype == torch.float64
        torch.testing.assert_close(p, q, rtol=1e-9, atol=1e-12, msg=key)
        assert not torch.equal(p, p0), f"{key} did not move"


# ---- training on load_digits ----


@pytest.mark.parametrize("size", ["tiny", "full"])
@pytest.mark.parametrize("name", MODELS)
def test_gan_step_on_load_digits_lowers_d_loss_on_a_d_step_and_g_loss_on_a_g_step(
    name: str, size: str
) -> None:
    """One GAN step of the seed's batch (64) and optimisers (Adam, lr 2e-4) on load_digits in
    [-1, 1] (8x8 as they come for the tiny sizes, bilinearly upsampled to 28x28 for the full
    ones): the D step lowers D's loss on the same real and fake images and leaves G alone; the G
    step, against the updated D, lowers G's loss on the same noise and leaves D alone. The
    registry's declared loss is that G loss."""
    spec = get_spec(name)
    cfg = spec.config(size)
    for seed in range(3):
        torch.manual_seed(seed)
        pair = spec.create(size).train()
        trainer = pair.trainer()
        data = torch.Generator().manual_seed(seed)
        real = real_digits(cfg.image_side, 64, data).reshape(64, *cfg.fake_shape)
        assert real.min() >= -1 and real.max() <= 1 and real.min() < -0.99
        (z,) = spec.inputs(cfg, 64, seed=seed)
        fake = pair.generator(z)

        g_before = [p.detach().clone() for p in pair.generator.parameters()]
        d_loss = trainer.discriminator_step(real, fake)
        with torch.no_grad():
            assert trainer.discriminator_loss(real, fake) < d_loss
        assert all(
            torch.equal(p, q) for p, q in zip(pair.generator.parameters(), g_before, strict=True)
        )

        with torch.no_grad():
            torch.testing.assert_close(
                spec.loss(pair(z), spec.make_targets(cfg, (z,))), trainer.generator_loss(fake)
            )
        d_before = [p.detach().clone() for p in pair.discriminator.parameters()]
        g_loss = trainer.generator_step(fake)
        with torch.no_grad():
            assert trainer.generator_loss(pair.generator(z)) < g_loss
        assert all(
            torch.equal(p, q)
            for p, q in zip(pair.discriminator.parameters(), d_before, strict=True)
        )
