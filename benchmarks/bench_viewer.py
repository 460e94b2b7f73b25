"""The viewer (``tools/browse.py``) in Chromium: time to the first image, time to switch
image, and where the masks are best decoded. Optionally its screenshots for docs/.

Data: ``--images`` phantom images at ``--size`` (cached under ``data/``: written once;
``--unique N`` writes N and links them under new names up to ``--images``), model A a
submission CSV (each bone grown or shrunk by a few pixels, some left out, some false
positive blobs), model B a probability dump (each bone blurred, shifted, noisy). The browser
and a tab are open first, as a user's are; then for each of ``--opens`` fresh servers:
server start (``Viewer(...)``: catalogue, CSV, dump index) to the first image and its masks
drawn. Switching, page-side from the key to the new picture and its masks on the canvas:
the arrow key to the next image of the list and ``w`` to the next worst (both prefetched
by the page while the last one was looked at) and a jump to an image not yet loaded (what
a click in the list costs); once while the background scoring runs and once after it.
Decoding: one image's model-A masks as run lists parsed on the server (what the viewer
does), as a bitmap decoded on the server (16 MB per 2048 image), and as the RLE text
decoded in the page.

    python benchmarks/bench_viewer.py                          # 300 images at 2048, all written
    python benchmarks/bench_viewer.py --unique 10 --switches 10   # 10 written, linked to 300
    python benchmarks/bench_viewer.py --images 20 --size 1024 --switches 5   # a quick check
    python benchmarks/bench_viewer.py --unique 10 --screenshots docs/images  # the screenshots
"""
import argparse
import io
import json
import multiprocessing
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np

HERE = Path(__file__).resolve().parent
sys.path[:0] = [str(HERE), str(HERE.parent)]

from handbone_mmseg.classes import CLASSES  # noqa: E402
from handbone_mmseg.evaluation.ensemble import gt_boxes  # noqa: E402
from handbone_mmseg.evaluation.scoring import load_labels  # noqa: E402
from handbone_mmseg.functional.box_masks import BoxMasks  # noqa: E402
from handbone_mmseg.functional.rle import parse_rle  # noqa: E402
from handbone_mmseg.io import ProbDump, write_index, write_submission  # noqa: E402
from handbone_mmseg.io.submission import iter_submission  # noqa: E402
from handbone_mmseg.phantom import generate_phantom  # noqa: E402
from handbone_mmseg.viewer import Viewer  # noqa: E402
from handbone_mmseg.viewer.payload import pack_runs  # noqa: E402

ROOT = HERE.parent
PAD = 12  # pixels around a bone that its predictions may reach
A_CSV = Path('model_a') / 'submission.csv'
B_DUMP = Path('model_b') / 'probs'


def _predict(args: tuple) -> tuple[str, list[str], dict]:
    """Model A's RLEs and model B's dump entry for one image (a pool worker)."""
    import torch

    from handbone_mmseg.io.prob_dump import save_probs
    info, folder, seed = args
    rng = np.random.default_rng(seed)
    gt = gt_boxes(info)
    h, w = gt.shape
    boxes, crops = [], []
    probs = torch.zeros((len(CLASSES), h, w))  # calloc: only the boxes are touched
    for c, ((y0, y1, x0, x1), crop) in enumerate(zip(gt.boxes, gt.crops)):
        if not crop.size:
            boxes.append((0, 0, 0, 0))
            crops.append(crop)
            continue
        box = (max(0, y0 - PAD), min(h, y1 + PAD), max(0, x0 - PAD), min(w, x1 + PAD))
        mask = np.zeros((box[1] - box[0], box[3] - box[2]), np.uint8)
        mask[y0 - box[0]:y1 - box[0], x0 - box[2]:x1 - box[2]] = crop
        k = int(rng.integers(1, 5))
        kernel = np.ones((2 * k + 1, 2 * k + 1), np.uint8)
        grown = cv2.dilate(mask, kernel) if rng.random() < 0.5 else cv2.erode(mask, kernel)
        if rng.random() < 0.03:
            grown[:] = 0  # a bone the model missed
        elif rng.random() < 0.2:  # a false positive blob beside it
            cy, cx = rng.integers(0, grown.shape[0]), rng.integers(0, grown.shape[1])
            cv2.circle(grown, (int(cx), int(cy)), int(rng.integers(3, 10)), 1, -1)
        boxes.append(box)
        crops.append(grown.astype(bool))
        shifted = np.roll(mask.astype(np.float32), tuple(rng.integers(-3, 4, 2)), (0, 1))
        soft = cv2.GaussianBlur(shifted, (0, 0), 3) * 0.95
        soft += rng.random(soft.shape, dtype=np.float32) * 0.1 * (soft > 0.02)
        probs[c, box[0]:box[1], box[2]:box[3]] = torch.from_numpy(np.clip(soft, 0, 1))
    rles = BoxMasks((h, w), boxes, crops).rles()
    return info['name'], rles, save_probs(folder, info['name'], probs)


