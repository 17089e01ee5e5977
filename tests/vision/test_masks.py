"""service/vision/masks.py: placement inverse, COCO RLE, polygons, overlay."""

from __future__ import annotations

import numpy as np
import pytest

from support import photo
from visiongate.service.vision import masks as vm
from visiongate.service.vision.preprocess import Placement, PreprocessConfig, preprocess

rng = np.random.default_rng(7)


def random_masks(count: int = 60) -> list[np.ndarray]:
    out = []
    for _ in range(count):
        h, w = rng.integers(1, 48, 2)
        out.append(rng.random((h, w)) < rng.random())
    out += [np.zeros((5, 7), bool), np.ones((5, 7), bool), np.eye(6, dtype=bool)]
    return out


@pytest.mark.parametrize("compressed", [True, False])
def test_rle_round_trip(compressed: bool) -> None:
    for m in random_masks():
        rle = vm.encode_rle(m, compressed=compressed)
        assert rle["size"] == [m.shape[0], m.shape[1]]
        assert (vm.decode_rle(rle) == m).all()


def test_rle_of_a_crop_is_the_rle_of_the_whole_mask() -> None:
    for m in random_masks():
        x0, y0 = (int(v) for v in rng.integers(0, 4, 2))
        w, h = m.shape[1] + x0 + int(rng.integers(0, 3)), m.shape[0] + y0 + int(rng.integers(0, 3))
        inst = vm.InstanceMask(m, x0, y0, (w, h))
        assert vm.encode_rle(inst) == vm.encode_rle(inst.full())


def test_rle_matches_pycocotools() -> None:
    mask_api = pytest.importorskip("pycocotools.mask")
    for m in random_masks():
        theirs = mask_api.encode(np.asfortranarray(m.astype(np.uint8)))
        assert vm.encode_rle(m)["counts"] == theirs["counts"].decode()
        assert (vm.decode_rle({"size": theirs["size"], "counts": theirs["counts"].decode()}) == m).all()


def test_rle_of_a_real_person_mask_is_small_and_exact() -> None:
    from PIL import Image
    from segment_models import ROOT

    with Image.open(ROOT / "tests/data/astronaut_person_mask.png") as img:
        person = np.asarray(img) > 0
    rle = vm.encode_rle(person)
    assert len(rle["counts"]) < 3000
    assert (vm.decode_rle(rle) == person).all()


@pytest.mark.parametrize("bad", ["0", "1a", "\x7f\x7f"])
def test_bad_rle_is_a_value_error(bad: str) -> None:
    with pytest.raises(ValueError):
        vm.decode_rle({"size": [4, 4], "counts": bad})


def inside(polys: list[list[float]], h: int, w: int) -> np.ndarray:
    """Pixel centres inside any of the polygons (each by the even-odd rule)."""
    ys, xs = np.mgrid[:h, :w] + 0.5
    out = np.zeros((h, w), bool)
    for p in polys:
        pts = np.asarray(p).reshape(-1, 2)
        one = np.zeros((h, w), bool)
        for (x1, y1), (x2, y2) in zip(pts, np.roll(pts, -1, axis=0), strict=True):
            if y1 != y2:
                one ^= ((y1 > ys) != (y2 > ys)) & (xs < x1 + (ys - y1) * (x2 - x1) / (y2 - y1))
        out |= one
    return out


def test_polygons_without_simplification_are_exact_outlines() -> None:
    for m in random_masks(30):
        polys = vm.polygons(m, tolerance=0)
        filled = inside(polys, *m.shape)
        # holes are not described: the polygons cover the mask and only the mask's holes besides
        assert (filled | ~m).all()
        for p in polys:
            assert len(p) >= 6 and len(p) % 2 == 0
            pts = np.asarray(p).reshape(-1, 2)
            assert (pts >= 0).all() and (pts[:, 0] <= m.shape[1]).all() and (pts[:, 1] <= m.shape[0]).all()


def test_blobs_without_holes_round_trip_through_polygons() -> None:
    yy, xx = np.mgrid[:100, :120]
    blobs = ((xx - 50) ** 2 + (yy - 40) ** 2 < 30**2) | ((xx - 100) ** 2 + (yy - 80) ** 2 < 10**2)
    exact = vm.polygons(blobs, tolerance=0)
    assert len(exact) == 2 and (inside(exact, 100, 120) == blobs).all()
    simple = vm.polygons(blobs, tolerance=1.0)
    assert sum(len(p) for p in simple) < sum(len(p) for p in exact) / 3
    got = inside(simple, 100, 120)
    assert (got & blobs).sum() / (got | blobs).sum() > 0.97


def test_pixels_touching_at_a_corner_are_separate_polygons() -> None:
    polys = vm.polygons(np.array([[1, 0], [0, 1]], bool), tolerance=0)
    assert sorted(polys) == [
        [1.0, 0.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0],
        [2.0, 1.0, 2.0, 2.0, 1.0, 2.0, 1.0, 1.0],
    ]


def test_polygons_of_an_instance_are_in_image_pixels() -> None:
    inst = vm.InstanceMask(np.ones((2, 3), bool), 10, 20, (50, 40))
    assert vm.polygons(inst, tolerance=0) == [[13.0, 20.0, 13.0, 22.0, 10.0, 22.0, 10.0, 20.0]]


