"""Overlays, error maps, the visualiser, charts and the HTML report."""
import shutil
import subprocess
from html.parser import HTMLParser
from pathlib import Path
from types import SimpleNamespace

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.structures import PixelData
from mmseg.registry import HOOKS, VISUALIZERS
from mmseg.structures import SegDataSample

from handbone_mmseg.classes import CLASSES, NUM_CLASSES, PALETTE
from handbone_mmseg.evaluation import score_submission
from handbone_mmseg.functional.labels import pack_masks
from handbone_mmseg.functional.rle import rle_encode
from handbone_mmseg.io.submission import write_submission
from handbone_mmseg.visualization import (
    FN_COLOUR,
    FP_COLOUR,
    MultiLabelSegVisualizer,
    draw_errors,
    enable_show_dir,
    overlay_masks,
)
from handbone_mmseg.visualization.charts import plot_class_dice, plot_image_dice
from handbone_mmseg.visualization.report import ground_truth, index_images

from helpers import ROOT, load_tool

DAMAGED = 3  # the class emptied in the damaged submission


def labeled(root: Path) -> list[str]:
    """The tool's options for the labeled images of the tiny tree."""
    return ['--data-root', str(root), '--img-dir', 'train/DCM', '--ann-dir', 'train/outputs_json']


def read_rgb(path: Path) -> np.ndarray:
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def blend(image_value, colours, alpha: float) -> np.ndarray:
    """What a pixel covered by ``colours`` should look like."""
    return (1 - alpha) * np.asarray(image_value, float) + \
        alpha * np.mean(np.asarray(colours, float), axis=0)


@pytest.mark.parametrize('alpha', [0.5, 0.3])
def test_overlay_colours_single_overlap_and_background(alpha: float) -> None:
    image = np.zeros((4, 5, 3), np.uint8)
    image[...] = (100, 50, 10)  # distinct channels: a BGR/RGB swap shows
    palette = ((255, 0, 0), (0, 0, 255), (0, 255, 0))
    masks = np.zeros((3, 4, 5), np.bool_)
    masks[0, 0, 0] = masks[0, 1, 1] = True
    masks[1, 1, 1] = masks[1, 2, 2] = True
    out = overlay_masks(image, masks, palette, alpha)
    np.testing.assert_allclose(out[0, 0], blend(image[0, 0], [palette[0]], alpha), atol=0.5)
    np.testing.assert_allclose(out[2, 2], blend(image[2, 2], [palette[1]], alpha), atol=0.5)
    # two classes: both colours mixed, neither hides the other
    np.testing.assert_allclose(out[1, 1], blend(image[1, 1], palette[:2], alpha), atol=0.5)
    assert (out[3] == image[3]).all() and (out[0, 1:] == image[0, 1:]).all()
    assert (image == (100, 50, 10)).all()  # the input is left alone


def test_overlay_rejects_mismatched_shapes() -> None:
    with pytest.raises(ValueError, match='4x5 but the masks are 4x6'):
        overlay_masks(np.zeros((4, 5, 3), np.uint8), np.zeros((1, 4, 6), bool), [(1, 2, 3)])


def test_error_map_marks_false_positive_and_negative_only() -> None:
    image = np.full((6, 6, 3), 40, np.uint8)
    gt = np.zeros((2, 6, 6), np.bool_)
    gt[0, 1:4, 1:4] = True
    gt[1, 4:, 4:] = True
    pred = gt.copy()
    pred[0, 2, 2] = False  # missed: false negative
    pred[0, 0, 5] = True  # extra: false positive
    valid = np.ones((6, 6), np.bool_)
    valid[5, 0] = False
    pred[0, 5, 0] = True  # on padding: not an error
    out = draw_errors(image, pred, gt, valid)
    assert tuple(out[0, 5]) == FP_COLOUR
    assert tuple(out[2, 2]) == FN_COLOUR
    assert FP_COLOUR != FN_COLOUR
    errors = np.zeros((6, 6), bool)
    errors[0, 5] = errors[2, 2] = True
    # true positives (both classes), background and padding keep the image
    assert (out[~errors] == 40).all()


def _sample(height: int, width: int, with_gt: bool) -> SegDataSample:
    """Trapezium and Trapezoid overlapping in the prediction; Trapezoid shifted in the truth."""
    pred = np.zeros((NUM_CLASSES, height, width), np.bool_)
    pred[19, 16:24, 5:20] = True
    pred[20, 16:24, 15:30] = True
    sample = SegDataSample()
    sample.pred_sem_seg = PixelData(data=torch.from_numpy(pred))
    if with_gt:
        gt = pred.copy()
        gt[20] = False
        gt[20, 16:24, 17:32] = True
        sample.gt_sem_seg = PixelData(data=torch.from_numpy(pack_masks(gt))[None])
    return sample


