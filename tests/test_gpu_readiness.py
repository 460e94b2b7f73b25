"""What a GPU run needs of a config: types that exist, bf16, synchronised timm norms, AMP."""
import copy

import pytest
import torch
import torch.distributed as dist
from mmengine.config import Config
from mmengine.registry import init_default_scope
from mmseg.registry import MODELS

from handbone_mmseg.apis import check_registered, cpu_stand_in, load_config
from handbone_mmseg.apis import switches as switches_module
from handbone_mmseg.functional.losses import binary_cross_entropy

from helpers import ROOT, free_port, load_tool

UNETPP = ROOT / 'configs' / 'unetpp_efficientnet_b5_handbone.py'


def test_a_type_no_registry_has_is_one_line_naming_the_key():
    cfg = load_config(UNETPP)
    cfg.custom_hooks[0].ema_type = 'ExpMomentumEMA'  # mmdet's, which mmengine lacks
    with pytest.raises(ValueError) as error:
        check_registered(cfg, 'x.py')
    assert str(error.value) == ("x.py: custom_hooks.0.ema_type: 'ExpMomentumEMA' is not in "
                                'the MODELS registry of mmseg or mmengine (did you mean '
                                "'MomentumAnnealingEMA'?)")


@pytest.mark.parametrize('key, value, registry', [
    ('model.decode_head.loss_decode.1.type', 'MultiLabelDiceLos', 'MODELS'),
    ('train_dataloader.dataset.pipeline.4.type', 'RandomCrp', 'TRANSFORMS'),
    ('optim_wrapper.optimizer.type', 'AdamWW', 'OPTIMIZERS'),
    ('param_scheduler.1.type', 'PolyLRR', 'PARAM_SCHEDULERS'),
    ('default_hooks.checkpoint.type', 'CheckpointHok', 'HOOKS'),
    ('val_evaluator.type', 'MultiLabelDice', 'METRICS'),
])
def test_each_part_is_looked_up_in_its_own_registry(key, value, registry):
    with pytest.raises(ValueError, match=rf'^{UNETPP}: {key}: {value!r} is not in the '
                       rf'{registry} registry'):
        load_config(UNETPP, {key: value})


def test_every_shipped_config_names_only_registered_types():
    for path in sorted((ROOT / 'configs').glob('*.py')):
        check_registered(load_config(path), str(path))  # raises on the first unknown type


def test_train_tool_stops_before_the_runner_with_one_line(tmp_path, capsys):
    from handbone_mmseg.cli import run_tool
    train = load_tool('train')
    argv = [str(UNETPP), '--work-dir', str(tmp_path), '--cfg-options',
            'custom_hooks.0.ema_type=ExpMomentumEMA']
    assert run_tool(lambda: train.main(argv)) == 2  # a config error, as for --cfg-options
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"error: {UNETPP}: custom_hooks.0.ema_type: 'ExpMomentumEMA' is not in "
                   "the MODELS registry of mmseg or mmengine (did you mean "
                   "'MomentumAnnealingEMA'?)"]
    assert not list(tmp_path.iterdir())  # nothing built, nothing logged


@pytest.mark.parametrize('key, value', [
    ('optim_wrapper.dtype', 'bfloat16'),
    ('model.decode_head.loss_decode.0.class_weight', [1.0] * 29),
])
def test_an_argument_of_the_class_is_never_a_typo(key, value):
    cfg = load_config(UNETPP, {key: value})
    node = cfg
    for part in key.split('.'):
        node = node[int(part)] if part.isdigit() else node[part]
    assert node == value


@pytest.mark.parametrize('key, message', [
    ('optim_wrapper.dtyp', "AmpOptimWrapper takes no argument 'dtyp' (did you mean "
     'optim_wrapper.dtype?)'),
    ('model.decode_head.loss_decode.0.clas_weight', "MultiLabelBCELoss takes no argument "
     "'clas_weight' (did you mean model.decode_head.loss_decode.0.class_weight?)"),
])
def test_a_name_the_class_does_not_take_is_refused_with_its_nearest_argument(key, message):
    with pytest.raises(ValueError) as error:
        load_config(UNETPP, {key: 1})
    assert str(error.value) == f'--cfg-options {key}: {message}'


