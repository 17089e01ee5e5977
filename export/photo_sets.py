"""Real photographs that registry packages ship, for INT8 calibration and its accuracy proof.

No labelled ImageNet/COCO sample installs offline, and an INT8-vs-float32 agreement proof needs no
labels: every distinct photograph found in scikit-image's wheel and in four Debian packages of desktop
backgrounds (pinned by version and SHA-256, so the set is the same everywhere), each file's licence
recorded. Large photographs are topped up with crops that do not overlap one another, at two scales
(never flips or colour changes of the same picture). Calibration and the held-back set are disjoint
by photograph: no crop of a calibration photograph is ever judged.

The Debian packages are fetched once (about 170 MB, kept only as the chosen files, ~45 MB) into
``~/.cache/visiongate/photos`` from deb.debian.org, or snapshot.debian.org when that has moved on.
"""

from __future__ import annotations

import hashlib
import io
import logging
import shutil
import tarfile
import tempfile
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from visiongate.service.vision.decode import decode

logger = logging.getLogger("visiongate.export")

DEFAULT_CACHE = Path.home() / ".cache" / "visiongate" / "photos"
MIRRORS = ("https://deb.debian.org/debian/", "https://snapshot.debian.org/archive/debian/20250520T000000Z/")
MAX_PIXELS = 100_000_000
#: a photograph whose short side is at least this large also gives crops
CROP_MIN_SIDE = 1000
JPEG_QUALITY = 92
#: every CALIBRATION_EVERY-th photograph (in the order below) calibrates; the others are held back
CALIBRATION_EVERY = 4


@dataclass(frozen=True)
class DebianPackage:
    name: str
    version: str
    pool_path: str
    sha256: str
    folder: str  # inside the package, where the photographs are
    files: dict[str, str]  # file (relative to folder) -> licence


_LOMIRI_16 = {
    "Bridge_by_Sander_Klootwijk.jpg": "CC-BY-SA-4.0", "Dragonfly_by_Bolly.jpg": "CC-BY-SA-4.0",
    "Picture_0B_by_freespace.jpg": "CC-BY-4.0", "Picture_1A_by_freespace.jpg": "CC-BY-4.0",
    "Wine_by_Jakkub_Mede.jpg": "CC-BY-4.0", "aitzgorri_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "analogpattern_by_Peter_Nerlich.jpg": "CC-BY-SA-4.0", "free_by_Peter_Nerlich.jpg": "CC-BY-SA-4.0",
    "friends_by_Aitzol_Berasategi.jpg": "CC-BY-4.0", "greentock_by_Peter_Nerlich.jpg": "CC-BY-SA-4.0",
    "life_by_Aitzol_Berasategi.jpg": "CC-BY-4.0", "picosdeeuropa_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
    "seeding_by_Clements_Engelhardt.jpg": "CC0-1.0", "sunset_by_Aitzol_Berasategi.jpg": "CC-BY-4.0",
}
_MATE = ("Aqua", "Blinds", "Dune", "FreshFlower", "Garden", "GreenMeadow", "LadyBird", "RainDrops", "Storm",
         "TwoWings", "Wood", "YellowFlower")
_PLASMA = ("BytheWater", "ColdRipple", "ColorfulCups", "DarkestHour", "EveningGlow", "FallenLeaf", "Grey",
           "OneStandsOut", "Path", "summer_1am")

#: Only the photographs: the packages' drawings, gradients and logos are left out (judged by eye).
DEBIAN_PACKAGES = (
    DebianPackage("mate-backgrounds", "1.26.0-1", "pool/main/m/mate-backgrounds/mate-backgrounds_1.26.0-1_all.deb",
                  "7bf4c2209f34b4f61ba6d24c8b58c28b361e82e4b943aae6d42c030169af9e04",
                  "usr/share/backgrounds/mate/nature", {f"{n}.jpg": "GPL-2+" for n in _MATE}),
    DebianPackage("lomiri-wallpapers-16.04", "20.04.0-2",
                  "pool/main/l/lomiri-wallpapers/lomiri-wallpapers-16.04_20.04.0-2_all.deb",
                  "a99ff6a3bfe451e4cc0682ecb3cc82e71740626d59e4845ae34a0a0e45421eab",
                  "usr/share/backgrounds", _LOMIRI_16),
    DebianPackage("lomiri-wallpapers-20.04", "20.04.0-2",
                  "pool/main/l/lomiri-wallpapers/lomiri-wallpapers-20.04_20.04.0-2_all.deb",
                  "d44e89b8473aafe64a5b678f014862dc31335aaaf18665c544d985d854f1a709",
                  "usr/share/backgrounds", {"Kleiber_by_Lukas_Baubkus.jpg": "CC-BY-SA-3.0"}),
    DebianPackage("plasma-workspace-wallpapers", "4:5.27.5-2",
                  "pool/main/p/plasma-workspace-wallpapers/plasma-workspace-wallpapers_5.27.5-2_all.deb",
                  "32cd18b71c8c938a18b3b351f217c02ac590e323caa3cf322fbb875ce8892f8b",
                  "usr/share/wallpapers", {f"{d}/contents/images/2560x1600.jpg": "GPL-2+" for d in _PLASMA}),
)

