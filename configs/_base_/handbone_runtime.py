# Runtime and schedule shared by the hand-bone configs: iteration-based AdamW with warm-up
# and poly decay, validation Dice, best checkpoint kept by mDice.
_base_ = ['mmseg::_base_/default_runtime.py']

custom_imports = dict(imports=['handbone_mmseg.register'], allow_failed_imports=False)
# mmengine's Runner that first applies this project's switches (use_wandb, grayscale), so
# that they hold through mmseg's own tools/train.py and `mim train` too, which build
# RUNNERS.build(cfg) when runner_type is set (handbone_mmseg.apis.HandBoneRunner).
runner_type = 'HandBoneRunner'
# `tools/test.py --tta`: per-class sigmoid probabilities averaged over the dataset base's
# tta_pipeline, then the segmentor's thresholds (the stock SegTTAModel takes a softmax argmax).
tta_model = dict(type='MultiLabelTTAModel')
# Weights & Biases: `use_wandb = True` (or `--cfg-options use_wandb=True`) adds
# HandBoneWandbVisBackend (mmengine's WandbVisBackend, uploading the package's code rather
# than the working directory's) to the visualizer (handbone_mmseg.apis.apply_switches; the
# vis_backends list below is built when this file is parsed). wandb_init_kwargs go to
# wandb.init; WANDB_MODE=offline keeps runs on disk.
use_wandb = False
wandb_init_kwargs = dict(project='handbone')
# An alert when a training run ends or fails (handbone_mmseg.runtime.NotifyHook): its name,
# status (finished, or failed with the error), best mDice and its iteration, and wall time,
# posted as JSON ({"text", "content"}: Slack, Mattermost and Discord incoming webhooks), and a
# W&B alert when use_wandb is on. True: post to the URL in the environment variable
# HANDBONE_NOTIFY_URL, read when the run starts (keeps the secret out of config files); an
# http(s):// URL: post there. HandBoneRunner replaces a URL here by '<redacted>' before the
# config is logged, dumped to the work dir, stored in checkpoints or sent to W&B.
notify = False

max_iters = 40000
val_interval = 2000
# Mixed precision (mmengine's AmpOptimWrapper, CUDA only); the CPU configs override it.
# amp_dtype: 'auto' picks bfloat16 where the GPU computes it natively (A100, H100, RTX 30xx
# and later: fp32's range, no underflow) and float16 elsewhere (V100, T4); 'bfloat16' or
# 'float16' to choose (handbone_mmseg.apis.apply_switches writes it into
# optim_wrapper.dtype, unless the config or --cfg-options sets that itself).
amp_dtype = 'auto'
optim_wrapper = dict(
    type='AmpOptimWrapper',
    # Dynamic loss scaling from 2^24 instead of GradScaler's 2^16: one sigmoid per class and
    # pixel makes the loss a mean over 29 x H x W terms, and at 2^16 most float16 gradients at
    # the logits of a confident model are subnormal (72% at 1024, benchmarks/bench_amp.py);
    # an overflow only skips a step and halves the scale. Unused by bfloat16's range.
    loss_scale=dict(init_scale=2.0**24),
    optimizer=dict(type='AdamW', lr=1e-4, betas=(0.9, 0.999), weight_decay=0.01),
    clip_grad=dict(max_norm=1.0))
param_scheduler = [
    dict(type='LinearLR', start_factor=1e-3, by_epoch=False, begin=0, end=1000),
    dict(type='PolyLR', eta_min=0.0, power=1.0, by_epoch=False, begin=1000, end=max_iters),
]
train_cfg = dict(type='IterBasedTrainLoop', max_iters=max_iters, val_interval=val_interval)
val_cfg = dict(type='ValLoop')
test_cfg = dict(type='TestLoop')
default_hooks = dict(
    timer=dict(type='IterTimerHook'),
    logger=dict(type='LoggerHook', interval=50, log_metric_by_epoch=False),
    param_scheduler=dict(type='ParamSchedulerHook'),
    checkpoint=dict(type='CheckpointHook', by_epoch=False, interval=val_interval,
                    max_keep_ckpts=2, save_best='mDice', rule='greater'),
    sampler_seed=dict(type='DistSamplerSeedHook'),
    visualization=dict(type='SegVisualizationHook'))
# Draws the (29, H, W) multi-label predictions (the stock one expects one label per pixel):
# overlays that mix overlapping bones' colours, ground truth and an error map, side by side.
# No fixed name: each runner then builds its own instance instead of reusing the first one.
visualizer = dict(type='MultiLabelSegVisualizer', vis_backends=[dict(type='LocalVisBackend')])
