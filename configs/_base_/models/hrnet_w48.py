# HRNetV2-W48 on top of mmseg's hr18 model bases (as mmseg's own fcn_hr48 configs do): the
# four branches' channels and the ImageNet weights. Variables only, so that configs that
# inherit different mmseg model files can share them.
hrnet_w48_pretrained = 'open-mmlab://msra/hrnetv2_w48'
hrnet_w48_extra = dict(
    stage2=dict(num_channels=(48, 96)),
    stage3=dict(num_channels=(48, 96, 192)),
    stage4=dict(num_channels=(48, 96, 192, 384)))
