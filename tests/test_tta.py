"""Multi-label TTA: probabilities averaged over views in the original frame, then thresholds."""
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
from mmengine.config import Config
from mmengine.dataset import Compose, pseudo_collate
from mmengine.model import revert_sync_batchnorm
from mmseg.registry import MODELS
from mmseg.utils import register_all_modules
from test_model_configs import CONFIGS
from test_segmentor import build as build_toy

from helpers import ROOT, load_tool

register_all_modules(init_default_scope=True)


def flips() -> list[dict]:
    return [dict(type='RandomFlip', prob=0.0, direction='horizontal'),
            dict(type='RandomFlip', prob=1.0, direction='horizontal')]


def tta_batch(img: Path, scales: list[tuple[int, int]]) -> dict:
    pipeline = Compose([
        dict(type='LoadXrayFromFile'),
        dict(type='TestTimeAug', transforms=[
            [dict(type='Resize', scale=s, keep_ratio=True) for s in scales], flips(),
            [dict(type='LoadMultiLabelAnnotations', at_original_size=True)],
            [dict(type='PackSegInputs')]])])
    return pseudo_collate([pipeline(dict(img_path=str(img)))])


def plain_batch(img: Path, scale: tuple[int, int]) -> dict:
    pipeline = Compose([dict(type='LoadXrayFromFile'),
                        dict(type='Resize', scale=scale, keep_ratio=True),
                        dict(type='PackSegInputs')])
    return pseudo_collate([pipeline(dict(img_path=str(img)))])


def toy_tta(threshold=0.5):
    """A segmentor whose logits are a pixel-wise function of brightness (flip-equivariant):
    bright (200) is bone in every class, dark (40) is not."""
    model = build_toy(threshold=threshold)
    model.encode_decode = lambda inputs, metas: ((inputs[:, :1] - 120) / 10).expand(
        -1, 29, -1, -1)
    model.eval()
    return MODELS.build(dict(type='MultiLabelTTAModel', module=model))


def write_image(path: Path, img: np.ndarray) -> Path:
    cv2.imwrite(str(path), img)
    return path


def test_flip_tta_of_a_flip_equivariant_model_equals_no_tta(tmp_path):
    rng = np.random.default_rng(0)
    img = write_image(tmp_path / 'x.png', rng.integers(0, 256, (64, 48, 3), dtype=np.uint8))
    tta = toy_tta()
    with torch.no_grad():
        merged = tta.test_step(tta_batch(img, [(64, 48)]))[0]
        plain = tta.module.test_step(plain_batch(img, (64, 48)))[0]
    assert merged.seg_logits.data.shape == (29, 64, 48)
    assert torch.allclose(merged.seg_logits.data, plain.seg_logits.data, atol=1e-6)
    assert torch.equal(merged.pred_sem_seg.data, plain.pred_sem_seg.data)


def test_flip_tta_undoes_the_flip_at_every_scale(tmp_path):
    img = np.full((64, 64, 3), 40, np.uint8)
    img[:, :32] = 200  # the left half is "bone"
    path = write_image(tmp_path / 'left.png', img)
    tta = toy_tta()
    with torch.no_grad():
        merged = tta.test_step(tta_batch(path, [(48, 48), (64, 64), (96, 96)]))[0]
    prob = merged.seg_logits.data
    # a view left mirrored would average to 0.5 on both sides
    assert prob[:, :, :30].min() > 0.99 and prob[:, :, 34:].max() < 0.01
    mask = merged.pred_sem_seg.data
    assert mask.dtype == torch.bool and mask.shape == (29, 64, 64)
    assert mask[:, :, :30].all() and not mask[:, :, 34:].any()


