"""Tiny hand-made data trees for the tests."""
import importlib.util
import json
import socket
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import pytest

from handbone_mmseg.classes import CLASSES

ROOT = Path(__file__).resolve().parents[1]


def load_tool(name: str) -> ModuleType:
    """Import ``tools/NAME.py`` as a module, to call its ``main(argv)`` in-process."""
    spec = importlib.util.spec_from_file_location(f'tool_{name}', ROOT / 'tools' / f'{name}.py')
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def free_port() -> str:
    """A TCP port free on this machine now, for a process group's rendezvous."""
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return str(sock.getsockname()[1])


def square(x: int, y: int, side: int) -> list[list[int]]:
    return [[x, y], [x + side, y], [x + side, y + side], [x, y + side]]


def write_case(root: Path, patient: str, stem: str, size: int = 64,
               annotations: list[dict] | None = None, split: str = 'train') -> Path:
    """Write one image (and its JSON unless ``annotations`` is None) in the real layout."""
    img = np.full((size, size, 3), 40, np.uint8)
    path = root / split / 'DCM' / patient / f'{stem}.png'
    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), img)
    if annotations is not None:
        ann = root / split / 'outputs_json' / patient / f'{stem}.json'
        ann.parent.mkdir(parents=True, exist_ok=True)
        ann.write_text(json.dumps({
            'annotations': annotations, 'attributes': {}, 'file_id': stem,
            'filename': f'{stem}.png', 'metadata': {'height': size, 'width': size}}))
    return path


def all_bones(size: int = 64) -> list[dict]:
    """29 small non-overlapping squares, one per class, inside a ``size`` image."""
    side = size // 8
    return [dict(id=str(i), type='poly_seg', attributes={}, label=name,
                 points=square((i % 6) * (side + 2) + 1, (i // 6) * (side + 2) + 1, side))
            for i, name in enumerate(CLASSES)]


@pytest.fixture
def tiny_root(tmp_path: Path) -> Path:
    """10 patients with two labeled images each and 2 unlabeled test images."""
    for p in range(1, 11):
        write_case(tmp_path, f'ID{p:03d}', f'image16611308{p:05d}', annotations=all_bones())
        write_case(tmp_path, f'ID{p:03d}', f'image16611309{p:05d}_R', annotations=all_bones())
    for p in (11, 12):
        write_case(tmp_path, f'ID{p:03d}', f'image16613191{p:05d}', split='test')
    return tmp_path
