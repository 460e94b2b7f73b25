"""Our labels and submissions as COCO files (the format itself: ``handbone_mmseg.io.coco``)."""
from collections.abc import Sequence
from pathlib import Path

from ..classes import CLASSES
from ..evaluation.scoring import load_labels
from ..io.coco import CocoWriter
from ..io.submission import SubmissionError, decode_image, iter_submission


def labels_to_coco(data_root: str | Path, img_dir: str, ann_dir: str,
                   classes: Sequence[str] = CLASSES) -> CocoWriter:
    """Our labeled images (checked as for training) as COCO polygons.

    ``file_name`` is the path under ``img_dir`` (``ID001/image1.png``), so ``read_coco`` of
    the result writes the same tree back.
    """
    # mmseg loads here only: the tool's other commands start without it
    from ..datasets import HandBoneDataset
    # every label as it is on disk: a reviewer's exclusions are training's business
    dataset = HandBoneDataset(data_root=str(data_root), pipeline=[], serialize_data=False,
                              data_prefix=dict(img_path=img_dir, seg_map_path=ann_dir),
                              excluded_labels=None)
    root = Path(data_root) / img_dir
    writer = CocoWriter(classes, f'hand-bone labels from {root}')
    for info in dataset.data_list:
        image_id = writer.add_image(Path(info['img_path']).relative_to(root).as_posix(),
                                    *info['ori_shape'])
        for cls, points in info['polygons']:
            writer.add_polygon(image_id, cls, points)
    return writer


def submission_to_coco(submission: str | Path, data_root: str | Path, img_dir: str,
                       classes: Sequence[str] = CLASSES) -> CocoWriter:
    """A submission CSV as COCO RLE annotations (one per non-empty bone, no score).

    The images under ``data_root/img_dir`` give the sizes and the ``file_name`` paths.

    Raises:
        SubmissionError: a malformed CSV or an image not under ``img_dir``.
    """
    infos = load_labels(data_root, img_dir, None)
    root = Path(data_root) / img_dir
    writer = CocoWriter(classes, f'hand-bone predictions from {submission}')
    for name, rles in iter_submission(submission, tuple(classes)):
        if name not in infos:
            raise SubmissionError(f'{submission}: image {name} is not among the images '
                                  f'under {root}')
        info = infos[name]
        masks = decode_image(submission, name, rles, info['ori_shape'], tuple(classes))
        image_id = writer.add_image(Path(info['img_path']).relative_to(root).as_posix(),
                                    *info['ori_shape'])
        for cls, mask in enumerate(masks):
            writer.add_mask(image_id, cls, mask)
    return writer
