"""Distributed runs on any machine: gloo without CUDA, and a clean exit of finished ranks."""
import atexit
import os
import sys

import torch
from mmengine.config import Config


def _destroy_process_group() -> None:
    if torch.distributed.is_initialized():
        torch.distributed.destroy_process_group()


def prepare_launcher(cfg: Config) -> None:
    """Make ``--launcher pytorch`` work without CUDA: gloo, and DDP without device ids.

    mmengine's launcher calls ``torch.cuda.set_device`` and wraps the model with
    ``device_ids=[LOCAL_RANK]``, both of which fail on a CPU build; it skips its own set-up
    when a process group exists, so the group is created here first. Any launcher: the
    process group is destroyed at exit, which mmengine never does (see ``exit_if_distributed``).
    """
    if cfg.launcher != 'none':
        atexit.register(_destroy_process_group)
    if cfg.launcher != 'pytorch' or torch.cuda.is_available():
        return
    cfg.env_cfg.setdefault('dist_cfg', {})['backend'] = 'gloo'
    cfg.setdefault('model_wrapper_cfg', dict(type='MMDistributedDataParallel'))
    cfg.model_wrapper_cfg['device_ids'] = None
    if not torch.distributed.is_initialized():
        torch.distributed.init_process_group(backend='gloo')


def exit_if_distributed() -> None:
    """End a finished distributed process here: exit handlers, then ``os._exit(0)``.

    A gloo worker thread releases a finished collective's tensors after the caller has moved
    on, and that release takes the GIL. When it falls into interpreter finalisation, the thread
    is unwound through a noexcept destructor and a rank that has done all its work dies of
    SIGABRT (about 1 two-rank CPU run in 15 here; the core shows ``~AsyncBroadcastWork`` in
    ``ProcessGroupGloo::runLoop`` while the main thread is in ``Py_FinalizeEx``; see
    pytorch/pytorch#179291). ``destroy_process_group`` cannot stop those threads while DDP
    still holds the group, so a distributed run skips finalisation instead. Logging,
    mmengine's visualisers (closed in ``after_run``) and the group are closed first.
    Single-process runs return and exit as usual.
    """
    if not torch.distributed.is_initialized():
        return
    atexit._run_exitfuncs()  # what interpreter exit would run: logging.shutdown, the group
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(0)