@pytest.mark.parametrize('bf16, expected', [(True, 'bfloat16'), (False, 'float16')])
def test_amp_dtype_auto_follows_the_gpu(monkeypatch, bf16, expected):
    monkeypatch.setattr(switches_module, 'native_bf16', lambda: bf16)
    assert load_config(UNETPP).optim_wrapper.dtype == expected
    # an explicit choice wins either way
    assert load_config(UNETPP, {'amp_dtype': 'float16'}).optim_wrapper.dtype == 'float16'
    assert load_config(UNETPP, {'optim_wrapper.dtype': 'float16'}).optim_wrapper.dtype == \
        'float16'


def test_amp_dtype_refuses_a_name_autocast_does_not_take():
    with pytest.raises(ValueError, match=r"^amp_dtype must be one of auto, float16, bfloat16, "
                                         r"got 'fp16'$"):
        load_config(UNETPP, {'amp_dtype': 'fp16'})


def test_the_amp_configs_scale_float16_losses_from_2_to_the_24():
    cfg = load_config(UNETPP)
    assert cfg.optim_wrapper.type == 'AmpOptimWrapper'
    assert cfg.optim_wrapper.loss_scale == dict(init_scale=2.0 ** 24)


def test_cpu_stand_in_replaces_only_syncbn_and_amp():
    cfg = load_config(UNETPP)
    before = copy.deepcopy(cfg)
    replaced = cpu_stand_in(cfg)
    assert replaced == ['model.backbone.norm_cfg: SyncBN -> BN',
                        'model.decode_head.norm_cfg: SyncBN -> BN',
                        'optim_wrapper: AmpOptimWrapper -> OptimWrapper (float32)']
    assert cfg.optim_wrapper == dict(type='OptimWrapper', optimizer=before.optim_wrapper.optimizer,
                                     clip_grad=before.optim_wrapper.clip_grad,
                                     accumulative_counts=1)
    for key in ('custom_hooks', 'default_hooks', 'train_dataloader', 'param_scheduler'):
        assert cfg[key] == before[key]
    assert cpu_stand_in(cfg) == []  # nothing left to replace


def test_mmengine_sync_bn_is_refused_for_a_timm_encoder():
    with pytest.raises(ValueError, match=r"sync_bn='torch' would replace the timm encoder's "
                                         r'BatchNormAct2d layers and drop their activations'):
        load_config(UNETPP, {'sync_bn': 'torch'})


@pytest.fixture
def process_group():
    """A one-process gloo group: what mmengine's runner has set up before it builds a model."""
    import os
    os.environ.update(MASTER_ADDR='127.0.0.1', MASTER_PORT=free_port())
    dist.init_process_group('gloo', rank=0, world_size=1)
    yield
    dist.destroy_process_group()


def _encoder(name: str, norm: str) -> torch.nn.Module:
    init_default_scope('mmseg')
    torch.manual_seed(0)
    return MODELS.build(dict(type='HandBoneTIMMBackbone', model_name=name, pretrained=None,
                             out_indices=(0, 1, 2, 3, 4), norm_cfg=dict(type=norm)))


def _randomise_statistics(model: torch.nn.Module) -> None:
    gen = torch.Generator().manual_seed(1)
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            module.running_mean.copy_(torch.randn(module.num_features, generator=gen) * 0.1)
            module.running_var.copy_(torch.rand(module.num_features, generator=gen) + 0.5)


@pytest.mark.parametrize('name, norm_class', [('efficientnet_b0', 'BatchNormAct2d'),
                                              ('hrnet_w18_small', 'BatchNorm2d')])
