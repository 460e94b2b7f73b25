"""The viewer (``tools/browse.py``, ``handbone_mmseg.viewer``): its API without a browser,
then the page in the system Chromium through Playwright, one browser for the module.

The data: a phantom at 192 px (4 labeled train images, 2 test images whose labels are kept
apart), model A a submission CSV of the ground truth with a planted false positive square,
one bone left out (false negatives) and one dilated, model B a probability dump of blurred
bones.
"""
import http.client
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import quote

import cv2
import numpy as np
import pytest
import torch

from handbone_mmseg.classes import CLASSES, PALETTE
from handbone_mmseg.cli import run_tool
from handbone_mmseg.evaluation import dice_table, gt_masks, iter_ensemble, load_labels
from handbone_mmseg.functional.box_masks import BoxMasks
from handbone_mmseg.functional.labels import pack_masks
from handbone_mmseg.functional.metrics import dice_counts, dice_from_counts
from handbone_mmseg.functional.probs import dequantize
from handbone_mmseg.io import ProbDump, write_index, write_submission
from handbone_mmseg.io.dicom import write_dicom
from handbone_mmseg.io.images import read_image
from handbone_mmseg.io.prob_dump import save_probs
from handbone_mmseg.io.submission import read_submission
from handbone_mmseg.io.thresholds_json import save_thresholds
from handbone_mmseg.phantom import generate_phantom
from handbone_mmseg.viewer import Viewer, open_prediction
from handbone_mmseg.viewer.payload import runs_to_box_masks
from handbone_mmseg.viewer.sources import DumpPrediction, MaskFolderPrediction
from handbone_mmseg.visualization.report import browse_command, write_report

from helpers import ROOT, load_tool

SIZE = 192
MISSING = CLASSES.index('finger-6')  # left out of model A: false negatives
DILATED = CLASSES.index('finger-9')  # grown by model A: a ring of false positives
FP_SIDE = 12  # the planted false positive square of model A
RADIUS, ULNA = CLASSES.index('Radius'), CLASSES.index('Ulna')
FP_RGB, FN_RGB = [255, 0, 0], [0, 128, 255]  # visualization.overlay's error colours

needs_chromium = pytest.mark.skipif(
    shutil.which('chromium') is None,
    reason='chromium is not installed (make setup installs it with apt), so the page is not '
    'driven')


def _empty_corner(union: np.ndarray) -> tuple[int, int]:
    """(y, x) of a FP_SIDE square without any bone, in a corner."""
    for y, x in ((4, 4), (4, SIZE - FP_SIDE - 4), (SIZE - FP_SIDE - 4, 4)):
        if not union[y:y + FP_SIDE, x:x + FP_SIDE].any():
            return y, x
    raise AssertionError('no empty corner')


def _snapshot(folder: Path) -> dict:
    return {str(p.relative_to(folder)): (p.stat().st_size, p.stat().st_mtime_ns)
            for p in sorted(folder.rglob('*'))}


