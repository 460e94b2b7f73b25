"""Shared test helpers: the repo root, tools as modules, tiny hand-made data trees."""
import importlib.util
import json
import socket
from pathlib import Path
from types import ModuleType

import cv2
import numpy as np
import torch
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from handbone_mmseg.apis import load_config
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


def random_checkpoint(config: str, path: Path, cfg_options: dict | None = None) -> Path:
    """Save the config's model with random weights (seed 0) as a checkpoint at ``path``."""
    init_default_scope('mmseg')
    torch.manual_seed(0)
    model = MODELS.build(load_config(config, cfg_options).model)
    model.init_weights()
    torch.save({'state_dict': model.state_dict(), 'meta': {}}, path)
    return path