def test_visualizer_writes_prediction_truth_and_error_panels(tmp_path: Path) -> None:
    visualizer = MultiLabelSegVisualizer(name='test_panels')
    image = np.full((32, 40, 3), 60, np.uint8)
    out_file = tmp_path / 'panels.png'
    visualizer.add_datasample('x', image, _sample(32, 40, True), out_file=str(out_file),
                              with_labels=False)
    picture = read_rgb(out_file)
    assert picture.shape == (32, 3 * 40, 3)
    # prediction panel: Trapezium and Trapezoid overlap at column 17, both colours mixed
    np.testing.assert_allclose(picture[20, 17], blend(60, PALETTE[19:21], 0.5), atol=0.5)
    np.testing.assert_allclose(picture[20, 8], blend(60, [PALETTE[19]], 0.5), atol=0.5)
    # ground-truth panel: column 15 is only Trapezium there
    np.testing.assert_allclose(picture[20, 40 + 15], blend(60, [PALETTE[19]], 0.5), atol=0.5)
    # error panel: Trapezoid predicted at 15-16 (false positive), missed at 30-31 (negative)
    assert tuple(picture[20, 80 + 15]) == FP_COLOUR
    assert tuple(picture[20, 80 + 31]) == FN_COLOUR
    assert (picture[20, 80 + 20] == 60).all()

    visualizer.add_datasample('y', image, _sample(32, 40, False), out_file=str(out_file))
    assert read_rgb(out_file).shape == (32, 40, 3)


def test_show_dir_through_the_stock_hook(tmp_path: Path) -> None:
    cfg = Config.fromfile(ROOT / 'configs' / '_base_' / 'handbone_runtime.py')
    enable_show_dir(cfg, str(tmp_path / 'show'))
    cfg.visualizer.name = 'test_show_dir'  # a fresh instance, not another test's
    assert isinstance(VISUALIZERS.build(cfg.visualizer), MultiLabelSegVisualizer)
    hook = HOOKS.build(cfg.default_hooks.visualization)
    img_path = tmp_path / 'ID001' / 'image1661130828152.png'
    img_path.parent.mkdir()
    cv2.imwrite(str(img_path), np.full((32, 40, 3), 60, np.uint8))
    sample = _sample(32, 40, True)
    sample.set_metainfo(dict(img_path=str(img_path)))
    hook.after_test_iter(SimpleNamespace(iter=0), 0, {}, [sample])
    assert read_rgb(tmp_path / 'show' / 'image1661130828152.png').shape == (32, 120, 3)


def test_show_dir_needs_the_multilabel_visualizer() -> None:
    cfg = Config(dict(default_hooks=dict(visualization=dict(type='SegVisualizationHook')),
                      visualizer=dict(type='SegLocalVisualizer')))
    with pytest.raises(ValueError, match='MultiLabelSegVisualizer'):
        enable_show_dir(cfg, 'out')


def test_chart_sizes(tmp_path: Path) -> None:
    per_class = np.linspace(0.8, 1.0, NUM_CLASSES)
    plot_class_dice(per_class, tmp_path / 'classes.png')
    plot_image_dice(np.array([0.91, 0.95, 0.97, 1.0]), tmp_path / 'images.png')
    assert cv2.imread(str(tmp_path / 'classes.png')).shape == (800, 800, 3)
    assert cv2.imread(str(tmp_path / 'images.png')).shape == (400, 800, 3)