def test_tta_applies_per_class_thresholds_to_the_mean(tmp_path):
    img = np.full((32, 32, 3), 40, np.uint8)
    img[8:24, 8:24] = 132  # logit 1.2 -> probability 0.769 in every view
    path = write_image(tmp_path / 'grey.png', img)
    thresholds = [0.5] * 29
    thresholds[3] = 0.8
    with torch.no_grad():
        merged = toy_tta(thresholds).test_step(tta_batch(path, [(32, 32)]))[0]
    assert float(merged.seg_logits.data[0, 16, 16]) == pytest.approx(0.76852, abs=1e-4)
    on = merged.pred_sem_seg.data[:, 16, 16]
    assert on.sum() == 28 and not on[3]


def test_tta_keeps_original_frame_ground_truth(tmp_path):
    from helpers import all_bones, write_case
    img = write_case(tmp_path, 'ID001', 'image1', size=64, annotations=all_bones())
    ann = tmp_path / 'train' / 'outputs_json' / 'ID001' / 'image1.json'
    from handbone_mmseg.functional import rasterize_polygons
    from handbone_mmseg.io import parse_annotation
    polygons = parse_annotation(ann, (64, 64))
    pipeline_input = dict(img_path=str(img), polygons=polygons)
    pipeline = Compose([dict(type='LoadXrayFromFile'), dict(type='TestTimeAug', transforms=[
        [dict(type='Resize', scale=(32, 32), keep_ratio=True)], flips(),
        [dict(type='LoadMultiLabelAnnotations', at_original_size=True)],
        [dict(type='PackSegInputs')]])])
    views = pipeline(pipeline_input)['data_samples']
    expected = torch.from_numpy(rasterize_polygons(polygons, (64, 64)))
    assert [v.flip for v in views] == [False, True]
    for view in views:  # the mirrored view's labels are not mirrored: predictions get un-flipped
        assert torch.equal(view.gt_sem_seg.data[0], expected)


@pytest.mark.parametrize('name', CONFIGS)
def test_every_config_runs_its_tta_pipeline(name, tmp_path):
    """The config's own tta_pipeline and tta_model, at small scales, on one image."""
    cfg = Config.fromfile(ROOT / 'configs' / f'{name}.py')
    cfg.model.pretrained = None
    cfg.model.test_cfg = dict(mode='whole')
    cfg.model.data_preprocessor.size = None
    resizes = cfg.tta_pipeline[1].transforms[0]
    assert len(resizes) == 3 and len(cfg.tta_pipeline[1].transforms[1]) == 2
    for resize, size in zip(resizes, (32, 48, 64)):
        resize.scale = (size, size)
    path = write_image(tmp_path / 'x.png', np.random.default_rng(1).integers(
        0, 256, (70, 60, 3), dtype=np.uint8))
    data = pseudo_collate([Compose(cfg.tta_pipeline)(dict(img_path=str(path)))])
    model = MODELS.build(dict(cfg.tta_model, module=cfg.model))
    model = revert_sync_batchnorm(model).eval()
    with torch.no_grad():
        out = model.test_step(data)[0]
    prob = out.seg_logits.data
    assert prob.shape == out.pred_sem_seg.data.shape == (29, 70, 60)
    assert 0 <= float(prob.min()) and float(prob.max()) <= 1
    assert torch.equal(out.pred_sem_seg.data, prob > 0.5)


@pytest.mark.parametrize('name', [*CONFIGS, 'tiny_cpu_handbone'])
def test_test_tool_wraps_every_config_for_tta(name, tmp_path):
    checkpoint = tmp_path / 'empty.pth'
    torch.save({'state_dict': {}}, checkpoint)
    test = load_tool('test')
    cfg = test.setup(test.parse_args([str(ROOT / 'configs' / f'{name}.py'), str(checkpoint),
                                      '--tta', '--out', str(tmp_path / 'out')]))
    assert cfg.model.type == 'MultiLabelTTAModel'
    assert cfg.model.module.type.startswith('MultiLabel')
    assert cfg.test_dataloader.dataset.pipeline[1].type == 'TestTimeAug'
    assert cfg.test_evaluator.output_dir == str(tmp_path / 'out')
