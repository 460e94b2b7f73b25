# The leaderboard recipe in small, on the phantom of `make demo` (2 CPU cores):
# `python tools/run_recipe.py recipes/demo_cpu.py` (or `make recipe-demo`). Two small models,
# 3 folds each, choices on the pooled out-of-fold predictions of all 80 labeled images, the
# 6 fold models averaged on the test images.
data_root = 'data/phantom'
work_dir = 'work_dirs/recipe_demo'
n_folds = 3
folds = [0, 1, 2]
tta = False  # 6 views cost 6 times the inference; the phantom gains little
# A short schedule: each fold trains on 2/3 of the images (the demo's 2400 iterations take
# 13 minutes; 6 of those would not fit a demo).
schedule = {'train_cfg.max_iters': 500, 'train_cfg.val_interval': 500,
            'default_hooks.checkpoint.interval': 500}
models = dict(
    unet=dict(config='configs/tiny_cpu_handbone.py', cfg_options=schedule, gpus=1),
    unetpp=dict(config='configs/unetpp_tiny_cpu_handbone.py', cfg_options=schedule, gpus=1),
)
# each model alone, and both with weights 1:1, 1:2 and 2:1
ensembles = dict(max_size=2, weight_grid=[1, 2])
test_img_dir = 'test/DCM'