class _TableRows(HTMLParser):
    """Cell texts of each body row of ``<table id="classes">``."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self._in_table = self._in_body = False

    def handle_starttag(self, tag: str, attrs: list) -> None:
        if tag == 'table':
            self._in_table = ('id', 'classes') in attrs
        elif self._in_table and tag == 'tbody':
            self._in_body = True
        elif self._in_body and tag == 'tr':
            self.rows.append([])
        elif self._in_body and tag == 'td':
            self.rows[-1].append('')

    def handle_endtag(self, tag: str) -> None:
        if tag in ('table', 'tbody'):
            self._in_table = self._in_body = False

    def handle_data(self, data: str) -> None:
        if self._in_body and self.rows and self.rows[-1]:
            self.rows[-1][-1] += data.strip()


def class_rows(page: str) -> list[list[str]]:
    parser = _TableRows()
    parser.feed(page)
    return parser.rows


def damaged_submission(root: Path, path: Path, damaged: int = 5) -> list[str]:
    """The ground truth of ``train/``, with class DAMAGED emptied on the first images."""
    infos = index_images(root, 'train/DCM', 'train/outputs_json').infos
    names = sorted(infos)

    def rows():
        for i, name in enumerate(names):
            masks = ground_truth(infos[name])
            if i < damaged:
                masks[DAMAGED] = False
            yield name, [rle_encode(m) for m in masks]

    write_submission(path, rows())
    return names[:damaged]


@pytest.fixture
def report(tiny_root: Path) -> tuple[Path, list[str]]:
    """``tools/visualize.py`` on the tiny labeled tree: the page and the damaged images."""
    submission = tiny_root / 'submission.csv'
    damaged = damaged_submission(tiny_root, submission)
    argv = [str(submission), *labeled(tiny_root), '--worst', '5', '--out',
            str(tiny_root / 'report')]
    assert load_tool('visualize').main(argv) == 0
    return tiny_root / 'report' / 'report.html', damaged


def test_report_tool_on_labeled_data(report: tuple[Path, list[str]], tiny_root: Path) -> None:
    page, damaged = report
    rows = class_rows(page.read_text())
    assert [row[2] for row in rows] == list(CLASSES)
    dice = {row[2]: float(row[3]) for row in rows}
    # 5 of 20 images miss the class entirely: 15/20, as the scorer says
    per_class, _, _ = score_submission(tiny_root / 'submission.csv', tiny_root, 'train/DCM',
                                       'train/outputs_json')
    assert dice[CLASSES[DAMAGED]] == pytest.approx(0.75, abs=1e-4)
    assert dice[CLASSES[DAMAGED]] == pytest.approx(per_class[DAMAGED], abs=1e-4)
    assert dice[CLASSES[0]] == pytest.approx(1.0)
    folder = page.parent
    assert cv2.imread(str(folder / 'dice_per_class.png')).shape == (800, 800, 3)
    assert cv2.imread(str(folder / 'dice_per_image.png')).shape == (400, 800, 3)
    # the worst images are the damaged ones; each picture has three 64x64 panels
    pictures = sorted(p.name for p in (folder / 'images').iterdir())
    assert pictures == sorted(f'{Path(name).stem}.png' for name in damaged)
    assert cv2.imread(str(folder / 'images' / pictures[0])).shape == (64, 192, 3)
    assert all(f'images/{picture}' in page.read_text() for picture in pictures)
    # each picture links to the viewer that the page's command starts (tests/test_viewer.py
    # opens such a link in the viewer)
    text = page.read_text()
    assert f'python tools/browse.py {tiny_root / "train/DCM"} --pred ' \
           f'{tiny_root / "submission.csv"} --labels {tiny_root / "train/outputs_json"} ' \
           '--port 8765' in text
    assert all(f'href="http://127.0.0.1:8765/#image={name}&amp;view=error">open in the viewer'
               in text for name in damaged)


@pytest.mark.skipif(shutil.which('chromium') is None,
                    reason='chromium is not installed (make setup installs it with apt), '
                    'so the report page is not rendered')
def test_report_renders_in_chromium(report: tuple[Path, list[str]], tmp_path: Path) -> None:
    page = report[0].as_uri()
    chromium = ['chromium', '--headless', '--no-sandbox', '--disable-gpu',
                f'--user-data-dir={tmp_path / "profile"}']
    shot = tmp_path / 'shot.png'
    subprocess.run([*chromium, f'--screenshot={shot}', '--window-size=1200,2000', page],
                   check=True, capture_output=True, timeout=120)
    image = cv2.imread(str(shot))
    assert image.shape == (2000, 1200, 3)
    # a blank or unstyled page has a few grey levels; the swatches and charts bring colour
    assert image.std() > 20
    assert len(np.unique(image.reshape(-1, 3), axis=0)) > 200
    dom = subprocess.run([*chromium, '--dump-dom', page], check=True, capture_output=True,
                         text=True, timeout=120).stdout
    assert [row[2] for row in class_rows(dom)] == list(CLASSES)


def test_report_tool_on_unlabeled_images(tiny_root: Path) -> None:
    images = sorted(p.name for p in (tiny_root / 'test' / 'DCM').rglob('*.png'))
    submission = tiny_root / 'test.csv'
    empty = np.zeros((64, 64), np.bool_)
    write_submission(submission, ((name, [rle_encode(empty)] * NUM_CLASSES)
                                  for name in images))
    out = tiny_root / 'seen'
    tool = load_tool('visualize')
    tool.main([str(submission), '--data-root', str(tiny_root), '--images', images[1],
               '--out', str(out)])
    # prediction only: one panel; the page is the colour legend, without Dice
    assert cv2.imread(str(out / 'images' / f'{Path(images[1]).stem}.png')).shape == (64, 64, 3)
    rows = class_rows((out / 'report.html').read_text())
    assert len(rows) == NUM_CLASSES and len(rows[0]) == 3
    with pytest.raises(SystemExit):  # no labels, no names: nothing to choose by
        tool.main([str(submission), '--data-root', str(tiny_root)])


def test_report_tool_names_bad_inputs(tiny_root: Path) -> None:
    tool = load_tool('visualize')
    missing = tiny_root / 'missing.csv'
    with pytest.raises(SystemExit, match='missing.csv: submission CSV not found'):
        tool.main([str(missing), *labeled(tiny_root)])
    submission = tiny_root / 'submission.csv'
    damaged_submission(tiny_root, submission)
    with pytest.raises(SystemExit, match=r'image image9\.png is not among the images under '
                       r'.*train/DCM'):
        tool.main([str(submission), *labeled(tiny_root), '--images', 'image9.png'])
    # the train submission against the test images: its first image is foreign there
    with pytest.raises(SystemExit, match=r'submission\.csv: image image16611308\d+\.png is '
                       r'not among the images under .*test/DCM'):
        tool.main([str(submission), '--data-root', str(tiny_root), '--images',
                   'image1661319100011.png'])
    assert not (tiny_root / 'report').exists()  # failed before writing anything
