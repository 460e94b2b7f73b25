"""HandBoneInferencer: the same masks as tools/test.py, every input kind, thresholds and
post-processing, TTA, checkpoint checks, overlays. A tiny model with random weights (zero
classifier bias, so about half of each mask is on and any pipeline difference shows)."""
import json

import cv2
import numpy as np
import pytest
import torch

from handbone_mmseg.apis import HandBoneInferencer
from handbone_mmseg.classes import CLASSES, NUM_CLASSES
from handbone_mmseg.io.submission import read_submission
from handbone_mmseg.phantom import generate_phantom

from helpers import ROOT, load_tool, random_checkpoint

CONFIG = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')
SIZE = 96
OPTIONS = {'model.prior_prob': None}


@pytest.fixture(scope='module')
def setup(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp('inferencer')
    generate_phantom(root / 'data', patients=1, size=SIZE, seed=5, test_patients=1)
    checkpoint = random_checkpoint(CONFIG, root / 'random.pth', OPTIONS)
    images = sorted((root / 'data' / 'test' / 'DCM').rglob('*.png'))
    return dict(root=root, data=root / 'data', checkpoint=checkpoint, images=images,
                plain=HandBoneInferencer(CONFIG, checkpoint, device='cpu',
                                         cfg_options=OPTIONS))


@pytest.mark.parametrize('tta', [False, True])
def test_same_masks_as_the_test_tool(setup, tta):
    out = setup['root'] / f'test_tool_{tta}'
    load_tool('test').main([CONFIG, str(setup['checkpoint']), '--out', str(out),
                            '--work-dir', str(setup['root'] / 'work'), *(['--tta'] * tta),
                            '--cfg-options', f'data_root={setup["data"]}',
                            'model.prior_prob=None'])
    expected = dict(read_submission(out / 'submission.csv', (SIZE, SIZE)))
    inferencer = setup['plain'] if not tta else HandBoneInferencer(
        CONFIG, setup['checkpoint'], tta=True, device='cpu', cfg_options=OPTIONS)
    predictions = list(inferencer.iter_predict(setup['data'] / 'test' / 'DCM'))
    assert [p.name for p in predictions] == [p.name for p in setup['images']]
    for prediction in predictions:
        assert prediction.probs.shape == (NUM_CLASSES, SIZE, SIZE)
        assert prediction.probs.dtype == np.float32 and prediction.masks.dtype == np.bool_
        assert 0.05 < prediction.masks.mean() < 0.95  # a real test: masks are not empty
        np.testing.assert_array_equal(prediction.masks, expected[prediction.name])


def test_paths_lists_arrays_and_batches_agree(setup):
    inferencer, images = setup['plain'], setup['images']
    reference = [p.masks for p in inferencer.iter_predict([str(p) for p in images])]
    single = inferencer(images[0])['predictions']
    np.testing.assert_array_equal(single[0].masks, reference[0])
    batched = list(inferencer.iter_predict(images, batch_size=2))
    for prediction, masks in zip(batched, reference):
        np.testing.assert_array_equal(prediction.masks, masks)
    bgr = cv2.imread(str(images[0]), cv2.IMREAD_COLOR)
    grey = cv2.cvtColor(bgr, cv2.COLOR_BGR2GRAY)
    result = inferencer([bgr, grey], names=['a.png', 'b.png'])
    assert [p.name for p in result['predictions']] == ['a.png', 'b.png']
    assert result['predictions'][0].img_path is None
    for prediction in result['predictions']:  # the phantom is grey stored as 3 channels
        np.testing.assert_array_equal(prediction.masks, reference[0])


def test_dicom_input_gives_the_png_prediction_and_its_spacing(setup, tmp_path):
    pytest.importorskip('pydicom')
    from handbone_mmseg.io.dicom import write_dicom
    png = setup['images'][0]
    grey = cv2.imread(str(png), cv2.IMREAD_GRAYSCALE)
    dcm = write_dicom(tmp_path / 'scan.dcm', grey, WindowCenter=128, WindowWidth=256,
                      PixelSpacing=[0.143, 0.143])
    from_png, from_dcm = setup['plain']([png, dcm])['predictions']
    np.testing.assert_array_equal(from_dcm.masks, from_png.masks)
    assert from_dcm.metadata['pixel_spacing'] == [0.143, 0.143]
    assert from_png.metadata == dict(ori_shape=(SIZE, SIZE), pixel_spacing=None)


def test_thresholds_json_with_postprocessing(setup, tmp_path):
    path = tmp_path / 'thresholds.json'
    path.write_text(json.dumps({
        'thresholds': {c: (0.4 if c == 'Radius' else 0.5) for c in CLASSES},
        'postprocess': {'finger-1': {'largest': True}}}))
    tuned = HandBoneInferencer(CONFIG, setup['checkpoint'], thresholds=path, device='cpu',
                               cfg_options=OPTIONS)
    plain = next(setup['plain'].iter_predict(setup['images'][0]))
    prediction = next(tuned.iter_predict(setup['images'][0]))
    np.testing.assert_allclose(prediction.probs, plain.probs)
    radius = CLASSES.index('Radius')
    np.testing.assert_array_equal(prediction.masks[radius], plain.probs[radius] > 0.4)
    parts, _ = cv2.connectedComponents(prediction.masks[0].view(np.uint8), connectivity=8)
    assert parts == 2  # background and the one largest component
    assert (prediction.masks[0] <= plain.masks[0]).all()
    np.testing.assert_array_equal(prediction.masks[1:radius], plain.masks[1:radius])


def test_a_checkpoint_of_another_class_count_is_refused(setup, tmp_path):
    state = torch.load(setup['checkpoint'], weights_only=True)
    state['state_dict']['decode_head.conv_seg.weight'] = \
        state['state_dict']['decode_head.conv_seg.weight'][:19]
    path = tmp_path / 'cityscapes.pth'
    torch.save(state, path)
    with pytest.raises(ValueError, match='cityscapes.pth: decode_head.conv_seg.weight has 19 '
                       'output classes'):
        HandBoneInferencer(CONFIG, path, device='cpu', cfg_options=OPTIONS)
    with pytest.raises(ValueError, match='missing.pth: checkpoint not found'):
        HandBoneInferencer(CONFIG, tmp_path / 'missing.pth', device='cpu')


def test_overlays_are_drawn_and_written(setup, tmp_path):
    result = setup['plain'](setup['images'], return_vis=True, out_dir=tmp_path)
    assert len(result['visualization']) == 2
    assert result['visualization'][0].shape == (SIZE, SIZE, 3)
    written = sorted(p.name for p in tmp_path.glob('*.png'))
    assert written == sorted(f'{p.stem}.png' for p in setup['images'])
    assert setup['plain'](setup['images'][0])['visualization'] is None


def test_bad_inputs_are_named(setup, tmp_path):
    with pytest.raises(FileNotFoundError, match='nowhere.png: no such file or folder'):
        setup['plain'](tmp_path / 'nowhere.png')
    (tmp_path / 'empty').mkdir()
    with pytest.raises(FileNotFoundError, match='empty: no images'):
        setup['plain'](tmp_path / 'empty')
    broken = tmp_path / 'broken.png'
    broken.write_bytes(b'\x89PNG\r\n\x1a\n' + bytes(20))
    with pytest.raises(ValueError, match='broken.png: cannot decode image'):
        setup['plain'](broken)
