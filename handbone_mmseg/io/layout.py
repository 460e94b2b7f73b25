"""The data layout of docs/format.md: images under one root, polygon JSONs under another,
paired by relative path without extension; no torch, no mmseg.

``HandBoneDataset`` builds its data list on ``index_images`` (and adds the folds); the tools
that score or tune against labels call it directly, so they start without mmseg.
"""
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

from .annotations import AnnotationError, parse_annotation
from .images import DATASET_SUFFIXES, find_images, read_image_size

# annotations a person marked as wrong, in the data root (docs/format.md): training leaves
# them out (HandBoneDataset) and a recipe retrains when the file changes
EXCLUDED_LABELS = 'excluded_labels.txt'


def check_unique_names(paths: Iterable[Path]) -> None:
    """Refuse two images of one file name (without extension), naming both paths.

    Raises:
        AnnotationError: the first repeated name.
    """
    seen: dict[str, Path] = {}
    for path in paths:
        other = seen.setdefault(path.stem, path)
        if other is not path:
            raise AnnotationError(
                f'{path}: same file name as {other}; the submission names an image by its '
                'file name alone (no patient folder) and probability dumps by its stem, '
                'so every image needs a name of its own')


def find_files(root: Path, suffix: str | Sequence[str], what: str,
               data_root: str | None = None) -> dict[str, Path]:
    """Map relative path without extension to file, for every ``suffix`` file under root.

    Raises:
        FileNotFoundError: no folder, or no such file in it.
        AnnotationError: two files of one name with different suffixes.
    """
    if not root.is_dir():
        raise FileNotFoundError(f'{root}: {what} folder not found (data_root={data_root!r})')
    suffixes = (suffix, ) if isinstance(suffix, str) else tuple(suffix)
    files: dict[str, Path] = {}
    for p in find_images(root, suffixes):
        key = p.relative_to(root).as_posix()[:-len(p.suffix)]
        if key in files:  # image.png beside image.dcm: which one is labeled?
            raise AnnotationError(f'{p}: {files[key].name} has the same name; keep one '
                                  f'{what} per name')
        files[key] = p
    if not files:
        raise FileNotFoundError(f'{root}: no {"/".join(suffixes)} {what} files found')
    return files


def _raise(message: str) -> None:
    raise AnnotationError(message)


def index_images(img_root: str | Path, ann_root: str | Path | None,
                 img_suffix: str | Sequence[str] = DATASET_SUFFIXES,
                 seg_map_suffix: str = '.json', data_root: str | None = None,
                 select: Callable[[list[str]], set[str]] | None = None,
                 reject: Callable[[str], None] = _raise) -> list[dict]:
    """Pair and check the images and JSONs; one entry per image, labeled ones with polygons.

    Args:
        img_root: the image folder (patients are its first-level folders).
        ann_root: the JSON folder, or None for unlabeled images.
        img_suffix, seg_map_suffix: file extensions (any case).
        data_root: named in the errors only.
        select: given the patient of every image, the patients wanted (folds); default all.
        reject: called with the message of an unusable image (default: raise it); a
            caller that returns skips the image.

    Returns:
        Entries with ``img_path``, ``name``, ``patient``, ``ori_shape`` and, labeled,
        ``seg_map_path`` and ``polygons``.

    Raises:
        AnnotationError: a JSON without its image, two images of one file name, or what
            ``reject`` raises.
    """
    img_root = Path(img_root)
    images = find_files(img_root, img_suffix, 'image', data_root)
    anns = find_files(Path(ann_root), seg_map_suffix, 'annotation', data_root) \
        if ann_root else {}
    orphans = sorted(anns.keys() - images.keys())
    if orphans:
        key = orphans[0]
        suffixes = (img_suffix, ) if isinstance(img_suffix, str) else img_suffix
        raise AnnotationError(f'{anns[key]}: annotation has no image '
                              f'{key}{"/".join(suffixes)} under {img_root}')
    check_unique_names(images.values())
    patients = {key: key.split('/', 1)[0] for key in images}
    wanted = None if select is None else select(list(patients.values()))
    entries = []
    for key, img_path in images.items():
        patient = patients[key]
        if wanted is not None and patient not in wanted:
            continue
        info = dict(img_path=str(img_path), name=img_path.name, patient=patient)
        try:
            shape = read_image_size(img_path)
            info['ori_shape'] = shape  # from the PNG or DICOM header; decoding confirms it
            if ann_root:
                if key not in anns:
                    raise AnnotationError(f'{img_path}: image has no annotation '
                                          f'{key}{seg_map_suffix}')
                info.update(seg_map_path=str(anns[key]),
                            polygons=parse_annotation(anns[key], shape, img_path))
        except AnnotationError as e:
            reject(str(e))
            continue
        entries.append(info)
    return entries