def make_data(size: int, images: int) -> Path:
    """``images`` phantom images with predictions, cached under ``data/``: written once,
    into a folder that becomes the cache only when complete."""
    cache = ROOT / 'data' / f'bench_viewer_{size}_{images}'
    if (cache / A_CSV).is_file():
        return cache
    staging = cache.with_name(cache.name + '.partial')
    shutil.rmtree(staging, ignore_errors=True)  # this benchmark's own unfinished run
    start = time.perf_counter()
    workers = os.cpu_count() or 1
    print(f'writing {images} phantom images at {size} with predictions to {cache} (once)',
          flush=True)
    generate_phantom(staging, patients=(images + 1) // 2, size=size, seed=0, test_patients=0,
                     workers=workers, progress=True)
    phantom_s = time.perf_counter() - start
    labels = load_labels(staging, 'train/DCM', 'train/outputs_json')
    jobs = [(info, staging / B_DUMP, i)
            for i, info in enumerate(sorted(labels.values(), key=lambda e: e['name']))]
    with multiprocessing.get_context('spawn').Pool(workers) as pool:
        results = pool.map(_predict, jobs, chunksize=4)
    write_index(staging / B_DUMP, CLASSES, 'uint8', 1.0, [(n, e) for n, _, e in results])
    write_submission(staging / A_CSV, ((n, r) for n, r, _ in results))
    staging.rename(cache)
    print(f'data written in {time.perf_counter() - start:.0f} s (phantom {phantom_s:.0f} s, '
          f'predictions {time.perf_counter() - start - phantom_s:.0f} s, {workers} processes)')
    return cache


def replicate(data: Path, images: int) -> Path:
    """A data set of ``images`` names whose files link to ``data``'s, round after round
    (``imageK...`` in patient folders of their own), with the CSV's rows and the dump's
    entries under the new names: a quick stand-in for writing that many images."""
    root = Path(tempfile.mkdtemp(prefix='handbone-viewer-'))
    pngs = sorted((data / 'train' / 'DCM').rglob('*.png'))
    patients = sorted({p.parent.name for p in pngs})
    rows = dict(iter_submission(data / A_CSV))
    dump = ProbDump(data / B_DUMP)
    new_rows, entries = [], []
    for k in range(images):
        png = pngs[k % len(pngs)]
        rnd = k // len(pngs)
        patient = f'ID{rnd * len(patients) + patients.index(png.parent.name) + 1:03d}'
        stem = f'image{rnd:02d}{png.stem[5:]}'
        for folder, source, suffix in (('DCM', png, '.png'), ('outputs_json', None, '.json')):
            source = source or data / 'train' / folder / png.parent.name / f'{png.stem}.json'
            link = root / 'train' / folder / patient / f'{stem}{suffix}'
            link.parent.mkdir(parents=True, exist_ok=True)
            link.symlink_to(source)
        new_rows.append((f'{stem}.png', rows[png.name]))
        entry = dict(dump.images[png.name], file=f'{stem}.npz')
        (root / B_DUMP).mkdir(parents=True, exist_ok=True)
        (root / B_DUMP / entry['file']).symlink_to(data / B_DUMP / f'{png.stem}.npz')
        entries.append((f'{stem}.png', entry))
    write_submission(root / A_CSV, new_rows)
    write_index(root / B_DUMP, CLASSES, dump.dtype, 1.0, entries)
    return root


