"""Stage 2 through the tools: ``tools/test.py --roi-from`` on a tiny phantom, the dump it
writes (full frame, ``covers``), the fallback for an image without a stage-1 box, the merge
with ``tools/ensemble.py --method best``, and the one-line errors for bad input.

Stage 1 is a dump made from the labels: probability 1 on every bone, except one image whose
carpals get 0.4 (below the box rule's 0.5: stage 1 found no wrist there).
"""
import json
import logging
from pathlib import Path

import numpy as np
import pytest
import torch
from mmengine.logging import MMLogger

from handbone_mmseg.classes import CLASSES
from handbone_mmseg.cli import run_tool
from handbone_mmseg.evaluation import gt_masks, load_labels
from handbone_mmseg.functional.roi import CARPALS, box_from_mask, class_indices, expand_box
from handbone_mmseg.io import read_submission
from handbone_mmseg.io.dice_tables import write_class_dice
from handbone_mmseg.io.prob_dump import ProbDump, save_probs, write_index
from handbone_mmseg.phantom import generate_phantom

from helpers import ROOT, load_tool, random_checkpoint

CONFIG = str(ROOT / 'configs' / 'wrist_tiny_cpu_handbone.py')
SIZE = 128
CARPAL = class_indices(CARPALS)


def options(data: Path) -> list[str]:
    sizes = {'train_scale': (32, 32), 'crop_size': (32, 32), 'test_scale': (32, 32)}
    return [f'data_root={data}', *(f'{k}={v}'.replace(' ', '') for k, v in sizes.items())]


def stage1_dump(folder: Path, gt: dict[str, np.ndarray], names: list[str],
                no_wrist: str | None = None, classes=CLASSES, covers=None) -> Path:
    entries = []
    for name in names:
        probs = torch.from_numpy(gt[name]).float()
        if name == no_wrist:
            probs[CARPAL] *= 0.4
        entries.append((name, save_probs(folder, name, probs)))
    write_index(folder, classes, 'uint8', 1.0, entries, covers)
    return folder


class _Messages(logging.Handler):
    """The messages of one level a logger emits."""

    def __init__(self, level: int) -> None:
        super().__init__(level)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno == self.level:
            self.messages.append(record.getMessage())


