"""Texture pack for the synthetic scenes: 256x256 JPEG crops of real photographs.

Source (permissively licensed, see ``textures/ATTRIBUTION.md``): the images bundled with scikit-image
(``skimage.data``); no frame of the evaluation footage (the SAM 2 gallery clips among it: they only measure).
``build_pack`` writes the pack once (it is committed); ``load_texture_bank`` reads it into one ``[T, 3, S, S]`` float
tensor for on-device sampling.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

PACK_DIR = Path(__file__).resolve().parent / "textures"
TEXTURE_SIZE = 256

#: skimage.data images and how many random crops to take of each (grey ones are tinted at render time)
SKIMAGE_SOURCES = {
    "astronaut": 2, "chelsea": 1, "coffee": 2, "hubble_deep_field": 2, "immunohistochemistry": 1, "retina": 1,
    "rocket": 2, "colorwheel": 1, "brick": 1, "grass": 1, "gravel": 1, "moon": 1, "camera": 1, "coins": 1,
    "text": 1, "page": 1, "clock": 1, "cell": 1,
}


def _random_crop(image: np.ndarray, rng: np.random.Generator, size: int = TEXTURE_SIZE) -> np.ndarray:
    """A random square crop (side 40-100 % of the shorter image side), resized to ``size`` x ``size``, RGB uint8."""
    import cv2

    if image.ndim == 2:
        image = np.repeat(image[..., None], 3, axis=-1)
    image = image[..., :3].astype(np.uint8)
    h, w = image.shape[:2]
    side = int(min(h, w) * rng.uniform(0.4, 1.0))
    y, x = rng.integers(0, h - side + 1), rng.integers(0, w - side + 1)
    return cv2.resize(image[y:y + side, x:x + side], (size, size), interpolation=cv2.INTER_AREA)


def build_pack(out_dir: Path, seed: int = 0, quality: int = 88) -> list[Path]:
    """Write the texture pack (deterministic for a seed); returns the written JPEG paths."""
    import cv2
    import skimage.data

    rng = np.random.default_rng(seed)
    out_dir.mkdir(parents=True, exist_ok=True)
    crops: list[tuple[str, np.ndarray]] = []
    for name, count in SKIMAGE_SOURCES.items():
        image = getattr(skimage.data, name)()
        crops += [(f"skimage_{name}_{i}", _random_crop(image, rng)) for i in range(count)]
    for name, count in SKIMAGE_SOURCES.items():  # one more crop of each (after the first ones: those stay as they are)
        crops.append((f"skimage_{name}_{count}", _random_crop(getattr(skimage.data, name)(), rng)))
    paths = []
    for name, rgb in crops:
        path = out_dir / f"{name}.jpg"
        cv2.imwrite(str(path), np.ascontiguousarray(rgb[..., ::-1]), [cv2.IMWRITE_JPEG_QUALITY, quality])
        paths.append(path)
    return paths


def load_texture_bank(pack_dir: Path = PACK_DIR, device: torch.device | str = "cpu") -> torch.Tensor:
    """All pack textures as a float tensor ``[T, 3, S, S]`` in [0, 1] (sorted by file name)."""
    import cv2

    paths = sorted(pack_dir.glob("*.jpg"))
    if not paths:
        raise FileNotFoundError(f"no textures in {pack_dir} (build them with `nut_ros_train textures`)")
    images = [cv2.imread(str(p), cv2.IMREAD_COLOR)[..., ::-1] for p in paths]
    bank = torch.from_numpy(np.stack(images)).permute(0, 3, 1, 2).contiguous()
    return bank.to(device=device, dtype=torch.float32).div_(255.0)
