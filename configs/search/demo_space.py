# A search space for the CPU demo (configs/tiny_cpu_handbone.py), for tools/search.py:
#   python tools/search.py configs/tiny_cpu_handbone.py --space configs/search/demo_space.py \
#       --trials 20 --study work_dirs/search_demo --cfg-options data_root=data/phantom
# Each key is a config key as --cfg-options takes it; each range is what Optuna's
# suggest_float / suggest_int / suggest_categorical take (docs/search.md). The demo's
# hand-set values are in the comments; --enqueue-config makes them the first trial.
space = {
    # AdamW (3e-3, 1e-4)
    'optim_wrapper.optimizer.lr': dict(type='float', low=3e-4, high=3e-2, log=True),
    'optim_wrapper.optimizer.weight_decay': dict(type='float', low=1e-6, high=1e-2, log=True),
    # BCE and Dice weights of the decode head (1.0 and 1.0: the dataset base's multilabel_loss)
    'model.decode_head.loss_decode.0.loss_weight': dict(type='float', low=0.2, high=2.0),
    'model.decode_head.loss_decode.1.loss_weight': dict(type='float', low=0.2, high=2.0),
    # the training crop (256: the whole resized image); a switch that reaches the
    # pipelines and the data preprocessor, multiples of 16 for the UNet
    'crop_size': dict(type='categorical', choices=[(192, 192), (224, 224), (256, 256)]),
    # the horizontal flip's probability (0.5): the 5th step of the training pipeline (the
    # dataloader's copy; the top-level train_pipeline was copied there when parsed)
    'train_dataloader.dataset.pipeline.4.prob': dict(type='float', low=0.0, high=1.0),
}