def wait_drawn(page, name: str) -> None:
    page.wait_for_function(f'viewer.hooks.drawn === {json.dumps(name)} && '
                           'viewer.hooks.pending === null', timeout=60_000)


def wait_first(page) -> None:
    page.wait_for_function('window.viewer && viewer.hooks.drawn !== null && '
                           'viewer.hooks.pending === null', timeout=60_000)


def measure_open(browser, data: Path, opens: int) -> list[tuple[float, float]]:
    """Per fresh server: (server start s, server start to first image drawn s)."""
    out = []
    for _ in range(opens):
        page = browser.new_page(viewport={'width': 1600, 'height': 900})  # a tab, open
        start = time.perf_counter()
        viewer = Viewer(data, [data / A_CSV, data / B_DUMP]).start()
        ready = time.perf_counter() - start
        page.goto(viewer.url)
        wait_first(page)
        out.append((ready, time.perf_counter() - start))
        page.close()
        viewer.close()
    return out


def _timed(page, action, expect: str | None = None) -> float:
    """Page-side ms from ``action`` (a key handler or an open) to its image drawn."""
    before = page.evaluate('viewer.hooks.timings.length')
    action()
    page.wait_for_function(f'viewer.hooks.timings.length > {before} && '
                           'viewer.hooks.pending === null', timeout=60_000)
    timing = page.evaluate(f'viewer.hooks.timings[{before}]')
    assert expect is None or timing['name'] == expect, (timing, expect)
    page.wait_for_timeout(200)  # a look at it: the page prefetches where the keys lead
    return timing['ms']


def measure_switches(page, count: int, worst: bool) -> dict[str, list[float]]:
    """``count`` arrow-key steps, ``w`` steps (with ``worst``) and jumps to random images
    (not prefetched): page-side ms of each, key or call to picture and masks drawn."""
    order = page.evaluate("[...document.querySelectorAll('#list tbody tr')]"
                          ".map(tr => tr.dataset.name)")
    out = {'next': [], 'worst': [], 'jump': []}
    for _ in range(count):
        i = order.index(page.evaluate('viewer.state.image'))
        out['next'].append(_timed(page, lambda: page.keyboard.press('ArrowRight'),
                                  order[(i + 1) % len(order)]))
    for _ in range(count if worst else 0):
        out['worst'].append(_timed(page, lambda: page.keyboard.press('w')))
    rng = np.random.default_rng(1)
    for _ in range(count):
        name = order[int(rng.integers(len(order)))]
        out['jump'].append(_timed(page, lambda: page.evaluate(f'viewer.open({json.dumps(name)})'),
                                  name))
    return out


# The page-side decoder of the RLE text variant (not the viewer's way: measured against it)
TEXT_DECODE = """async ([url, H, W]) => {
  const t0 = performance.now();
  const text = await (await fetch(url)).text();
  const t1 = performance.now();
  const bits = new Uint32Array(H * W);
  text.split('\\n').forEach((line, c) => {
    if (!line) return;
    const v = line.split(' ');
    for (let k = 0; k < v.length; k += 2) {
      const s = +v[k] - 1, e = s + +v[k + 1];
      for (let i = s; i < e; i++) bits[i] |= 1 << c;
    }
  });
  return [t1 - t0, performance.now() - t1];
}"""
BINARY_DECODE = """async ([url, parse]) => {
  const t0 = performance.now();
  const buffer = await (await fetch(url)).arrayBuffer();
  const t1 = performance.now();
  const layer = parse ? viewer.decode(buffer) : { bits: new Uint32Array(buffer) };
  return [t1 - t0, performance.now() - t1, layer.bits.length];
}"""


