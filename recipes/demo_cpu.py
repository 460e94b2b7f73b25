# The leaderboard recipe in small, on the phantom of `make demo` (2 CPU cores):
# `python tools/run_recipe.py recipes/demo_cpu.py` (or `make recipe-demo`). Two small models,
# 3 folds each, choices on the pooled out-of-fold predictions of all 80 labeled images, the
# 6 fold models averaged on the test images.
data_root = 'data/phantom'
work_dir = 'work_dirs/recipe_demo'
n_folds = 3
folds = [0, 1, 2]
fold_strategy = 'patient_stratified'
tta = False  # 6 views cost 6 times the inference; the phantom gains little
# A short schedule, so that the 6 trainings fit a demo (the demo's 2400 iterations take 13
# minutes each): 300 iterations, 1.5 to 2.7 minutes per fold model on 2 cores. Far too few
# for a good model (benchmarks/bench_recipe.py): this shows the pipeline, not the result.
schedule = {'train_cfg.max_iters': 300, 'train_cfg.val_interval': 300,
            'default_hooks.checkpoint.interval': 300}
models = dict(
    unet=dict(config='configs/tiny_cpu_handbone.py', cfg_options=schedule, gpus=1),
    unetpp=dict(config='configs/unetpp_tiny_cpu_handbone.py', cfg_options=schedule, gpus=1),
)
# each model alone, and both with weights 1:1, 1:2 and 2:1
ensembles = dict(max_size=2, weight_grid=[1, 2])
test_img_dir = 'test/DCM'
