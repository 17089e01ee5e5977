"""Boxes and captions drawn onto a photo for annotated detection answers."""

from __future__ import annotations

import numpy as np

from support import photo
from visiongate.service.vision.draw import PALETTE, draw_detections


def test_boxes_are_drawn_in_the_class_colour_and_the_input_is_untouched() -> None:
    rgb = photo("coffee")
    before = rgb.copy()
    boxes = np.array([[100, 60, 400, 300]], np.float32)
    out = draw_detections(rgb, boxes, np.array([41]), np.array([0.58]), labels=["x"] * 80)
    assert out.shape == rgb.shape and np.array_equal(rgb, before)
    colour = PALETTE[41 % len(PALETTE)]
    assert tuple(out[200, 100]) == colour and tuple(out[300, 250]) == colour  # left and bottom edges (inclusive)
    assert np.array_equal(out[150:250, 150:350], rgb[150:250, 150:350])  # inside is the photo


def test_a_box_at_the_top_edge_gets_its_caption_inside_and_nothing_breaks_without_labels() -> None:
    rgb = np.full((50, 80, 3), 255, np.uint8)
    out = draw_detections(rgb, np.array([[0, 0, 80, 50]], np.float32), np.array([3]), np.array([0.9]))
    assert (out != 255).any()
    empty = draw_detections(rgb, np.zeros((0, 4), np.float32), np.zeros(0, np.int64), np.zeros(0))
    assert np.array_equal(empty, rgb)