@pytest.mark.parametrize("resize", ["stretch", "letterbox", "center_crop"])
def test_maps_come_back_to_the_original_pixels(resize: str) -> None:
    """A map that marks the network pixels holding a red square must land on that square."""
    img = np.zeros((300, 500, 3), np.uint8)
    img[100:200, 200:300] = (255, 0, 0)
    cfg = PreprocessConfig((128, 128), resize, resize_size=128)  # type: ignore[arg-type]
    net, placement = preprocess(img, cfg)
    red = (net[..., 0] > 127).astype(np.float32)
    for scale in (1, 4):  # a map at the input size, and one at a quarter of it (like prototypes)
        small = red[::scale, ::scale] if scale > 1 else red
        maps = np.stack([1 - small, small])
        ids = vm.class_map(maps, placement, (128, 128))
        assert ids.shape == (300, 500)
        square = np.zeros((300, 500), bool)
        square[100:200, 200:300] = True
        tolerance = 500 / 128 * scale * 1.5  # pixels of the original per map pixel
        assert ((ids == 1) & square).sum() / square.sum() > 0.9
        far = np.ones_like(square)
        t = int(np.ceil(tolerance))
        far[max(0, 100 - t) : 200 + t, max(0, 200 - t) : 300 + t] = False
        assert not (ids == 1)[far].any()


def test_letterbox_padding_never_leaks_into_the_image() -> None:
    placement = Placement(
        0.5, 0.5, 0.0, 14.0, (200, 100)
    )  # 200x100 -> 100x50 at y 14 in 100x78... as letterbox
    maps = np.zeros((2, 78, 100), np.float32)
    maps[1, :14] = maps[1, 64:] = 1.0  # "class 1" only in the padding bands
    maps[0] = 1 - maps[1]
    assert (vm.class_map(maps, placement, (78, 100)) == 0).all()


def test_class_map_takes_the_best_of_many_classes() -> None:
    maps = rng.random((5, 16, 16)).astype(np.float32)
    placement = Placement(1.0, 1.0, 0.0, 0.0, (16, 16))
    assert (vm.class_map(maps, placement, (16, 16)) == maps.argmax(0)).all()
    ids = vm.class_map(maps, placement, (16, 16))
    assert vm.class_fractions(ids, 5).sum() == pytest.approx(1.0)


def test_instance_masks_stay_inside_their_boxes() -> None:
    protos = np.zeros((2, 32, 32), np.float32)
    protos[0] = 10.0  # everywhere
    protos[1, 8:24, 8:24] = 20.0  # a centred square
    coefficients = np.array([[1.0, 0.0], [-1.0, 1.0]], np.float32)
    placement = Placement(0.5, 0.5, 0.0, 0.0, (256, 256))  # 256 original -> 128 input -> 32 map
    boxes = np.array([[20, 30, 100, 90], [0, 0, 256, 256]], np.float32)
    first, second = vm.instance_masks(coefficients, protos, boxes, placement, (128, 128))
    assert first.full()[30:90, 20:100].all() and first.area == 80 * 60
    square = second.full()
    assert square[70:186, 70:186].all() and not square[:60].any() and not square[:, 200:].any()


def test_overlay_paints_masks_and_a_legend() -> None:
    rgb = photo("coffee")
    mask = np.zeros(rgb.shape[:2], bool)
    mask[200:300, 300:400] = True
    out = vm.overlay(rgb, [(mask, 1)], [("cup 42%", 1)])
    assert out.shape == rgb.shape and out.dtype == np.uint8
    changed = np.abs(out.astype(int) - rgb).sum(-1) > 20
    assert changed[mask].all()
    assert changed[:12, :40].any()  # the legend
    assert not changed[350:, :250].any()


def test_png_holds_class_ids() -> None:
    ids = rng.integers(0, 21, (30, 40)).astype(np.uint8)
    assert (vm.read_png(vm.png_bytes(ids)) == ids).all()


def test_inside_boxes_covers_each_box_grown_by_its_margin_and_clipped() -> None:
    keep = vm.inside_boxes((20, 10), np.array([[2, 2, 6, 4], [15, 5, 25, 12]], np.float32), margin=0.5)
    # box 1 is 4x2: grown by 2 px left/right and 1 px up/down, to columns 0..7 and rows 1..4
    assert keep[1:5, 0:8].all() and not keep[0].any() and not keep[:, 8:10].any() and not keep[5:, :8].any()
    assert keep[1:, 10:].all()  # box 2 (10x7, grown 5 px and 3.5 px) runs off the image and is clipped
    assert not vm.inside_boxes((20, 10), np.zeros((0, 4), np.float32)).any()


def test_gate_class_moves_only_that_class_outside_the_allowed_pixels_to_background() -> None:
    ids = np.array([[1, 1, 2], [1, 2, 2]], np.uint8)
    allowed = np.array([[True, False, False], [False, False, False]])
    vm.gate_class(ids, 1, allowed, background=0)
    assert ids.tolist() == [[1, 0, 2], [0, 2, 2]]


@pytest.mark.parametrize("classes", [2, 16, 40])
def test_class_fractions_count_each_class_share(classes: int) -> None:
    ids = rng.integers(0, classes, (37, 53)).astype(np.uint8)
    expected = np.array([(ids == c).mean() for c in range(classes)])
    np.testing.assert_allclose(vm.class_fractions(ids, classes), expected)