def add_variants(viewer: Viewer) -> dict:
    """Two routes beside the viewer's own, for the ways it does not take: model A's masks
    as a bitmap decoded on the server (``/bench/bits?NAME``) and as the RLE text
    (``/bench/text?NAME``). Installed before the page connects (a kept-alive connection
    keeps its handler). Returns where each answer records (server ms, bytes)."""
    model = viewer.models[0]
    extra = {}

    def bits_payload(name: str) -> bytes:  # one word per pixel, bit c = class c
        shape = viewer.catalog.shape(name)
        bits = np.zeros(shape[0] * shape[1], np.uint32)
        for c, rle in enumerate(model.rles[name]):
            for s, e in zip(*parse_rle(rle, bits.size)):
                bits[s:e] |= np.uint32(1 << c)
        return bits.tobytes()

    class Handler(viewer.server.RequestHandlerClass):
        def _answer(self) -> None:
            kind, _, name = self.path.partition('?')
            if kind not in ('/bench/bits', '/bench/text'):
                super()._answer()
                return
            start = time.perf_counter()
            body = bits_payload(name) if kind == '/bench/bits' else \
                '\n'.join(model.rles[name]).encode()
            extra[kind, name] = (time.perf_counter() - start) * 1e3, len(body)
            self._send(body, 'application/octet-stream')

    viewer.server.RequestHandlerClass = Handler
    return extra


def measure_decoding(page, viewer: Viewer, extra: dict, names: list[str]) -> list[tuple]:
    """Median ms over ``names`` of three ways to get model A's masks into the page."""
    model = viewer.models[0]
    shape = viewer.catalog.shape(names[0])
    rows = {'runs': [], 'bits': [], 'text': []}
    for name in names:  # images the page has not asked for: nothing cached on the server
        model.runs.cache_clear()
        start = time.perf_counter()
        payload = pack_runs(model.runs(name, shape), shape)  # what the viewer sends
        server = (time.perf_counter() - start) * 1e3
        model.runs.cache_clear()
        fetch, decode, _ = page.evaluate(BINARY_DECODE, [f'api/masks?image={name}&layer=0',
                                                         True])
        rows['runs'].append((server, len(payload), fetch, decode))
        fetch, decode, _ = page.evaluate(BINARY_DECODE, [f'bench/bits?{name}', False])
        rows['bits'].append((*extra['/bench/bits', name], fetch, decode))
        fetch, decode = page.evaluate(TEXT_DECODE, [f'bench/text?{name}', *shape])
        rows['text'].append((*extra['/bench/text', name], fetch, decode))
    return [(kind, *(statistics.median(col) for col in zip(*values)))
            for kind, values in rows.items()]


