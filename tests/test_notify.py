"""NotifyHook: a finished or failed run posts to a webhook (a local HTTP server here) and
alerts W&B; an unreachable webhook is a warning; the URL is written nowhere."""
import json
import re
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace
from unittest.mock import MagicMock

import pytest
from mmengine.registry import RUNNERS, VISBACKENDS
from mmengine.visualization import WandbVisBackend

from handbone_mmseg.apis import load_config
from handbone_mmseg.runtime import NotifyHook, notify_hook, post_json

from helpers import ROOT, free_port

CONFIG = str(ROOT / 'configs' / 'tiny_cpu_handbone.py')
SECRET = 's3cr3t-T0KEN'


@VISBACKENDS.register_module(force=True)
class StubWandbVisBackend(WandbVisBackend):
    """mmengine's W&B backend with a mock in place of the ``wandb`` module: no network."""

    last: MagicMock | None = None

    def _init_env(self) -> None:
        self._init_kwargs = self._init_kwargs or {}
        self._wandb = StubWandbVisBackend.last = MagicMock(name='wandb')


class Webhook(ThreadingHTTPServer):
    """Records each JSON posted to it and answers ``status`` after ``delay`` seconds."""

    def __init__(self) -> None:
        super().__init__(('127.0.0.1', 0), _Handler)
        self.posts: list[dict] = []
        self.status, self.delay = 200, 0.0

    def url(self) -> str:
        return f'http://127.0.0.1:{self.server_port}/hooks/T0/B0/{SECRET}'


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:  # noqa: N802 (http.server's name)
        body = self.rfile.read(int(self.headers['Content-Length']))
        time.sleep(self.server.delay)
        self.server.posts.append(json.loads(body))
        self.send_response(self.server.status)
        self.end_headers()

    def log_message(self, *args: object) -> None:
        pass


@pytest.fixture
def webhook() -> Iterator[Webhook]:
    server = Webhook()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def build(data: Path, work: Path, **options: object):
    """A HandBoneRunner of the tiny config: 2 iterations of 64 pixels, validated after each;
    the W&B stub in its visualizer."""
    cfg = load_config(CONFIG, {'data_root': str(data), 'train_cfg.max_iters': 2,
                               'train_cfg.val_interval': 1, 'train_scale': (64, 64),
                               'crop_size': (64, 64), 'test_scale': (64, 64), **options},
                      work_dir=str(work))
    # a visualizer of its own: mmengine hands an existing one of the same name (mmseg's
    # 'visualizer') to every later runner of the process
    cfg.visualizer.name = str(work)
    cfg.visualizer.vis_backends = [*cfg.visualizer.vis_backends,
                                   dict(type='StubWandbVisBackend')]
    return RUNNERS.build(cfg)


def best_of(work: Path) -> tuple[float, int]:
    """The best mDice of the run's scalars.json and its step (the first of equal ones)."""
    rows = [json.loads(line) for line in next(work.glob('*/vis_data/scalars.json')).read_text()
            .splitlines()]
    scores = [(r['mDice'], r['step']) for r in rows if 'mDice' in r]
    assert len(scores) == 2
    return max(scores, key=lambda s: (s[0], -s[1]))


def test_a_finished_run_posts_its_name_status_best_and_time_and_writes_no_url(
        tiny_root, tmp_path, webhook, capfd):
    work = tmp_path / 'fold1'
    runner = build(tiny_root, work, notify=webhook.url())
    runner.train()
    best, step = best_of(work)
    (post,) = webhook.posts
    assert post['text'] == post['content']  # Slack/Mattermost read text, Discord content
    assert re.fullmatch(
        rf'handbone-mmseg run fold1 finished after 0:0\d:\d\d \(wall time\): best mDice '
        rf'{best:.4f} at iteration {step} \[{runner.experiment_name} on \S+\]', post['text'])
    wandb = StubWandbVisBackend.last
    wandb.alert.assert_called_once_with(title=f'finished: {runner.experiment_name}',
                                        text=post['text'], level='INFO')
    # the URL is in no file of the work dir (log, dumped config, checkpoints' meta), not in
    # what the console showed, and not in the config sent to W&B
    files = [p for p in work.rglob('*') if p.is_file()]
    assert any(p.suffix == '.pth' for p in files) and any(p.suffix == '.log' for p in files)
    assert [p for p in files if SECRET.encode() in p.read_bytes()] == []
    assert "notify = '<redacted>'" in next(work.glob('*.py')).read_text()
    captured = capfd.readouterr()
    assert SECRET not in captured.out + captured.err
    assert SECRET not in str(wandb.mock_calls)


def test_a_failed_run_posts_the_error_from_the_environment_url(tiny_root, tmp_path, webhook,
                                                               monkeypatch):
    monkeypatch.setenv('HANDBONE_NOTIFY_URL', webhook.url())
    runner = build(tiny_root, tmp_path / 'work', notify=True)

    def diverged(*args: object, **kwargs: object) -> None:
        raise RuntimeError('loss is nan\nat iteration 1')

    monkeypatch.setattr(runner.model, 'train_step', diverged)
    with pytest.raises(RuntimeError, match='loss is nan'):  # the run still fails as it did
        runner.train()
    (post,) = webhook.posts
    assert re.fullmatch(r'handbone-mmseg run work failed after 0:00:\d\d \(wall time\): no '
                        r'validation mDice; RuntimeError: loss is nan at iteration 1 \[.*\]',
                        post['text'])
    assert StubWandbVisBackend.last.alert.call_args.kwargs['level'] == 'ERROR'


