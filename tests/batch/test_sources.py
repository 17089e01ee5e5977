"""Which files are images, and how a bad file is refused before any decoder sees it."""

from __future__ import annotations

from pathlib import Path

import pytest

from support import encode, photo
from visiongate.service.batch.sources import list_images, read_image
from visiongate.service.errors import InvalidImage, PayloadTooLarge
from visiongate.service.vision.formats import sniff


def test_lists_image_named_files_recursively_sorted_without_hidden_ones(mixed_folder: Path) -> None:
    paths, ignored, _ = list_images(mixed_folder)
    assert paths == sorted(paths)
    assert paths == ["cats/chelsea.jpg", "corrupt.png", "empty.png", "kitchen/coffee.jpg",
                     "kitchen/deep/camera.webp", "kitchen/deep/rocket.png", "notes.jpg", "truncated.jpg"]
    assert ignored == 1  # README.txt


def test_hidden_folders_are_not_searched(tmp_path: Path) -> None:
    (tmp_path / ".cache").mkdir()
    (tmp_path / ".cache" / "x.jpg").write_bytes(encode(photo("coffee")))
    (tmp_path / "y.JPG").write_bytes(encode(photo("coffee")))
    assert list_images(tmp_path) == (["y.JPG"], 0, [])


@pytest.mark.parametrize(("fmt", "name"), [("JPEG", "JPEG"), ("PNG", "PNG"), ("GIF", "GIF"), ("BMP", "BMP"),
                                           ("TIFF", "TIFF"), ("WEBP", "WEBP")])
def test_sniff_recognises_every_format_pillow_writes(fmt: str, name: str) -> None:
    data = encode(photo("chelsea")[:64, :64], fmt)
    assert sniff(data[:16]) == name


def test_sniff_refuses_text_and_riff_that_is_not_webp() -> None:
    assert sniff(b"hello world, not an image") is None
    assert sniff(b"RIFF\x00\x00\x00\x00WAVEfmt ") is None


def test_read_image_returns_the_bytes_of_a_real_photo(mixed_folder: Path) -> None:
    data = read_image(mixed_folder, "cats/chelsea.jpg", max_bytes=10_000_000)
    assert data == (mixed_folder / "cats/chelsea.jpg").read_bytes()


def test_read_image_refuses_a_text_file_named_jpg(mixed_folder: Path) -> None:
    with pytest.raises(InvalidImage, match="not an image"):
        read_image(mixed_folder, "notes.jpg", max_bytes=10_000_000)


def test_read_image_refuses_an_empty_file(mixed_folder: Path) -> None:
    with pytest.raises(InvalidImage, match="empty"):
        read_image(mixed_folder, "empty.png", max_bytes=10_000_000)


def test_read_image_refuses_a_file_over_the_size_limit_without_reading_it(mixed_folder: Path) -> None:
    size = (mixed_folder / "cats/chelsea.jpg").stat().st_size
    with pytest.raises(PayloadTooLarge, match=f"{size} bytes; the limit is 1000"):
        read_image(mixed_folder, "cats/chelsea.jpg", max_bytes=1000)


def test_read_image_turns_a_vanished_file_into_an_invalid_image(mixed_folder: Path) -> None:
    with pytest.raises(InvalidImage, match="could not be read"):
        read_image(mixed_folder, "gone.jpg", max_bytes=1000)