def screenshots(page, viewer: Viewer, folder: Path) -> list[Path]:
    """One small PNG per view (a 256-colour palette keeps each under 200 KB)."""
    from PIL import Image
    folder.mkdir(parents=True, exist_ok=True)
    scores = viewer.statistics.since(0)['images']
    worst = min((s for s in scores if s.get('dice') and s['dice'][0]),
                key=lambda s: sum(s['dice'][0]))['name']
    lunate = CLASSES.index('Lunate')
    wrist = np.concatenate([p for c, p in viewer.catalog.polygons(worst) if c == lunate]).mean(0)
    views = {
        'label': dict(view='label'),
        'prediction': dict(view='pred', mode='outline', opacity=1),
        'error': dict(view='error', opacity=0.8),
        'side_by_side': dict(view='error', layout='side', opacity=0.8),
        'threshold': dict(view='pred', model='B', tB=f'{lunate + 1}:0.25', opacity=0.6,
                          zoom=f'1,{wrist[0]:.0f},{wrist[1]:.0f}'),
    }
    written = []
    for key, params in views.items():
        fragment = '&'.join(f'{k}={v}' for k, v in dict(image=worst, **params).items())
        page.evaluate('fragment => { location.hash = fragment; }', fragment)
        page.wait_for_timeout(300)
        wait_drawn(page, worst)
        page.wait_for_function("document.querySelector('#image-dice').textContent !== ''")
        page.wait_for_timeout(300)
        picture = Image.open(io.BytesIO(page.screenshot())).convert('RGB')
        path = folder / f'viewer_{key}.png'
        for colours in (256, 128, 64):  # the X-ray's noise costs bytes: fewer colours
            picture.quantize(colours, method=Image.Quantize.MEDIANCUT).save(path, optimize=True)
            if path.stat().st_size < 200 * 1024:
                break
        written.append(path)
    return written


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument('--images', type=int, default=300, help='images (default 300)')
    parser.add_argument('--unique', type=int, default=None,
                        help='write only this many images and link them under new names up '
                        'to --images (default: all written)')
    parser.add_argument('--size', type=int, default=2048, help='image side (default 2048)')
    parser.add_argument('--opens', type=int, default=3, help='fresh servers opened (3)')
    parser.add_argument('--switches', type=int, default=20,
                        help='steps and jumps per phase (default 20)')
    parser.add_argument('--screenshots', metavar='DIR', help='write viewer_*.png here')
    args = parser.parse_args(argv)
    from playwright.sync_api import sync_playwright
    unique = min(args.unique or args.images, args.images)
    data = make_data(args.size, unique)
    if unique < args.images:
        data = replicate(data, args.images)
    out = {}
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=shutil.which('chromium'),
                                             args=['--no-sandbox'])
        opens = measure_open(browser, data, args.opens)
        out['open'] = opens
        viewer = Viewer(data, [data / A_CSV, data / B_DUMP]).start()
        extra = add_variants(viewer)
        page = browser.new_page(viewport={'width': 1600, 'height': 900})
        page.goto(viewer.url)
        wait_first(page)
        busy = measure_switches(page, args.switches, worst=False)
        scoring = viewer.statistics.since(0)
        scored_while = scoring['done'] < scoring['total']
        viewer.statistics._thread.join()
        page.keyboard.press('w')  # from the worst image on
        page.wait_for_timeout(500)
        idle = measure_switches(page, args.switches, worst=True)
        scoring = viewer.statistics.since(0)
        seen = set(page.evaluate('viewer.hooks.timings.map(t => t.name)'))
        order = sorted(viewer.catalog.entries)
        fresh = [n for i, n in enumerate(order)  # neither seen nor prefetched beside one
                 if not seen & set(order[max(0, i - 1):i + 2])]
        decoding = measure_decoding(page, viewer, extra, fresh[:5])
        if args.screenshots:
            page.set_viewport_size({'width': 1280, 'height': 720})
            for path in screenshots(page, viewer, Path(args.screenshots)):
                print(f'wrote {path} ({path.stat().st_size / 1024:.0f} KB)')
        page.close()
        viewer.close()
        browser.close()

    def spread(values: list[float]) -> str:
        return (f'median {statistics.median(values):.0f}, '
                f'max {max(values):.0f}')
    print(f'\nviewer, {args.images} phantom images at {args.size} px, model A a CSV, model B '
          f'a dump (Chromium {args.opens} opens, {args.switches} switches per row)')
    print('| what | ms |\n|---|---|')
    print(f'| server start (catalogue, CSV, dump index) | '
          f'{spread([o[0] * 1e3 for o in opens])} |')
    print(f'| server start to the first image and masks drawn | '
          f'{spread([o[1] * 1e3 for o in opens])} |')
    phase = 'while the list is scored' if scored_while else 'just after opening'
    print(f'| next image (arrow key, prefetched), {phase} | {spread(busy["next"])} |')
    print(f'| jump to an image not loaded (a click in the list), {phase} | '
          f'{spread(busy["jump"])} |')
    print(f'| next image (arrow key), scores done | {spread(idle["next"])} |')
    print(f'| next worst image (w key, prefetched), scores done | {spread(idle["worst"])} |')
    print(f'| jump to an image not loaded, scores done | {spread(idle["jump"])} |')
    print(f'\nbackground scores of {scoring["total"]} images: {scoring["seconds"]:.1f} s')
    print('\nmodel A masks of one image into the page (median of 5 images)')
    print('| way | server ms | bytes | fetch ms | page decode ms | total ms |\n'
          '|---|---|---|---|---|---|')
    names = {'runs': 'runs parsed on the server, painted in the page (the viewer)',
             'bits': 'bitmap decoded on the server (one uint32 per pixel)',
             'text': 'RLE text decoded in the page'}
    for kind, server, size, fetch, decode in decoding:
        print(f'| {names[kind]} | {server:.1f} | {size / 1024:.0f} KiB | {fetch:.1f} | '
              f'{decode:.1f} | {server + fetch + decode:.1f} |')
    out.update(busy=busy, idle=idle, decoding=decoding, scoring=scoring['seconds'])
    return out


if __name__ == '__main__':
    main()
