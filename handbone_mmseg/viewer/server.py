"""The viewer's server: one static page and a small JSON and binary API over the standard
library's ``ThreadingHTTPServer`` (why not Streamlit or Gradio: docs/viewer.md).

Call flow of one image on the page::

    GET /api/image?image=N        the file's own bytes (PNG, JPEG), or DICOM / 16-bit PNG
                                  decoded as the models see it (VOI window) and sent as PNG
    GET /api/masks?image=N&layer=label|0|1
                                  runs of the labels or of model 0/1 (payload.pack_runs),
                                  or a dump's stored levels (payload.pack_levels)
    GET /api/dice?image=N&t0=..   per-class Dice of each model (a dump at the page's
                                  thresholds) against the labels: box_dice_counts

Nothing is read before it is asked for; a small LRU keeps the last images' payloads. The
server only reads: no request writes a file, and no request names a path. Images are found
by file name in the catalogue and static files by a fixed table, so a path with ``..``,
an absolute path or an encoded one (``%2e%2e%2f``) has nothing to resolve to and is refused.

Access: bound to 127.0.0.1 by default, where a request must name a loopback host (a page
of another site that a DNS rebinding points at 127.0.0.1 is refused). Bound to another
address, every request must carry the random token the server prints, in the address
(``?token=``, as Jupyter does) or in the cookie the page then gets.
"""
import hmac
import ipaddress
import json
import secrets
import socket
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Sequence
from http import HTTPStatus
from http.cookies import SimpleCookie
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

import cv2
import numpy as np

from ..classes import CLASSES, PALETTE
from ..io.images import is_png16, read_image
from ..io.thresholds_json import load_thresholds
from ..visualization.overlay import FN_COLOUR, FP_COLOUR
from .catalog import Catalog, ViewerError
from .payload import mask_runs, pack_levels, pack_runs
from .sources import DumpPrediction, Prediction, open_prediction
from .stats import Statistics, image_scores

STATIC = Path(__file__).with_name('static')
PAGES = {'/': ('index.html', 'text/html; charset=utf-8'),
         '/viewer.js': ('viewer.js', 'text/javascript; charset=utf-8'),
         '/viewer.css': ('viewer.css', 'text/css; charset=utf-8')}
# files the browser decodes itself: sent as they are, without decoding them here
BROWSER_TYPES = {'.png': 'image/png', '.jpg': 'image/jpeg', '.jpeg': 'image/jpeg'}
LOOPBACK_NAMES = {'localhost', '127.0.0.1', '::1'}
CACHE_ITEMS = 48  # payloads of ~10 images (labels, two models, a decoded DICOM)
QUIET_S = 0.5  # the background scoring waits this long after the page's last request


class LRU:
    """A thread-safe least-recently-used cache of ``maxsize`` items."""

    def __init__(self, maxsize: int) -> None:
        self.maxsize = maxsize
        self._items: OrderedDict = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: Any, make: Callable[[], Any]) -> Any:
        """The value of ``key``, made by ``make()`` (outside the lock) when absent."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                return self._items[key]
        value = make()
        with self._lock:
            self._items[key] = value
            while len(self._items) > self.maxsize:
                self._items.popitem(last=False)
        return value


def is_loopback(host: str) -> bool:
    """Whether ``host`` (a name or an address) is this machine's loopback."""
    if host in LOOPBACK_NAMES:
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


class RequestError(Exception):
    """A request the server refuses: HTTP status and a message for the page."""

    def __init__(self, status: HTTPStatus, message: str) -> None:
        super().__init__(message)
        self.status = status


