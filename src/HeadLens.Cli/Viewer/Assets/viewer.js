// HeadLens viewer: plain JS, no build step, no external files. Served by `headlens serve` (talks to /api/...) and
// inlined by `headlens report` (reads the data embedded in the page instead). Token text is untrusted: it only ever
// reaches the page through textContent / createTextNode, never through HTML parsing.
(function () {
  'use strict';

  // The kinds themselves come from the server (/api/model, or the report's data): colours are handed out in that
  // order, and "mixed" (no score over its threshold) is always grey.
  const KIND_PALETTE = ['#e377c2', '#9467bd', '#d62728', '#1f77b4', '#8c564b', '#ff7f0e', '#2ca02c', '#17becf',
    '#bcbd22', '#393b79'];
  const MIXED_COLOUR = '#7f7f7f';
  let kindColours = {};
  const HEAD_COLOURS = ['#2563eb', '#dc2626', '#16a34a', '#9333ea', '#ea580c', '#0891b2', '#c026d3', '#65a30d',
    '#b45309', '#4f46e5', '#be123c', '#0d9488'];

  const $ = (id) => document.getElementById(id);
  const state = {
    view: 'model', model: null, input: null, heads: null, token: null, layer: 0, head: 0, picked: [0],
    seq: 0, generated: [], ablation: null, compositions: null
  };

  // ---- data access: the server's API, or the data a report carries ----

  function serverApi() {
    async function post(path, body) {
      return answer(await fetch(path, {
        method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(body)
      }));
    }
    async function answer(response) {
      const data = await response.json().catch(() => ({ error: 'HTTP ' + response.status }));
      if (!response.ok) { throw new Error(data.error || ('HTTP ' + response.status)); }
      return data;
    }
    return {
      offline: false,
      model: async () => (await fetch('/api/model')).json(),
      tokenize: (text) => post('/api/tokenize', { text }),
      heads: (text) => post('/api/heads', { text }),
      pattern: (text, layer, heads) => post('/api/pattern', { text, layer, heads }),
      token: (text, index) => post('/api/token', { text, index }),
      compare: (a, b, word) => post('/api/compare', { a, b, word }),
      ablate: (text, layer, method) => post('/api/ablate', { text, layer, method }),
      lens: (text) => post('/api/lens', { text }),
      patch: (text, corrupted, layer) => post('/api/patch', { text, corrupted, layer }),
      paths: (text, corrupted, layer, receiver) => post('/api/paths', { text, corrupted, layer, receiver }),
      canCompose: true,
      compositions: async () => answer(await fetch('/api/compositions')),
      generate: async (prompt, maxTokens, temperature, onLine) => {
        const response = await fetch('/api/generate', {
          method: 'POST', headers: { 'Content-Type': 'application/json' },
          body: JSON.stringify({ text: prompt, maxTokens, temperature })
        });
        if (!response.ok) {
          const data = await response.json().catch(() => ({}));
          throw new Error(data.error || ('HTTP ' + response.status));
        }
        const reader = response.body.getReader();
        const decoder = new TextDecoder();
        let buffered = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) { break; }
          buffered += decoder.decode(value, { stream: true });
          let newline;
          while ((newline = buffered.indexOf('\n')) >= 0) {
            const line = buffered.slice(0, newline);
            buffered = buffered.slice(newline + 1);
            if (line.trim()) { onLine(JSON.parse(line)); }
          }
        }
      }
    };
  }

  // A report holds the model, the tokens, the heads and every pattern [L][H][T][T] of one text.
  function reportApi(data) {
    const notHere = () => Promise.reject(new Error('needs the live viewer (headlens serve)'));
    return {
      offline: true,
      model: async () => data.model,
      tokenize: async () => data.input,
      heads: async () => data.heads,
      pattern: async (text, layer, heads) => ({
        ids: data.input.ids, tokens: data.input.tokens, layer, heads,
        patterns: heads.map((h) => data.patterns[layer][h])
      }),
      token: async (text, index) => tokenFromPatterns(data, index),
      compare: notHere,
      ablate: notHere,
      patch: notHere,
      paths: notHere,
      canCompose: Boolean(data.compositions),
      compositions: async () => {
        if (!data.compositions) { throw new Error('composition scores need a model\u2019s weights; this report has none'); }
        return data.compositions;
      },
      lens: async () => {
        if (!data.lens) { throw new Error('the logit lens needs a model that predicts tokens; this report has none'); }
        return data.lens;
      },
      generate: notHere
    };
  }

  function tokenFromPatterns(data, index) {
    const t = data.input.ids.length;
    const layers = data.patterns.map((heads, layer) => {
      const looksAt = new Array(t).fill(0);
      const lookedAtBy = new Array(t).fill(0);
      const focus = heads.map((pattern, head) => {
        for (let j = 0; j < t; j++) {
          looksAt[j] += pattern[index][j] / heads.length;
          lookedAtBy[j] += pattern[j][index] / heads.length;
        }
        const order = pattern[index].map((w, j) => [w, j]).sort((x, y) => y[0] - x[0]).slice(0, 3);
        return { head, top: order.map((p) => p[1]), weights: order.map((p) => p[0]) };
      });
      return { layer, looksAt, lookedAtBy, heads: focus };
    });
    return { ids: data.input.ids, tokens: data.input.tokens, index, token: data.input.tokens[index], layers };
  }

  const embedded = document.getElementById('headlens-data');
  const api = embedded ? reportApi(JSON.parse(embedded.textContent)) : serverApi();

  // ---- small helpers ----

  function el(tag, attributes, text) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attributes || {})) { node.setAttribute(name, value); }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function svg(tag, attributes, text) {
    const node = document.createElementNS('http://www.w3.org/2000/svg', tag);
    for (const [name, value] of Object.entries(attributes || {})) { node.setAttribute(name, String(value)); }
    if (text !== undefined) { node.textContent = text; }
    return node;
  }

  function clear(node) { while (node.firstChild) { node.removeChild(node.firstChild); } }

  // Newlines and tabs drawn visibly so that every token has a width.
  function show(token) { return token.replace(/\n/g, '\u21b5').replace(/\t/g, '\u21e5'); }

  function quoted(token) { return '\u2018' + show(token) + '\u2019'; }

  // Each view that has its own input (Generate, Compare) has its own status line; the others share the main one.
  function setStatus(message, isError, id) {
    const status = $(id || 'status');
    status.textContent = message;
    status.className = isError ? 'status error' : 'status';
    // The ablation and patching line sits above the grid: a longer line moves the grid down, so it is sized again.
    if (id === 'ablate-status') { sizeGrid(); }
  }

  // A colour bar from 0 to 1 in the shading the view uses, with ticks, and a caption saying what 1 means.
  function drawScale(id, rgb, caption) {
    const holder = $(id);
    clear(holder);
    const width = 160, height = 10;
    const canvas = el('canvas', { width: String(width), height: String(height), 'aria-hidden': 'true' });
    const context = canvas.getContext('2d');
    const image = context.createImageData(width, height);
    for (let x = 0; x < width; x++) {
      const c = shade(rgb, x / (width - 1));
      for (let y = 0; y < height; y++) {
        const at = (y * width + x) * 4;
        image.data[at] = c[0]; image.data[at + 1] = c[1]; image.data[at + 2] = c[2]; image.data[at + 3] = 255;
      }
    }
    context.putImageData(image, 0, 0);
    const bar = el('span', { class: 'bar' });
    bar.appendChild(canvas);
    const ticks = el('span', { class: 'ticks' });
    for (const tick of ['0', '0.25', '0.5', '0.75', '1']) { ticks.appendChild(el('span', {}, tick)); }
    bar.appendChild(ticks);
    holder.appendChild(bar);
    holder.appendChild(el('span', { class: 'caption' }, caption));
  }

  function hexToRgb(hex) {
    const n = parseInt(hex.slice(1), 16);
    return [(n >> 16) & 255, (n >> 8) & 255, n & 255];
  }

  // White to the colour, with a square root so that weak attention still shows.
  function shade(rgb, value) {
    const s = Math.sqrt(Math.max(0, Math.min(1, value)));
    return [255 - (255 - rgb[0]) * s, 255 - (255 - rgb[1]) * s, 255 - (255 - rgb[2]) * s].map(Math.round);
  }

  function fillSelect(select, count, label) {
    clear(select);
    for (let i = 0; i < count; i++) { select.appendChild(el('option', { value: String(i) }, label + ' ' + i)); }
  }

  function argMax(values) {
    let best = 0;
    for (let j = 1; j < values.length; j++) { if (values[j] > values[best]) { best = j; } }
    return best;
  }

  const tooltip = $('tooltip');
  function showTooltip(event, text) {
    tooltip.textContent = text;
    tooltip.hidden = false;
    tooltip.style.left = (event.clientX + 14) + 'px';
    tooltip.style.top = (event.clientY + 14) + 'px';
  }
  function hideTooltip() { tooltip.hidden = true; }

  // ---- the token strip ----

  function drawTokens(input) {
    const strip = $('tokens');
    clear(strip);
    input.tokens.forEach((token, i) => {
      const span = el('span', { class: 'tok', 'data-index': String(i), title: 'token ' + i + ' (id ' + input.ids[i] + ')' }, show(token));
      if (i === state.token) { span.classList.add('selected'); }
      span.addEventListener('click', () => {
        state.token = i;
        switchView('token');
      });
      strip.appendChild(span);
    });
  }

  // ---- views ----

  async function loadModelView(seq, text) {
    const heads = await api.heads(text);
    if (seq !== state.seq) { return; }
    state.heads = heads;
    const grid = $('grid');
    clear(grid);
    grid.style.gridTemplateColumns = 'auto repeat(' + heads.heads + ', auto)';
    grid.setAttribute('data-layers', String(heads.layers));
    grid.setAttribute('data-heads', String(heads.heads));
    grid.appendChild(el('div', { class: 'collabel' }, ''));
    for (let h = 0; h < heads.heads; h++) { grid.appendChild(el('div', { class: 'collabel' }, 'head ' + h)); }
    const counts = {};
    for (let l = 0; l < heads.layers; l++) {
      grid.appendChild(el('div', { class: 'rowlabel' }, 'layer ' + l));
      for (let h = 0; h < heads.heads; h++) {
        const entry = heads.entries[l * heads.heads + h];
        counts[entry.kind] = (counts[entry.kind] || 0) + 1;
        grid.appendChild(headCell(entry, heads.thumbnailSize, heads.sources));
      }
    }
    drawSources(heads.sources);
    drawScale('grid-scale', [55, 65, 81], 'thumbnail shade: 0 (white) to the head\u2019s own strongest cell (its kind\u2019s colour)');
    const legend = $('legend');
    clear(legend);
    for (const [kind, colour] of Object.entries(kindColours)) {
      if (!counts[kind]) { continue; }
      const item = el('span', { class: 'legend-item', 'data-kind': kind });
      const chip = el('span', { class: 'chip' });
      chip.style.background = colour;
      item.appendChild(chip);
      item.appendChild(document.createTextNode(kind + ' \u00d7' + counts[kind]));
      legend.appendChild(item);
    }
    // An ablation of this text (and only of this text) stays on the grid when the grid is drawn again.
    if (state.ablation && state.ablation.kind !== 'compositions' && state.ablation.text !== text) { forgetAblation(); }
    drawEffects();
    // Last: the legend and captions above decide where the grid starts.
    sizeGrid();
  }

  // ---- what breaks without each head: /api/ablate layer by layer, each answer drawn into the grid as it comes ----

  async function runAblation() {
    const text = $('text').value;
    const method = $('ablate-method').value;
    const ablation = { kind: 'ablate', text, method, measure: null, clean: null, effects: {}, done: false };
    state.ablation = ablation;
    drawEffects();
    setInterventionButtons(false);
    try {
      for (let layer = 0; layer < state.model.layers; layer++) {
        setStatus('removing each head of layer ' + layer + ' (' + (layer + 1) + ' of ' + state.model.layers + ')\u2026', false, 'ablate-status');
        const answer = await api.ablate(text, layer, method);
        if (state.ablation !== ablation) { return; }
        ablation.measure = answer.measure;
        ablation.clean = answer.clean;
        for (const effect of answer.heads) { ablation.effects[layer + '.' + effect.head] = effect; }
        drawEffects();
      }
      ablation.done = true;
      const worst = Object.entries(ablation.effects).sort((a, b) => b[1].change - a[1].change)[0];
      const [layer, head] = worst[0].split('.');
      setStatus((ablation.measure === 'next_token_loss'
        ? 'Next-token loss with every head ' + ablation.clean.toFixed(3) + ' nats/token; each badge is its rise without that head'
        : 'Each badge is how far the sentence embedding turns without that head (1 \u2212 cosine)') +
        ' (' + (method === 'mean' ? 'mean' : 'zero') + '-ablation). Most needed: layer ' + layer + ' head ' + head +
        ' (' + signed(worst[1].change) + '). Hover a head for what it breaks most.', false, 'ablate-status');
      document.body.setAttribute('data-ablated', String(Date.now()));
    } catch (error) {
      if (state.ablation === ablation) { setStatus(error.message, true, 'ablate-status'); }
    } finally {
      if (state.ablation === ablation) { setInterventionButtons(true); }
    }
  }

  // ---- which heads carry a difference: /api/patch layer by layer, each head copied from the text into a corrupted one ----

  async function runPatching() {
    const text = $('text').value;
    const corrupted = $('patch-corrupted').value;
    const patching = { kind: 'patch', text, corrupted, metric: null, effects: {}, done: false };
    state.ablation = patching;
    drawEffects();
    setInterventionButtons(false);
    try {
      let answer = null;
      for (let layer = 0; layer < state.model.layers; layer++) {
        setStatus('patching each head of layer ' + layer + ' (' + (layer + 1) + ' of ' + state.model.layers + ')…', false, 'ablate-status');
        answer = await api.patch(text, corrupted, layer);
        if (state.ablation !== patching) { return; }
        patching.metric = answer;
        for (const effect of answer.heads) { patching.effects[layer + '.' + effect.head] = { change: effect.recovered, value: effect.value }; }
        drawEffects();
      }
      patching.done = true;
      const best = Object.entries(patching.effects).sort((a, b) => b[1].change - a[1].change)[0];
      const [layer, head] = best[0].split('.');
      if (Number(layer) > 0) { $('paths-receiver').value = best[0]; }
      setStatus(metricText(answer) + ': ' + signedShort(answer.clean) + ' with the text, ' + signedShort(answer.corrupted) +
        ' with the corrupted one; each badge is the share of that gap one head brings back when copied from the text. ' +
        'Most: layer ' + layer + ' head ' + head + ' (' + percent(best[1].change) + ').', false, 'ablate-status');
      document.body.setAttribute('data-patched', String(Date.now()));
    } catch (error) {
      if (state.ablation === patching) { setStatus(error.message, true, 'ablate-status'); }
    } finally {
      if (state.ablation === patching) { setInterventionButtons(true); }
    }
  }

  // ---- what feeds one head: /api/paths layer by layer, each earlier head's path into its queries, keys and values ----

  async function runPaths() {
    const text = $('text').value;
    const corrupted = $('patch-corrupted').value;
    const [receiverLayer, receiverHead] = $('paths-receiver').value.split('.').map(Number);
    const paths = { kind: 'paths', text, corrupted, receiver: [receiverLayer, receiverHead], metric: null, effects: {}, done: false };
    state.ablation = paths;
    drawEffects();
    setInterventionButtons(false);
    try {
      let answer = null;
      for (let layer = 0; layer < receiverLayer; layer++) {
        setStatus('tracing what the heads of layer ' + layer + ' send to head ' + receiverLayer + '.' + receiverHead +
          ' (' + (layer + 1) + ' of ' + receiverLayer + ')\u2026', false, 'ablate-status');
        answer = await api.paths(text, corrupted, layer, [receiverLayer, receiverHead]);
        if (state.ablation !== paths) { return; }
        paths.metric = answer;
        for (const sender of answer.heads) {
          // The badge shows the input the sender brings back most through; the tooltip all three.
          const [input, change] = [['q', sender.query], ['k', sender.key], ['v', sender.value]].sort((a, b) => b[1] - a[1])[0];
          paths.effects[layer + '.' + sender.head] = { change, input, query: sender.query, key: sender.key, value: sender.value };
        }
        drawEffects();
      }
      paths.done = true;
      const best = Object.entries(paths.effects).sort((a, b) => b[1].change - a[1].change)[0];
      const [layer, head] = best[0].split('.');
      setStatus(metricText(answer) + ': ' + signedShort(answer.clean) + ' with the text, ' + signedShort(answer.corrupted) +
        ' with the corrupted one; each badge is the share of that gap an earlier head brings back when only what it sends straight to head ' +
        receiverLayer + '.' + receiverHead + '\u2019s queries (q), keys (k) or values (v) is clean, its largest of the three. Most: layer ' +
        layer + ' head ' + head + ' into its ' + inputName(best[1].input) + ' (' + percent(best[1].change) + ').', false, 'ablate-status');
      document.body.setAttribute('data-paths', String(Date.now()));
    } catch (error) {
      if (state.ablation === paths) { setStatus(error.message, true, 'ablate-status'); }
    } finally {
      if (state.ablation === paths) { setInterventionButtons(true); }
    }
  }

  // ---- what the weights let feed one head: composition scores of every earlier head, no text needed ----

  async function runCompositions() {
    const [receiverLayer, receiverHead] = $('paths-receiver').value.split('.').map(Number);
    const composition = { kind: 'compositions', text: $('text').value, receiver: [receiverLayer, receiverHead], effects: {}, done: false };
    state.ablation = composition;
    drawEffects();
    try {
      state.compositions = state.compositions || await api.compositions();
      if (state.ablation !== composition) { return; }
      const random = state.compositions.random;
      for (const pair of state.compositions.pairs) {
        if (pair.receiver[0] !== receiverLayer || pair.receiver[1] !== receiverHead) { continue; }
        // The badge shows the input the sender can write into most, as a multiple of the random score.
        const [input, score] = [['q', pair.query], ['k', pair.key], ['v', pair.value]].sort((a, b) => b[1] - a[1])[0];
        composition.effects[pair.sender.join('.')] = { change: score / random, input, query: pair.query, key: pair.key, value: pair.value, random };
      }
      composition.done = true;
      drawEffects();
      const best = Object.entries(composition.effects).sort((a, b) => b[1].change - a[1].change)[0];
      const [layer, head] = best[0].split('.');
      setStatus('From the weights alone, whatever the text: each badge is how much of what an earlier head writes head ' +
        receiverLayer + '.' + receiverHead + ' can read with its queries (q), keys (k) or values (v), its largest of the three, ' +
        'as a multiple of what independent random matrices score (' + random.toFixed(3) + '). Most: layer ' + layer + ' head ' + head +
        ' into its ' + inputName(best[1].input) + ' (' + best[1].change.toFixed(1) + '\u00d7).', false, 'ablate-status');
      document.body.setAttribute('data-compositions', String(Date.now()));
    } catch (error) {
      if (state.ablation === composition) { setStatus(error.message, true, 'ablate-status'); }
    } finally {
      // It may have taken the grid from a sweep still running: that sweep stops drawing, and the buttons come back.
      if (state.ablation === composition) { setInterventionButtons(true); }
    }
  }

  function inputName(input) { return { q: 'queries', k: 'keys', v: 'values' }[input]; }

  // Every head with heads before it, as "layer.head", for the receiver picker.
  function fillReceivers() {
    const select = $('paths-receiver');
    clear(select);
    for (let layer = 1; layer < state.model.layers; layer++) {
      for (let head = 0; head < state.model.heads; head++) {
        select.appendChild(el('option', { value: layer + '.' + head }, layer + '.' + head));
      }
    }
    if (state.model.layers < 2) { select.disabled = true; $('paths-run').hidden = true; $('compose-run').hidden = true; select.hidden = true; }
  }

  function metricText(answer) {
    if (answer.metric === 'logit_difference') { return 'logit(' + quoted(answer.answer) + ') − logit(' + quoted(answer.wrong) + ')'; }
    if (answer.metric === 'log_probability') { return 'log p(' + quoted(answer.answer) + ')'; }
    return 'the sentence embedding\'s cosine to the text\'s';
  }

  function signedShort(value) { return (value >= 0 ? '+' : '−') + Math.abs(value).toFixed(3); }

  function percent(fraction) { return (fraction >= 0 ? '+' : '−') + Math.abs(100 * fraction).toFixed(0) + '%'; }

  function forgetAblation() {
    state.ablation = null;
    setInterventionButtons(true);
    setStatus('', false, 'ablate-status');
  }

  // The three buttons that run a model on the text: off while one runs, and always in a report.
  function setInterventionButtons(enabled) {
    for (const id of ['ablate-run', 'patch-run', 'paths-run']) { $(id).disabled = api.offline || !enabled; }
  }

  function signed(value) { return (value >= 0 ? '+' : '\u2212') + Math.abs(value).toFixed(4); }

  // A badge per ablated head: red for a head the model needs (its removal raises the loss), blue for one whose
  // removal helps on this text, the shade scaled to the largest change so far.
  function drawEffects() {
    const ablation = state.ablation;
    const receiver = ablation && (ablation.kind === 'paths' || ablation.kind === 'compositions') ? ablation.receiver.join('.') : null;
    for (const cell of document.querySelectorAll('#grid .cell')) {
      cell.classList.toggle('receiver', cell.getAttribute('data-layer') + '.' + cell.getAttribute('data-head') === receiver);
    }
    // Composition badges are shaded by how far they stand above (red) or below (blue) the random score.
    const shade = (effect) => ablation.kind === 'compositions' ? effect.change - 1 : effect.change;
    const effects = ablation ? Object.values(ablation.effects) : [];
    const largest = Math.max(1e-12, ...effects.map((effect) => Math.abs(shade(effect))));
    for (const cell of document.querySelectorAll('#grid .cell')) {
      const effect = ablation && ablation.effects[cell.getAttribute('data-layer') + '.' + cell.getAttribute('data-head')];
      let badge = cell.querySelector('.effect');
      if (!effect) {
        if (badge) { badge.remove(); }
        cell.removeAttribute('data-change');
        continue;
      }
      if (!badge) { badge = cell.appendChild(el('span', { class: 'effect' })); }
      badge.textContent = ablation.kind === 'patch' ? percent(effect.change)
        : ablation.kind === 'paths' ? percent(effect.change) + ' ' + effect.input
          : ablation.kind === 'compositions' ? effect.change.toFixed(1) + '\u00d7 ' + effect.input : signed(effect.change);
      const strength = Math.abs(shade(effect)) / largest;
      const rgb = shade(effect) >= 0 ? [220, 38, 38] : [37, 99, 235];
      badge.style.background = 'rgba(' + rgb.join(',') + ',' + (0.15 + 0.85 * strength).toFixed(3) + ')';
      badge.style.color = strength > 0.5 ? '#fff' : '#111';
      cell.setAttribute('data-change', String(effect.change));
    }
  }

  // The tooltip's lines about a head's ablation: the change, and the prediction (or token) it changed most.
  function effectLines(layer, head) {
    const ablation = state.ablation;
    const effect = ablation && ablation.effects[layer + '.' + head];
    if (!effect || !state.input) { return []; }
    if (ablation.kind === 'patch') {
      return ['copied from the text into ' + quoted(ablation.corrupted) + ': brings back ' + percent(effect.change) + ' of the gap',
        metricText(ablation.metric) + ' then ' + signedShort(effect.value)];
    }
    if (ablation.kind === 'paths') {
      return ['sending to head ' + ablation.receiver.join('.') + ' brings back: queries ' + percent(effect.query) +
        ', keys ' + percent(effect.key) + ', values ' + percent(effect.value)];
    }
    if (ablation.kind === 'compositions') {
      const times = (score) => score.toFixed(3) + ' (' + (score / effect.random).toFixed(1) + '\u00d7)';
      return ['weights: head ' + ablation.receiver.join('.') + ' reads what it writes with its queries ' + times(effect.query) +
        ', keys ' + times(effect.key) + ', values ' + times(effect.value), 'independent random matrices: about ' + effect.random.toFixed(3)];
    }
    const tokens = state.input.tokens;
    if (ablation.measure === 'next_token_loss') {
      const context = tokens.slice(Math.max(0, effect.position - 5), effect.position + 1).join('');
      return ['without it: next-token loss ' + signed(effect.change) + ' nats/token',
        'most: ' + quoted(tokens[effect.position + 1]) + ' after ' + quoted(context) + ', p ' +
        effect.cleanProbability.toFixed(3) + ' \u2192 ' + effect.ablatedProbability.toFixed(3)];
    }
    return ['without it: sentence embedding 1 \u2212 cos ' + effect.change.toFixed(4),
      'most at ' + quoted(tokens[effect.position]) + ' (1 \u2212 cos ' + effect.positionChange.toFixed(4) + ')'];
  }

  // Cells as large as the window allows: the grid fills the width, or the height below its top where that is
  // smaller, never under 48 px (then the page scrolls) nor over 320 px.
  function sizeGrid() {
    const grid = $('grid');
    const layers = Number(grid.getAttribute('data-layers')), heads = Number(grid.getAttribute('data-heads'));
    if (!layers || !heads || $('view-model').hidden) { return; }
    const gap = 6, labelWidth = 64;
    const width = $('view-model').clientWidth - labelWidth - gap * (heads + 1);
    const height = window.innerHeight - grid.getBoundingClientRect().top - 24 - gap * (layers + 1);
    const fit = Math.floor(Math.min(width / heads, Math.max(height / layers, 96)));
    const size = Math.max(48, Math.min(320, fit));
    for (const cell of grid.querySelectorAll('.cell')) {
      cell.style.width = size + 'px';
      cell.style.height = size + 'px';
    }
    grid.setAttribute('data-cell', String(size));
  }

  // Which probe each score is read from: "text: previous_token, sink ...; repeated random block: induction ...".
  function drawSources(sources) {
    const byProbe = {};
    for (const [score, probe] of Object.entries(sources)) { (byProbe[probe] = byProbe[probe] || []).push(score); }
    $('sources').textContent = 'Scores from — ' +
      Object.entries(byProbe).map(([probe, scores]) => probe + ': ' + scores.join(', ')).join('; ') + '.';
  }

  function headCell(entry, size, sources) {
    const colour = kindColours[entry.kind] || MIXED_COLOUR;
    const cell = el('div', { class: 'cell', 'data-layer': String(entry.layer), 'data-head': String(entry.head), 'data-kind': entry.kind });
    cell.style.borderColor = colour;
    const canvas = el('canvas', { width: String(size), height: String(size) });
    const context = canvas.getContext('2d');
    const image = context.createImageData(size, size);
    const bytes = atob(entry.thumbnail);
    const rgb = hexToRgb(colour);
    for (let p = 0; p < size * size; p++) {
      const c = shade(rgb, bytes.charCodeAt(p) / 255);
      image.data[p * 4] = c[0]; image.data[p * 4 + 1] = c[1]; image.data[p * 4 + 2] = c[2]; image.data[p * 4 + 3] = 255;
    }
    context.putImageData(image, 0, 0);
    cell.appendChild(canvas);
    const lines = ['layer ' + entry.layer + ' \u00b7 head ' + entry.head + ': ' + entry.kind];
    for (const [name, value] of Object.entries(entry.scores)) {
      lines.push(name + ' ' + value.toFixed(2) + (sources[name] ? ' (' + sources[name] + ')' : ''));
    }
    lines.push('mean distance ' + entry.meanDistance.toFixed(1));
    const text = () => lines.concat(effectLines(entry.layer, entry.head)).join('\n');
    cell.addEventListener('mousemove', (event) => showTooltip(event, text()));
    cell.addEventListener('mouseenter', (event) => showTooltip(event, text()));
    cell.addEventListener('mouseleave', hideTooltip);
    cell.addEventListener('click', () => {
      hideTooltip();
      state.layer = entry.layer;
      state.head = entry.head;
      switchView('matrix');
    });
    return cell;
  }

  function drawHeadPicks() {
    const picks = $('head-picks');
    clear(picks);
    for (let h = 0; h < state.model.heads; h++) {
      const label = el('label');
      const box = el('input', { type: 'checkbox', value: String(h), 'data-head': String(h) });
      box.checked = state.picked.includes(h);
      box.addEventListener('change', () => {
        state.picked = Array.from(picks.querySelectorAll('input:checked')).map((b) => Number(b.value));
        refresh();
      });
      label.appendChild(box);
      const name = el('span', {}, 'head ' + h);
      name.style.color = HEAD_COLOURS[h % HEAD_COLOURS.length];
      label.appendChild(name);
      picks.appendChild(label);
    }
  }

  async function loadHeadView(seq, text) {
    const drawing = $('head-svg');
    if (state.picked.length === 0) {
      clear(drawing);
      $('head-info').textContent = 'Pick at least one head.';
      return;
    }
    const data = await api.pattern(text, state.layer, state.picked);
    if (seq !== state.seq) { return; }
    clear(drawing);
    const t = data.tokens.length;
    const rowHeight = 18, left = 150, right = 450, width = 600;
    drawing.setAttribute('width', String(width));
    drawing.setAttribute('height', String(t * rowHeight + 10));
    const lines = svg('g', { class: 'lines' });
    drawing.appendChild(lines);
    const y = (i) => i * rowHeight + 14;
    data.heads.forEach((head, index) => {
      const colour = HEAD_COLOURS[head % HEAD_COLOURS.length];
      const pattern = data.patterns[index];
      for (let i = 0; i < t; i++) {
        for (let j = 0; j < t; j++) {
          const w = pattern[i][j];
          if (w < 0.02) { continue; }
          lines.appendChild(svg('line', {
            x1: left + 4, y1: y(i) - 4, x2: right - 4, y2: y(j) - 4, stroke: colour,
            'stroke-opacity': Math.min(1, w).toFixed(3), 'stroke-width': 2, 'data-query': i, 'data-key': j
          }));
        }
      }
    });
    const info = $('head-info');
    info.textContent = 'Layer ' + state.layer + ', heads ' + data.heads.join(', ') + '.';
    for (let i = 0; i < t; i++) {
      const query = svg('text', { x: left, y: y(i), 'text-anchor': 'end', 'data-index': i, class: 'query' }, show(data.tokens[i]));
      const key = svg('text', { x: right, y: y(i), 'data-index': i, class: 'key' }, show(data.tokens[i]));
      query.addEventListener('mouseenter', () => {
        for (const line of lines.children) {
          line.style.display = Number(line.getAttribute('data-query')) === i ? '' : 'none';
        }
        const parts = data.heads.map((head, index) => {
          const row = data.patterns[index][i];
          const j = argMax(row);
          return 'head ' + head + ' \u2192 ' + quoted(data.tokens[j]) + ' ' + row[j].toFixed(2);
        });
        info.textContent = quoted(data.tokens[i]) + ' looks at: ' + parts.join('; ');
      });
      query.addEventListener('mouseleave', () => {
        for (const line of lines.children) { line.style.display = ''; }
      });
      drawing.appendChild(query);
      drawing.appendChild(key);
    }
  }

  async function loadMatrixView(seq, text) {
    const data = await api.pattern(text, state.layer, [state.head]);
    if (seq !== state.seq) { return; }
    const pattern = data.patterns[0];
    const t = data.tokens.length;
    const entry = state.heads && state.heads.entries[state.layer * state.model.heads + state.head];
    const kind = $('matrix-kind');
    kind.textContent = entry && state.heads.tokens.length === t ? entry.kind : '';
    // The matrix fills the room the window leaves (labels take about 110 px on each side), at 1 to 32 px a cell.
    const room = Math.min($('view-matrix').clientWidth - 130, window.innerHeight - 260);
    const cell = Math.max(1, Math.min(32, Math.floor(Math.max(320, room) / t)));
    const canvas = $('matrix-canvas');
    canvas.width = t * cell;
    canvas.height = t * cell;
    const context = canvas.getContext('2d');
    const image = context.createImageData(t * cell, t * cell);
    const rgb = [30, 64, 175];
    for (let i = 0; i < t; i++) {
      for (let j = 0; j < t; j++) {
        const c = shade(rgb, pattern[i][j]);
        for (let dy = 0; dy < cell; dy++) {
          let at = ((i * cell + dy) * t * cell + j * cell) * 4;
          for (let dx = 0; dx < cell; dx++, at += 4) {
            image.data[at] = c[0]; image.data[at + 1] = c[1]; image.data[at + 2] = c[2]; image.data[at + 3] = 255;
          }
        }
      }
    }
    context.putImageData(image, 0, 0);
    // Labels only where they can be read; beyond that the hover line names the cell.
    const top = $('matrix-top');
    const side = $('matrix-left');
    clear(top);
    clear(side);
    if (cell >= 8) {
      for (let i = 0; i < t; i++) {
        const label = el('span', { 'data-index': String(i) }, show(data.tokens[i]));
        label.style.width = cell + 'px';
        label.style.maxHeight = '90px';
        label.style.fontSize = Math.min(12, cell - 1) + 'px';
        top.appendChild(label);
        const row = el('span', { 'data-index': String(i) }, show(data.tokens[i]));
        row.style.height = cell + 'px';
        row.style.lineHeight = cell + 'px';
        row.style.fontSize = Math.min(12, cell - 1) + 'px';
        side.appendChild(row);
      }
    }
    canvas.onmousemove = (event) => {
      const box = canvas.getBoundingClientRect();
      const j = Math.floor((event.clientX - box.left) / box.width * t);
      const i = Math.floor((event.clientY - box.top) / box.height * t);
      if (i < 0 || j < 0 || i >= t || j >= t) { return; }
      $('matrix-info').textContent = 'query ' + i + ' ' + quoted(data.tokens[i]) + ' \u2192 key ' + j + ' ' +
        quoted(data.tokens[j]) + ': ' + pattern[i][j].toFixed(4);
    };
    $('matrix-info').textContent = 'Layer ' + state.layer + ', head ' + state.head + ': ' + t + ' \u00d7 ' + t + '. Hover a cell.';
    drawScale('matrix-scale', rgb, 'attention weight (each row sums to 1)');
  }

  function weightStrip(caption, tokens, weights, rgb, skip) {
    const strip = el('div', { class: 'strip' });
    strip.appendChild(el('span', { class: 'caption' }, caption));
    const max = Math.max(1e-9, ...weights);
    tokens.forEach((token, j) => {
      const span = el('span', { class: 'w', title: weights[j].toFixed(3) }, show(token));
      const c = shade(rgb, weights[j] / max);
      span.style.background = 'rgb(' + c.join(',') + ')';
      if (j === skip) { span.style.outline = '1px solid #111'; }
      strip.appendChild(span);
    });
    return strip;
  }

  async function loadTokenView(seq, text) {
    const t = state.input.tokens.length;
    if (state.token === null || state.token >= t) { state.token = t - 1; }
    const data = await api.token(text, state.token);
    if (seq !== state.seq) { return; }
    drawTokens(state.input);
    $('token-title').textContent = 'Token ' + data.index + ' ' + quoted(data.token);
    drawScale('token-scale', [37, 99, 235], 'mean attention over heads, 1 = the strip\u2019s strongest token (blue: looks at, green: looked at by)');
    const layers = $('token-layers');
    clear(layers);
    for (const layer of data.layers) {
      const block = el('div', { class: 'layer-block', 'data-layer': String(layer.layer) });
      const target = argMax(layer.looksAt);
      let later = -1;
      for (let i = data.index + 1; i < layer.lookedAtBy.length; i++) {
        if (later < 0 || layer.lookedAtBy[i] > layer.lookedAtBy[later]) { later = i; }
      }
      const summary = 'Layer ' + layer.layer + ': looks most at ' + quoted(data.tokens[target]) + ' (' +
        layer.looksAt[target].toFixed(2) + ')' + (later >= 0 ? '; read most by ' + quoted(data.tokens[later]) +
        ' (' + layer.lookedAtBy[later].toFixed(2) + ')' : '');
      block.appendChild(el('h3', { class: 'summary' }, summary));
      block.appendChild(weightStrip('looks at', data.tokens, layer.looksAt, [37, 99, 235], data.index));
      block.appendChild(weightStrip('looked at by', data.tokens, layer.lookedAtBy, [22, 163, 74], data.index));
      const heads = layer.heads.map((focus) => 'h' + focus.head + '\u2192' + quoted(data.tokens[focus.top[0]]) + ' ' +
        focus.weights[0].toFixed(2));
      block.appendChild(el('div', { class: 'help' }, 'strongest key per head: ' + heads.join('  ')));
      layers.appendChild(block);
    }
  }

  // ---- generation ----

  function showGenerated(step) {
    const detail = $('gen-detail');
    clear(detail);
    detail.appendChild(el('h3', { id: 'gen-title' }, 'Token ' + step.index + ' ' + quoted(step.token)));
    step.layers.forEach((row, layer) => {
      const j = argMax(row);
      detail.appendChild(el('div', { class: 'help gen-summary' }, 'Layer ' + layer + ': looks most at ' +
        quoted(state.generated.tokens[j]) + ' (' + row[j].toFixed(2) + ')'));
      detail.appendChild(weightStrip('layer ' + layer, state.generated.tokens.slice(0, row.length), row, [37, 99, 235], step.index));
    });
  }

  async function runGeneration() {
    const output = $('gen-output');
    clear(output);
    clear($('gen-detail'));
    state.generated = { tokens: [], steps: [] };
    const prompt = $('gen-prompt').value;
    const count = Number($('gen-count').value) || 12;
    const temperature = Number($('gen-temperature').value) || 0;
    setStatus('generating\u2026', false, 'gen-status');
    writeHash();
    try {
      await api.generate(prompt, count, temperature, (line) => {
        if (line.type === 'prompt') {
          state.generated.tokens = line.tokens.slice();
          line.tokens.forEach((token) => output.appendChild(el('span', { class: 'tok' }, show(token))));
        } else if (line.type === 'token') {
          state.generated.tokens.push(line.token);
          state.generated.steps.push(line);
          const span = el('span', { class: 'tok new', 'data-index': String(line.index) }, show(line.token));
          span.addEventListener('click', () => showGenerated(line));
          output.appendChild(span);
          showGenerated(line);
        } else if (line.type === 'done') {
          setStatus('generated ' + line.count + ' tokens', false, 'gen-status');
        }
      });
    } catch (error) {
      clear(output);
      clear($('gen-detail'));
      setStatus(error.message, true, 'gen-status');
    }
  }

  // ---- compare ----

  async function runCompare() {
    const result = $('cmp-result');
    clear(result);
    writeHash();
    setStatus('comparing\u2026', false, 'cmp-status');
    try {
      const data = await api.compare($('cmp-a').value, $('cmp-b').value, $('cmp-word').value || null);
      result.appendChild(el('h3', { id: 'cmp-title' }, 'Context vectors of ' + quoted(data.word)));
      for (const side of [data.a, data.b]) {
        const strip = el('div', { class: 'tokens' });
        side.tokens.forEach((token, i) => {
          strip.appendChild(el('span', { class: i === side.index ? 'tok selected' : 'tok' }, show(token)));
        });
        result.appendChild(strip);
      }
      const table = el('table', { class: 'cmp' });
      const head = el('tr');
      ['depth', 'cosine similarity', ''].forEach((name) => head.appendChild(el('th', {}, name)));
      table.appendChild(head);
      data.cosine.forEach((value, depth) => {
        const row = el('tr', { 'data-depth': String(depth) });
        row.appendChild(el('td', {}, data.depths[depth]));
        const bar = el('td');
        const drawing = svg('svg', { width: 204, height: 12 });
        drawing.appendChild(svg('rect', { x: 102, y: 1, width: Math.abs(value) * 100, height: 10, fill: value >= 0 ? '#2563eb' : '#dc2626',
          transform: value >= 0 ? '' : 'translate(' + (-Math.abs(value) * 100) + ',0)' }));
        drawing.appendChild(svg('line', { x1: 102, y1: 0, x2: 102, y2: 12, stroke: '#111' }));
        bar.appendChild(drawing);
        row.appendChild(bar);
        row.appendChild(el('td', { class: 'value' }, value.toFixed(3)));
        table.appendChild(row);
      });
      result.appendChild(table);
      setStatus('the word ' + quoted(data.word) + ' at ' + data.cosine.length + ' depths', false, 'cmp-status');
    } catch (error) {
      clear(result);
      setStatus(error.message, true, 'cmp-status');
    }
  }

  // ---- the logit lens: /api/lens, a table of stages (rows) by positions (columns) ----

  const LENS_RGB = hexToRgb('#2563eb');

  async function loadLensView(seq, text) {
    const data = await api.lens(text);
    if (seq !== state.seq) { return; }
    const table = $('lens-table');
    clear(table);
    const header = el('tr');
    header.appendChild(el('th', {}, ''));
    data.tokens.forEach((token, i) => header.appendChild(el('th', { 'data-position': String(i) }, show(token))));
    header.appendChild(el('th', {}, 'loss'));
    table.appendChild(header);
    data.stages.forEach((stage, s) => {
      const row = el('tr', { 'data-stage': stage });
      row.appendChild(el('th', {}, stage));
      data.cells[s].forEach((cell, i) => {
        const hit = i + 1 < data.ids.length && cell.ids[0] === data.ids[i + 1];
        const td = el('td', hit ? { class: 'hit' } : {}, show(cell.top[0]));
        const p = cell.probabilities[0];
        td.style.background = 'rgb(' + shade(LENS_RGB, p).join(',') + ')';
        td.style.color = p > 0.45 ? '#fff' : '#111';
        const lines = [stage + ' at ' + quoted(data.tokens[i]) + ' (position ' + i + '): the next token would be'];
        cell.top.forEach((token, k) => lines.push('  ' + quoted(token) + '  ' + cell.probabilities[k].toFixed(3)));
        if (cell.next !== null) { lines.push('p(' + quoted(data.tokens[i + 1]) + ', next in the text) ' + cell.next.toFixed(4)); }
        td.addEventListener('mouseenter', (event) => showTooltip(event, lines.join('\n')));
        td.addEventListener('mouseleave', hideTooltip);
        row.appendChild(td);
      });
      row.appendChild(el('td', { class: 'loss' }, data.loss[s] === null ? '' : data.loss[s].toFixed(3)));
      table.appendChild(row);
    });
    // Where the model's own answer after the text first leads, stage by stage from the last.
    const last = data.ids.length - 1;
    const answers = data.cells.map((row) => row[last].ids[0]);
    let from = answers.length - 1;
    while (from > 0 && answers[from - 1] === answers[answers.length - 1]) { from--; }
    const final = data.cells[data.cells.length - 1][last];
    $('lens-summary').textContent = 'After the text the model predicts ' + quoted(final.top[0]) + ' (p ' +
      final.probabilities[0].toFixed(3) + '), leading from ' + data.stages[from] + ' on' +
      (data.loss[0] === null ? '.' : '; next-token loss ' + data.loss[0].toFixed(3) + ' after the embedding, ' +
        data.loss[data.loss.length - 1].toFixed(3) + ' at the output.');
  }

  // ---- switching and refreshing ----

  const loaders = { model: loadModelView, head: loadHeadView, matrix: loadMatrixView, token: loadTokenView, lens: loadLensView };

  function switchView(view) {
    state.view = view;
    for (const button of document.querySelectorAll('#tabs button')) {
      button.classList.toggle('active', button.getAttribute('data-view') === view);
    }
    for (const section of document.querySelectorAll('main > section')) {
      section.hidden = section.id !== 'view-' + view;
    }
    $('head-layer').value = String(state.layer);
    $('matrix-layer').value = String(state.layer);
    $('matrix-head').value = String(state.head);
    const ownInput = view === 'generate' || view === 'compare';
    $('input').hidden = ownInput;
    $('status').hidden = ownInput;
    hideTooltip();
    refresh();
  }

  // What a view drew for an earlier text: removed when a request fails, so an error never sits above a stale view.
  function clearViews() {
    for (const id of ['grid', 'legend', 'sources', 'grid-scale', 'head-svg', 'matrix-top', 'matrix-left', 'matrix-scale', 'token-layers', 'token-scale', 'tokens', 'lens-table']) {
      clear($(id));
    }
    $('grid').removeAttribute('data-layers');
    $('head-info').textContent = '';
    $('matrix-info').textContent = '';
    $('matrix-kind').textContent = '';
    $('token-title').textContent = '';
    $('lens-summary').textContent = '';
    const canvas = $('matrix-canvas');
    canvas.width = 0;
    canvas.height = 0;
    state.heads = null;
    state.input = null;
    forgetAblation();
  }

  // ---- shareable addresses: #view=matrix&layer=1&head=2&text=... ----

  const VIEWS = ['model', 'head', 'matrix', 'token', 'lens', 'generate', 'compare'];

  function writeHash() {
    const params = new URLSearchParams();
    params.set('view', state.view);
    if (state.view === 'head' || state.view === 'matrix') { params.set('layer', String(state.layer)); }
    if (state.view === 'matrix') { params.set('head', String(state.head)); }
    if (state.view === 'head') { params.set('heads', state.picked.join(',')); }
    if (state.view === 'token' && state.token !== null) { params.set('token', String(state.token)); }
    if (state.view === 'generate') { params.set('prompt', $('gen-prompt').value); }
    if (state.view === 'compare') {
      params.set('a', $('cmp-a').value);
      params.set('b', $('cmp-b').value);
      if ($('cmp-word').value) { params.set('word', $('cmp-word').value); }
    }
    if (!api.offline && !(state.view === 'generate' || state.view === 'compare')) { params.set('text', $('text').value); }
    history.replaceState(null, '', '#' + params.toString());
  }

  function whole(value, count, fallback) {
    const n = Number(value);
    return Number.isInteger(n) && n >= 0 && n < count ? n : fallback;
  }

  // Reads the address into the page's state and inputs; returns the view it names (model if none or unknown).
  function readHash() {
    const params = new URLSearchParams(location.hash.slice(1));
    let view = params.get('view');
    if (!VIEWS.includes(view) || (api.offline && (view === 'generate' || view === 'compare'))) { view = 'model'; }
    state.layer = whole(params.get('layer'), state.model.layers, state.layer);
    state.head = whole(params.get('head'), state.model.heads, state.head);
    if (params.has('heads')) {
      const picked = params.get('heads').split(',').filter((h) => h !== '').map((h) => whole(h, state.model.heads, -1));
      state.picked = picked.filter((h, i) => h >= 0 && picked.indexOf(h) === i);
      for (const box of $('head-picks').querySelectorAll('input')) { box.checked = state.picked.includes(Number(box.value)); }
    }
    if (params.has('token')) { state.token = whole(params.get('token'), Number.MAX_SAFE_INTEGER, null); }
    if (params.has('text') && !api.offline) { $('text').value = params.get('text'); }
    if (params.has('prompt')) { $('gen-prompt').value = params.get('prompt'); }
    if (params.has('a')) { $('cmp-a').value = params.get('a'); }
    if (params.has('b')) { $('cmp-b').value = params.get('b'); }
    if (params.has('word')) { $('cmp-word').value = params.get('word'); }
    return view;
  }

  async function refresh() {
    const seq = ++state.seq;
    const text = $('text').value;
    const started = performance.now();
    writeHash();
    try {
      if (state.view === 'generate' || state.view === 'compare') { return; }
      const input = await api.tokenize(text);
      if (seq !== state.seq) { return; }
      state.input = input;
      drawTokens(input);
      const loader = loaders[state.view];
      if (loader) { await loader(seq, text); }
      if (seq !== state.seq) { return; }
      setStatus(input.ids.length + ' tokens \u00b7 ' + state.model.layers + ' layers \u00d7 ' + state.model.heads +
        ' heads \u00b7 ' + Math.round(performance.now() - started) + ' ms', false);
      document.body.setAttribute('data-ready', String(seq));
    } catch (error) {
      if (seq === state.seq) {
        clearViews();
        setStatus(error.message, true);
        document.body.setAttribute('data-error', String(seq));
      }
    }
  }

  let typing = null;
  let resizing = null;
  async function start() {
    window.addEventListener('error', (event) => setStatus('script error: ' + event.message, true));
    state.model = await api.model();
    kindColours = {};
    state.model.kinds.forEach((kind, i) => {
      kindColours[kind] = kind === 'mixed' ? MIXED_COLOUR : KIND_PALETTE[i % KIND_PALETTE.length];
    });
    $('model-name').textContent = state.model.name + ' \u00b7 ' + state.model.layers + ' layers \u00d7 ' +
      state.model.heads + ' heads' + (api.offline ? ' \u00b7 report' : '');
    if (api.offline) {
      const text = $('text');
      text.value = JSON.parse(embedded.textContent).text;
      text.readOnly = true;
      for (const view of ['generate', 'compare']) {
        const button = document.querySelector('#tabs button[data-view="' + view + '"]');
        button.disabled = true;
        button.textContent += ' (needs serve)';
        button.title = 'needs the live viewer: headlens serve --model MODEL';
      }
      const note = $('offline-note');
      note.textContent = 'Report of one text: Generate, Compare, "What breaks without each head?", "Which heads carry the difference?" and "What feeds head" need the live viewer (headlens serve --model MODEL).';
      note.hidden = false;
    }
    fillSelect($('head-layer'), state.model.layers, 'layer');
    fillSelect($('matrix-layer'), state.model.layers, 'layer');
    fillSelect($('matrix-head'), state.model.heads, 'head');
    drawHeadPicks();
    for (const button of document.querySelectorAll('#tabs button')) {
      button.addEventListener('click', () => switchView(button.getAttribute('data-view')));
    }
    $('head-layer').addEventListener('change', (event) => { state.layer = Number(event.target.value); refresh(); });
    $('matrix-layer').addEventListener('change', (event) => { state.layer = Number(event.target.value); refresh(); });
    $('matrix-head').addEventListener('change', (event) => { state.head = Number(event.target.value); refresh(); });
    $('text').addEventListener('input', () => {
      clearTimeout(typing);
      typing = setTimeout(refresh, 150);
    });
    $('gen-run').addEventListener('click', runGeneration);
    $('cmp-run').addEventListener('click', runCompare);
    $('ablate-run').addEventListener('click', runAblation);
    $('patch-run').addEventListener('click', runPatching);
    $('paths-run').addEventListener('click', runPaths);
    $('compose-run').addEventListener('click', runCompositions);
    fillReceivers();
    if (api.offline) {
      for (const id of ['ablate-run', 'patch-run', 'paths-run']) {
        $(id).disabled = true;
        $(id).title = 'needs the live viewer: headlens serve --model MODEL';
      }
      $('patch-corrupted').disabled = true;
      // Composition scores need no text: a report that carries them keeps the picker and its button.
      $('paths-receiver').disabled = !api.canCompose;
      $('compose-run').disabled = !api.canCompose;
      if (!api.canCompose) { $('compose-run').title = 'this report carries no weights to read (a synthetic source)'; }
    }
    window.addEventListener('resize', () => {
      clearTimeout(resizing);
      resizing = setTimeout(() => { if (state.view === 'matrix') { refresh(); } else { sizeGrid(); } }, 150);
    });
    window.addEventListener('hashchange', () => switchView(readHash()));
    switchView(readHash());
  }

  start().catch((error) => setStatus(error.message, true));
})();
