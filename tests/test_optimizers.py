"""AdamP (the ``adamp`` package) through MMEngine's registry, AMP and accumulation."""
import functools

import pytest
import torch
from adamp import AdamP
from mmengine.optim import build_optim_wrapper
from mmengine.optim.optimizer import amp_optimizer_wrapper
from mmengine.registry import init_default_scope

import handbone_mmseg.register  # noqa: F401  (registers the plugin)
from handbone_mmseg.apis import check_registered, load_config

from helpers import ROOT

# AdamP's own arguments set away from their defaults, so that a dropped one shows
ADAMP = dict(lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.05, delta=0.2,
             wd_ratio=0.3, nesterov=True)
TINY = ROOT / 'configs' / 'tiny_cpu_handbone.py'


def model() -> torch.nn.Module:
    """A conv before BatchNorm (scale-invariant: AdamP projects its update) and a conv after."""
    torch.manual_seed(0)
    return torch.nn.Sequential(torch.nn.Conv2d(3, 8, 3), torch.nn.BatchNorm2d(8),
                               torch.nn.ReLU(), torch.nn.Conv2d(8, 2, 1))


def batches(count: int) -> list[torch.Tensor]:
    gen = torch.Generator().manual_seed(1)
    return [torch.rand(2, 3, 8, 8, generator=gen) for _ in range(count)]


def loss_of(net: torch.nn.Module, x: torch.Tensor) -> torch.Tensor:
    return (net(x).float() - 0.5).square().mean()


def params(net: torch.nn.Module) -> list[torch.Tensor]:
    return [p.detach().clone() for p in net.parameters()]


def build(net: torch.nn.Module, **wrapper) -> object:
    init_default_scope('mmseg')  # as the runner builds it: mmseg's registry, then mmengine's
    cfg = dict(type='OptimWrapper', optimizer=dict(type='AdamP', **ADAMP))
    return build_optim_wrapper(net, {**cfg, **wrapper})


def test_registry_step_equals_adamp_called_directly():
    built, direct = model(), model()
    wrapper = build(built)
    assert type(wrapper.optimizer) is AdamP
    assert {k: wrapper.optimizer.defaults[k] for k in ADAMP} == ADAMP
    optimizer = AdamP(direct.parameters(), **ADAMP)
    before = params(direct)
    for x in batches(2):  # two steps: the second uses the moments of the first
        wrapper.update_params(loss_of(built, x))
        optimizer.zero_grad()
        loss_of(direct, x).backward()
        optimizer.step()
    after = params(direct)
    assert all(torch.equal(a, b) for a, b in zip(params(built), after))
    assert all(not torch.equal(a, b) for a, b in zip(before, after))


def test_the_model_exercises_adamps_projection():
    """The conv before BatchNorm is scale-invariant per output channel: AdamP's update of
    each of its filters is orthogonal to the filter, Adam's is not (so the steps compared
    above went through the projection)."""
    x = batches(1)[0]
    cosines = {}
    for cls in (AdamP, torch.optim.Adam):
        net = model()
        optimizer = cls(net.parameters(), lr=1e-3)
        loss_of(net, x).backward()
        before = net[0].weight.detach().clone().flatten(1)
        optimizer.step()
        update = net[0].weight.detach().flatten(1) - before
        cosines[cls] = torch.nn.functional.cosine_similarity(update, before).abs().max()
    assert cosines[AdamP] < 1e-4 < 1e-2 < cosines[torch.optim.Adam]


@pytest.fixture
def cpu_amp(monkeypatch):
    """mmengine's AmpOptimWrapper on the CPU: its CUDA check passed, a CPU GradScaler."""
    monkeypatch.setattr(amp_optimizer_wrapper, 'is_cuda_available', lambda: True)
    monkeypatch.setattr(amp_optimizer_wrapper, 'GradScaler',
                        functools.partial(torch.amp.GradScaler, 'cpu'))


def test_amp_with_accumulation_steps_every_second_batch(cpu_amp):
    """AmpOptimWrapper (autocast, loss scaling, clipping) with 2 accumulated batches against
    the same forward passes under autocast, mean gradient, clipped, one direct AdamP step.
    bfloat16: mmengine's autocast takes no other dtype on the CPU."""
    built, direct = model(), model()
    wrapper = build(built, type='AmpOptimWrapper', dtype='bfloat16', accumulative_counts=2,
                    loss_scale=dict(init_scale=2.0 ** 8), clip_grad=dict(max_norm=1.0))
    first, second = batches(2)
    before = params(built)
    with wrapper.optim_context(built):
        wrapper.update_params(loss_of(built, first))
    assert all(torch.equal(a, b) for a, b in zip(params(built), before))  # accumulated only
    with wrapper.optim_context(built):
        wrapper.update_params(loss_of(built, second))
    assert wrapper.loss_scaler.get_scale() == 2.0 ** 8  # no overflow: the step was taken

    optimizer = AdamP(direct.parameters(), **ADAMP)
    for x in (first, second):
        with torch.autocast('cpu', dtype=torch.bfloat16):
            loss = loss_of(direct, x)
        (loss / 2).backward()
    torch.nn.utils.clip_grad_norm_(direct.parameters(), max_norm=1.0)
    optimizer.step()
    moved = [(a - b).abs().max().item() for a, b in zip(params(direct), before)]
    assert min(moved) > 1e-4
    assert all(torch.equal(a, b) for a, b in zip(params(built), params(direct)))


def test_optimizer_state_resumes_from_a_checkpoint(tmp_path):
    """The state (moments, an int step count) loads under torch.load(weights_only=True)."""
    nets, x = [model(), model()], batches(3)
    wrappers = [build(n) for n in nets]
    for batch in x[:2]:
        wrappers[0].update_params(loss_of(nets[0], batch))
    torch.save({'model': nets[0].state_dict(), 'optim': wrappers[0].state_dict()},
               tmp_path / 'ckpt.pth')
    saved = torch.load(tmp_path / 'ckpt.pth', weights_only=True)
    nets[1].load_state_dict(saved['model'])
    wrappers[1].load_state_dict(saved['optim'])
    for net, wrapper in zip(nets, wrappers):
        wrapper.update_params(loss_of(net, x[2]))
    assert all(torch.equal(a, b) for a, b in zip(params(nets[0]), params(nets[1])))


def test_a_config_picks_adamp_and_its_arguments(tmp_path):
    cfg = load_config(TINY, {'optim_wrapper.optimizer.type': 'AdamP'})
    check_registered(cfg, str(TINY))
    # the demo's AdamW arguments are AdamP's too (decoupled weight decay in both)
    assert cfg.optim_wrapper.optimizer == dict(type='AdamP', lr=3e-3, betas=(0.9, 0.999),
                                               weight_decay=1e-4)
    child = tmp_path / 'adamp.py'
    child.write_text(f"_base_ = [{str(TINY)!r}]\n"
                     "optim_wrapper = dict(optimizer=dict(type='AdamP', wd_ratio=0.2))\n")
    cfg = load_config(child, {'optim_wrapper.optimizer.delta': 0.05})
    assert (cfg.optim_wrapper.optimizer.wd_ratio, cfg.optim_wrapper.optimizer.delta) == \
        (0.2, 0.05)
    with pytest.raises(ValueError) as error:
        load_config(child, {'optim_wrapper.optimizer.nesterow': True})
    assert str(error.value) == ("--cfg-options optim_wrapper.optimizer.nesterow: AdamP takes "
                                "no argument 'nesterow' (did you mean "
                                'optim_wrapper.optimizer.nesterov?)')
