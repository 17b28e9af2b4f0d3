// kubectl apikey dashboard: the page's script. It is served by the dashboard itself (no other origin, no
// inline script: the Content-Security-Policy forbids both), builds every element with the DOM (text only
// through textContent and text nodes, never markup from strings) and draws the chart as inline SVG.
'use strict';
(() => {
  const TOKEN_KEY = 'keysmith-dashboard-token';
  const SVG = 'http://www.w3.org/2000/svg';
  const DAY = 86400000;

  // The token arrives once, in the URL kubectl apikey dashboard printed. It is kept in this origin's
  // session storage (this port only; the cookie, which browsers share across ports, is not the token)
  // and removed from the address bar and history.
  const params = new URLSearchParams(location.search);
  let token = params.get('token');
  if (token) {
    try { sessionStorage.setItem(TOKEN_KEY, token); } catch (e) { /* private mode: keep it in memory */ }
    history.replaceState(null, '', '/');
  } else {
    try { token = sessionStorage.getItem(TOKEN_KEY); } catch (e) { token = null; }
  }

  const $ = (id) => document.getElementById(id);
  const el = (tag, attrs, ...children) => {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (k === 'class') e.className = v; else if (k.startsWith('data-')) e.setAttribute(k, v); else e[k] = v;
    }
    for (const c of children) if (c !== null && c !== undefined) e.append(c instanceof Node ? c : String(c));
    return e;
  };
  const svg = (tag, attrs, ...children) => {
    const e = document.createElementNS(SVG, tag);
    for (const [k, v] of Object.entries(attrs || {})) e.setAttribute(k, String(v));
    for (const c of children) e.append(c instanceof Node ? c : String(c));
    return e;
  };

  const state = { snapshot: null, seen: null, detail: null, selected: null, confirm: null };

  // ---- talking to the server ----------------------------------------------------------------------
  let authFailed = false;
  function failAuth() {
    authFailed = true;
    setStatus('broken', 'no access');
    banner('This page has no valid token: the dashboard was restarted, or this tab was opened without the URL it printed.\nOpen the URL that kubectl apikey dashboard printed (each run has a new one).');
  }
  async function api(path, opts) {
    opts = opts || {};
    const headers = Object.assign({ 'X-Keysmith-Token': token || '' }, opts.headers || {});
    const res = await fetch(path, Object.assign({}, opts, { headers, credentials: 'same-origin', cache: 'no-store' }));
    let body = null;
    try { body = await res.json(); } catch (e) { body = null; }
    if (res.status === 401) failAuth();
    return { status: res.status, ok: res.ok, body: body || {} };
  }

  // Server-Sent Events over fetch (EventSource cannot send the token header).
  let reconnectNow = false; // set by the server's "event: reconnect" before it ends a stream
  async function stream() {
    let backoff = 500;
    while (!authFailed) {
      try {
        const res = await fetch('/api/events', { headers: { 'X-Keysmith-Token': token || '' }, credentials: 'same-origin', cache: 'no-store' });
        if (res.status === 401) { failAuth(); return; }
        if (!res.ok || !res.body) throw new Error('HTTP ' + res.status);
        backoff = 500;
        const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
        let buf = '';
        for (;;) {
          const { value, done } = await reader.read();
          if (done) break;
          buf += value.replace(/\r\n/g, '\n');
          let i;
          while ((i = buf.indexOf('\n\n')) >= 0) {
            const block = buf.slice(0, i);
            buf = buf.slice(i + 2);
            dispatch(block);
          }
        }
      } catch (e) { /* reconnect below */ }
      if (authFailed) return;
      if (reconnectNow) { reconnectNow = false; continue; } // the server ends each stream after a while
      setStatus('broken', 'reconnecting…');
      await new Promise((r) => setTimeout(r, backoff));
      backoff = Math.min(backoff * 2, 10000);
    }
  }
  function dispatch(block) {
    let event = 'message';
    const data = [];
    for (const line of block.split('\n')) {
      if (line === '' || line.startsWith(':')) continue;
      const i = line.indexOf(':');
      const field = i < 0 ? line : line.slice(0, i);
      let value = i < 0 ? '' : line.slice(i + 1);
      if (value.startsWith(' ')) value = value.slice(1);
      if (field === 'event') event = value; else if (field === 'data') data.push(value);
    }
    if (event === 'snapshot' && data.length) render(JSON.parse(data.join('\n')));
    else if (event === 'reconnect') reconnectNow = true;
  }

  // ---- rendering ----------------------------------------------------------------------------------
  function setStatus(cls, text) {
    const s = $('status');
    s.className = 'status ' + cls;
    s.textContent = text;
  }
  function banner(text, notice) {
    const b = $('banner');
    b.hidden = !text;
    b.className = notice ? 'notice' : '';
    b.textContent = text || '';
  }
  let toastTimer = null;
  function toast(text, error) {
    const t = $('toast');
    t.textContent = text;
    t.className = error ? 'error' : '';
    t.hidden = false;
    clearTimeout(toastTimer);
    toastTimer = setTimeout(() => { t.hidden = true; }, error ? 12000 : 6000);
  }
  const keyOf = (ns, name) => ns + '/' + name;

  function render(snap) {
    const first = state.snapshot === null;
    state.snapshot = snap;
    $('scope').textContent = snap.namespace ? 'namespace ' + snap.namespace : 'all namespaces';
    if (snap.live) setStatus('live', 'live'); else setStatus('broken', snap.synced ? 'reconnecting…' : 'not connected');
    if (snap.error) banner((snap.error.forbidden ? 'Forbidden by the API server (your RBAC): ' : 'Error from the API server: ') + snap.error.message);
    else if (snap.notice) banner(snap.notice, true);
    else banner('');
    renderWarnings(snap);
    renderChart(snap.chart);
    renderTable(snap, first);
    if (state.selected) openDetail(state.selected.namespace, state.selected.name, true);
  }

  function renderWarnings(snap) {
    const ul = $('warnings');
    ul.replaceChildren();
    let n = 0;
    for (const r of snap.rows) {
      for (const w of r.warnings || []) {
        n++;
        const li = el('li', { class: w.kind, 'data-key': keyOf(r.namespace, r.name) },
          el('span', { class: 'kind' }, w.kind), el('span', { class: 'what' }, keyOf(r.namespace, r.name)), w.text);
        li.addEventListener('click', () => openDetail(r.namespace, r.name));
        ul.append(li);
      }
    }
    $('attention-count').textContent = n;
    $('attention-count').className = 'count' + (n ? ' some' : '');
    $('attention-none').hidden = n > 0;
  }

  function matches(r, q) {
    if (!q) return true;
    q = q.toLowerCase();
    return [r.namespace, r.name].concat(r.cells).some((c) => String(c).toLowerCase().includes(q));
  }

  // Rows are kept by ApiKey and updated in place, so that a click never lands on a row being replaced.
  const rowEls = new Map();
  function renderTable(snap, first) {
    const head = document.querySelector('#apikeys thead tr');
    if (head.childElementCount !== snap.columns.length) head.replaceChildren(...snap.columns.map((c) => el('th', {}, c)));
    const q = $('filter').value.trim();
    const tbody = document.querySelector('#apikeys tbody');
    const seen = new Set();
    const rows = [];
    for (const r of snap.rows) {
      const k = keyOf(r.namespace, r.name);
      seen.add(k);
      let tr = rowEls.get(k);
      if (!tr) {
        tr = el('tr', { 'data-key': k });
        tr.addEventListener('click', () => openDetail(r.namespace, r.name));
        if (!first && state.seen && !state.seen.has(k)) tr.classList.add('fresh');
        rowEls.set(k, tr);
      }
      while (tr.childElementCount > r.cells.length) tr.lastElementChild.remove();
      r.cells.forEach((c, i) => {
        let td = tr.children[i];
        if (!td) { td = el('td'); tr.append(td); }
        const cls = (r.cellClass && r.cellClass[i]) || '';
        if (td.textContent !== c) td.textContent = c;
        if (td.className !== cls) td.className = cls;
      });
      tr.classList.toggle('selected', !!state.selected && keyOf(state.selected.namespace, state.selected.name) === k);
      if (matches(r, q)) rows.push(tr);
    }
    for (const k of [...rowEls.keys()]) if (!seen.has(k)) rowEls.delete(k);
    state.seen = seen;
    // Reorder only what moved: untouched rows stay the same nodes in the same place.
    rows.forEach((tr, i) => { if (tbody.children[i] !== tr) tbody.insertBefore(tr, tbody.children[i] || null); });
    while (tbody.childElementCount > rows.length) tbody.lastElementChild.remove();
    $('row-count').textContent = snap.rows.length;
    $('empty').hidden = snap.rows.length > 0 || !snap.synced;
  }
  $('filter').addEventListener('input', () => state.snapshot && renderTable(state.snapshot, true));

  // ---- the chart: expiries and scheduled rotations per day, next 90 days ----------------------------
  function fmtDay(t) {
    return new Date(t).toLocaleDateString(undefined, { month: 'short', day: 'numeric' });
  }
  function renderChart(chart) {
    const box = $('chart');
    const days = chart.days;
    const from = Date.parse(chart.from);
    const bins = Array.from({ length: days }, () => ({ rotation: [], expiry: [] }));
    for (const e of chart.events) {
      const d = Math.floor((Date.parse(e.at) - from) / DAY);
      if (d >= 0 && d < days) bins[d][e.kind].push(e);
    }
    const max = Math.max(1, ...bins.map((b) => b.rotation.length + b.expiry.length));
    const W = 1200, H = 170, L = 34, R = 14, T = 24, B = 26;
    const pw = W - L - R, ph = H - T - B, bw = pw / days;
    const y = (v) => T + ph - (v / max) * ph;
    const root = svg('svg', { viewBox: `0 0 ${W} ${H}`, role: 'img', 'aria-label': 'expiries and rotations over the next 90 days' });
    // y grid and ticks
    const step = Math.max(1, Math.ceil(max / 4));
    for (let v = 0; v <= max; v += step) {
      root.append(svg('line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }));
      root.append(svg('text', { x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, String(v)));
    }
    // x ticks every 15 days
    for (let d = 0; d <= days; d += 15) {
      const x = L + d * bw;
      root.append(svg('line', { class: 'axis', x1: x, x2: x, y1: T + ph, y2: T + ph + 4 }));
      root.append(svg('text', { x, y: H - 8, 'text-anchor': d === 0 ? 'start' : d === days ? 'end' : 'middle' }, d === 0 ? 'today' : fmtDay(from + d * DAY)));
    }
    root.append(svg('line', { class: 'axis', x1: L, x2: W - R, y1: T + ph, y2: T + ph }));
    bins.forEach((b, d) => {
      const x = L + d * bw + 1;
      let base = 0;
      for (const kind of ['expiry', 'rotation']) {
        const n = b[kind].length;
        if (!n) continue;
        const names = b[kind].map((e) => e.namespace + '/' + e.name + (e.keyID ? ' (key ' + e.keyID + ')' : ''));
        const title = `${fmtDay(from + d * DAY)}: ${n} ${kind === 'expiry' ? (n > 1 ? 'keys expire' : 'key expires') + ' with no rotation before' : (n > 1 ? 'rotations' : 'rotation')}\n` + names.join('\n');
        const rect = svg('rect', { class: 'bar ' + kind, x, y: y(base + n), width: Math.max(1, bw - 2), height: y(base) - y(base + n), 'data-day': d },
          svg('title', {}, title));
        root.append(rect);
        base += n;
      }
    });
    const legend = svg('g', { class: 'legend', transform: `translate(${L},14)` },
      svg('rect', { class: 'expiry', x: 0, y: -9, width: 10, height: 10 }), svg('text', { x: 14, y: 0 }, 'key expires, no rotation before'),
      svg('rect', { class: 'rotation', x: 220, y: -9, width: 10, height: 10 }), svg('text', { x: 234, y: 0 }, 'scheduled rotation'));
    root.append(legend);
    if (!chart.events.length) {
      root.append(svg('text', { x: L + pw / 2, y: T + ph / 2, 'text-anchor': 'middle' }, 'Nothing expires or rotates in the next 90 days.'));
    }
    box.replaceChildren(root);
  }

  // ---- one ApiKey: its keys as a timeline, its conditions, the actions ------------------------------
  async function openDetail(ns, name, refresh) {
    state.selected = { namespace: ns, name };
    document.querySelectorAll('#apikeys tbody tr').forEach((tr) => tr.classList.toggle('selected', tr.dataset.key === keyOf(ns, name)));
    const res = await api('/api/apikeys/' + encodeURIComponent(ns) + '/' + encodeURIComponent(name));
    if (!state.selected || keyOf(state.selected.namespace, state.selected.name) !== keyOf(ns, name)) return;
    if (res.status === 404 && refresh) { closeDetail(); return; }
    if (!res.ok) { if (!refresh) toast(res.body.error || ('HTTP ' + res.status), true); return; }
    state.detail = res.body;
    renderDetail(res.body);
  }
  function closeDetail() {
    state.selected = null;
    state.detail = null;
    $('detail').hidden = true;
    document.querySelectorAll('#apikeys tbody tr.selected').forEach((tr) => tr.classList.remove('selected'));
  }
  $('detail-close').addEventListener('click', closeDetail);
  document.addEventListener('keydown', (e) => { if (e.key === 'Escape' && !$('confirm').open) closeDetail(); });

  function renderDetail(d) {
    $('detail').hidden = false;
    $('detail-title').textContent = keyOf(d.namespace, d.name);
    const dl = $('detail-spec');
    dl.replaceChildren();
    for (const [k, v] of d.facts) dl.append(el('dt', {}, k), el('dd', {}, v));
    const ol = $('timeline');
    ol.replaceChildren();
    for (const e of d.timeline) {
      const li = el('li', { class: e.kind + (e.future ? ' future' : ''), 'data-kind': e.kind, 'data-key-id': e.keyID || '' },
        el('span', { class: 'when', title: e.at }, e.when), ' ', el('span', { class: 'ev ' + e.kind }, e.kind.replace(/([a-z])([A-Z])/g, '$1 $2')), ' ', e.message);
      ol.append(li);
    }
    if (!d.timeline.length) ol.append(el('li', { class: 'muted' }, 'No key issued yet.'));
    const kb = document.querySelector('#keys tbody');
    kb.replaceChildren(...d.keys.map((k) => el('tr', { 'data-key-id': k.id },
      el('td', {}, el('code', {}, k.id), k.current ? el('span', { class: 'state' }, 'current') : null),
      el('td', {}, el('span', { class: 'state ' + k.state }, k.state)), el('td', {}, k.issuedAt), el('td', {}, k.notAfter), el('td', {}, k.reason || ''))));
    const tb = document.querySelector('#conditions tbody');
    tb.replaceChildren(...d.conditions.map((c) => el('tr', {}, el('td', {}, c.type), el('td', {}, c.status), el('td', {}, c.reason), el('td', {}, c.message), el('td', {}, c.since))));
    $('rotate').disabled = d.disabled;
    $('revoke').disabled = !d.currentKeyID;
    $('revoke').textContent = d.currentKeyID ? 'Revoke key ' + d.currentKeyID : 'Revoke current key';
    $('disable').hidden = d.disabled;
    $('enable').hidden = !d.disabled;
  }

  const ACTIONS = {
    rotate: (d) => ({
      title: 'Rotate ' + keyOf(d.namespace, d.name) + '?',
      text: 'keysmith issues a new key and writes it to the Secret ' + d.secretName + '. ' +
        (d.currentKeyID ? 'The current key ' + d.currentKeyID + ' stays valid for the overlap, so clients can pick up the new one.' : ''),
      ok: 'Rotate', body: {},
    }),
    revoke: (d) => ({
      title: 'Revoke key ' + d.currentKeyID + ' of ' + keyOf(d.namespace, d.name) + '?',
      text: 'Every verifier refuses key ' + d.currentKeyID + ' at once, with no overlap: clients still using it fail until they read the fresh key keysmith writes to the Secret ' + d.secretName + '. A revoked key never comes back.',
      ok: 'Revoke', body: { keyID: d.currentKeyID },
    }),
    disable: (d) => ({
      title: 'Disable ' + keyOf(d.namespace, d.name) + '?',
      text: 'Every key of this ApiKey is revoked at once and the Secret ' + d.secretName + ' is emptied: every client using it fails until you enable it again, which issues a fresh key. Revoked keys never come back.',
      ok: 'Disable', body: {},
    }),
    enable: (d) => ({
      title: 'Enable ' + keyOf(d.namespace, d.name) + '?',
      text: 'keysmith issues a fresh key and writes it to the Secret ' + d.secretName + '.',
      ok: 'Enable', body: {},
    }),
  };
  for (const action of Object.keys(ACTIONS)) {
    $(action).addEventListener('click', () => {
      const d = state.detail;
      if (!d) return;
      const a = ACTIONS[action](d);
      state.confirm = { action, namespace: d.namespace, name: d.name, body: a.body };
      $('confirm-title').textContent = a.title;
      $('confirm-text').textContent = a.text;
      $('confirm-as').textContent = 'Done as you: with the credentials and RBAC of your kubeconfig.';
      $('confirm-ok').textContent = a.ok;
      $('confirm').showModal();
    });
  }
  $('confirm-cancel').addEventListener('click', () => { state.confirm = null; $('confirm').close(); });
  $('confirm').addEventListener('close', () => { state.confirm = null; });
  $('confirm-ok').addEventListener('click', async () => {
    const c = state.confirm;
    $('confirm').close();
    if (!c) return;
    toast((c.action[0].toUpperCase() + c.action.slice(1)) + ' ' + keyOf(c.namespace, c.name) + ': waiting for keysmith…');
    const res = await api('/api/apikeys/' + encodeURIComponent(c.namespace) + '/' + encodeURIComponent(c.name) + '/' + c.action, {
      method: 'POST', headers: { 'Content-Type': 'application/json' }, body: JSON.stringify(c.body),
    });
    if (res.ok && res.body.warning) toast((res.body.message || 'done') + '. Warning: ' + res.body.warning, true);
    else if (res.ok) toast(res.body.message || 'done');
    else if (res.body.reason === 'Forbidden') toast('Forbidden by the API server (your RBAC): ' + res.body.error, true);
    else toast(res.body.error || ('HTTP ' + res.status), true);
    if (state.selected) openDetail(state.selected.namespace, state.selected.name, true);
  });

  // ---- start ---------------------------------------------------------------------------------------
  if (!token) { failAuth(); return; }
  stream();
})();
