"""Resize policies put the right pixels in the network input and know how to map them back."""

from __future__ import annotations

import numpy as np

from visiongate.service.vision.postprocess import softmax, top_k
from visiongate.service.vision.preprocess import PreprocessConfig, preprocess, shrink_limit, to_model_layout

CROP = PreprocessConfig(input_size=(224, 224), resize="center_crop", resize_size=256)
LETTERBOX = PreprocessConfig(input_size=(416, 416), resize="letterbox", pad_value=127)


def test_center_crop_takes_the_middle_of_the_shorter_side() -> None:
    img = np.zeros((300, 600, 3), np.uint8)
    img[:, 250:350] = 255  # a white band in the middle
    out, placement = preprocess(img, CROP)
    assert out.shape == (224, 224, 3) and out.dtype == np.uint8
    assert out[112, 112].min() == 255 and out[112, 0].max() == 0
    # the centre of the input maps back to the centre of the photo
    centre = placement.to_original(np.array([[112, 112, 112, 112]], np.float32))
    assert np.allclose(centre[0, :2], (300, 150), atol=1)


def test_letterbox_keeps_aspect_pads_and_maps_boxes_back_exactly() -> None:
    img = np.full((200, 400, 3), 9, np.uint8)
    out, placement = preprocess(img, LETTERBOX)
    assert out.shape == (416, 416, 3)
    assert out[0, 0, 0] == 127 and out[208, 208, 0] == 9  # padding above, image in the middle
    box_in_net = np.array([[0, 104, 416, 312]], np.float32)  # the whole resized picture
    assert np.allclose(placement.to_original(box_in_net), [[0, 0, 400, 200]], atol=0.5)


def test_decode_time_shrink_is_folded_into_the_mapping() -> None:
    # the decoder halved a 800x400 photo to 400x200: boxes must still land in the 800x400 frame
    img = np.full((200, 400, 3), 9, np.uint8)
    _, placement = preprocess(img, LETTERBOX, original_size=(800, 400))
    assert np.allclose(placement.to_original(np.array([[0, 104, 416, 312]], np.float32)), [[0, 0, 800, 400]],
                       atol=1)


def test_shrink_limit_never_asks_for_less_than_the_policy_needs() -> None:
    assert shrink_limit(CROP, 1920, 1080) == (456, 256)
    assert shrink_limit(LETTERBOX, 1920, 1080) == (416, 234)
    assert shrink_limit(CROP, 200, 100) is None  # already small: decode in full
    assert shrink_limit(PreprocessConfig(input_size=None, resize="none"), 4000, 3000) is None


def test_float_layout_normalises_in_numpy_for_models_without_in_graph_normalisation() -> None:
    cfg = PreprocessConfig(input_size=(2, 2), layout="float_nchw", mean=(0.5, 0.5, 0.5), std=(0.5, 0.5, 0.5),
                           channel_order="BGR")
    px = np.zeros((2, 2, 3), np.uint8)
    px[..., 0] = 255  # pure red
    x = to_model_layout(px, cfg)
    assert x.shape == (3, 2, 2) and x.dtype == np.float32
    assert np.allclose(x[2], 1.0) and np.allclose(x[0], -1.0)  # red is the last channel in BGR


def test_top_k_is_sorted_and_probabilities_sum_to_one() -> None:
    probs = softmax(np.array([1.0, 3.0, 2.0, 3.0]))
    assert abs(probs.sum() - 1) < 1e-12
    assert [i for i, _ in top_k(probs, 3)] == [1, 3, 2]  # ties broken by the lower id
    assert len(top_k(probs, 10)) == 4


def test_gateway_normalisation_in_input_range_units_nhwc_fp16() -> None:
    # mmdetection style: mean/std in 0..255 units, NHWC, half precision
    cfg = PreprocessConfig(input_size=(2, 2), layout="NHWC", dtype="float16", normalize=True, pixel_scale=1.0,
                           mean=(123.675, 116.28, 103.53), std=(58.395, 57.12, 57.375))
    px = np.full((2, 2, 3), 200, np.uint8)
    x = to_model_layout(px, cfg)
    assert x.shape == (2, 2, 3) and x.dtype == np.float16
    expected = (200 - np.array([123.675, 116.28, 103.53])) / [58.395, 57.12, 57.375]
    assert np.allclose(x[0, 0], expected, atol=1e-2)


def test_plain_pixels_grey_and_uint8_nchw() -> None:
    px = np.zeros((2, 2, 3), np.uint8)
    px[..., 1] = 255  # pure green
    grey_cfg = PreprocessConfig(input_size=(2, 2), layout="NCHW", dtype="float32", channels=1)
    grey = to_model_layout(px, grey_cfg)
    assert grey.shape == (1, 2, 2) and np.allclose(grey, 0.587, atol=1e-3)  # luma of green, scaled to [0, 1]
    u8 = to_model_layout(px, PreprocessConfig(input_size=(2, 2), layout="NCHW", dtype="uint8"))
    assert u8.shape == (3, 2, 2) and u8.dtype == np.uint8 and u8[1].min() == 255


def test_interpolation_and_letterbox_alignment_are_honoured() -> None:
    from support import photo

    rgb = photo("chelsea")
    near, _ = preprocess(rgb, PreprocessConfig(input_size=(64, 64), interpolation="nearest"))
    area, _ = preprocess(rgb, PreprocessConfig(input_size=(64, 64), interpolation="area"))
    assert set(np.unique(near)) <= set(np.unique(rgb))  # nearest invents no value
    assert not np.array_equal(near, area)
    top_left = PreprocessConfig(input_size=(416, 416), resize="letterbox", letterbox_center=False)
    out, placement = preprocess(np.full((200, 400, 3), 9, np.uint8), top_left)
    assert out[0, 0, 0] == 9 and out[415, 0, 0] == 114  # picture at the top, Ultralytics' pad below
    assert (placement.offset_x, placement.offset_y) == (0.0, 0.0)