#: scikit-image loader -> licence as its docstring states it
SKIMAGE_PHOTOS = {
    "astronaut": "public domain", "brick": "CC0-1.0", "camera": "CC0-1.0", "chelsea": "CC0-1.0",
    "clock": "public domain", "coffee": "CC0-1.0", "coins": "no known copyright restrictions",
    "grass": "CC0-1.0", "gravel": "CC0-1.0", "hubble_deep_field": "public domain",
    "immunohistochemistry": "no known copyright restrictions", "moon": "not stated (ships in scikit-image)",
    "page": "not stated (ships in scikit-image)", "retina": "CC0-1.0", "rocket": "public domain",
    "motorcycle": "not stated (ships in scikit-image)", "text": "public domain", "cell": "CC0-1.0",
}


class PhotoSetUnavailable(RuntimeError):
    pass


@dataclass(frozen=True)
class Photo:
    """One distinct photograph: ``data`` is an encoded image (JPEG for everything built in)."""

    id: str
    source: str
    licence: str
    data: bytes


@dataclass(frozen=True)
class Sample:
    """A photograph or a crop of one, as JPEG bytes; ``crop`` is (left, top, width, height)."""

    id: str
    photo: str
    crop: tuple[int, int, int, int] | None
    data: bytes


def _jpeg(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="JPEG", quality=JPEG_QUALITY)
    return buf.getvalue()


def skimage_photos() -> list[Photo]:
    from importlib.metadata import version

    import numpy as np
    from skimage import data

    source = f"scikit-image {version('scikit-image')}"
    photos = []
    for name, licence in SKIMAGE_PHOTOS.items():
        loader = "stereo_motorcycle" if name == "motorcycle" else name
        arr = getattr(data, loader)()
        arr = arr[0] if name == "motorcycle" else arr
        if arr.ndim == 2:
            arr = np.repeat(arr[..., None], 3, axis=2)
        photos.append(Photo(f"scikit-image/{name}", source, licence,
                            _jpeg(Image.fromarray(np.ascontiguousarray(arr[..., :3])))))
    return photos


def _download(package: DebianPackage, target: Path) -> None:
    errors = []
    for mirror in MIRRORS:
        url = mirror + package.pool_path
        try:
            digest = hashlib.sha256()
            with urllib.request.urlopen(url, timeout=60) as response, open(target, "wb") as out:
                while chunk := response.read(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
        except OSError as exc:
            errors.append(f"{url}: {exc}")
            continue
        if digest.hexdigest() == package.sha256:
            return
        errors.append(f"{url}: SHA-256 {digest.hexdigest()}, expected {package.sha256}")
    raise PhotoSetUnavailable(f"could not fetch {package.name} {package.version}: {'; '.join(errors)}")


def _deb_data_members(deb: Path) -> Iterator[tuple[str, bytes]]:
    """(name, bytes) of each ``ar`` member of a .deb; only the data tarball is read in full."""
    with open(deb, "rb") as fh:
        if fh.read(8) != b"!<arch>\n":
            raise PhotoSetUnavailable(f"{deb.name} is not a Debian package")
        while header := fh.read(60):
            name, size = header[:16].decode().strip().rstrip("/"), int(header[48:58])
            if name.startswith("data.tar"):
                yield name, fh.read(size)
            else:
                fh.seek(size, 1)
            fh.seek(size % 2, 1)  # members are 2-byte aligned


def _extract(package: DebianPackage, deb: Path, target: Path) -> None:
    wanted = {f"./{package.folder}/{f}": f for f in package.files}
    for _, body in _deb_data_members(deb):
        with tarfile.open(fileobj=io.BytesIO(body)) as tar:
            for member in tar:
                if member.name in wanted and member.isfile():
                    src = tar.extractfile(member)
                    assert src is not None
                    out = target / wanted[member.name].replace("/contents/images/", "_")
                    out.write_bytes(src.read())
    missing = [f for f in package.files if not (target / f.replace("/contents/images/", "_")).is_file()]
    if missing:
        raise PhotoSetUnavailable(f"{package.name} {package.version} lacks {missing}")


def ensure_debian_photos(cache: Path = DEFAULT_CACHE) -> Path:
    """Fetch (once) and unpack the chosen photographs of every pinned package; returns ``cache``."""
    for package in DEBIAN_PACKAGES:
        folder = cache / f"{package.name}_{package.version.replace(':', '%3a')}"
        if (folder / ".complete").is_file():
            continue
        logger.info("fetching photographs from Debian's %s %s", package.name, package.version)
        cache.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=cache, prefix=".fetch-") as tmp:
            deb, staged = Path(tmp) / "package.deb", Path(tmp) / "photos"
            staged.mkdir()
            _download(package, deb)
            _extract(package, deb, staged)
            (staged / ".complete").write_text(package.sha256 + "\n", encoding="utf-8")
            shutil.rmtree(folder, ignore_errors=True)
            staged.rename(folder)
    return cache