def test_an_unreachable_webhook_is_a_warning_and_the_run_finishes(tiny_root, tmp_path):
    work = tmp_path / 'work'
    build(tiny_root, work, notify=f'http://127.0.0.1:{free_port()}/{SECRET}').train()
    assert (work / 'iter_2.pth').is_file()
    log = next(work.glob('*/*.log')).read_text()
    assert re.search(r'WARNING - NotifyHook: could not post to the webhook \(.*[Rr]efused',
                     log)
    assert 'NotifyHook: sent' in log  # the W&B alert went out all the same
    assert SECRET not in log


def test_post_json_answers_why_a_post_failed_without_the_url(webhook):
    url = webhook.url()
    assert post_json(url, {'text': 'hi'}, timeout=5) is None
    assert webhook.posts == [{'text': 'hi'}]
    webhook.status = 500
    assert post_json(url, {'text': 'hi'}, timeout=5) == 'HTTP 500 Internal Server Error'
    webhook.status, webhook.delay = 200, 1.0
    assert post_json(url, {'text': 'hi'}, timeout=0.2) == 'TimeoutError: timed out'
    for bad in (f'http://{SECRET}:99999/x', f'htp://{SECRET}/x', f'hooks.example/{SECRET}',
                f'http://hooks.example/a {SECRET}'):
        problem = post_json(bad, {'text': 'hi'}, timeout=1)
        assert problem and SECRET not in problem


def fake_runner(work_dir: str = '/runs/fold3', hub: dict | None = None) -> SimpleNamespace:
    logged: list[tuple[str, str]] = []
    return SimpleNamespace(
        work_dir=work_dir, experiment_name='exp_1', iter=0, logged=logged,
        message_hub=SimpleNamespace(get_info=(hub or {}).get),
        logger=SimpleNamespace(info=lambda m: logged.append(('info', m)),
                               warning=lambda m: logged.append(('warning', m))),
        visualizer=SimpleNamespace(_vis_backends={}))


def test_the_best_is_tracked_over_validations_and_a_resumed_runs_record():
    hook, runner = NotifyHook(), fake_runner()
    for it, value in ((100, 0.5), (200, 0.8), (300, 0.8), (400, 0.7)):
        runner.iter = it
        hook.after_val_epoch(runner, {'mDice': value})
    assert 'best mDice 0.8000 at iteration 200 [' in hook.message(runner, 'finished')
    # resumed: CheckpointHook's best from before the resume is higher than this session's
    resumed = fake_runner(hub={'best_score': 0.9, 'best_ckpt': '/r/best_mDice_iter_50.pth'})
    assert 'best mDice 0.9000 at iteration 50 [' in hook.message(resumed, 'finished')
    # a long error is cut to fit Discord's 2000 characters
    text = hook.message(runner, 'failed', 'RuntimeError: ' + 'x' * 5000)
    assert len(text) <= 1950 and re.search(r'xxx\.\.\. \[exp_1 on \S+\]$', text)


def test_no_post_without_training_nor_without_a_url(monkeypatch):
    monkeypatch.delenv('HANDBONE_NOTIFY_URL', raising=False)
    hook, runner = NotifyHook(), fake_runner()
    hook.after_run(runner)  # runner.val() / test(): before_train never came
    assert runner.logged == []
    hook.before_train(runner)
    hook.after_run(runner)
    assert runner.logged == [('warning', 'NotifyHook: no webhook URL (set HANDBONE_NOTIFY_URL, '
                              'or notify=URL in the config) and no W&B run: nothing sent')]


@pytest.mark.parametrize('notify, message', [
    (f'ftp://{SECRET}', 'CONFIG: notify must be True, False or an http(s):// webhook URL, got '
                        'a string that is not one (not shown: it may be a secret)'),
    (1, 'CONFIG: notify must be True, False or an http(s):// webhook URL, got int 1'),
])
def test_a_bad_notify_switch_is_refused_without_showing_it(notify, message):
    with pytest.raises(ValueError) as error:
        notify_hook({'notify': notify}, 'CONFIG')
    assert str(error.value) == message


def test_the_switch_takes_the_url_out_of_the_config():
    cfg = {'notify': f'https://hooks.example.com/{SECRET}'}
    hook = notify_hook(cfg, 'CONFIG')
    assert hook.url == f'https://hooks.example.com/{SECRET}' and cfg == {'notify': '<redacted>'}
    assert notify_hook({'notify': False}) is None and notify_hook({}) is None
    assert notify_hook({'notify': True}).url is None  # read from the environment at the end
    with pytest.raises(ValueError, match=r'^CONFIG: custom_hooks.0.url: a webhook URL in a '
                                         r'config is written'):
        notify_hook({'custom_hooks': [dict(type='NotifyHook', url='https://x/y')]}, 'CONFIG')