class Viewer:
    """Images, labels and up to two models' predictions served to a browser page.

    Everything given is checked here, before the server listens: a missing folder, a CSV
    or dump of other images, a dump of other classes, a bad thresholds file each raise
    one line naming the file.

    Args:
        images: a data root (``SPLIT/DCM`` folders) or a folder of images.
        predictions: up to two submission CSVs, dump folders or ``tools/predict.py``
            output folders (``sources.open_prediction``).
        thresholds: a thresholds JSON (``tools/tune_thresholds.py``): where the dump
            sliders start (default 0.5).
        labels: the polygon folder of an image folder, where it is not beside it.
        host: the address to listen on; another than loopback needs the token.
        port: the port (0: a free one).
        token: the access token; None makes a random one for a non-loopback host.

    Use ``with Viewer(...) as viewer:`` (serves in a thread; ``viewer.url``) or
    ``serve_forever()``.
    """

    def __init__(self, images: str | Path, predictions: Sequence[str | Path] = (),
                 thresholds: str | Path | None = None, labels: str | Path | None = None,
                 host: str = '127.0.0.1', port: int = 0, token: str | None = None) -> None:
        if len(predictions) > 2:
            raise ViewerError(f'at most two predictions side by side, got {len(predictions)}')
        self.catalog = Catalog(images, labels)
        self.models: list[Prediction] = [open_prediction(p, self.catalog) for p in predictions]
        start = np.full(len(CLASSES), 0.5)
        if thresholds is not None:
            if not any(m.kind == 'probs' for m in self.models):
                raise ViewerError(f'{thresholds}: thresholds apply to probability dumps, and '
                                  'no prediction is one')
            start = load_thresholds(thresholds)
        self.thresholds = [start.tolist() for _ in self.models]
        self.loopback = is_loopback(host)
        self.token = token if token is not None else \
            ('' if self.loopback else secrets.token_urlsafe(18))
        self.cache = LRU(CACHE_ITEMS)
        self._active = 0
        self._last_request = 0.0  # time.monotonic() when the last request ended
        self._active_lock = threading.Lock()
        # the thread keeps nothing in the cache: it would push out what the page looks at
        self.statistics = Statistics(lambda name: self.scores(name, cached=False),
                                     list(self.catalog.entries), self.busy)
        handler = type('Handler', (_Handler, ), {'viewer': self})
        try:
            self.server = ThreadingHTTPServer((host, port), handler)
        except OSError as e:
            raise ViewerError(f'{host}:{port}: cannot listen there ({e.strerror or e})') \
                from None
        self.server.daemon_threads = True
        self.host = host
        self._thread: threading.Thread | None = None

    # -- life cycle -------------------------------------------------------------------
    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        """The address to open, with the token where one is needed."""
        host = self.host if self.host not in ('', '0.0.0.0', '::') else socket.gethostname()
        host = f'[{host}]' if ':' in host else host
        return f'http://{host}:{self.port}/' + (f'?token={self.token}' if self.token else '')

    def start(self) -> 'Viewer':
        """Serve in a daemon thread (and start the statistics); returns self."""
        self.statistics.start()
        self._thread = threading.Thread(target=self.server.serve_forever,
                                        name='viewer-server', daemon=True)
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in this thread until Ctrl-C."""
        self.statistics.start()
        try:
            self.server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            self.close()

    def close(self) -> None:
        """Stop serving and release the port."""
        if self._thread is not None:
            self.server.shutdown()
            self._thread.join()
            self._thread = None
        self.statistics.stop()
        self.server.server_close()

    def __enter__(self) -> 'Viewer':
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def busy(self) -> bool:
        """Whether the page is at work: a request is being answered or one ended less than
        ``QUIET_S`` ago, while the page decodes and draws (the statistics thread waits: on
        2 cores it would slow the page's image switch by a third)."""
        return self._active > 0 or time.monotonic() - self._last_request < QUIET_S

    def _enter(self, delta: int) -> None:
        with self._active_lock:
            self._active += delta
            self._last_request = time.monotonic()

    # -- data -------------------------------------------------------------------------
    def meta(self) -> dict:
        """Classes, colours, models, thresholds and the image list."""
        return dict(classes=list(CLASSES), palette=[list(c) for c in PALETTE],
                    fp_colour=list(FP_COLOUR), fn_colour=list(FN_COLOUR),
                    root=str(self.catalog.root),
                    models=[m.describe() for m in self.models],
                    thresholds=self.thresholds,
                    images=[dict(e.summary(), models=[e.name in m.names for m in self.models])
                            for e in self.catalog.entries.values()])

    def image(self, name: str) -> tuple[bytes, str]:
        """Image ``name`` as the browser can draw it: ``(bytes, content type)``."""
        path = self.catalog.get(name).path
        kind = BROWSER_TYPES.get(path.suffix.lower())
        if kind is not None and not is_png16(path):
            return path.read_bytes(), kind

        def decode() -> bytes:
            grey, _ = read_image(path, grey=True)  # the DICOM's VOI window, a PNG's sBIT
            ok, data = cv2.imencode('.png', grey, [cv2.IMWRITE_PNG_COMPRESSION, 1])
            if not ok:
                raise ViewerError(f'{path}: could not encode it for the browser')
            return data.tobytes()
        return self.cache.get(('image', name), decode), 'image/png'

    def masks_payload(self, name: str, layer: str) -> bytes:
        """The labels (``layer='label'``) or model ``layer``'s masks or levels of ``name``."""
        shape = self.catalog.shape(name)
        if layer == 'label':
            if self.catalog.get(name).label_path is None:
                raise RequestError(HTTPStatus.NOT_FOUND, f'{name} has no labels')

            def runs() -> bytes:
                gt = self.cache.get(('gt', name), lambda: self.catalog.ground_truth(name))
                return pack_runs(mask_runs(gt), shape)
            return self.cache.get(('label', name), runs)
        model = self._model(layer, name)
        if isinstance(model, DumpPrediction):
            return self.cache.get(('levels', layer, name),
                                  lambda: pack_levels(model.crops(name, shape), shape))
        return self.cache.get(('runs', layer, name),
                              lambda: pack_runs(model.runs(name, shape), shape))

    def dice(self, name: str, thresholds: Sequence[Sequence[float]]) -> dict:
        """``scores`` of ``name`` at the page's thresholds (one list per model)."""
        if self.catalog.get(name).label_path is None and len(self.models) < 2:
            raise RequestError(HTTPStatus.NOT_FOUND, f'{name} has no labels to score against')
        return dict(self.scores(name, thresholds), thresholds=thresholds)

    def scores(self, name: str, thresholds: Sequence[Sequence[float]] | None = None,
               cached: bool = True) -> dict:
        """Image ``name``'s per-class Dice of each model and the models' agreement
        (``stats.image_scores``), a dump's masks at ``thresholds`` (one list per model;
        default where the sliders start), and its hand side.

        Args:
            cached: keep the labels' and a CSV's masks in the LRU (the page's requests).
        """
        thresholds = self.thresholds if thresholds is None else thresholds
        keep = self.cache.get if cached else (lambda key, make: make())
        shape = self.catalog.shape(name)
        gt = keep(('gt', name), lambda: self.catalog.ground_truth(name))
        preds = []
        for m, model in enumerate(self.models):
            if name not in model.names:
                preds.append(None)
            elif isinstance(model, DumpPrediction):  # cheap from its levels, which it caches
                preds.append(model.box_masks(name, shape, thresholds[m]))
            else:
                preds.append(keep(('boxes', m, name), lambda: model.box_masks(name, shape)))
        # the side after the labels: their pose tells it where the file name does not
        return dict(name=name, side=self.catalog.get(name).side, **image_scores(gt, preds))

    def _model(self, layer: str, name: str) -> Prediction:
        if layer not in {str(m) for m in range(len(self.models))}:
            raise RequestError(HTTPStatus.NOT_FOUND, f'no layer {layer!r}')
        model = self.models[int(layer)]
        if name not in model.names:
            raise RequestError(HTTPStatus.NOT_FOUND, f'{model.label} has no prediction of '
                               f'{name}')
        return model

    def parse_thresholds(self, query: dict[str, list[str]]) -> list[list[float]]:
        """Per model the thresholds the page sends (``t0``, ``t1``: 29 numbers in (0, 1)),
        its start values for a model it sends none for."""
        out = []
        for m, start in enumerate(self.thresholds):
            text = query.get(f't{m}', [''])[0]
            if not text:
                out.append(start)
                continue
            try:
                values = [float(v) for v in text.split(',')]
            except ValueError:
                values = []
            if len(values) != len(CLASSES) or not all(0 < v < 1 for v in values):
                raise RequestError(HTTPStatus.BAD_REQUEST,
                                   f't{m}: expected {len(CLASSES)} thresholds in (0, 1)')
            out.append(values)
        return out


def _refused_path(path: str) -> bool:
    """A path that points outside what is served: ``..``, a backslash, a NUL, ``//``."""
    text = unquote(unquote(path))  # a doubly encoded %252e%252e is still a climb
    return '..' in text.split('/') or '\\' in text or '\x00' in text or text.startswith('//')


class _Handler(BaseHTTPRequestHandler):
    """Routes GET requests to the ``Viewer``; set ``viewer`` in a subclass."""

    viewer: Viewer
    protocol_version = 'HTTP/1.1'  # keep-alive: the page makes several requests per image
    # headers and body leave in two writes: with Nagle's algorithm the body of a small
    # answer waits for the client's delayed ACK, 40 ms per request
    disable_nagle_algorithm = True
    server_version = 'handbone-viewer'

    def log_message(self, format: str, *args: Any) -> None:
        pass  # a line per request would bury the address the tool printed

    def handle(self) -> None:
        try:
            super().handle()
        except (ConnectionError, TimeoutError):
            pass  # the page went away or moved on (a newer image was asked for)

    def do_GET(self) -> None:
        # the page's poll for scores is no work to wait for
        counted = not self.path.startswith('/api/stats')
        if counted:
            self.viewer._enter(1)
        try:
            self._answer()
        except RequestError as e:
            self._json({'error': str(e)}, e.status)
        except (ValueError, OSError) as e:  # a broken file of this image: say which
            if isinstance(e, (ConnectionError, TimeoutError)):
                raise
            self._json({'error': str(e)}, HTTPStatus.UNPROCESSABLE_ENTITY)
        finally:
            if counted:
                self.viewer._enter(-1)

    def _answer(self) -> None:
        split = urlsplit(self.path)
        query = parse_qs(split.query)
        cookie = self._check_access(query)
        if _refused_path(split.path):
            raise RequestError(HTTPStatus.FORBIDDEN, 'outside the served folders')
        viewer = self.viewer
        if split.path in PAGES:
            file, kind = PAGES[split.path]
            self._send((STATIC / file).read_bytes(), kind, cookie)
            return
        route = {'/api/meta': self._meta, '/api/stats': self._stats,
                 '/api/image': self._image, '/api/masks': self._masks,
                 '/api/dice': self._dice}.get(split.path)
        if route is None:
            raise RequestError(HTTPStatus.NOT_FOUND, f'no such page {split.path}')
        route(viewer, query)

    def _check_access(self, query: dict[str, list[str]]) -> str | None:
        """Refuse a foreign Host on loopback and a missing token elsewhere; the cookie to
        set when the token came in the address."""
        viewer = self.viewer
        if viewer.loopback:
            host = urlsplit(f'//{self.headers.get("Host", "")}').hostname or ''
            if not is_loopback(host):
                raise RequestError(HTTPStatus.FORBIDDEN, f'host {host!r} is not allowed')
        if not viewer.token:
            return None
        name = f'handbone-viewer-{viewer.port}'
        given = query.get('token', [''])[0]
        # bytes: compare_digest refuses a str with non-ASCII characters
        if given and hmac.compare_digest(given.encode(), viewer.token.encode()):
            return f'{name}={viewer.token}; Path=/; HttpOnly; SameSite=Strict'
        jar = SimpleCookie(self.headers.get('Cookie', ''))
        if name in jar and hmac.compare_digest(jar[name].value.encode(), viewer.token.encode()):
            return None
        raise RequestError(HTTPStatus.FORBIDDEN, 'token missing or wrong: open the address '
                           'the viewer printed, with its ?token=')

    def _name(self, query: dict[str, list[str]]) -> str:
        name = query.get('image', [''])[0]
        if _refused_path(name) or '/' in name:
            raise RequestError(HTTPStatus.FORBIDDEN, 'outside the served folders')
        if name not in self.viewer.catalog:
            raise RequestError(HTTPStatus.NOT_FOUND, f'no image {name!r}')
        return name

    def _meta(self, viewer: Viewer, query: dict) -> None:
        self._json(viewer.meta())

    def _stats(self, viewer: Viewer, query: dict) -> None:
        try:
            first = max(0, int(query.get('from', ['0'])[0]))
        except ValueError:
            raise RequestError(HTTPStatus.BAD_REQUEST, 'from: expected an integer') from None
        self._json(viewer.statistics.since(first))

    def _image(self, viewer: Viewer, query: dict) -> None:
        self._send(*viewer.image(self._name(query)))

    def _masks(self, viewer: Viewer, query: dict) -> None:
        name = self._name(query)
        self._send(viewer.masks_payload(name, query.get('layer', [''])[0]),
                   'application/octet-stream')

    def _dice(self, viewer: Viewer, query: dict) -> None:
        name = self._name(query)
        self._json(viewer.dice(name, viewer.parse_thresholds(query)))

    def _json(self, value: object, status: HTTPStatus = HTTPStatus.OK) -> None:
        self._send(json.dumps(value).encode(), 'application/json', status=status)

    def _send(self, body: bytes, kind: str, cookie: str | None = None,
              status: HTTPStatus = HTTPStatus.OK) -> None:
        self.send_response(status)
        self.send_header('Content-Type', kind)
        self.send_header('Content-Length', str(len(body)))
        self.send_header('Cache-Control', 'no-store')
        self.send_header('X-Content-Type-Options', 'nosniff')
        if cookie:
            self.send_header('Set-Cookie', cookie)
        self.end_headers()
        self.wfile.write(body)


def serve(images: str | Path, predictions: Sequence[str | Path] = (),
          thresholds: str | Path | None = None, labels: str | Path | None = None,
          host: str = '127.0.0.1', port: int = 0, token: str | None = None,
          announce: Callable[[Viewer], None] | None = None) -> None:
    """Check the inputs, then serve the viewer until Ctrl-C (``tools/browse.py``).

    Args:
        announce: called with the viewer once it listens (the tool prints the address).
        The others: as ``Viewer``.
    """
    viewer = Viewer(images, predictions, thresholds, labels, host, port, token)
    if announce is not None:
        announce(viewer)
    viewer.serve_forever()