@pytest.fixture(scope='module')
def world(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('viewer')
    data = root / 'data'
    generate_phantom(data, patients=2, size=SIZE, seed=5, test_patients=1, test_labels=True)
    labels = load_labels(data, 'train/DCM', 'train/outputs_json')
    rng = np.random.default_rng(0)
    rows, entries, fp = [], [], {}
    for name, info in sorted(labels.items()):
        gt = gt_masks(info)
        pred = gt.copy()
        pred[MISSING] = False
        pred[DILATED] = cv2.dilate(gt[DILATED].view(np.uint8), np.ones((5, 5), np.uint8)) > 0
        y, x = fp[name] = _empty_corner(gt.any(0))
        pred[0, y:y + FP_SIDE, x:x + FP_SIDE] = True
        rows.append((name, BoxMasks.from_dense(pred).rles()))
        probs = np.stack([cv2.blur(m.astype(np.float32), (9, 9)) for m in gt])
        probs = np.clip(probs + rng.random(probs.shape, np.float32) * 0.2 * (probs > 0), 0, 1)
        entries.append((name, save_probs(root / 'probs', name, torch.from_numpy(probs))))
    write_submission(root / 'a.csv', rows)
    write_index(root / 'probs', CLASSES, 'uint8', 1.0, entries)
    snapshot = _snapshot(data)
    viewer = Viewer(data, [root / 'a.csv', root / 'probs']).start()
    yield dict(root=root, data=data, labels=labels, names=sorted(labels), fp=fp,
               viewer=viewer, snapshot=snapshot)
    viewer.close()


def get(viewer: Viewer, path: str, headers: dict | None = None
        ) -> tuple[int, dict, bytes]:
    """GET ``path`` exactly as written (no normalising client)."""
    connection = http.client.HTTPConnection('127.0.0.1', viewer.port, timeout=30)
    connection.request('GET', path, headers=headers or {})
    response = connection.getresponse()
    body = response.read()
    connection.close()
    return response.status, dict(response.getheaders()), body


def api(viewer: Viewer, path: str) -> dict:
    status, _, body = get(viewer, path)
    assert status == 200, body
    return json.loads(body)


def layer(viewer: Viewer, name: str, which: str) -> bytes:
    status, _, body = get(viewer, f'/api/masks?image={quote(name)}&layer={which}')
    assert status == 200, body
    return body


def unpack_runs(body: bytes) -> tuple[tuple[int, int], list]:
    """The runs layout (payload.pack_runs) read back."""
    values = np.frombuffer(body, '<i4')
    kind, h, w, c = values[:4]
    assert kind == 1
    counts, pairs = values[4:4 + c], values[4 + c:].reshape(-1, 2)
    ends = np.cumsum(counts)
    runs = [tuple(pairs[e - n:e, k].astype(np.int64) for k in (0, 1))
            for n, e in zip(counts, ends)]
    return (int(h), int(w)), runs


# ---------------------------------------------------------------------------- the API
def test_image_list_with_patient_side_and_split(world):
    meta = api(world['viewer'], '/api/meta')
    images = {e['name']: e for e in meta['images']}
    tests = sorted(p.name for p in (world['data'] / 'test' / 'DCM').rglob('*.png'))
    assert sorted(images) == sorted(world['names'] + tests)
    assert {images[n]['split'] for n in world['names']} == {'train'}
    assert {images[n]['split'] for n in tests} == {'test'}
    # the test labels are found in test_labels/, kept apart from the test images
    assert all(images[n]['labeled'] for n in images)
    for name, info in world['labels'].items():
        assert images[name]['patient'] == info['patient']
        assert images[name]['models'] == [True, True]
        if re.search(r'_[RL]\.png$', name):  # the file name tells the side
            assert images[name]['side'] == {'R': 'right', 'L': 'left'}[name[-5]]
    assert [m['kind'] for m in meta['models']] == ['masks', 'probs']
    assert meta['thresholds'] == [[0.5] * len(CLASSES)] * 2
    assert meta['fp_colour'] == FP_RGB and meta['fn_colour'] == FN_RGB
    assert meta['palette'] == [list(c) for c in PALETTE]


def test_mask_payloads_paint_the_labels_the_csv_and_the_dump(world):
    viewer, name = world['viewer'], world['names'][1]
    shape, runs = unpack_runs(layer(viewer, name, 'label'))
    assert shape == (SIZE, SIZE)
    truth = gt_masks(world['labels'][name])
    assert np.array_equal(runs_to_box_masks(runs, shape).dense(), truth)
    _, runs = unpack_runs(layer(viewer, name, '0'))
    csv = dict(read_submission(world['root'] / 'a.csv', (SIZE, SIZE)))[name]
    assert np.array_equal(runs_to_box_masks(runs, shape).dense(), csv)
    assert not csv[MISSING].any() and truth[MISSING].any()
    # the dump's levels as stored: boxes, then each box's levels
    body = layer(viewer, name, '1')
    head = np.frombuffer(body[:28], '<i4')
    assert head.tolist() == [2, SIZE, SIZE, len(CLASSES), SIZE, SIZE, 1]
    boxes = np.frombuffer(body[28:28 + 16 * len(CLASSES)], '<i4').reshape(-1, 4)
    levels = np.zeros((len(CLASSES), SIZE, SIZE), np.uint8)
    offset = 28 + 16 * len(CLASSES)
    for c, (y0, y1, x0, x1) in enumerate(boxes):
        n = (y1 - y0) * (x1 - x0)
        levels[c, y0:y1, x0:x1] = np.frombuffer(body[offset:offset + n], np.uint8) \
            .reshape(y1 - y0, x1 - x0)
        offset += n
    assert offset == len(body)
    assert np.array_equal(levels, ProbDump(world['root'] / 'probs').crops(name).dense())


def test_dice_is_the_scorers_dice(world):
    """Model A against ``evaluation.scoring`` (tools/visualize.py, the demo's score), model
    B at 0.5 against ``iter_ensemble`` (tools/ensemble.py --data-root), and the agreement
    of the two against ``dice_counts`` of one model's masks against the other's."""
    viewer, labels = world['viewer'], world['labels']
    table = dice_table(world['root'] / 'a.csv', labels)
    ensemble = {name: counts for name, _, counts in
                iter_ensemble([ProbDump(world['root'] / 'probs')], labels=labels)}
    csv = dict(read_submission(world['root'] / 'a.csv', (SIZE, SIZE)))
    dump = ProbDump(world['root'] / 'probs')
    for i, name in enumerate(table.names):
        result = api(viewer, f'/api/dice?image={quote(name)}')
        assert result['dice'][0] == pytest.approx(table.dice[i].tolist(), abs=1e-6)
        assert result['dice'][1] == pytest.approx(dice_from_counts(ensemble[name][0]).tolist(),
                                                  abs=1e-6)
        b = dequantize(dump.crops(name).dense()) > np.float32(0.5)
        agree = dice_from_counts(dice_counts(b, csv[name]))
        assert result['agree'] == pytest.approx(agree.tolist(), abs=1e-6)
    assert table.dice[:, MISSING].max() < 1e-5  # eps / the bone's area


def test_background_scores_fill_the_list(world):
    viewer = world['viewer']
    viewer.statistics._thread.join(timeout=60)
    stats = api(viewer, '/api/stats')
    assert stats['done'] == stats['total'] == 6
    scores = {e['name']: e for e in stats['images']}
    for name in world['names']:
        dice = api(viewer, f'/api/dice?image={quote(name)}')
        assert scores[name]['dice'] == dice['dice'] and scores[name]['agree'] == dice['agree']
    # the test images: labeled, predicted by neither model; their side comes from the pose
    tests = [n for n in scores if n not in world['names']]
    assert all(scores[n]['dice'] == [None, None] for n in tests)
    assert {scores[n]['side'] for n in tests} == {'left', 'right'}
    assert api(viewer, '/api/stats?from=5')['images'] == stats['images'][5:]


def test_images_go_as_their_own_bytes_and_dicom_through_its_window(world, tmp_path):
    viewer, name = world['viewer'], world['names'][0]
    status, headers, body = get(viewer, f'/api/image?image={quote(name)}')
    assert status == 200 and headers['Content-Type'] == 'image/png'
    assert body == Path(world['labels'][name]['img_path']).read_bytes()
    # a 12-bit DICOM whose window shows a part of its range, MONOCHROME1 (inverted)
    stored = (np.arange(40 * 50, dtype=np.uint16).reshape(40, 50) * 2) % 4096
    folder = tmp_path / 'scans'
    folder.mkdir()
    write_dicom(folder / 'scan.dcm', stored, 'MONOCHROME1', 12, WindowCenter=1500,
                WindowWidth=1000)
    with Viewer(folder) as scans:
        status, headers, body = get(scans, '/api/image?image=scan.dcm')
        assert status == 200 and headers['Content-Type'] == 'image/png'
        shown = cv2.imdecode(np.frombuffer(body, np.uint8), cv2.IMREAD_UNCHANGED)
        expected = read_image(folder / 'scan.dcm', grey=True)[0]
        assert np.array_equal(shown, expected)
        assert len(np.unique(expected)) > 100 and (expected == 0).any()  # the window clips
        assert api(scans, '/api/meta')['images'][0]['labeled'] is False


def test_paths_outside_the_served_folders_are_refused(world):
    viewer, name = world['viewer'], world['names'][0]
    image = Path(world['labels'][name]['img_path'])
    png = image.read_bytes()[:8]
    setup = (ROOT / 'setup.py').read_bytes()
    paths = ['/../../../../etc/passwd', '/%2e%2e/%2e%2e/%2e%2e/etc/passwd',
             '/%252e%252e/%252e%252e/etc/passwd', '/viewer.js/../../setup.py',
             '/..%2f..%2fsetup.py', '//etc/passwd', '/static/viewer.js', '/etc/passwd',
             f'/{image}', '/api/image?image=../../../../etc/passwd',
             '/api/image?image=%2Fetc%2Fpasswd', f'/api/image?image={quote(str(image))}',
             f'/api/image?image={quote(image.parent.name + "/" + name)}',
             '/api/image?image=..%2F..%2Fsetup.py', '/api/image?image=%2e%2e',
             '/api/masks?image=..%5c..%5csetup.py&layer=label', '/api/image?image=a%00b']
    for path in paths:
        status, _, body = get(viewer, path)
        assert status in (403, 404), path
        assert b'root:' not in body and setup not in body and png not in body, path
    assert get(viewer, '/..%2f..%2fsetup.py')[0] == 403
    assert get(viewer, f'/api/image?image={quote(name)}')[0] == 200


def test_a_shared_host_needs_the_token(world):
    with Viewer(world['data'], host='0.0.0.0') as shared:
        token = shared.token
        assert len(token) >= 20 and shared.url.endswith(f':{shared.port}/?token={token}')
        wrong = token[:-1] + ('y' if token.endswith('x') else 'x')
        for path in ('/', '/api/meta', f'/?token={wrong}', '/api/meta?token=',
                     '/api/meta?token=%C3%A9'):
            status, _, body = get(shared, path)
            assert status == 403 and b'token' in body, path
        status, headers, _ = get(shared, f'/?token={token}')
        assert status == 200
        cookie = headers['Set-Cookie'].split(';')[0]
        assert cookie == f'handbone-viewer-{shared.port}={token}'
        assert get(shared, '/api/meta', {'Cookie': cookie})[0] == 200
        assert get(shared, '/api/meta', {'Cookie': cookie[:-1] + 'x'})[0] == 403
        assert get(shared, f'/api/meta?token={token}')[0] == 200
    # on loopback: no token, but a page of another site (DNS rebinding) is refused
    assert world['viewer'].token == ''
    assert get(world['viewer'], '/api/meta', {'Host': 'evil.example:80'})[0] == 403
    assert get(world['viewer'], '/api/meta', {'Host': f'localhost:{world["viewer"].port}'})[0] \
        == 200


def _fails(capsys, argv: list[str]) -> str:
    """Run tools/browse.py: it must stop with one error line before it serves anything."""
    tool = load_tool('browse')
    assert run_tool(lambda: tool.main(argv)) == 1
    out, err = capsys.readouterr()
    assert out == ''  # no address printed: it never listened
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith('error: '), err
    return lines[0]


def test_bad_inputs_are_one_line_before_the_server_starts(world, tmp_path, capsys):
    root, data = world['root'], world['data']
    missing = tmp_path / 'nowhere'
    assert _fails(capsys, [str(missing)]) == f'error: {missing}: no such folder (give a data ' \
        'root such as data/handbone, or a folder of images)'
    # the train predictions against the test images
    line = _fails(capsys, [str(data / 'test' / 'DCM'), '--pred', str(root / 'a.csv')])
    assert re.fullmatch(rf'error: {re.escape(str(root / "a.csv"))}: image image\d+(_[RL])?\.png '
                        r'\(4 of 4\) is not among the images under .*test/DCM: predictions of '
                        r'other images\?', line)
    # a dump of other classes
    other = tmp_path / 'other'
    dump = ProbDump(root / 'probs')
    entries = []
    for name in dump.names:
        probs = torch.from_numpy(dequantize(dump.crops(name).dense()))
        entries.append((name, save_probs(other, name, probs)))
    write_index(other, [*CLASSES[:-1], 'Sesamoid'], 'uint8', 1.0, entries)
    assert _fails(capsys, [str(data), '--pred', str(other)]) == \
        f"error: {other}: 29 classes, expected 29; class 29 is 'Sesamoid', expected 'Ulna'"
    assert _fails(capsys, [str(data), '--pred', str(tmp_path)]).startswith(
        f'error: {tmp_path}: no predictions here')
    assert _fails(capsys, [str(data), '--pred', str(missing)]) == \
        f'error: {missing}: no such file or folder'
    thresholds = tmp_path / 'thresholds.json'
    save_thresholds(thresholds, [0.4] * len(CLASSES))
    assert _fails(capsys, [str(data), '--pred', str(root / 'a.csv'), '--thresholds',
                           str(thresholds)]) == f'error: {thresholds}: thresholds apply to ' \
        'probability dumps, and no prediction is one'
    thresholds.write_text('{"thresholds": {"finger-1": 2}}')
    assert _fails(capsys, [str(data), '--pred', str(root / 'probs'), '--thresholds',
                           str(thresholds)]).startswith(f'error: {thresholds}: thresholds '
                                                        'missing for')
    assert _fails(capsys, [str(data), '--port', str(world['viewer'].port)]) .startswith(
        f'error: 127.0.0.1:{world["viewer"].port}: cannot listen there')
    with pytest.raises(SystemExit):  # argparse: three models
        load_tool('browse').main([str(data), *['--pred', str(root / 'a.csv')] * 3])


def test_predict_output_folders(world, tmp_path):
    """A tools/predict.py folder: its dump first (sliders), then its CSV, then its masks."""
    from handbone_mmseg.convert.predictions import PredictionWriter
    dump = ProbDump(world['root'] / 'probs')
    out = tmp_path / 'predicted'
    with PredictionWriter(out, ['csv', 'png', 'npz']) as writer:
        for name in world['names'][:2]:
            probs = dequantize(dump.crops(name).dense())
            writer.add(SimpleNamespace(name=name, masks=probs > 0.5, probs=probs,
                                       img_path=world['labels'][name]['img_path'],
                                       metadata=dict(ori_shape=(SIZE, SIZE),
                                                     pixel_spacing=None)))
    catalog = world['viewer'].catalog
    assert isinstance(open_prediction(out, catalog), DumpPrediction)
    shutil.rmtree(out / 'probs')
    assert open_prediction(out, catalog).path == out / 'submission.csv'
    (out / 'submission.csv').unlink()
    masks = open_prediction(out, catalog)
    assert isinstance(masks, MaskFolderPrediction) and masks.names == set(world['names'][:2])
    name = world['names'][1]
    painted = runs_to_box_masks(masks.runs(name, (SIZE, SIZE)), (SIZE, SIZE)).dense()
    assert np.array_equal(painted, dequantize(dump.crops(name).dense()) > 0.5)


def test_browse_starts_without_torch_and_the_printed_commands_parse(world):
    code = ('import runpy, sys\nsys.argv = ["browse", "--help"]\ntry:\n'
            '    runpy.run_path("tools/browse.py", run_name="__main__")\n'
            'except SystemExit:\n    pass\n'
            'print("HEAVY", [m for m in ("torch", "mmseg", "mmengine") if m in sys.modules])\n')
    done = subprocess.run([sys.executable, '-c', code], cwd=ROOT, capture_output=True,
                          text=True, timeout=120)
    assert 'HEAVY []' in done.stdout, done.stderr[-2000:]
    # the report's and the demo's command (browse_command) is one tools/browse.py takes
    command = browse_command(world['data'] / 'test' / 'DCM', [world['root'] / 'a.csv'],
                             world['data'] / 'test_labels' / 'outputs_json')
    args = load_tool('browse').parse_args(shlex.split(command)[2:])
    assert (args.images, args.pred, args.port) == (str(world['data'] / 'test' / 'DCM'),
                                                   [str(world['root'] / 'a.csv')], 8765)


def test_announce_prints_the_address(world, capsys):
    load_tool('browse').announce(world['viewer'])
    out = capsys.readouterr().out
    assert f'open http://127.0.0.1:{world["viewer"].port}/   (Ctrl-C stops)' in out
    assert f'6 images under {world["data"]}' in out


# ---------------------------------------------------------------------------- the page
@pytest.fixture(scope='module')
def page(world):
    if shutil.which('chromium') is None:
        pytest.skip('chromium is not installed (make setup installs it with apt)')
    from playwright.sync_api import sync_playwright
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which('chromium'),
                                             args=['--no-sandbox'])
        page = browser.new_page(viewport={'width': 1400, 'height': 800})
        errors = []
        page.on('pageerror', lambda e: errors.append(str(e)))
        page.goto(world['viewer'].url)
        page.wait_for_function('window.viewer && viewer.hooks.drawn !== null')
        yield page
        assert errors == []
        browser.close()