def debian_photos(cache: Path = DEFAULT_CACHE) -> list[Photo]:
    ensure_debian_photos(cache)
    photos = []
    for package in DEBIAN_PACKAGES:
        folder = cache / f"{package.name}_{package.version.replace(':', '%3a')}"
        for name, licence in package.files.items():
            path = folder / name.replace("/contents/images/", "_")
            photos.append(Photo(f"{package.name}/{name.split('/')[0]}", f"Debian {package.name} {package.version}",
                                licence, path.read_bytes()))
    return photos


def builtin_photos(cache: Path = DEFAULT_CACHE) -> list[Photo]:
    """Every distinct built-in photograph, in a fixed order."""
    return skimage_photos() + debian_photos(cache)


IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".tif", ".tiff")


def folder_photos(folder: Path) -> list[Photo]:
    """The user's photographs (``--calibration-images DIR``), sorted by path."""
    if not folder.is_dir():
        raise PhotoSetUnavailable(f"{folder} is not a folder")
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES)
    if not files:
        raise PhotoSetUnavailable(f"{folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return [Photo(str(p.relative_to(folder)), str(folder), "the user's", p.read_bytes()) for p in files]


def split(photos: list[Photo]) -> tuple[list[Photo], list[Photo]]:
    """(calibration, held back), disjoint by photograph."""
    calibration = photos[::CALIBRATION_EVERY]
    chosen = {p.id for p in calibration}
    return calibration, [p for p in photos if p.id not in chosen]


def _tiles(width: int, height: int) -> Iterator[tuple[int, int, int, int, str]]:
    """Non-overlapping squares: a grid of side short/2; every other cell split again into four."""
    side = min(width, height) // 2
    cols, rows = width // side, height // side
    left0, top0 = (width - cols * side) // 2, (height - rows * side) // 2
    for k in range(rows * cols):
        r, c = divmod(k, cols)
        x, y = left0 + c * side, top0 + r * side
        if k % 2 == 0:
            yield x, y, side, side, f"1/2 r{r}c{c}"
        else:
            half = side // 2
            for q in range(4):
                yield x + (q % 2) * half, y + (q // 2) * half, half, half, f"1/4 r{r}c{c}q{q}"


def samples(photos: list[Photo], *, crops: bool = True) -> list[Sample]:
    """Each photograph as it is, plus (``crops``) crops of the large ones, each a JPEG of its own."""
    out = []
    for photo in photos:
        out.append(Sample(photo.id, photo.id, None, photo.data))
        if not crops:
            continue
        image = decode(photo.data, MAX_PIXELS).pixels
        if not isinstance(image, Image.Image):
            image = Image.fromarray(image)
        width, height = image.size
        if min(width, height) < CROP_MIN_SIDE:
            continue
        for x, y, w, h, where in _tiles(width, height):
            out.append(Sample(f"{photo.id}#crop {where}", photo.id, (x, y, w, h),
                              _jpeg(image.crop((x, y, x + w, y + h)))))
    return out
