# Stage 2 for the real data (docs/wrist.md): UNet++ on HRNet-W64 trained on the square box
# around the 8 carpals, cropped from the 2048 source before the resize to the 1024 input: the
# carpal box of a 2048 X-ray (about 500-700 px, 750-1000 with the margin) is seen at about
# the source resolution, twice what a 1024 whole-image model sees. Validation and
# `tools/test.py --roi-from STAGE1_PROBS` score Dice in the full frame over the classes it
# covers; merge with stage 1 per class (`tools/ensemble.py --method best --choose-on`).
_base_ = ['./unetpp_hrnet_w64_handbone.py']
# The roi switch: CropToClasses right after loading in every pipeline (before the UNet++
# base's augmentation), ground truth in the full frame, covers= in the evaluators; sizes are
# the dataset base's 1024 (crop_size, train_scale, test_scale as for any config).
roi_classes = ['Trapezium', 'Trapezoid', 'Capitate', 'Hamate', 'Scaphoid', 'Lunate',
               'Triquetrum', 'Pisiform']
roi_margin = 0.25  # fraction of the box's longer side added on each side
roi_jitter = 0.1   # training: centre moved up to 10% of the side, side scaled 0.9..1.1
