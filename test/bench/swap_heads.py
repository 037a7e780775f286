"""Put trained motion-head tensors into a shipped weights file, keeping its other tensors and its metadata.

    python test/bench/swap_heads.py SHIPPED.safetensors HEADS.safetensors OUT.safetensors
"""
import sys

from safetensors import safe_open
from safetensors.torch import load_file, save_file


def main(shipped: str, heads: str, out: str) -> None:
    with safe_open(shipped, "pt") as f:
        metadata = f.metadata()
    tensors = load_file(shipped)
    new = load_file(heads)
    unknown = sorted(set(new) - set(tensors))
    if unknown or not all(k.startswith("motion_head.") for k in new):
        sys.exit(f"{heads}: not motion-head tensors of {shipped}: {unknown[:3] or sorted(new)[:3]}")
    for key, value in new.items():
        if value.shape != tensors[key].shape:
            sys.exit(f"{key}: shape {tuple(value.shape)} != {tuple(tensors[key].shape)}")
        tensors[key] = value.to(tensors[key].dtype)
    save_file(tensors, out, metadata=metadata)
    print(f"{out}: {len(new)} motion-head tensors from {heads}")


if __name__ == "__main__":
    main(*sys.argv[1:])
