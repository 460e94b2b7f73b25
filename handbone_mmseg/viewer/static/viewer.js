// The viewer's page: lists the images, fetches one image's picture and masks, draws them on
// canvases. The server sends masks as runs (or a dump's levels) and every layer becomes one
// 32-bit word per pixel, bit c = class c; drawing samples those words at screen resolution,
// so a view, a bone toggle, a zoom or a threshold redraws without asking the server. Dice
// always comes from the server (the evaluation's own counting), never from this file.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);
  const KEEP = 4;  // images kept decoded: the current one, the next, the previous
  const FLICKER_MS = 600;

  let meta = null;  // /api/meta
  let byName = new Map();  // image name -> its list entry
  const scores = new Map();  // image name -> /api/stats entry
  let order = [];  // the filtered, sorted image names of the list
  let cur = null;  // the decoded image on screen
  let flickerPhase = 0;
  let flickerTimer = null;
  let typed = '';  // digits typed so far (a class number)
  let typedTimer = null;
  const cache = new Map();  // image name -> Promise of its decoded entry
  const panes = [...document.querySelectorAll('.pane')].map((el) => ({
    el, canvas: el.querySelector('canvas'), caption: el.querySelector('.caption'),
    overlay: document.createElement('canvas'),
  }));
  const state = {
    image: null, view: 'pred', model: 0, layout: 'single', mode: 'fill', opacity: 0.5,
    hidden: new Set(), thr: [], zoom: null,
    filter: { name: '', patient: '', side: '', split: '' },
    sort: { key: 'name', cls: 0, desc: false },
  };
  // what tests and the benchmark read: the last image drawn and how long it took
  const hooks = { drawn: null, frames: 0, timings: [], pending: null, errors: [] };

  // ---------------------------------------------------------------- server
  async function api(path, params, type = 'json') {
    const response = await fetch(`api/${path}?${new URLSearchParams(params)}`);
    if (!response.ok) {
      let text = `${response.status}`;
      try { text = (await response.json()).error; } catch (e) { /* not JSON */ }
      throw new Error(text);
    }
    return type === 'json' ? response.json() : type === 'blob' ? response.blob()
      : response.arrayBuffer();
  }

  function parseLayer(buffer) {
    const kind = new Int32Array(buffer, 0, 1)[0];
    if (kind === 1) {  // runs: [1, H, W, C, n_0..n_C-1] then start, end pairs
      const [, H, W, C] = new Int32Array(buffer, 0, 4);
      const counts = new Int32Array(buffer, 16, C);
      const pairs = new Int32Array(buffer, 16 + 4 * C);
      const bits = new Uint32Array(H * W);
      let k = 0;
      for (let c = 0; c < C; c++) {
        const bit = 1 << c;
        for (let r = 0; r < counts[c]; r++, k += 2) {
          for (let i = pairs[k], end = pairs[k + 1]; i < end; i++) bits[i] |= bit;
        }
      }
      return { kind: 'runs', H, W, C, bits };
    }
    // levels: [2, H, W, C, h, w, bytes], C boxes (y0, y1, x0, x1), then the crops
    const [, H, W, C, h, w, size] = new Int32Array(buffer, 0, 7);
    const boxes = new Int32Array(buffer, 28, 4 * C);
    const crops = [];
    let offset = 28 + 16 * C;
    for (let c = 0; c < C; c++) {
      const n = Math.max(0, boxes[4 * c + 1] - boxes[4 * c]) *
        Math.max(0, boxes[4 * c + 3] - boxes[4 * c + 2]);
      crops.push(size === 1 ? new Uint8Array(buffer, offset, n)
        : new Uint16Array(buffer, offset, n));
      offset += n * size;
    }
    return {
      kind: 'levels', H, W, C, h, w, scale: size === 1 ? 255 : 65535, boxes, crops,
      bits: new Uint32Array(H * W), cut: new Int32Array(C).fill(-1),
    };
  }

  // The first level a dump's threshold keeps: level L is kept when float32(L / scale) >
  // float32(t), the comparison of functional.quantized.above_table (Math.fround rounds
  // to float32; a float64 quotient rounded once is the float32 quotient).
  function levelCut(t, scale) {
    const t32 = Math.fround(t);
    let level = Math.max(0, Math.floor(t * scale) - 2);
    while (level <= scale && !(Math.fround(level / scale) > t32)) level++;
    return level;
  }

  // Set class c's bits of a levels layer from its threshold: levels at or above the cut.
  // A dump stored below full size is drawn from its nearest stored pixel.
  function applyThreshold(layer, c, t) {
    const cut = levelCut(t, layer.scale);
    if (layer.cut[c] === cut) return false;
    layer.cut[c] = cut;
    const { H, W, h, w, bits } = layer;
    const [y0, y1, x0, x1] = layer.boxes.subarray(4 * c, 4 * c + 4);
    if (y1 <= y0 || x1 <= x0) return true;
    const crop = layer.crops[c];
    const bw = x1 - x0;
    const bit = 1 << c;
    const keep = ~bit;
    const Y0 = Math.floor(y0 * H / h), Y1 = Math.min(H, Math.ceil(y1 * H / h));
    const X0 = Math.floor(x0 * W / w), X1 = Math.min(W, Math.ceil(x1 * W / w));
    for (let y = Y0; y < Y1; y++) {
      const sy = h === H ? y : Math.min(h - 1, Math.floor((y + 0.5) * h / H));
      const inRow = sy >= y0 && sy < y1;
      const row = (sy - y0) * bw;
      let i = y * W + X0;
      for (let x = X0; x < X1; x++, i++) {
        const sx = w === W ? x : Math.min(w - 1, Math.floor((x + 0.5) * w / W));
        const on = inRow && sx >= x0 && sx < x1 && crop[row + sx - x0] >= cut;
        bits[i] = on ? bits[i] | bit : bits[i] & keep;
      }
    }
    return true;
  }

  function applyThresholds(entry) {
    let changed = false;
    entry.models.forEach((layer, m) => {
      if (layer && layer.kind === 'levels') {
        for (let c = 0; c < layer.C; c++) changed = applyThreshold(layer, c, state.thr[m][c]) || changed;
      }
    });
    return changed;
  }

  async function loadEntry(name) {
    const info = byName.get(name);
    const layer = (which) => api('masks', { image: name, layer: which }, 'buffer').then(parseLayer);
    const [bitmap, label, ...models] = await Promise.all([
      api('image', { image: name }, 'blob').then((blob) => createImageBitmap(blob)),
      info.labeled ? layer('label') : null,
      ...meta.models.map((m, i) => (info.models[i] ? layer(String(i)) : null)),
    ]);
    const entry = { name, info, bitmap, W: bitmap.width, H: bitmap.height, label, models, grey: null };
    for (const l of [label, ...models]) {
      if (l && (l.W !== entry.W || l.H !== entry.H)) {
        throw new Error(`${name}: masks are ${l.W}x${l.H}, the image ${entry.W}x${entry.H}`);
      }
    }
    return entry;
  }

  function fetchEntry(name) {
    let promise = cache.get(name);
    if (promise) {
      cache.delete(name);  // re-inserted: the most recently used is last
    } else {
      promise = loadEntry(name);
      promise.catch(() => cache.delete(name));
    }
    cache.set(name, promise);
    while (cache.size > KEEP) cache.delete(cache.keys().next().value);
    return promise;
  }

  // ---------------------------------------------------------------- drawing
  function visibleBits() {
    let bits = 0;
    for (let c = 0; c < meta.classes.length; c++) if (!state.hidden.has(c)) bits |= 1 << c;
    return bits >>> 0;
  }

  // The pictures of the current layout: which view of which model each pane shows.
  function paneSpecs() {
    const two = meta.models.length > 1;
    const pair = state.view === 'label' || !two
      ? [{ view: 'label' }, { view: state.view === 'label' ? 'pred' : state.view, model: two ? state.model : 0 }]
      : [{ view: state.view, model: 0 }, { view: state.view, model: 1 }];
    if (state.layout === 'side') return pair;
    if (state.layout === 'flicker') return [pair[flickerPhase]];
    return [{ view: state.view, model: state.model }];
  }

  function transform(pw, ph) {
    const fit = Math.min(pw / cur.W, ph / cur.H);
    if (!state.zoom) return { s: fit, tx: (pw - cur.W * fit) / 2, ty: (ph - cur.H * fit) / 2 };
    const { s, cx, cy } = state.zoom;
    return { s, tx: pw / 2 - cx * s, ty: ph / 2 - cy * s };
  }

  const colours = new Map();  // code -> packed RGBA (little-endian: R is the low byte)
  function colourOf(code, error, alpha) {
    const key = `${error ? 'e' : 'c'}${code}:${alpha}`;
    let packed = colours.get(key);
    if (packed !== undefined) return packed;
    let r = 0, g = 0, b = 0, n = 0;
    const list = error ? [meta.fp_colour, meta.fn_colour] : meta.palette;
    for (let c = 0; c < list.length; c++) {
      if (code & (1 << c)) { r += list[c][0]; g += list[c][1]; b += list[c][2]; n++; }
    }
    // several bones on one pixel mix their colours, as the report's overlays do
    packed = ((alpha << 24) | (Math.round(b / n) << 16) | (Math.round(g / n) << 8) | Math.round(r / n)) >>> 0;
    colours.set(key, packed);
    return packed;
  }

  function describe(spec) {
    const letter = 'AB'[spec.model];
    if (spec.view === 'label') return cur.label ? 'label' : 'no labels';
    if (!cur.models[spec.model]) return `${letter}: no prediction of this image`;
    if (spec.view !== 'error') return `${letter}: prediction`;
    return cur.label ? `${letter}: errors (red false positive, blue false negative)`
      : `${letter}: prediction (no labels for errors)`;
  }

  function drawPane(pane, spec) {
    const dpr = window.devicePixelRatio || 1;
    const pw = Math.max(1, Math.round(pane.el.clientWidth * dpr));
    const ph = Math.max(1, Math.round(pane.el.clientHeight * dpr));
    if (pane.canvas.width !== pw || pane.canvas.height !== ph) {
      pane.canvas.width = pw; pane.canvas.height = ph;
      pane.overlay.width = pw; pane.overlay.height = ph;
    }
    const ctx = pane.canvas.getContext('2d');
    ctx.setTransform(1, 0, 0, 1, 0, 0);
    ctx.fillStyle = '#000';
    ctx.fillRect(0, 0, pw, ph);
    pane.caption.textContent = cur ? describe(spec) : '';
    if (!cur) return;
    const { s, tx, ty } = transform(pw, ph);
    ctx.imageSmoothingEnabled = s < 1;  // zoomed in: see the pixels
    ctx.imageSmoothingQuality = 'medium';
    ctx.drawImage(cur.bitmap, tx, ty, cur.W * s, cur.H * s);
    const pred = spec.view === 'label' ? null : cur.models[spec.model];
    const label = cur.label;
    const error = spec.view === 'error' && label && pred;
    const source = spec.view === 'label' ? label : pred;
    if (!source) return;
    // image pixel under each screen column and row (-1: outside the image)
    const xs = new Int32Array(pw), rows = new Int32Array(ph);
    for (let x = 0; x < pw; x++) {
      const X = Math.floor((x + 0.5 - tx) / s);
      xs[x] = X >= 0 && X < cur.W ? X : -1;
    }
    for (let y = 0; y < ph; y++) {
      const Y = Math.floor((y + 0.5 - ty) / s);
      rows[y] = Y >= 0 && Y < cur.H ? Y * cur.W : -1;
    }
    const visible = visibleBits();
    const codes = new Uint32Array(pw * ph);
    const bits = source.bits;
    const truth = label ? label.bits : null;
    for (let y = 0, k = 0; y < ph; y++) {
      const row = rows[y];
      if (row < 0) { k += pw; continue; }
      for (let x = 0; x < pw; x++, k++) {
        const X = xs[x];
        if (X < 0) continue;
        if (error) {
          const p = bits[row + X] & visible, g = truth[row + X] & visible;
          codes[k] = ((p & ~g) ? 1 : 0) | ((g & ~p) ? 2 : 0);
        } else {
          codes[k] = bits[row + X] & visible;
        }
      }
    }
    const image = new ImageData(pw, ph);
    const out = new Uint32Array(image.data.buffer);
    const alpha = Math.round(state.opacity * 255);
    const outline = state.mode === 'outline';
    for (let y = 0, k = 0; y < ph; y++) {
      for (let x = 0; x < pw; x++, k++) {
        let code = codes[k];
        if (!code) continue;
        if (outline) {  // where a pixel up to 2 away lacks one of its codes: a 2-pixel line
          let all = code;  // (beyond the pane's edge counts as the same)
          for (let d = 1; d <= 2; d++) {
            if (x >= d) all &= codes[k - d];
            if (x < pw - d) all &= codes[k + d];
            if (y >= d) all &= codes[k - d * pw];
            if (y < ph - d) all &= codes[k + d * pw];
          }
          code &= ~all;
          if (!code) continue;
        }
        out[k] = colourOf(code, error, alpha);
      }
    }
    const octx = pane.overlay.getContext('2d');
    octx.putImageData(image, 0, 0);
    ctx.drawImage(pane.overlay, 0, 0);
  }

  function draw() {
    const specs = paneSpecs();
    panes.forEach((pane, i) => { pane.el.hidden = i >= specs.length; });
    specs.forEach((spec, i) => drawPane(panes[i], spec));
    if (cur) {
      hooks.drawn = cur.name;
      hooks.frames++;
    }
  }

  // ---------------------------------------------------------------- the image list
  const mean = (values) => (values ? values.reduce((a, b) => a + b, 0) / values.length : null);

  function sortValue(name) {
    const score = scores.get(name);
    if (!score || score.error) return null;
    const { key, cls } = state.sort;
    if (key === 'dice0' || key === 'dice1') return mean(score.dice[+key.slice(-1)]);
    if (key === 'class0' || key === 'class1') {
      const dice = score.dice[+key.slice(-1)];
      return dice ? dice[cls] : null;
    }
    if (key === 'agree') return mean(score.agree);
    if (key === 'gain') {
      const [a, b] = score.dice.map(mean);
      return a === null || b === null ? null : b - a;
    }
    return null;
  }

  function computeOrder() {
    const f = state.filter;
    const names = meta.images.filter((e) => (!f.name || e.name.includes(f.name)) &&
      (!f.patient || e.patient === f.patient) && (!f.side || sideOf(e.name) === f.side) &&
      (!f.split || e.split === f.split)).map((e) => e.name);
    if (state.sort.key !== 'name') {
      const value = new Map(names.map((n) => [n, sortValue(n)]));
      const sign = state.sort.desc ? -1 : 1;
      names.sort((a, b) => {
        const va = value.get(a), vb = value.get(b);
        if (va === null || vb === null) return (va === null) - (vb === null);  // unscored last
        return sign * (va - vb) || (a < b ? -1 : 1);
      });
    } else if (state.sort.desc) {
      names.reverse();
    }
    order = names;
  }

  function sideOf(name) {
    const score = scores.get(name);
    return (score && score.side) || byName.get(name).side;
  }

  function fmt(value) { return value === null || value === undefined ? '' : value.toFixed(4); }

  function renderList() {
    computeOrder();
    const splits = new Set(meta.images.map((e) => e.split)).size > 1;  // else one column less
    const head = ['image', 'patient', 'side', ...(splits ? ['split'] : [])];
    meta.models.forEach((m, i) => head.push(`Dice ${'AB'[i]}`));
    if (meta.models.length > 1) head.push('agree');
    $('list').tHead.innerHTML = `<tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr>`;
    const body = document.createDocumentFragment();
    for (const name of order) {
      const e = byName.get(name);
      const score = scores.get(name) || {};
      const tr = document.createElement('tr');
      tr.dataset.name = name;
      if (name === state.image) tr.className = 'current';
      const cells = [e.name, e.patient, sideOf(name), ...(splits ? [e.split] : [])];
      const nums = meta.models.map((m, i) => (score.dice ? mean(score.dice[i]) : null));
      if (meta.models.length > 1) nums.push(score.agree ? mean(score.agree) : null);
      tr.innerHTML = cells.map((c) => `<td>${escapeHtml(c)}</td>`).join('') +
        nums.map((v) => `<td class="num">${score.error ? '!' : fmt(v)}</td>`).join('');
      if (score.error) tr.title = score.error;
      body.appendChild(tr);
    }
    const tbody = $('list').tBodies[0];
    tbody.replaceChildren(body);
    const row = tbody.querySelector('tr.current');
    if (row) row.scrollIntoView({ block: 'nearest' });
  }

  function escapeHtml(text) {
    return String(text).replace(/[&<>"]/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;' }[c]));
  }

  async function pollStats() {
    let first = 0;
    for (;;) {
      let result;
      try {
        result = await api('stats', { from: first });
      } catch (e) {
        return;
      }
      for (const entry of result.images) scores.set(entry.name, entry);
      first += result.images.length;
      const done = result.done === result.total;
      $('progress').textContent = meta.models.length === 0 ? ''
        : done ? `scores of ${result.total} images in ${result.seconds} s`
          : `scoring images in the background: ${result.done} / ${result.total}`;
      if (result.images.length) renderList();
      if (done) return;
      await new Promise((resolve) => setTimeout(resolve, 700));
    }
  }

  // ---------------------------------------------------------------- the class table
  function renderClasses() {
    const m = state.model;
    const dump = meta.models[m] && meta.models[m].kind === 'probs';
    const head = ['', '#', 'bone', ...meta.models.map((x, i) => `Dice ${'AB'[i]}`)];
    if (meta.models.length > 1) head.push('agree');
    if (dump) head.push(`threshold ${'AB'[m]}`);
    $('classes').tHead.innerHTML = `<tr>${head.map((h) => `<th>${h}</th>`).join('')}</tr>`;
    const rows = meta.classes.map((name, c) => {
      const colour = `rgb(${meta.palette[c].join(',')})`;
      let cells = `<td><span class="swatch" style="background:${colour}"></span></td>` +
        `<td class="idx num">${c + 1}</td><td class="name">${escapeHtml(name)}</td>`;
      meta.models.forEach((x, i) => { cells += `<td class="num dice" data-model="${i}"></td>`; });
      if (meta.models.length > 1) cells += '<td class="num agree"></td>';
      if (dump) {
        const t = state.thr[m][c];
        cells += `<td><input type="range" min="0.01" max="0.99" step="0.01" value="${t}" data-class="${c}">` +
          ` <span class="thr">${t.toFixed(2)}</span></td>`;
      }
      return `<tr data-class="${c}" class="${state.hidden.has(c) ? 'hidden-class' : ''}">${cells}</tr>`;
    });
    $('classes').tBodies[0].innerHTML = rows.join('');
    lastDice = null;
    requestDice();
  }

  let lastDice = null;
  function showDice(result) {
    lastDice = result;
    const body = $('classes').tBodies[0];
    const names = meta.models.map((m, i) => 'AB'[i]);
    const parts = [];
    result.dice.forEach((dice, i) => {
      if (dice) parts.push(`Dice ${names[i]} ${fmt(mean(dice))}`);
    });
    if (result.agree) parts.push(`agreement ${fmt(mean(result.agree))}`);
    $('image-dice').textContent = parts.join(' \u00b7 ') || 'no labels: no Dice';
    for (const tr of body.rows) {
      const c = +tr.dataset.class;
      for (const td of tr.querySelectorAll('td.dice')) {
        const dice = result.dice[+td.dataset.model];
        td.textContent = dice ? fmt(dice[c]) : '';
        td.dataset.value = dice ? dice[c] : '';
        td.dataset.threshold = result.thresholds[+td.dataset.model] ? result.thresholds[+td.dataset.model][c] : '';
        td.classList.toggle('weak', !!dice && dice[c] < 0.8);
      }
      const agree = tr.querySelector('td.agree');
      if (agree) agree.textContent = result.agree ? fmt(result.agree[c]) : '';
    }
  }

  // Dice from the server at the page's thresholds; while a request runs, only the newest
  // change waits for the next one (a dragged slider sends one request at a time).
  let diceBusy = false;
  let diceAgain = false;
  async function requestDice() {
    if (!cur || (!cur.info.labeled && meta.models.length < 2) || !meta.models.length) {
      $('image-dice').textContent = cur && !cur.info.labeled ? 'no labels: no Dice' : '';
      return;
    }
    if (diceBusy) { diceAgain = true; return; }
    diceBusy = true;
    try {
      do {
        diceAgain = false;
        const name = cur.name;
        const params = { image: name };
        meta.models.forEach((m, i) => { if (m.kind === 'probs') params[`t${i}`] = state.thr[i].join(','); });
        const result = await api('dice', params);
        if (cur && cur.name === name) showDice(result);
      } while (diceAgain);
    } catch (e) {
      showMessage(e.message);
    } finally {
      diceBusy = false;
    }
  }

  // ---------------------------------------------------------------- state and address
  function writeHash() {
    const p = new URLSearchParams();
    if (state.image) p.set('image', state.image);
    p.set('view', state.view);
    if (state.model) p.set('model', 'B');
    if (state.layout !== 'single') p.set('layout', state.layout);
    if (state.mode !== 'fill') p.set('mode', state.mode);
    p.set('opacity', state.opacity);
    if (state.hidden.size) p.set('hide', [...state.hidden].sort((a, b) => a - b).map((c) => c + 1).join(','));
    meta.models.forEach((m, i) => {
      if (m.kind !== 'probs') return;
      const changed = state.thr[i].map((t, c) => (t !== meta.thresholds[i][c] ? `${c + 1}:${t}` : null)).filter(Boolean);
      if (changed.length) p.set(`t${'AB'[i]}`, changed.join(','));
    });
    if (state.zoom) p.set('zoom', [state.zoom.s, state.zoom.cx, state.zoom.cy].map((v) => +v.toFixed(3)).join(','));
    for (const [k, v] of Object.entries(state.filter)) if (v) p.set(k, v);
    if (state.sort.key !== 'name') p.set('sort', state.sort.key);
    if (state.sort.key.startsWith('class')) p.set('class', state.sort.cls + 1);
    if (state.sort.desc) p.set('desc', '1');
    history.replaceState(null, '', `#${p}`);
  }

  // Chrome ignores history changes beyond ~100 in 10 s: a drag or a slider writes the
  // address once it rests
  let hashTimer = null;
  function writeHashSoon() {
    clearTimeout(hashTimer);
    hashTimer = setTimeout(writeHash, 150);
  }

  function readHash() {
    const p = new URLSearchParams(location.hash.slice(1));
    const pick = (key, allowed, fallback) => (allowed.includes(p.get(key)) ? p.get(key) : fallback);
    state.image = byName.has(p.get('image')) ? p.get('image') : state.image;
    state.view = pick('view', ['label', 'pred', 'error'], meta.models.length ? 'pred' : 'label');
    state.model = p.get('model') === 'B' && meta.models.length > 1 ? 1 : 0;
    state.layout = pick('layout', ['single', 'side', 'flicker'], 'single');
    state.mode = pick('mode', ['fill', 'outline'], 'fill');
    const opacity = parseFloat(p.get('opacity'));
    state.opacity = opacity > 0 && opacity <= 1 ? opacity : 0.5;
    state.hidden = new Set((p.get('hide') || '').split(',').map((v) => parseInt(v, 10) - 1)
      .filter((c) => c >= 0 && c < meta.classes.length));
    state.thr = meta.thresholds.map((start, i) => {
      const values = start.slice();
      for (const pair of (p.get(`t${'AB'[i]}`) || '').split(',')) {
        const [c, t] = pair.split(':').map(Number);
        if (c >= 1 && c <= values.length && t > 0 && t < 1) values[c - 1] = t;
      }
      return values;
    });
    const zoom = (p.get('zoom') || '').split(',').map(Number);
    state.zoom = zoom.length === 3 && zoom.every(Number.isFinite) && zoom[0] > 0
      ? { s: zoom[0], cx: zoom[1], cy: zoom[2] } : null;
    for (const key of Object.keys(state.filter)) state.filter[key] = p.get(key) || '';
    state.sort.key = pick('sort', ['name', 'dice0', 'dice1', 'class0', 'class1', 'agree', 'gain'], 'name');
    const cls = parseInt(p.get('class'), 10) - 1;
    state.sort.cls = cls >= 0 && cls < meta.classes.length ? cls : 0;
    state.sort.desc = p.get('desc') === '1';
  }

  function syncControls() {
    for (const b of document.querySelectorAll('#views button')) b.classList.toggle('on', b.dataset.view === state.view);
    for (const b of document.querySelectorAll('#layouts button')) b.classList.toggle('on', b.dataset.layout === state.layout);
    for (const b of document.querySelectorAll('#model-buttons button')) b.classList.toggle('on', +b.dataset.model === state.model);
    $('mode').textContent = state.mode === 'fill' ? 'filled' : 'outlines';
    $('opacity').value = state.opacity;
    $('filter-name').value = state.filter.name;
    $('filter-patient').value = state.filter.patient;
    $('filter-side').value = state.filter.side;
    $('filter-split').value = state.filter.split;
    $('sort-key').value = state.sort.key;
    $('sort-class').value = state.sort.cls;
    $('sort-class').hidden = !state.sort.key.startsWith('class');
    $('sort-dir').innerHTML = state.sort.desc ? '&#8595;' : '&#8593;';
    $('title').textContent = state.image || '';
    if (flickerTimer && state.layout !== 'flicker') { clearInterval(flickerTimer); flickerTimer = null; }
    if (!flickerTimer && state.layout === 'flicker') {
      flickerTimer = setInterval(() => { flickerPhase ^= 1; draw(); }, FLICKER_MS);
    }
  }

  // Redraw after a change of state; `classes` rebuilds the table (model or thresholds).
  function update({ list = false, classes = false } = {}) {
    syncControls();
    writeHashSoon();
    if (list) renderList();
    if (classes) renderClasses();
    draw();
  }

  function showMessage(text) {
    const box = $('message');
    box.textContent = text;
    box.hidden = !text;
    if (text) hooks.errors.push(text);
  }

  // ---------------------------------------------------------------- navigation
  let openSeq = 0;
  async function open(name, started = performance.now()) {
    if (!byName.has(name)) return;
    const seq = ++openSeq;
    state.image = name;
    hooks.pending = name;
    syncControls();
    clearTimeout(hashTimer);
    writeHash();
    for (const tr of $('list').tBodies[0].rows) tr.classList.toggle('current', tr.dataset.name === name);
    const row = $('list').tBodies[0].querySelector('tr.current');
    if (row) row.scrollIntoView({ block: 'nearest' });
    let entry;
    try {
      entry = await fetchEntry(name);
    } catch (e) {
      if (seq === openSeq) { showMessage(`${name}: ${e.message}`); hooks.pending = null; }
      return;
    }
    if (seq !== openSeq) return;  // a newer image was asked for meanwhile
    showMessage('');
    cur = entry;
    applyThresholds(cur);
    draw();
    hooks.timings.push({ name, ms: performance.now() - started });
    hooks.pending = null;
    requestDice();
    prefetch();
  }

  // The images the keys lead to next: the list's neighbours and the next worst.
  function prefetch() {
    const i = order.indexOf(state.image);
    const next = [order[i + 1], order[i - 1]];
    const ranked = worstRanking();
    const k = ranked.indexOf(state.image);
    if (ranked.length) next.push(ranked[k + 1]);
    for (const name of next) if (name !== undefined) fetchEntry(name).catch(() => {});
  }

  // The listed images ranked by the shown model's Dice, worst first; without labels by
  // the two models' agreement, least first. Images not scored yet are left out.
  function worstRanking() {
    const labeled = meta.models.length && meta.images.some((e) => e.labeled);
    const ranked = [];
    for (const name of order) {
      const score = scores.get(name);
      if (!score || score.error) continue;
      const value = labeled ? mean(score.dice[state.model]) : mean(score.agree);
      if (value !== null && value !== undefined) ranked.push([name, value]);
    }
    ranked.sort((a, b) => a[1] - b[1] || (a[0] < b[0] ? -1 : 1));
    return ranked.map(([name]) => name);
  }

  function stepWorst(delta, started) {
    const ranked = worstRanking();
    if (!ranked.length) { showMessage('no scores yet: they are being computed'); return; }
    const i = ranked.indexOf(state.image);
    const j = i < 0 ? 0 : i + delta;
    if (j >= 0 && j < ranked.length) open(ranked[j], started);
  }

  function toggleClass(c) {
    if (state.hidden.has(c)) state.hidden.delete(c); else state.hidden.add(c);
    const tr = $('classes').tBodies[0].rows[c];
    if (tr) tr.classList.toggle('hidden-class', state.hidden.has(c));
    update();
  }

  function zoomAt(factor, sx, sy) {
    if (!cur) return;
    const pane = panes[0];
    const dpr = window.devicePixelRatio || 1;
    const pw = pane.canvas.width, ph = pane.canvas.height;
    const { s, tx, ty } = transform(pw, ph);
    const px = sx === undefined ? pw / 2 : sx * dpr, py = sy === undefined ? ph / 2 : sy * dpr;
    const ix = (px - tx) / s, iy = (py - ty) / s;
    const fit = Math.min(pw / cur.W, ph / cur.H);
    const ns = Math.min(64, Math.max(fit / 2, s * factor));
    const ntx = px - ix * ns, nty = py - iy * ns;
    state.zoom = { s: ns, cx: (pw / 2 - ntx) / ns, cy: (ph / 2 - nty) / ns };
    update();
  }

  // ---------------------------------------------------------------- the pixel under the cursor
  function greyAt(x, y) {
    if (!cur.grey) {
      const canvas = new OffscreenCanvas(cur.W, cur.H);
      const ctx = canvas.getContext('2d', { willReadFrequently: true });
      ctx.drawImage(cur.bitmap, 0, 0);
      cur.grey = ctx.getImageData(0, 0, cur.W, cur.H).data;
    }
    return cur.grey[4 * (y * cur.W + x)];
  }

  function classNames(bits) {
    return meta.classes.filter((n, c) => bits & (1 << c)).join(', ') || '\u2013';
  }

  function levelAt(layer, c, x, y) {
    const [y0, y1, x0, x1] = layer.boxes.subarray(4 * c, 4 * c + 4);
    const sy = layer.h === layer.H ? y : Math.min(layer.h - 1, Math.floor((y + 0.5) * layer.h / layer.H));
    const sx = layer.w === layer.W ? x : Math.min(layer.w - 1, Math.floor((x + 0.5) * layer.w / layer.W));
    if (sy < y0 || sy >= y1 || sx < x0 || sx >= x1) return 0;
    return layer.crops[c][(sy - y0) * (x1 - x0) + sx - x0];
  }

  // What the page knows of image pixel (x, y): its grey value and its classes in each layer.
  function pixel(x, y) {
    if (!cur || x < 0 || y < 0 || x >= cur.W || y >= cur.H) return null;
    const i = y * cur.W + x;
    const out = { x, y, grey: greyAt(x, y), label: cur.label ? cur.label.bits[i] : null, models: [] };
    cur.models.forEach((layer, m) => {
      if (!layer) { out.models.push(null); return; }
      const entry = { bits: layer.bits[i] };
      if (layer.kind === 'levels') {
        entry.probs = [];
        for (let c = 0; c < layer.C; c++) {
          const level = levelAt(layer, c, x, y);
          if (level) entry.probs.push([c, level / layer.scale]);
        }
      }
      out.models.push(entry);
    });
    return out;
  }

  function hover(event, pane) {
    if (!cur) return;
    const dpr = window.devicePixelRatio || 1;
    const rect = pane.canvas.getBoundingClientRect();
    const { s, tx, ty } = transform(pane.canvas.width, pane.canvas.height);
    const x = Math.floor(((event.clientX - rect.left) * dpr - tx) / s);
    const y = Math.floor(((event.clientY - rect.top) * dpr - ty) / s);
    const p = pixel(x, y);
    if (!p) { $('hover').innerHTML = '&nbsp;'; return; }
    const parts = [`x ${x}, y ${y}`, `grey ${p.grey}`];
    if (p.label !== null) parts.push(`label: ${classNames(p.label)}`);
    p.models.forEach((entry, m) => {
      if (!entry) return;
      let text = `${'AB'[m]}: ${classNames(entry.bits)}`;
      if (entry.probs && entry.probs.length) {
        text += ` (p ${entry.probs.sort((a, b) => b[1] - a[1]).slice(0, 3).map(([c, v]) => `${meta.classes[c]} ${v.toFixed(2)}`).join(', ')})`;
      }
      parts.push(text);
    });
    $('hover').textContent = parts.join(' \u00b7 ');
  }

  // ---------------------------------------------------------------- events
  function onKey(event) {
    const tag = event.target.tagName;
    const k = event.key;
    const slider = tag === 'INPUT' && event.target.type === 'range';
    // a focused slider keeps its arrow keys; a text field or a menu keeps every key
    if ((tag === 'INPUT' && !slider) || tag === 'SELECT' || (slider && k.startsWith('Arrow'))) return;
    if (event.ctrlKey || event.metaKey || event.altKey) return;
    const started = performance.now();
    if (/^[0-9]$/.test(k)) {
      typed += k;
      clearTimeout(typedTimer);
      const number = parseInt(typed, 10);
      // "1" may become 10-19 and "2" 20-29: wait a moment for the second digit
      if (typed.length === 2 || number * 10 > meta.classes.length) {
        typed = '';
        if (number >= 1 && number <= meta.classes.length) toggleClass(number - 1);
      } else {
        typedTimer = setTimeout(() => {
          const n = parseInt(typed, 10);
          typed = '';
          if (n >= 1 && n <= meta.classes.length) toggleClass(n - 1);
        }, 500);
      }
      event.preventDefault();
      return;
    }
    const actions = {
      ArrowRight: () => stepFrom(1, started), n: () => stepFrom(1, started),
      ArrowLeft: () => stepFrom(-1, started), p: () => stepFrom(-1, started),
      w: () => stepWorst(1, started), W: () => stepWorst(-1, started),
      l: () => setView('label'), r: () => setView('pred'), e: () => setView('error'),
      m: () => setModel(1 - state.model),
      s: () => setLayout(state.layout === 'side' ? 'single' : 'side'),
      f: () => setLayout(state.layout === 'flicker' ? 'single' : 'flicker'),
      o: () => { state.mode = state.mode === 'fill' ? 'outline' : 'fill'; update(); },
      '[': () => setOpacity(state.opacity - 0.1), ']': () => setOpacity(state.opacity + 0.1),
      a: () => { state.hidden.clear(); update({ classes: true }); },
      x: () => { meta.classes.forEach((n, c) => state.hidden.add(c)); update({ classes: true }); },
      '+': () => zoomAt(1.5), '=': () => zoomAt(1.5), '-': () => zoomAt(1 / 1.5),
      z: () => { state.zoom = null; update(); },
      '?': () => { $('help').hidden = !$('help').hidden; },
      Escape: () => { $('help').hidden = true; },
    };
    const action = actions[k];
    if (action) { action(); event.preventDefault(); }
  }

  function stepFrom(delta, started) {
    if (!order.length) return;
    const i = order.indexOf(state.image);
    const j = i < 0 ? 0 : Math.min(order.length - 1, Math.max(0, i + delta));
    if (order[j] !== state.image) open(order[j], started);
  }

  function setView(view) { state.view = view; update(); }
  function setLayout(layout) { state.layout = layout; flickerPhase = 0; update(); }
  function setOpacity(value) { state.opacity = Math.round(Math.min(1, Math.max(0.05, value)) * 100) / 100; update(); }
  function setModel(m) {
    if (m < 0 || m >= meta.models.length || m === state.model) return;
    state.model = m;
    update({ classes: true });
  }

  function bindControls() {
    document.addEventListener('keydown', onKey);
    for (const b of document.querySelectorAll('#views button')) b.onclick = () => setView(b.dataset.view);
    for (const b of document.querySelectorAll('#layouts button')) b.onclick = () => setLayout(b.dataset.layout);
    $('mode').onclick = () => { state.mode = state.mode === 'fill' ? 'outline' : 'fill'; update(); };
    $('opacity').oninput = (e) => setOpacity(parseFloat(e.target.value));
    $('fit').onclick = () => { state.zoom = null; update(); };
    $('help-button').onclick = () => { $('help').hidden = !$('help').hidden; };
    $('copy-link').onclick = () => {
      clearTimeout(hashTimer);
      writeHash();
      if (navigator.clipboard) navigator.clipboard.writeText(location.href).catch(() => {});
      $('hover').textContent = `link: ${location.href}`;
    };
    $('filter-name').oninput = (e) => { state.filter.name = e.target.value; update({ list: true }); };
    for (const key of ['patient', 'side', 'split']) {
      $(`filter-${key}`).onchange = (e) => { state.filter[key] = e.target.value; update({ list: true }); };
    }
    $('sort-key').onchange = (e) => { state.sort.key = e.target.value; update({ list: true }); };
    $('sort-class').onchange = (e) => { state.sort.cls = +e.target.value; update({ list: true }); };
    $('sort-dir').onclick = () => { state.sort.desc = !state.sort.desc; update({ list: true }); };
    $('list').tBodies[0].onclick = (e) => {
      const tr = e.target.closest('tr');
      if (tr) open(tr.dataset.name);
    };
    const classes = $('classes').tBodies[0];
    classes.onclick = (e) => {
      if (e.target.closest('td.name, .swatch, td.idx')) toggleClass(+e.target.closest('tr').dataset.class);
    };
    classes.oninput = (e) => {
      if (e.target.type !== 'range' || !cur) return;
      const c = +e.target.dataset.class, t = parseFloat(e.target.value);
      state.thr[state.model][c] = t;
      e.target.parentNode.querySelector('.thr').textContent = t.toFixed(2);
      const layer = cur.models[state.model];
      // the other decoded images follow when they are shown (applyThresholds in open)
      if (layer && layer.kind === 'levels') applyThreshold(layer, c, t);
      writeHashSoon();
      draw();
      requestDice();
    };
    for (const pane of panes) {
      pane.canvas.addEventListener('mousemove', (e) => hover(e, pane));
      pane.canvas.addEventListener('wheel', (e) => {
        e.preventDefault();
        const rect = pane.canvas.getBoundingClientRect();
        zoomAt(e.deltaY < 0 ? 1.25 : 0.8, e.clientX - rect.left, e.clientY - rect.top);
      }, { passive: false });
      pane.canvas.addEventListener('mousedown', (e) => {
        if (!cur) return;
        const dpr = window.devicePixelRatio || 1;
        let last = [e.clientX, e.clientY];
        const move = (ev) => {
          const { s } = transform(pane.canvas.width, pane.canvas.height);
          const base = state.zoom || { s, cx: cur.W / 2, cy: cur.H / 2 };
          state.zoom = { s, cx: base.cx - (ev.clientX - last[0]) * dpr / s, cy: base.cy - (ev.clientY - last[1]) * dpr / s };
          last = [ev.clientX, ev.clientY];
          update();
        };
        const up = () => { window.removeEventListener('mousemove', move); window.removeEventListener('mouseup', up); };
        window.addEventListener('mousemove', move);
        window.addEventListener('mouseup', up);
      });
    }
    // a pane changes size with the window and with the panels beside it
    new ResizeObserver(() => { if (cur) draw(); }).observe($('panes'));
    window.addEventListener('hashchange', () => {
      const image = state.image;
      readHash();
      update({ list: true, classes: true });
      if (state.image !== image) open(state.image);
    });
  }

  function fillSelect(id, label, values) {
    $(id).innerHTML = [`<option value="">${label}</option>`, ...values.map((v) => `<option value="${escapeHtml(v)}">${escapeHtml(v)}</option>`)].join('');
  }

  async function start() {
    meta = await api('meta');
    byName = new Map(meta.images.map((e) => [e.name, e]));
    const unique = (key) => [...new Set(meta.images.map((e) => e[key]))].sort();
    fillSelect('filter-patient', 'all patients', unique('patient').filter(Boolean));
    fillSelect('filter-side', 'both sides', ['left', 'right', 'unknown']);
    fillSelect('filter-split', 'all splits', unique('split'));
    const sorts = [['name', 'name']];
    meta.models.forEach((m, i) => sorts.push([`dice${i}`, `Dice ${'AB'[i]}`], [`class${i}`, `class Dice ${'AB'[i]}`]));
    if (meta.models.length > 1) sorts.push(['agree', 'agreement A-B'], ['gain', 'Dice B - A']);
    $('sort-key').innerHTML = sorts.map(([v, t]) => `<option value="${v}">${t}</option>`).join('');
    $('sort-class').innerHTML = meta.classes.map((n, c) => `<option value="${c}">${escapeHtml(n)}</option>`).join('');
    $('model-buttons').innerHTML = meta.models.map((m, i) => `<button data-model="${i}" title="${escapeHtml(m.path)} (key m)">${'AB'[i]}: ${escapeHtml(m.label)}</button>`).join('');
    for (const b of document.querySelectorAll('#model-buttons button')) b.onclick = () => setModel(+b.dataset.model);
    for (const b of document.querySelectorAll('#views button')) b.disabled = b.dataset.view !== 'label' && !meta.models.length;
    $('layouts').hidden = !meta.models.length;
    readHash();
    bindControls();
    update({ list: true, classes: true });
    pollStats();
    const first = state.image || order[0] || meta.images[0].name;
    await open(first);
  }

  window.viewer = {
    hooks, state, pixel, open, decode: parseLayer,
    ready: start().catch((e) => { showMessage(e.message); throw e; }),
    // screen position (CSS pixels, in the page) of image pixel (x, y)'s centre in pane i
    toPage(x, y, i = 0) {
      const pane = panes[i];
      const dpr = window.devicePixelRatio || 1;
      const { s, tx, ty } = transform(pane.canvas.width, pane.canvas.height);
      const rect = pane.canvas.getBoundingClientRect();
      return [rect.left + (tx + (x + 0.5) * s) / dpr, rect.top + (ty + (y + 0.5) * s) / dpr];
    },
    // the canvas RGBA of image pixel (x, y) in pane i
    canvasAt(x, y, i = 0) {
      const pane = panes[i];
      const { s, tx, ty } = transform(pane.canvas.width, pane.canvas.height);
      const px = Math.floor(tx + (x + 0.5) * s), py = Math.floor(ty + (y + 0.5) * s);
      return [...pane.canvas.getContext('2d').getImageData(px, py, 1, 1).data];
    },
    // pixels of class c set in a layer of the current image ('label', 0 or 1)
    count(layer, c) {
      const l = layer === 'label' ? cur.label : cur.models[layer];
      let n = 0;
      for (let i = 0; i < l.bits.length; i++) if (l.bits[i] & (1 << c)) n++;
      return n;
    },
  };
})();