def show(page, **params) -> None:
    """Open the page's state from an address fragment and wait for the drawing."""
    frames = page.evaluate('viewer.hooks.frames')
    page.evaluate('fragment => { location.hash = fragment; }',
                  '&'.join(f'{k}={quote(str(v))}' for k, v in params.items()))
    page.wait_for_function(f'viewer.hooks.frames > {frames} && viewer.hooks.pending === null '
                           f'&& viewer.hooks.drawn === {json.dumps(params["image"])}')


def canvas(page, y: int, x: int, pane: int = 0) -> list[int]:
    return page.evaluate(f'viewer.canvasAt({x}, {y}, {pane})')


def inside(mask: np.ndarray, others: np.ndarray) -> tuple[int, int]:
    """(y, x) well inside ``mask`` and away from ``others``: the pixel nearest the centre of
    what is left after eroding."""
    core = cv2.erode((mask & ~cv2.dilate(others.view(np.uint8), np.ones((3, 3))).astype(bool))
                     .view(np.uint8), np.ones((5, 5)))
    ys, xs = np.nonzero(core)
    k = np.argmin((ys - ys.mean()) ** 2 + (xs - xs.mean()) ** 2)
    return int(ys[k]), int(xs[k])


@needs_chromium
def test_page_lists_the_images_and_draws_the_first(world, page):
    rows = page.locator('#list tbody tr')
    assert rows.count() == 6
    assert page.evaluate('viewer.hooks.drawn') == rows.first.get_attribute('data-name')
    assert page.evaluate('viewer.hooks.errors') == []


