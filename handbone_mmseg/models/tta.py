"""Multi-label test-time augmentation: averaged sigmoid probabilities, per-class thresholds."""
from mmengine.model import BaseTTAModel
from mmengine.structures import PixelData
from mmseg.registry import MODELS
from mmseg.structures import SegDataSample
from torch import Tensor


@MODELS.register_module()
class MultiLabelTTAModel(BaseTTAModel):
    """Average each class's probability over the augmented views, then threshold it.

    The wrapped multi-label segmentor already returns probabilities un-flipped and resized
    to the original size, so views add up pixel for pixel. The stock ``SegTTAModel`` would
    take a softmax and an argmax across classes, keeping one bone per pixel.

    The views are summed as they come instead of all being kept until ``merge_preds``: at
    2048x2048, one view's 29 float maps take 486 MB.

    Every view goes through the module's own ``test_cfg``, so with Gaussian sliding windows
    (``blend='gaussian'``) each view is blended from its windows first, in its own frame
    (a 0.75x view has fewer windows), and only its restored probabilities join the sum.

    .. code:: text

     test_step(): for each view: module.test_step() -> add seg_logits to the first view's
                  -> _set_mean()
     module.test_step(): data_preprocessor() -> predict(): inference() -> postprocess_result()
                  (per-class probabilities, un-flipped, at ori_shape)
     _set_mean(): sum / views -> prob > module.thresholds

    Args:
        module: the multi-label segmentor (config or module); its ``thresholds`` apply.
        data_preprocessor: as ``BaseTTAModel``.
    """

    def test_step(self, data: dict | list | tuple) -> list[SegDataSample]:
        """Predict every view of the batch and merge them into one prediction per image."""
        if isinstance(data, dict):
            views = [{key: value[i] for key, value in data.items()}
                     for i in range(len(next(iter(data.values()))))]
        elif isinstance(data, (list, tuple)):
            views = [[item[i] for item in data] for i in range(len(data[0]))]
        else:
            raise TypeError(f'TTA data must be a dict, list or tuple, got {type(data)}')
        merged = None
        for view in views:
            samples = self.module.test_step(view)
            if merged is None:
                merged = samples  # the first view's samples carry the sums (and any GT)
                continue
            for total, sample in zip(merged, samples):
                total.seg_logits.data += sample.seg_logits.data
        for sample in merged:
            self._set_mean(sample, sample.seg_logits.data, len(views))
        return merged

    def merge_preds(self, data_samples_list: list[list[SegDataSample]]
                    ) -> list[SegDataSample]:
        """Merge views already predicted: the mean probability, thresholded per class."""
        for samples in data_samples_list:
            self._set_mean(samples[0], sum(s.seg_logits.data for s in samples), len(samples))
        return [samples[0] for samples in data_samples_list]

    def _set_mean(self, sample: SegDataSample, prob_sum: Tensor, views: int) -> None:
        prob = prob_sum / views
        sample.set_data({'seg_logits': PixelData(data=prob),
                         'pred_sem_seg': PixelData(data=prob > self.module.thresholds)})
