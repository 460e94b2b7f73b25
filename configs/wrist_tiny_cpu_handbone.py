# Stage 2 of the demo (docs/wrist.md): the demo's tiny UNet trained on the square box around
# the 8 carpals, cropped at the source resolution before the resize. Validation and
# `tools/test.py --roi-from STAGE1_PROBS` score Dice in the full frame (the prediction pasted
# back) over the classes it covers; the model keeps its 29 outputs, the metric zeroes the
# others, and its probability dumps record `covers`.
_base_ = ['./tiny_cpu_handbone.py']
# The roi switch (handbone_mmseg.apis.switches.set_roi) puts CropToClasses right after loading
# in every pipeline, the ground truth in the full frame and covers= in the evaluators, so any
# model config becomes a stage 2 in these lines (or with --cfg-options roi_classes=...).
roi_classes = ['Trapezium', 'Trapezoid', 'Capitate', 'Hamate', 'Scaphoid', 'Lunate',
               'Triquetrum', 'Pisiform']
roi_margin = 0.25  # fraction of the box's longer side added on each side
roi_jitter = 0.1   # training: centre moved up to 10% of the side, side scaled 0.9..1.1
# A phantom wrist box in a 512 image is about 80 px, 120 with the margin: the 128 input
# keeps about the source resolution (the whole-image stage 1 sees the hand at half of it).
train_scale = (128, 128)
crop_size = (128, 128)
test_scale = (128, 128)