@needs_chromium
def test_toggling_a_bone_changes_the_pixels_where_it_is(world, page):
    name = world['names'][0]
    show(page, image=name, view='label', opacity=1)
    truth = gt_masks(world['labels'][name])
    grey = cv2.imread(world['labels'][name]['img_path'], cv2.IMREAD_GRAYSCALE)
    y, x = inside(truth[RADIUS], np.delete(truth, RADIUS, 0).any(0))
    v, u = inside(truth[ULNA], np.delete(truth, ULNA, 0).any(0))
    assert canvas(page, y, x) == [*PALETTE[RADIUS], 255]
    page.click(f'#classes tbody tr[data-class="{RADIUS}"] td.name')
    assert canvas(page, y, x) == [*[int(grey[y, x])] * 3, 255]  # the X-ray itself
    assert canvas(page, v, u) == [*PALETTE[ULNA], 255]  # the other bone stays
    page.wait_for_function("location.hash.includes('hide=28')")  # the link keeps it hidden
    page.click(f'#classes tbody tr[data-class="{RADIUS}"] td.name')
    assert canvas(page, y, x) == [*PALETTE[RADIUS], 255]
    page.keyboard.type('28')  # the same by its number
    page.wait_for_function('viewer.state.hidden.has(27)')
    assert canvas(page, y, x) == [*[int(grey[y, x])] * 3, 255]
    page.keyboard.type('28')
    page.wait_for_function('!viewer.state.hidden.has(27)')
    assert canvas(page, y, x) == [*PALETTE[RADIUS], 255]
    # hovering names the bone under the cursor in the labels and both models
    page.mouse.move(*page.evaluate(f'viewer.toPage({x}, {y})'))
    hover = page.inner_text('#hover')
    assert f'x {x}, y {y}' in hover and 'label: Radius' in hover and 'A: Radius' in hover