def test_timm_encoder_norms_sync_in_a_distributed_run_and_keep_their_outputs(
        process_group, name, norm_class):
    from timm.layers import SyncBatchNormAct
    plain = _encoder(name, 'BN')
    synced = _encoder(name, 'SyncBN')
    kinds = {type(m).__name__ for m in plain.modules()}
    count = sum(type(m).__name__ == norm_class for m in plain.modules())
    assert norm_class in kinds and count > 10
    converted = [m for m in synced.modules() if isinstance(m, torch.nn.SyncBatchNorm)]
    assert len(converted) == count
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in synced.modules())
    if norm_class == 'BatchNormAct2d':  # each fused activation survives the conversion
        acts = {n: type(m.act) for n, m in plain.named_modules() if type(m).__name__ == norm_class}
        assert {n: type(m.act) for n, m in synced.named_modules()
                if isinstance(m, SyncBatchNormAct)} == acts
        assert torch.nn.SiLU in acts.values()
    _randomise_statistics(plain)
    synced.load_state_dict(plain.state_dict())
    plain.eval()
    synced.eval()
    x = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        for a, b in zip(plain(x), synced(x)):
            torch.testing.assert_close(a, b)
    # what torch's converter (mmengine's sync_bn='torch') does to the same encoder
    if norm_class == 'BatchNormAct2d':
        broken = torch.nn.SyncBatchNorm.convert_sync_batchnorm(copy.deepcopy(plain)).eval()
        with torch.no_grad():
            assert not torch.allclose(plain(x)[-1], broken(x)[-1], atol=1e-3)


def test_timm_encoder_stays_bn_in_one_process():
    assert not dist.is_initialized()
    synced = _encoder('efficientnet_b0', 'SyncBN')
    assert not any(isinstance(m, torch.nn.SyncBatchNorm) for m in synced.modules())


def test_timm_encoder_refuses_another_norm():
    with pytest.raises(ValueError, match=r"norm_cfg type must be one of BN, SyncBN .* got 'GN'"):
        _encoder('efficientnet_b0', 'GN')


def test_class_weighted_bce_is_finite_under_float16_autocast():
    gen = torch.Generator().manual_seed(0)
    logits = torch.randn(1, 29, 512, 512, generator=gen)
    target = torch.rand(1, 29, 512, 512, generator=gen) > 0.9
    weight = torch.linspace(0.5, 2.0, 29)
    reference = binary_cross_entropy(logits, target, class_weight=weight)
    with torch.autocast('cpu', dtype=torch.float16):
        half = binary_cross_entropy(logits.half(), target, class_weight=weight)
    assert half.dtype == torch.float32 and torch.isfinite(half)
    assert float(half) == pytest.approx(float(reference), rel=1e-3)


def test_config_dump_keeps_the_ema_that_mmengine_has():
    cfg = Config.fromfile(UNETPP)
    assert cfg.custom_hooks == [dict(type='EMAHook', ema_type='MomentumAnnealingEMA',
                                     momentum=0.0002, gamma=10, update_buffers=True,
                                     priority=49)]


def _tiny_model(test_cfg: dict) -> torch.nn.Module:
    init_default_scope('mmseg')
    torch.manual_seed(0)
    cfg = load_config(ROOT / 'configs' / 'tiny_cpu_handbone.py')
    cfg.model.test_cfg = test_cfg
    return MODELS.build(cfg.model).eval()


@pytest.mark.parametrize('dtype', ['bfloat16', 'float16'])
def test_half_precision_inference_gives_float32_probabilities_close_to_float32(dtype):
    from mmseg.structures import SegDataSample
    model = _tiny_model(dict(mode='whole'))
    half = _tiny_model(dict(mode='whole', autocast=dtype))
    half.load_state_dict(model.state_dict())
    x = torch.rand(1, 3, 64, 64)
    meta = dict(ori_shape=(80, 72), img_shape=(64, 64), pad_shape=(64, 64))
    with torch.no_grad():
        ref = model.predict(x, [SegDataSample(metainfo=meta)])[0].seg_logits.data
        out = half.predict(x, [SegDataSample(metainfo=meta)])[0].seg_logits.data
    assert out.dtype == torch.float32 and out.shape == ref.shape == (29, 80, 72)
    assert not torch.equal(out, ref)  # the network did run in half precision
    torch.testing.assert_close(out, ref, atol=2e-2, rtol=0)


def test_autocast_takes_only_half_dtypes():
    with pytest.raises(ValueError, match=r"^model.test_cfg.autocast must be one of "
                                         r"\('float16', 'bfloat16'\) or None \(float32\), "
                                         r"got 'fp16'$"):
        _tiny_model(dict(mode='whole', autocast='fp16'))
