"""Resuming a run from its own work dir, and only touching files inside it.

mmengine resumes from the path in ``WORK_DIR/last_checkpoint`` (absolute: a copied work
dir points back at the original) and restores the checkpoint hook's ``best_ckpt`` path,
which it deletes when a better checkpoint comes: resuming in a copy would then delete the
original's best checkpoint. ``resolve_resume`` picks the checkpoint inside the work dir,
and ``WorkDirResumeHook`` moves the restored paths into it before ``CheckpointHook`` reads
them.
"""
import os
import os.path as osp
import re
import sys
from collections.abc import Callable

from mmengine.hooks import Hook
from mmengine.registry import HOOKS

from .checkpoint import checkpoint_problem

LAST_CHECKPOINT = 'last_checkpoint'  # mmengine's pointer file in the work dir
# runtime_info keys holding a checkpoint path: CheckpointHook's best (per key indicator)
# and last checkpoint
_PATH_KEYS = re.compile(r'best_ckpt(_.+)?|last_ckpt')
_ITER = re.compile(r'(?:iter|epoch)_(\d+)\.pth')


def _inside(path: str, folder: str) -> bool:
    path, folder = osp.realpath(path), osp.realpath(folder)
    return osp.commonpath([path, folder]) == folder


def _say(message: str) -> None:
    if os.environ.get('RANK', '0') == '0':  # one line per run, not per process
        print(message, file=sys.stderr, flush=True)


def resolve_resume(work_dir: str, checkpoint: str | None = None,
                   say: Callable[[str], None] = _say) -> str | None:
    """The checkpoint a ``--resume`` run in ``work_dir`` loads, or None for a fresh start.

    ``checkpoint`` given: it must be loadable. Otherwise ``work_dir/last_checkpoint`` names
    it; a path outside the work dir is replaced by the file of that name inside, and a
    missing, empty or truncated one (or an empty ``last_checkpoint``) by the newest
    loadable ``iter_N.pth`` / ``epoch_N.pth`` of the work dir. Each replacement is said
    (``say``). No ``last_checkpoint`` and no checkpoint: None, as mmengine starts afresh.

    Raises:
        ValueError: the given checkpoint is unusable, or the work dir holds a pointer or
            checkpoints but none loadable; the message names the bad file.
    """
    if checkpoint is not None:
        problem = checkpoint_problem(checkpoint)
        if problem:
            raise ValueError(f'{checkpoint}: cannot resume from it ({problem})')
        return checkpoint
    pointer = osp.join(work_dir, LAST_CHECKPOINT)
    named = None
    if osp.isfile(pointer):
        with open(pointer) as f:
            named = f.read().strip()
    candidates = sorted(
        ((int(m[1]), osp.join(work_dir, m[0])) for m in map(_ITER.fullmatch, _listdir(work_dir))
         if m), reverse=True)
    if named is None and not candidates:
        return None
    if named:
        if not _inside(named, work_dir):
            local = osp.join(work_dir, osp.basename(named))
            if osp.isfile(local):
                say(f'resume: {pointer} names {named}, outside the work dir; resuming from '
                    f'{local} instead')
                named = local
            else:
                say(f'resume: {pointer} names {named}, outside the work dir, and the work dir '
                    f'has no {osp.basename(named)}; pass --resume {named} to use it')
                named = None
        if named is not None:
            problem = checkpoint_problem(named)
            if problem is None:
                return named
            say(f'resume: {named}: {problem}')
    elif named == '':
        say(f'resume: {pointer} is empty')
    for _, path in candidates:
        if path == named:
            continue
        problem = checkpoint_problem(path)
        if problem is None:
            say(f'resume: falling back to {path}, the newest loadable checkpoint in {work_dir}')
            return path
        say(f'resume: {path}: {problem}')
    bad = named or (candidates[0][1] if candidates else pointer)
    raise ValueError(f'{bad}: cannot resume: no loadable checkpoint in {work_dir} (start '
                     'afresh without --resume, or pass --resume CHECKPOINT)')


def _listdir(folder: str) -> list[str]:
    try:
        return os.listdir(folder)
    except OSError:
        return []


@HOOKS.register_module()
class WorkDirResumeHook(Hook):
    """Point the checkpoint paths restored by a resume into the run's own work dir.

    Runs before ``CheckpointHook`` (priority ``VERY_HIGH``): each restored
    ``best_ckpt*`` / ``last_ckpt`` path outside ``runner.work_dir`` becomes the file of the
    same name inside it if there is one, else is dropped, so ``CheckpointHook`` never
    deletes a file outside the work dir.
    """

    priority = 'VERY_HIGH'

    def before_train(self, runner) -> None:
        info = runner.message_hub.runtime_info
        for key in [k for k in info if _PATH_KEYS.fullmatch(k)]:
            path = info[key]
            if not isinstance(path, str) or _inside(path, runner.work_dir):
                continue
            local = osp.join(runner.work_dir, osp.basename(path))
            if osp.exists(local):
                runner.message_hub.update_info(key, local)
                runner.logger.info(f'resume: {key} {path} is outside the work dir: using '
                                   f'{local}')
            else:
                info.pop(key)
                runner.logger.info(f'resume: {key} {path} is outside the work dir: '
                                   'forgotten, never deleted')