@needs_chromium
def test_error_view_draws_the_planted_false_positive_and_negatives(world, page):
    name = world['names'][2]
    show(page, image=name, view='error', opacity=1)
    truth = gt_masks(world['labels'][name])
    fy, fx = world['fp'][name]
    assert canvas(page, fy + FP_SIDE // 2, fx + FP_SIDE // 2) == [*FP_RGB, 255]
    y, x = inside(truth[MISSING], np.delete(truth, MISSING, 0).any(0))
    assert canvas(page, y, x) == [*FN_RGB, 255]
    grey = cv2.imread(world['labels'][name]['img_path'], cv2.IMREAD_GRAYSCALE)
    v, u = inside(truth[ULNA], np.delete(truth, ULNA, 0).any(0))
    assert canvas(page, v, u) == [*[int(grey[v, u])] * 3, 255]  # right: no error drawn
    # side by side: model A's errors left, model B's right (no planted square there)
    show(page, image=name, view='error', opacity=1, layout='side')
    assert canvas(page, fy + FP_SIDE // 2, fx + FP_SIDE // 2, 1) != [*FP_RGB, 255]
    assert canvas(page, fy + FP_SIDE // 2, fx + FP_SIDE // 2, 0) == [*FP_RGB, 255]


@needs_chromium
def test_keys_go_to_the_next_image_and_the_next_worst(world, page):
    order = page.evaluate("[...document.querySelectorAll('#list tbody tr')]"
                          ".map(tr => tr.dataset.name)")
    show(page, image=order[0], view='pred')
    page.keyboard.press('ArrowRight')
    page.wait_for_function(f'viewer.hooks.drawn === {json.dumps(order[1])} && '
                           'viewer.hooks.pending === null')
    assert f'image={order[1]}' in page.evaluate('location.hash')
    page.keyboard.press('ArrowLeft')
    page.wait_for_function(f'viewer.hooks.drawn === {json.dumps(order[0])}')
    # w: the next image by model A's Dice, worst first, once the scores are in
    world['viewer'].statistics._thread.join(timeout=60)
    page.wait_for_function("document.querySelector('#progress').textContent.startsWith("
                           "'scores of')")
    table = dice_table(world['root'] / 'a.csv', world['labels'])
    worst = [table.names[i] for i in np.argsort(table.per_image, kind='stable')]
    show(page, image=worst[0], view='pred')
    page.keyboard.press('w')
    page.wait_for_function(f'viewer.hooks.drawn === {json.dumps(worst[1])}')


@needs_chromium
def test_threshold_slider_updates_mask_and_dice_as_the_test_metric_counts(world, page):
    """The Dice shown for a threshold is tools/test.py's: ``MultiLabelDiceMetric.process``
    on the dump's probabilities thresholded there."""
    from handbone_mmseg.evaluation.dice_metric import MultiLabelDiceMetric
    name, c = world['names'][3], CLASSES.index('Lunate')
    show(page, image=name, view='pred', model='B', opacity=1)
    slider = page.locator(f'#classes input[data-class="{c}"]')
    slider.focus()
    for _ in range(30):  # 0.5 -> 0.2 by the slider's own arrow key steps
        page.keyboard.press('ArrowLeft')
    cell = f'#classes tr[data-class="{c}"] td.dice[data-model="1"]'
    page.wait_for_function(f"document.querySelector('{cell}').dataset.threshold === '0.2'")
    shown = float(page.get_attribute(cell, 'data-value'))
    levels = ProbDump(world['root'] / 'probs').crops(name).dense()
    # 0.2 is level 51 exactly: those pixels are out (p > t), which a >= would get wrong
    assert (levels[c] == 51).sum() > 0
    probs = dequantize(levels)
    thresholds = np.full(len(CLASSES), 0.5, np.float32)
    thresholds[c] = 0.2
    pred = probs > thresholds[:, None, None]
    metric = MultiLabelDiceMetric()
    metric.dataset_meta = dict(classes=CLASSES)
    truth = gt_masks(world['labels'][name])
    metric.process({}, [dict(img_path=name, pred_sem_seg=dict(data=torch.from_numpy(pred)),
                             gt_sem_seg=dict(data=torch.from_numpy(pack_masks(truth))[None]))])
    expected = dice_from_counts(metric.results[0]['counts'])
    assert shown == pytest.approx(expected[c], abs=1e-6)
    assert page.inner_text(cell) == f'{expected[c]:.4f}'
    assert expected[c] != pytest.approx(dice_from_counts(dice_counts(probs > 0.5, truth))[c])
    # the mask drawn is the one counted
    assert page.evaluate(f'viewer.count(1, {c})') == int(pred[c].sum())
    assert page.evaluate(f'viewer.count(1, {c - 1})') == int(pred[c - 1].sum())
    page.wait_for_function("location.hash.includes('tB=25%3A0.2')")


@needs_chromium
def test_a_link_reopens_the_same_image_and_view(world, page):
    name = world['names'][1]
    show(page, image=name, view='error', model='B', layout='side', mode='outline',
         opacity=0.7, hide='3,12', zoom='4,90,100')
    scored = "document.querySelector('#classes td.dice').dataset.value"  # layout settled
    page.wait_for_function(scored)
    page.click('#copy-link')  # the address now holds every setting
    link = page.evaluate('location.href')
    picture = page.locator('#panes').screenshot()
    state = page.evaluate('JSON.stringify({...viewer.state, hidden: [...viewer.state.hidden]})')
    other = page.context.browser.new_page(viewport={'width': 1400, 'height': 800})
    other.goto(link)
    other.wait_for_function(f'viewer.hooks.drawn === {json.dumps(name)} && '
                            'viewer.hooks.pending === null')
    other.wait_for_function(scored)
    assert other.evaluate('JSON.stringify({...viewer.state, hidden: '
                          '[...viewer.state.hidden]})') == state
    assert other.locator('#panes').screenshot() == picture
    other.close()


@needs_chromium
def test_report_links_open_the_viewer_on_that_image(world, page, tmp_path):
    report = write_report(world['root'] / 'a.csv', world['data'], 'train/DCM', tmp_path,
                          ann_dir='train/outputs_json', worst=2)
    text = report.read_text()
    links = re.findall(r'href="(http://127\.0\.0\.1:8765/[^"]+)"', text)
    assert len(links) == 2 and 'python tools/browse.py ' in text
    link = links[0].replace('&amp;', '&').replace(':8765/', f':{world["viewer"].port}/')
    name = re.search(r'image=([^&]+)', link)[1]
    page.goto(link)
    page.wait_for_function(f'viewer.hooks.drawn === {json.dumps(name)} && '
                           'viewer.hooks.pending === null')
    assert page.evaluate('viewer.state.view') == 'error'


def test_the_viewer_wrote_nothing_into_the_data_folder(world):
    assert _snapshot(world['data']) == world['snapshot']
