"""An alert when a training run ends or fails: a webhook post and a W&B alert.

``notify`` in a config (the runtime base's switch, default False) turns it on:
``HandBoneRunner.from_cfg`` -> ``notify_hook(cfg)`` (checks the switch, takes a URL out of
the config) -> ``NotifyHook`` registered on the runner. ``after_run`` posts a finished run;
``HandBoneRunner.train`` calls ``on_exception`` for a failed one (mmengine 0.10.7 calls no
hook when ``train`` raises), then re-raises.

The webhook URL is a secret (whoever has it can post to the channel). It comes from the
environment variable ``HANDBONE_NOTIFY_URL``, read when the run starts, or from the config;
a URL in the config is replaced by ``'<redacted>'`` before mmengine logs the config, dumps
it to the work dir, stores it in each checkpoint's meta and sends it to W&B.
"""
import json
import os
import re
import socket
import time
import urllib.error
import urllib.request
from collections.abc import MutableMapping
from datetime import timedelta

from mmengine.dist import is_main_process
from mmengine.hooks import Hook
from mmengine.registry import HOOKS
from mmengine.visualization import WandbVisBackend

URL_ENV = 'HANDBONE_NOTIFY_URL'
REDACTED = '<redacted>'
# Slack and Mattermost incoming webhooks read "text", Discord's reads "content"; each
# ignores the other's key.
FORMATS = {'both': ('text', 'content'), 'slack': ('text',), 'discord': ('content',)}
# Discord refuses content over 2000 characters; a traceback's message can be longer.
MAX_TEXT = 1900
WANDB_TITLE = 64  # wandb.alert's limit on the title


# what a webhook URL must look like (a secret's text never goes into a message)
WEBHOOK_URL = re.compile(r'https?://\S+$')


def _one_line(error: BaseException) -> str:
    """``Type: message`` on one line (``KeyboardInterrupt`` alone when there is none)."""
    text = ' '.join(str(error).split())
    return f'{type(error).__name__}: {text}' if text else type(error).__name__


def post_json(url: str, payload: dict, timeout: float) -> str | None:
    """POST ``payload`` as JSON to ``url``.

    Returns:
        None when the server answered 2xx, else why not, in words that never contain the
        URL (urllib names it in some messages).
    """
    if not WEBHOOK_URL.match(url):
        return 'not an http(s):// URL without spaces'
    try:
        request = urllib.request.Request(url, data=json.dumps(payload).encode(),
                                         method='POST',
                                         headers={'Content-Type': 'application/json'})
        with urllib.request.urlopen(request, timeout=timeout) as response:
            response.read()
        return None
    except urllib.error.HTTPError as e:  # before URLError: it is one
        e.close()  # it holds the socket
        return f'HTTP {e.code} {e.reason}'
    except urllib.error.URLError as e:
        reason = e.reason
        return (_one_line(reason).replace(url, REDACTED) if isinstance(reason, OSError)
                else 'cannot reach the server')
    except (TimeoutError, ConnectionError) as e:  # socket errors: no URL in their text
        return _one_line(e)
    except Exception as e:  # a broken HTTP answer, a malformed URL: messages may quote the
        return type(e).__name__  # URL or its path, so only the kind of failure is said