@pytest.fixture(scope='module')
def case(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('wrist')
    data = root / 'data'
    generate_phantom(data, patients=5, size=SIZE, seed=1, test_patients=1)
    labels = load_labels(data, 'train/DCM', 'train/outputs_json')
    gt = {name: np.asarray(gt_masks(info)) for name, info in labels.items()}
    checkpoint = random_checkpoint(CONFIG, root / 'random.pth',
                                   dict(zip(('train_scale', 'crop_size', 'test_scale'),
                                            [(32, 32)] * 3)))
    return dict(root=root, data=data, gt=gt, checkpoint=str(checkpoint))


def val_names(case: dict) -> list[str]:
    """The validation fold's images (fold 0 of 5 patients: one patient)."""
    from mmseg.registry import DATASETS

    from handbone_mmseg.apis import load_config
    from handbone_mmseg.cli import parse_cfg_options
    cfg = load_config(CONFIG, parse_cfg_options(options(case['data'])))
    dataset = DATASETS.build(dict(cfg.val_dataloader.dataset, pipeline=[], lazy_init=True))
    return sorted(Path(i['img_path']).name for i in dataset.load_data_list())


def test_roi_from_writes_full_frame_probabilities(case, tmp_path):
    names = val_names(case)
    assert len(names) == 2
    no_wrist = names[1]
    stage1 = stage1_dump(tmp_path / 's1', case['gt'], names, no_wrist)
    out, work = tmp_path / 'out', tmp_path / 'work'
    warnings = _Messages(logging.WARNING)
    MMLogger.get_current_instance().addHandler(warnings)  # the logger the tool warns through
    try:
        load_tool('test').main([CONFIG, case['checkpoint'], '--split', 'val', '--roi-from',
                                str(stage1), '--out', str(out), '--save-probs', '--work-dir',
                                str(work), '--cfg-options', *options(case['data'])])
    finally:
        MMLogger.get_current_instance().removeHandler(warnings)
    # the fallback is said once, naming the image
    assert warnings.messages == [
        f'image {no_wrist}: stage 1 ({stage1}) predicts none of {", ".join(CARPALS)} above '
        "0.5: it keeps stage 1's probabilities of these classes"]

    boxes = json.loads((work / 'roi_boxes.json').read_text())['images']
    assert sorted(boxes) == names
    tight = box_from_mask(case['gt'][names[0]][CARPAL].any(0))
    assert tuple(boxes[names[0]]['box']) == tight and boxes[no_wrist]['box'] is None

    dump = ProbDump(out / 'probs')
    assert dump.covers == CARPALS and dump.names == names
    roi = expand_box(tight, (SIZE, SIZE), 0.25)
    assert dump.images[names[0]]['roi'] == list(roi) and dump.images[no_wrist]['roi'] is None
    probs = dump.load(names[0])
    assert probs.shape == (29, SIZE, SIZE)
    y0, y1, x0, x1 = roi
    inside = torch.zeros(SIZE, SIZE, dtype=torch.bool)
    inside[y0:y1, x0:x1] = True
    assert probs[:, ~inside].abs().max() == 0           # zeros outside the crop
    assert probs[CARPAL][:, inside].min() > 0           # the crop's sigmoid inside
    uncovered = [c for c in range(29) if c not in CARPAL]
    assert probs[uncovered].abs().max() == 0            # classes stage 2 does not cover
    # the image without a box keeps stage 1's probabilities of the covered classes
    fallback, first = dump.load(no_wrist), ProbDump(stage1).load(no_wrist)
    assert torch.equal(fallback[CARPAL], first[CARPAL]) and first[CARPAL].max() > 0.3
    assert fallback[uncovered].abs().max() == 0

    # the CSV and the Dice tables are of the full frame, all 29 classes in order
    masks = dict(read_submission(out / 'submission.csv', shape=(SIZE, SIZE)))
    assert sorted(masks) == names
    assert not masks[no_wrist].any()                    # stage 1's 0.4 < 0.5, no other class
    assert not masks[names[0]][uncovered].any() and not masks[names[0]][:, ~inside].any()
    rows = (out / 'dice_per_class.csv').read_text().splitlines()
    assert [r.split(',')[0] for r in rows[1:]] == [*CLASSES, 'mean']

    # per class the better model: stage 2 for the carpals, stage 1 elsewhere
    dice1, dice2 = tmp_path / 's1.csv', tmp_path / 's2.csv'
    write_class_dice(dice1, CLASSES, ['dice'], [[0.5] * 29])
    write_class_dice(dice2, CLASSES, ['dice'], [[0.9 if c in CARPAL else 0.0
                                                 for c in range(29)]])
    merged = tmp_path / 'merged.csv'
    load_tool('ensemble').main([str(stage1), str(out / 'probs'), '--method',
                                'best', '--choose-on', str(dice1), str(dice2), '--out',
                                str(merged)])
    picked = dict(read_submission(merged, shape=(SIZE, SIZE)))
    for name in names:
        expected = case['gt'][name].copy()
        expected[CARPAL] = masks[name][CARPAL]
        assert np.array_equal(picked[name], expected)


def _fails(argv: list[str], capsys, status: int = 1) -> str:
    """Run tools/test.py as the command line does; its one error line (status 2: a config
    value refused, argparse's status for a usage error)."""
    tool = load_tool('test')
    assert run_tool(lambda: tool.main(argv)) == status
    lines = capsys.readouterr().err.strip().splitlines()
    return lines[-1]


def test_bad_input_is_one_line_naming_the_file_or_key(case, tmp_path, capsys):
    names = val_names(case)
    base = [CONFIG, case['checkpoint'], '--split', 'val', '--work-dir', str(tmp_path / 'w')]
    opts = ['--cfg-options', *options(case['data'])]
    everything = sorted(case['gt'])

    partial = stage1_dump(tmp_path / 'partial', case['gt'], [names[0]])
    line = _fails([*base, '--roi-from', str(partial), *opts], capsys)
    assert line == (f"error: {partial}: no stage-1 probabilities for 1 of the 2 images to "
                    f"predict (e.g. ['{names[1]}']): write them with tools/test.py "
                    'STAGE1_CONFIG CKPT --out DIR --save-probs on the same split')

    other = stage1_dump(tmp_path / 'other', case['gt'], everything, classes=CLASSES[::-1])
    line = _fails([*base, '--roi-from', str(other), *opts], capsys)
    assert line.startswith(f'error: {other}: 29 classes, expected 29; class 1 is ')

    radius = stage1_dump(tmp_path / 'radius', case['gt'], everything, covers=['Radius'])
    line = _fails([*base, '--roi-from', str(radius), *opts], capsys)
    assert line.startswith(f"error: {radius}: its model does not cover ['Trapezium',")

    good = stage1_dump(tmp_path / 'good', case['gt'], everything)
    line = _fails([*base, '--roi-from', str(good), *opts,
                   'roi_classes=[Lunate,Wrist]'], capsys, status=2)
    assert line.startswith("error: roi_classes: 'Wrist' is not a bone class")
    line = _fails([*base, '--roi-from', str(good), *opts, 'roi_margin=-1'], capsys, status=2)
    assert line == ('error: roi_margin must be a finite number >= 0 (a fraction '
                    'of the box side), got -1')

    plain = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')
    line = _fails([plain, *base[1:], '--roi-from', str(good), *opts], capsys)
    assert line == (f'error: {plain}: --roi-from needs a CropToClasses transform in the test '
                    'pipeline (a stage-2 config: roi_classes, as in configs/wrist_*_handbone.py)')


def test_roi_from_with_tta(case, tmp_path):
    names = val_names(case)
    stage1 = stage1_dump(tmp_path / 's1', case['gt'], names)
    out = tmp_path / 'out'
    load_tool('test').main([CONFIG, case['checkpoint'], '--split', 'val', '--tta',
                            '--roi-from', str(stage1), '--out', str(out), '--save-probs',
                            '--work-dir', str(tmp_path / 'work'), '--cfg-options',
                            *options(case['data'])])
    dump = ProbDump(out / 'probs')
    for name in names:
        tight = box_from_mask(case['gt'][name][CARPAL].any(0))
        y0, y1, x0, x1 = roi = expand_box(tight, (SIZE, SIZE), 0.25)
        assert dump.images[name]['roi'] == list(roi)
        probs = dump.load(name)
        assert probs.shape == (29, SIZE, SIZE) and probs[CARPAL, y0:y1, x0:x1].min() > 0
        probs[:, y0:y1, x0:x1] = 0
        assert probs.abs().max() == 0