@HOOKS.register_module()
class NotifyHook(Hook):
    """Post the run's name, status, best metric, its iteration and wall time when it ends.

    The message goes to a webhook as JSON (``{"text": ..., "content": ...}``: Slack,
    Mattermost and Discord incoming webhooks) and, when the run logs to W&B, to
    ``wandb.alert`` as well. A post or alert that fails is a warning in the log, never a
    failed run. Only the main process sends. Runs before ``LoggerHook`` (priority
    ``NORMAL``), whose ``after_run`` closes the W&B run.

    Args:
        url: the webhook; None reads ``url_env`` when the run starts. Left out of configs:
            use the ``notify`` switch, which keeps it out of everything the run writes.
        url_env: the environment variable holding the URL.
        metric: the validation metric whose best value is reported (greater is better).
        timeout: seconds to wait for the webhook.
        format: ``'both'`` (``text`` and ``content``), ``'slack'`` (``text``: Slack and
            Mattermost) or ``'discord'`` (``content``).
        wandb: also send a W&B alert when a ``WandbVisBackend`` is in the visualizer.
    """

    priority = 'NORMAL'

    def __init__(self, url: str | None = None, url_env: str = URL_ENV, metric: str = 'mDice',
                 timeout: float = 10.0, format: str = 'both', wandb: bool = True) -> None:
        if format not in FORMATS:
            raise ValueError(f'NotifyHook format must be one of {", ".join(FORMATS)}, '
                             f'got {format!r}')
        self.url = url
        self.url_env = url_env
        self.metric = metric
        self.timeout = timeout
        self.format = format
        self.wandb = wandb
        self._start = time.monotonic()  # built with the runner: its build time counts
        self._trained = False
        self.best: float | None = None
        self.best_iter: int | None = None

    def before_train(self, runner) -> None:
        self._trained = True  # a test or validation run (after_run too) is not announced

    def after_val_epoch(self, runner, metrics: dict | None = None) -> None:
        value = (metrics or {}).get(self.metric)
        if value is not None and (self.best is None or value > self.best):
            self.best, self.best_iter = float(value), runner.iter

    def after_run(self, runner) -> None:
        if self._trained:
            self.send(runner, 'finished')

    def on_exception(self, runner, exception: BaseException) -> None:
        """Called by ``HandBoneRunner.train`` when training raises."""
        self.send(runner, 'failed', _one_line(exception))

    def _best(self, runner) -> tuple[float | None, int | None]:
        """The best value and its iteration, counting a resumed run's earlier best.

        ``CheckpointHook(save_best=metric)`` keeps the best score of the whole run in the
        message hub (restored on resume) and its checkpoint's name holds the iteration.
        """
        best, best_iter = self.best, self.best_iter
        hub = runner.message_hub
        score, path = hub.get_info('best_score'), hub.get_info('best_ckpt')
        found = re.search(rf'best_{re.escape(self.metric)}_iter_(\d+)\.pth$', str(path or ''))
        if score is not None and found and (best is None or score > best):
            best, best_iter = float(score), int(found.group(1))
        return best, best_iter

    def message(self, runner, status: str, error: str | None = None) -> str:
        """The text posted: ``run NAME STATUS after H:MM:SS: ...``."""
        name = os.path.basename(os.path.normpath(runner.work_dir))
        wall = timedelta(seconds=round(time.monotonic() - self._start))
        best, best_iter = self._best(runner)
        score = (f'best {self.metric} {best:.4f} at iteration {best_iter}' if best is not None
                 else f'no validation {self.metric}')
        text = f'handbone-mmseg run {name} {status} after {wall} (wall time): {score}'
        tail = f' [{runner.experiment_name} on {socket.gethostname()}]'
        if error:
            room = MAX_TEXT - len(text) - len(tail) - 2
            text += '; ' + (error if len(error) <= room else error[:room - 3] + '...')
        return text + tail

    def send(self, runner, status: str, error: str | None = None) -> None:
        """Post the message and alert W&B; a failure of either is a warning."""
        if not is_main_process():
            return
        try:
            self._send(runner, status, error)
        except Exception as e:  # an alert never fails a run, nor hides why it failed
            runner.logger.warning(f'NotifyHook: nothing sent ({_one_line(e)})')

    def _send(self, runner, status: str, error: str | None) -> None:
        text = self.message(runner, status, error)
        url = self.url or os.environ.get(self.url_env)
        sent = False
        if url:
            problem = post_json(url, {key: text for key in FORMATS[self.format]}, self.timeout)
            if problem:
                runner.logger.warning(f'NotifyHook: could not post to the webhook ({problem})')
            sent = not problem
        if self.wandb:
            for backend in _wandb_backends(runner):
                try:
                    backend.experiment.alert(
                        title=f'{status}: {runner.experiment_name}'[:WANDB_TITLE], text=text,
                        level='ERROR' if error else 'INFO')
                    sent = True
                except Exception as e:  # never fail the run over an alert
                    runner.logger.warning(f'NotifyHook: W&B alert failed ({_one_line(e)})')
        if not url and not sent:
            runner.logger.warning(f'NotifyHook: no webhook URL (set {self.url_env}, or '
                                  'notify=URL in the config) and no W&B run: nothing sent')
        elif sent:
            runner.logger.info(f'NotifyHook: sent "{text}"')


def _wandb_backends(runner) -> list[WandbVisBackend]:
    """The visualizer's W&B backends (``use_wandb`` adds ``HandBoneWandbVisBackend``)."""
    # mmengine's Visualizer offers its backends by name only (get_backend)
    backends = getattr(runner.visualizer, '_vis_backends', {})
    return [b for b in backends.values() if isinstance(b, WandbVisBackend)]


def notify_hook(cfg: MutableMapping, source: str = 'the config') -> NotifyHook | None:
    """The ``NotifyHook`` the config's ``notify`` switch asks for; the URL leaves ``cfg``.

    ``notify``: False or None (off); True (the URL from ``HANDBONE_NOTIFY_URL`` when the
    run starts); or an ``http(s)://`` URL, which is replaced in ``cfg`` by
    ``'<redacted>'``. A ``NotifyHook`` in ``custom_hooks`` with a ``url`` is refused: that
    URL would be written wherever the config is.

    Args:
        cfg: the run's config, changed in place.
        source: the config's file, for messages.

    Raises:
        ValueError: one line naming the file and key; never the URL.
    """
    for i, hook in enumerate(cfg.get('custom_hooks') or []):
        if isinstance(hook, MutableMapping) and hook.get('type') in ('NotifyHook', NotifyHook) \
                and hook.get('url'):
            raise ValueError(f'{source}: custom_hooks.{i}.url: a webhook URL in a config is '
                             'written to the log, the work dir and every checkpoint; set '
                             f'notify=URL or the environment variable {URL_ENV} instead')
    notify = cfg.get('notify', False)
    if notify is None or notify is False:
        return None
    if notify is True:
        return NotifyHook()
    if isinstance(notify, str) and notify == REDACTED:  # a config saved by a notifying run
        return NotifyHook()
    if not isinstance(notify, str):
        raise ValueError(f'{source}: notify must be True, False or an http(s):// webhook '
                         f'URL, got {type(notify).__name__} {notify!r}')
    if not WEBHOOK_URL.match(notify):
        raise ValueError(f'{source}: notify must be True, False or an http(s):// webhook '
                         'URL, got a string that is not one (not shown: it may be a secret)')
    cfg['notify'] = REDACTED
    return NotifyHook(url=notify)
