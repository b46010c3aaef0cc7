// Colony dashboard: plain JavaScript, no build step, no dependencies.
// Live breaker updates arrive as server-sent events from api/events (one
// coordinator watch shared by every browser); everything else is polled
// from the JSON API under api/.
'use strict';

(() => {
  const $ = (id) => document.getElementById(id);

  // el builds an element: el('td', {class: 'num', text: '3', data: {x: 1}}, child...).
  function el(tag, attrs, ...children) {
    const e = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (k === 'text') e.textContent = v;
      else if (k === 'class') e.className = v;
      else if (k === 'data') for (const [dk, dv] of Object.entries(v)) e.dataset[dk] = dv;
      else if (k === 'on') for (const [ev, fn] of Object.entries(v)) e.addEventListener(ev, fn);
      else e.setAttribute(k, v === true ? '' : v);
    }
    for (const c of children.flat()) {
      if (c === undefined || c === null || c === false) continue;
      e.append(c instanceof Node ? c : document.createTextNode(String(c)));
    }
    return e;
  }

  function table(headers, rows, cls) {
    return el('table', {class: cls},
      el('thead', {}, el('tr', {}, headers.map((h) => el('th', {class: h.endsWith('#') ? 'num' : null, text: h.replace(/#$/, '')})))),
      el('tbody', {}, rows));
  }

  function kv(pairs) {
    const dl = el('dl', {class: 'kv'});
    for (const [k, v] of pairs) {
      if (v === undefined || v === null || v === '') continue;
      dl.append(el('dt', {text: k}), el('dd', {}, v));
    }
    return dl;
  }

  const num = (v) => (v === undefined || v === null || v === '' ? 0 : Number(v));
  // Session ids read as the CLI prints them: hex with 0x (protojson sends
  // a uint64 as a decimal string; BigInt keeps all 64 bits).
  const sessionHex = (v) => (v === undefined || v === null || v === '' || v === '0' ? '' : '0x' + BigInt(v).toString(16));
  const pct = (r) => (100 * r).toFixed(r > 0 && r < 0.1 ? 1 : 0) + '%';

  // Latency percentiles arrive as the upper bound of their histogram
  // bucket in ms (1, 2, 5, ... 10000), -1 past the last bound: the true
  // value is at most the bound, so the page says "≤".
  const LATENCY_OVER = 15000; // where a -1 (past 10 s) is drawn on a sparkline
  function latText(ms) {
    ms = num(ms);
    if (ms < 0) return '>10s';
    return ms >= 1000 ? `≤${ms / 1000}s` : `≤${ms}ms`;
  }
  const latSample = (w) => (w && num(w.latencySamples) > 0 ? (num(w.p99Ms) < 0 ? LATENCY_OVER : num(w.p99Ms)) : null);

  function fmtTime(t) {
    if (t === undefined || t === null || t === '' || t === 0 || t === '0') return '';
    const d = typeof t === 'number' || /^\d+$/.test(t) ? new Date(Number(t)) : new Date(t);
    if (isNaN(d) || d.getFullYear() < 2000) return '';
    const pad = (n, w = 2) => String(n).padStart(w, '0');
    const time = `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}.${pad(d.getMilliseconds(), 3)}`;
    const today = new Date();
    if (d.toDateString() === today.toDateString()) return time;
    return `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ${time}`;
  }

  function fmtMs(ms) {
    ms = Number(ms);
    if (ms < 1000) return `${Math.round(ms)}ms`;
    if (ms < 60000) return `${(ms / 1000).toFixed(1)}s`;
    if (ms < 3600000) return `${Math.floor(ms / 60000)}m${Math.round((ms % 60000) / 1000)}s`;
    return `${(ms / 3600000).toFixed(1)}h`;
  }

  function ago(t) {
    const d = typeof t === 'number' ? t : Date.parse(t);
    if (!d) return '';
    return fmtMs(Math.max(0, Date.now() - d)) + ' ago';
  }

  function pill(state) { return el('span', {class: `pill state-${state}`, text: state}); }

  function enumName(v, prefix) {
    return String(v || '').replace(prefix, '').toLowerCase().replace(/_/g, ' ');
  }

  async function api(path, opts) {
    const res = await fetch(path, opts);
    let body = null;
    try { body = await res.json(); } catch (e) { /* not JSON */ }
    if (!res.ok) throw new Error((body && body.error) || `${res.status} ${res.statusText}`);
    return body;
  }

  function post(path, body) {
    return api(path, {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify(body)});
  }

  function showError(id, err) {
    const e = $(id);
    e.hidden = !err;
    e.textContent = err ? String(err.message || err) : '';
  }

  // every runs fn now and then ms after each run ends.
  function every(ms, fn) {
    const run = async () => {
      try { await fn(); } finally { setTimeout(run, ms); }
    };
    run();
  }

  const pairKey = (caller, callee) => `${caller}/${callee}`;

  // ---- state ----
  const pairs = new Map(); // caller/callee -> pairSummary (state fields + window)
  let selected = null;     // {caller, callee}
  let feed = {open: false, watching: false, error: ''};
  // traffic holds each pair's recent samples for the sparklines: the
  // history event fills it when the stream opens, each snapshot adds one.
  const HISTORY = 60;
  const traffic = new Map(); // caller/callee -> {callRate: [], failureRate: [], slowCallRate: [], rejectRate: [], p99Ms: []}
  const SERIES = ['callRate', 'failureRate', 'slowCallRate', 'rejectRate', 'p99Ms'];
  let filterText = '';
  // ?snapshot=1 renders the state once and follows nothing, so a headless
  // browser's screenshot does not wait on a stream that never ends.
  const snapshotMode = new URLSearchParams(location.search).has('snapshot');

  function applyHistory(h) {
    traffic.clear();
    for (const [k, s] of Object.entries(h.pairs || {})) {
      const t = {};
      for (const f of SERIES) t[f] = (s[f] || []).slice(-HISTORY);
      t.p99Ms = t.p99Ms.map((v) => (v !== null && v < 0 ? LATENCY_OVER : v));
      traffic.set(k, t);
    }
  }

  function recordSample(list) {
    const seen = new Set();
    for (const b of list.breakers || []) {
      const k = pairKey(b.caller, b.callee);
      seen.add(k);
      let t = traffic.get(k);
      if (!t) { t = {}; for (const f of SERIES) t[f] = []; traffic.set(k, t); }
      for (const f of SERIES) {
        if (f === 'p99Ms') t[f].push(latSample(b.window));
        else t[f].push(b.window ? num(b.window[f]) : null);
        if (t[f].length > HISTORY) t[f].shift();
      }
    }
    for (const k of [...traffic.keys()]) if (!seen.has(k)) traffic.delete(k);
  }

  // ready marks the page once its first full state is on screen, for
  // headless capture and tests: <html data-ready="true">.
  const pending = new Set(['breakers', 'cluster', 'sidecars']);
  function loaded(part) {
    if (!pending.delete(part) || pending.size) return;
    document.documentElement.dataset.ready = 'true';
  }

  // ---- live feed ----
  function applySnapshot(list) {
    recordSample(list);
    const now = Date.now();
    const next = new Map();
    for (const b of list.breakers || []) {
      const k = pairKey(b.caller, b.callee);
      const known = pairs.get(k);
      // A record from the watch may be newer than a snapshot read just before it.
      if (known && known.generation > b.generation) next.set(k, Object.assign({}, known, {window: b.window}));
      // Rows carry no evidence: keep what the watch said about this generation.
      else next.set(k, Object.assign({evidence: known && known.generation === b.generation ? known.evidence : undefined}, b, {seenAt: now}));
    }
    // Keep pairs the watch created after the snapshot was read.
    for (const [k, p] of pairs) {
      if (!next.has(k) && p.fromEvent && now - p.seenAt < 5000) next.set(k, p);
    }
    pairs.clear();
    for (const [k, p] of next) pairs.set(k, p);
    renderMatrix();
    loaded('breakers');
  }

  function applyPair(p) {
    const k = pairKey(p.caller, p.callee);
    const known = pairs.get(k);
    if (known && known.generation > p.generation) return;
    pairs.set(k, Object.assign({window: known && known.window}, p, {seenAt: Date.now(), fromEvent: true}));
    renderMatrix();
    if (selected && selected.caller === p.caller && selected.callee === p.callee) scheduleDetail();
  }

  function renderConn() {
    const c = $('conn');
    const live = feed.open && feed.watching;
    c.textContent = live ? 'live' : (feed.open ? 'connecting to the coordinator…' : 'reconnecting…');
    c.className = 'conn ' + (live ? 'conn-live' : 'conn-down');
    showError('feed-error', feed.error);
  }

  function connectEvents() {
    let backoff = 1000;
    const open = () => {
      const es = new EventSource('api/events');
      es.addEventListener('open', () => { backoff = 1000; feed.open = true; renderConn(); });
      es.addEventListener('history', (ev) => applyHistory(JSON.parse(ev.data)));
      es.addEventListener('snapshot', (ev) => applySnapshot(JSON.parse(ev.data)));
      es.addEventListener('pair', (ev) => applyPair(JSON.parse(ev.data)));
      es.addEventListener('deleted', (ev) => {
        const p = JSON.parse(ev.data);
        pairs.delete(pairKey(p.caller, p.callee));
        renderMatrix();
      });
      es.addEventListener('status', (ev) => {
        const s = JSON.parse(ev.data);
        feed.watching = s.watching;
        feed.error = s.error || '';
        renderConn();
      });
      es.addEventListener('error', () => {
        feed.open = false;
        renderConn();
        // The browser retries by itself after a dropped stream; a refused
        // one (503: too many browsers) closes it for good, so retry here.
        if (es.readyState === EventSource.CLOSED) {
          setTimeout(open, backoff);
          backoff = Math.min(2 * backoff, 15000);
        }
      });
    };
    open();
  }

  // ---- breakers: the pair list and the matrix ----
  const stateRank = {OPEN: 3, HALF_OPEN: 2, CLOSED: 0};

  // trouble orders pairs: OPEN, then HALF_OPEN, then by error share (the
  // live window's, else the trip's evidence), then by rejected calls.
  function trouble(p) {
    const w = p.window || {};
    const rate = num(w.windowCalls) > 0 ? num(w.failureRate) : 0;
    return (stateRank[p.state] || 0) * 10 + Math.max(rate, num(w.slowCallRate)) + (num(w.rejectRate) > 0 ? 0.001 : 0);
  }

  function matches(p) {
    if (!filterText) return true;
    const hay = `${p.caller} ${p.callee} ${p.caller}→${p.callee} ${p.state} ${p.override || ''}`.toLowerCase();
    return filterText.split(/\s+/).every((t) => hay.includes(t));
  }

  // sparkline draws values (null: no sample) as an SVG polyline scaled to
  // max (at least floor), newest at the right.
  function sparkline(values, floor, cls, label) {
    const W = 64;
    const H = 20;
    const NS = 'http://www.w3.org/2000/svg';
    const svg = document.createElementNS(NS, 'svg');
    svg.setAttribute('class', `spark ${cls}`);
    svg.setAttribute('viewBox', `0 0 ${W} ${H}`);
    svg.setAttribute('width', W);
    svg.setAttribute('height', H);
    svg.setAttribute('role', 'img');
    svg.setAttribute('aria-label', label);
    const vals = values || [];
    const max = Math.max(floor, ...vals.filter((v) => v !== null));
    const step = W / (HISTORY - 1);
    const off = HISTORY - vals.length;
    let d = '';
    let pen = false;
    vals.forEach((v, i) => {
      if (v === null || v === undefined) { pen = false; return; }
      const x = ((off + i) * step).toFixed(1);
      const y = (H - 1 - (v / max) * (H - 2)).toFixed(1);
      d += `${pen ? 'L' : 'M'}${x} ${y}`;
      pen = true;
    });
    const path = document.createElementNS(NS, 'path');
    path.setAttribute('d', d || `M0 ${H - 1}`);
    svg.append(path);
    const title = document.createElementNS(NS, 'title');
    title.textContent = label;
    svg.append(title);
    return svg;
  }

  function rateText(r) {
    r = num(r);
    if (r === 0) return '0';
    return r < 10 ? r.toFixed(1) : String(Math.round(r));
  }

  function shareClass(r, warn, bad) {
    r = num(r);
    return r >= bad ? 'flag-bad' : (r >= warn ? 'flag-slow' : null);
  }

  function cellFor(caller, callee) {
    const p = pairs.get(pairKey(caller, callee));
    if (!p) return el('div', {class: 'cell state-none', title: `${caller} does not call ${callee} (no breaker record: no reports)`, text: '–'});
    const cls = ['cell', `state-${p.state}`];
    if (p.override && p.override !== 'shadow') cls.push('overridden');
    if (p.override === 'shadow' || p.shadowState) cls.push('shadowed');
    if (selected && selected.caller === caller && selected.callee === callee) cls.push('selected');
    // ratio is a line of spans the dense matrix trims by width (style.css).
    let ratio = [el('span', {text: p.state === 'HALF_OPEN' ? 'probing' : 'idle'})];
    const w = p.window;
    const ev = p.evidence;
    let lat = null;
    if (w && num(w.windowCalls) > 0) {
      ratio = [el('span', {class: shareClass(w.failureRate, 0.1, 0.4), text: `${pct(w.failureRate)} err`}), el('span', {class: 'rate', text: ` · ${rateText(w.callRate)}/s`})];
      lat = num(w.latencySamples) > 0
        ? [el('span', {class: 'word', text: 'p99 '}), latText(w.p99Ms)]
        : [el('span', {class: 'word', text: 'no latency'}), el('span', {class: 'short', text: 'no lat.'})];
    } else if (w && num(w.rejectedCalls) > 0) {
      // An open breaker's window counts nothing: its callers reject locally.
      ratio = [el('span', {class: 'word', text: 'rejecting '}), `${rateText(w.rejectRate)}/s`];
    } else if (ev && p.state !== 'CLOSED') {
      ratio = [el('span', {class: 'word', text: 'tripped at '}), `${pct(ev.failureRate)} err`];
    }
    const latTitle = w && num(w.windowCalls) > 0
      ? (num(w.latencySamples) > 0 ? `, p50 ${latText(w.p50Ms)}, p99 ${latText(w.p99Ms)}` : ', no latency from stock callers')
      : '';
    return el('button', {
      type: 'button', class: cls.join(' '),
      data: {caller, callee, state: p.state, override: p.override || '', generation: p.generation},
      title: `${caller} → ${callee} (calls from ${caller} to ${callee}): ${p.state}, generation ${p.generation}` +
        (w && num(w.windowCalls) > 0 ? `; ${pct(w.failureRate)} errors, ${rateText(w.callRate)} calls/s${latTitle}` : ''),
      on: {click: () => select(caller, callee)},
    },
    el('span', {class: 'st', data: {short: p.state === 'HALF_OPEN' ? 'HALF' : p.state}}, el('span', {class: 'long', text: p.state.replace('_', ' ')})),
    el('span', {class: 'ratio'}, ratio),
    lat ? el('span', {class: 'lat'}, lat) : null,
    p.override && p.override !== 'shadow' ? el('span', {class: 'badge', text: p.override}) : null,
    p.override === 'shadow' ? el('span', {class: 'badge', text: `shadow: would be ${p.shadowState || 'CLOSED'}`}) : null);
  }

  // causeText says what a transition without window evidence means.
  const causeText = {
    probeFailed: 'a probe failed: open again, backed off',
    openElapsed: 'open duration over: probing',
    halfOpenTimeout: 'probes undecided in time: open again',
  };

  function pairRow(p) {
    const k = pairKey(p.caller, p.callee);
    const w = p.window || {};
    const t = traffic.get(k) || {};
    const calls = num(w.windowCalls);
    const ev = p.evidence;
    let why = '';
    if (p.state !== 'CLOSED' && ev) why = `tripped on ${p.cause || ev.condition || '?'}: ${pct(ev.failureRate)} of ${ev.calls} calls failed`;
    else if (p.state !== 'CLOSED') why = causeText[p.cause] || p.cause || '';
    const failing = calls > 0 && num(w.failureRate) > 0 ? `${w.failingInstances} of ${w.reportingInstances} caller instances see failures` : '';
    const sel = selected && selected.caller === p.caller && selected.callee === p.callee;
    return el('tr', {
      class: ['pair', `row-${p.state}`, sel ? 'selected' : ''].join(' ').trim(),
      data: {caller: p.caller, callee: p.callee, state: p.state},
      on: {click: () => select(p.caller, p.callee)},
    },
    el('td', {}, pill(p.state), p.override ? el('span', {class: 'tag', text: p.override}) : null),
    el('td', {class: 'pairname', title: failing || null}, el('span', {text: p.caller}), el('span', {class: 'arrow', text: ' → '}), el('strong', {text: p.callee})),
    el('td', {class: 'num', title: `${calls} calls in the last ${fmtMs(num(w.windowMs))}`, text: calls > 0 ? rateText(w.callRate) : '0'}),
    el('td', {}, sparkline(t.callRate, 1, 'spark-rate', 'calls/s, last two minutes')),
    el('td', {class: ['num', calls > 0 ? shareClass(w.failureRate, 0.1, 0.4) : null].filter(Boolean).join(' '), text: calls > 0 ? pct(num(w.failureRate)) : '–'}),
    el('td', {}, sparkline(t.failureRate, 0.05, 'spark-err', 'error share, last two minutes')),
    el('td', {class: ['num', calls > 0 ? shareClass(w.slowCallRate, 0.2, 0.6) : null].filter(Boolean).join(' '), title: 'share of calls slower than the policy\'s slowCallDuration', text: calls > 0 ? pct(num(w.slowCallRate)) : '–'}),
    latencyCells(w, t),
    el('td', {class: ['num', num(w.rejectedCalls) > 0 ? 'flag-bad' : null].filter(Boolean).join(' '), title: `${num(w.rejectedCalls)} calls rejected by callers' breakers in the window`, text: rateText(w.rejectRate)}),
    el('td', {}, sparkline(t.rejectRate, 1, 'spark-rej', 'rejected calls/s, last two minutes')),
    el('td', {class: 'why muted small', text: why}),
    el('td', {class: 'num muted small nowrap', text: p.sinceMs ? ago(num(p.sinceMs)) : ''}));
  }

  // latencyCells are a pair row's p50 / p99 (the upper bounds of their
  // buckets) and its p99 sparkline; a pair whose callers measure no
  // durations (stock callers send load reports: counts only) says so
  // across both.
  function latencyCells(w, t) {
    const calls = num(w.windowCalls);
    if (calls > 0 && num(w.latencySamples) === 0) {
      return el('td', {colspan: 2, class: 'lat lat-none muted small', title: 'these callers send load reports (counts only), no durations', text: 'no latency from stock callers'});
    }
    return [latencyCell(w), el('td', {}, sparkline(t.p99Ms, 10, 'spark-lat', 'p99 latency (bucket bound), last two minutes'))];
  }

  function latencyCell(w) {
    const calls = num(w.windowCalls);
    if (calls === 0) return el('td', {class: 'num lat', text: '–'});
    const p99 = num(w.p99Ms);
    const flag = p99 < 0 || p99 >= 1000 ? 'flag-bad' : (p99 >= 200 ? 'flag-slow' : null);
    return el('td', {
      class: ['num', 'lat', 'nowrap', flag].filter(Boolean).join(' '),
      title: `p50 ${latText(w.p50Ms)}, p99 ${latText(w.p99Ms)}` + (num(w.p999Ms) ? `, p99.9 ${latText(w.p999Ms)}` : '') +
        ` of ${num(w.latencySamples)} timed calls; each the upper bound of its bucket (1, 2, 5, 10, 20, 50 ms ... 10 s)`,
      text: `${latText(w.p50Ms)} / ${latText(w.p99Ms)}`,
    });
  }

  // DENSE is the mesh size (callers or callees) from which the matrix
  // takes the full width above the list, in compact cells that all fit.
  const DENSE = 8;

  function renderMatrix() {
    const all = [...pairs.values()];
    const shown = all.filter(matches).sort((a, b) => trouble(b) - trouble(a) || pairKey(a.caller, a.callee).localeCompare(pairKey(b.caller, b.callee)));
    const counts = {OPEN: 0, HALF_OPEN: 0};
    for (const p of all) if (p.state in counts) counts[p.state]++;
    const summary = counts.OPEN || counts.HALF_OPEN
      ? `${counts.OPEN} OPEN, ${counts.HALF_OPEN} HALF_OPEN of ${all.length}`
      : `${all.length} pairs, all CLOSED`;
    $('trouble').textContent = summary;
    $('trouble').className = counts.OPEN ? 'flag-bad' : (counts.HALF_OPEN ? 'flag-slow' : 'muted');
    document.title = counts.OPEN || counts.HALF_OPEN ? `Colony: ${summary}` : 'Colony';

    const m = $('matrix');
    const l = $('pairs');
    if (all.length === 0) {
      const empty = 'No breakers yet: a pair gets one when its caller first reports calls to the callee (colony breaker report, or a sidecar).';
      m.replaceChildren(el('p', {class: 'muted', text: empty}));
      l.replaceChildren(el('p', {class: 'muted', text: empty}));
      return;
    }
    l.replaceChildren(shown.length ? el('table', {class: 'pairs'},
      el('thead', {}, el('tr', {},
        el('th', {text: 'state'}),
        el('th', {text: 'caller → callee'}),
        el('th', {class: 'num', text: 'calls/s'}), el('th', {}),
        el('th', {class: 'num', text: 'errors'}), el('th', {}),
        el('th', {class: 'num', text: 'slow', title: 'calls slower than the policy\'s slowCallDuration'}),
        el('th', {class: 'num', text: 'p50 / p99', title: 'latency percentiles of the window\'s timed calls: upper bounds of their buckets'}), el('th', {}),
        el('th', {class: 'num', text: 'rejected/s'}), el('th', {}),
        el('th', {text: 'why'}),
        el('th', {class: 'num', text: 'since'}))),
      el('tbody', {}, shown.map(pairRow)))
      : el('p', {class: 'muted', text: `no pair matches “${filterText}”`}));

    // The matrix keeps the same order: the callers and callees with the
    // most trouble first.
    const score = new Map();
    for (const p of shown) {
      for (const n of [`r:${p.caller}`, `c:${p.callee}`]) score.set(n, Math.max(score.get(n) || 0, trouble(p)));
    }
    const order = (prefix) => (a, b) => (score.get(prefix + b) - score.get(prefix + a)) || a.localeCompare(b);
    const callers = [...new Set(shown.map((p) => p.caller))].sort(order('r:'));
    const callees = [...new Set(shown.map((p) => p.callee))].sort(order('c:'));
    const allCallers = new Set(all.map((p) => p.caller));
    const allCallees = new Set(all.map((p) => p.callee));
    // Dense follows the whole mesh, not the filter, so the layout does not
    // jump while typing.
    $('breakers-grid').classList.toggle('dense', allCallers.size > DENSE || allCallees.size > DENSE);
    m.replaceChildren(shown.length ? el('table', {class: 'matrix'},
      el('thead', {}, el('tr', {},
        el('th', {class: 'corner', text: 'caller ↓ calls callee →'}),
        callees.map((c) => el('th', {class: 'callee', title: `calls to ${c}`}, el('span', {text: c}))))),
      el('tbody', {}, callers.map((caller) => el('tr', {},
        el('th', {class: 'caller', text: caller, title: `calls from ${caller}`}),
        callees.map((callee) => el('td', {}, cellFor(caller, callee)))))))
      : el('p', {class: 'muted', text: `no pair matches “${filterText}”`}));
  }

  // ---- pair detail ----
  let detailTimer = null;
  function scheduleDetail() {
    clearTimeout(detailTimer);
    detailTimer = setTimeout(loadDetail, 150);
  }

  function select(caller, callee) {
    selected = {caller, callee};
    $('detail').hidden = false;
    $('detail-title').textContent = `${caller} → ${callee}`;
    renderMatrix();
    loadDetail();
    $('detail').scrollIntoView({block: 'nearest'});
  }

  // LATENCY_BOUNDS are the histogram's bucket bounds in ms (package
  // breaker, LatencyBounds); a last bucket holds the slower calls.
  const LATENCY_BOUNDS = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000];

  // quantileMs is the upper bound of the bucket holding the q-th quantile
  // of a histogram, -1 past the last bound, as the coordinator computes it.
  function quantileMs(hist, q) {
    const total = hist.reduce((a, b) => a + num(b), 0);
    const rank = Math.ceil(q * total);
    let seen = 0;
    for (let i = 0; i < hist.length; i++) {
      seen += num(hist[i]);
      if (seen >= rank) return i < LATENCY_BOUNDS.length ? LATENCY_BOUNDS[i] : -1;
    }
    return -1;
  }

  function latencyEvidence(ev) {
    const hist = ev.latency || [];
    const n = hist.reduce((a, b) => a + num(b), 0);
    if (n === 0) return num(ev.calls) > 0 ? 'no latency from stock callers (their load reports carry no durations)' : '';
    let text = `p50 ${latText(quantileMs(hist, 0.5))}, p99 ${latText(quantileMs(hist, 0.99))}`;
    if (n >= 1000) text += `, p99.9 ${latText(quantileMs(hist, 0.999))}`;
    return text + ` (bucket upper bounds; ${n} of ${num(ev.calls)} calls timed)`;
  }

  function evidenceView(ev) {
    if (!ev) return el('p', {class: 'muted', text: 'none'});
    return kv([
      ['condition', ev.condition],
      ['quorum blocked', ev.quorumBlocked ? `${ev.quorumBlocked} held, but too few caller instances saw failures` : ''],
      ['at', fmtTime(ev.at)],
      ['window from', fmtTime(ev.windowStart)],
      ['calls', `${ev.calls} (${ev.successes} ok, ${ev.failures} failed, ${ev.slow} slow)`],
      ['rejected / excluded', `${ev.rejected} / ${ev.excluded}`],
      ['failure rate', pct(ev.failureRate || 0)],
      ['slow-call rate', pct(ev.slowCallRate || 0)],
      ['latency', latencyEvidence(ev)],
      ['consecutive failures', String(ev.consecutiveFailures || 0)],
      ['failing instances', `${ev.failingInstances} of ${ev.reportingInstances} reporting` + (ev.fleetInstances ? ` (fleet ${ev.fleetInstances})` : '')],
      ['probes', ev.probeSuccesses || ev.probeFailures ? `${ev.probeSuccesses || 0} ok, ${ev.probeFailures || 0} failed` : ''],
    ]);
  }

  // classificationText says in words which calls count as failures.
  function classificationText(c) {
    c = c || {};
    const list = (xs) => (xs && xs.length ? xs.join(', ') : '');
    const parts = [];
    const fail = [list(c.httpFailures) && `HTTP ${list(c.httpFailures)}`, list(c.grpcFailures) && `gRPC ${list(c.grpcFailures)}`].filter(Boolean);
    const errs = [!c.excludeTimeouts && 'timeouts', !c.excludeConnectionErrors && 'connection errors'].filter(Boolean);
    parts.push(`Failures: ${[...fail, ...errs].join('; ') || 'none'}.`);
    const excl = [list(c.httpExcluded) && `HTTP ${list(c.httpExcluded)}`, list(c.grpcExcluded) && `gRPC ${list(c.grpcExcluded)}`,
      c.excludeTimeouts && 'timeouts', c.excludeConnectionErrors && 'connection errors'].filter(Boolean);
    if (excl.length) parts.push(`Not counted: ${excl.join('; ')}.`);
    parts.push('Everything else is a success.');
    return parts.join(' ');
  }

  const policyNames = {
    window: 'window', buckets: 'buckets', minimumCalls: 'minimum calls', failureRateThreshold: 'trips at failure rate',
    consecutiveFailures: 'trips after consecutive failures', slowCallRateThreshold: 'trips at slow-call rate',
    slowCallDuration: 'a call is slow after', openDuration: 'open for', backoffMultiplier: 'backoff multiplier',
    maxOpenDuration: 'open at most', jitter: 'jitter', probeBudget: 'probe budget', successesToClose: 'successes to close',
    probeTimeout: 'probe timeout', halfOpenMaxWait: 'half-open max wait', minFailingInstances: 'failing instances needed',
    minFailingShare: 'failing share needed', degradedMode: 'sidecar mode when the coordinator is away',
  };
  const ratioFields = new Set(['failureRateThreshold', 'slowCallRateThreshold', 'minFailingShare', 'jitter']);

  function policyView(pol) {
    const rows = [];
    for (const [k, v] of Object.entries(pol)) {
      if (k === 'classification') continue;
      let text = String(v);
      if (ratioFields.has(k)) text = v ? pct(v) : 'off';
      if ((k === 'consecutiveFailures' || k === 'slowCallRateThreshold') && !v) text = 'off';
      rows.push([policyNames[k] || k, text]);
    }
    rows.push(['counts as failure', el('span', {class: 'classification', text: classificationText(pol.classification)})]);
    return kv(rows);
  }

  function overrideText(o) {
    if (!o) return '';
    let s = `${o.mode} by ${o.by || '?'} at ${fmtTime(o.at)}: “${o.reason}”`;
    if (o.until) s += `, until ${fmtTime(o.until)}`;
    return s;
  }

  function renderDetail(d) {
    const r = d.record;
    $('detail-state').replaceChildren(kv([
      ['enforced', el('span', {}, pill(r.state), ` generation ${r.generation}`)],
      ['since', `${fmtTime(r.since)} (${ago(r.since)})`],
      ['cause', r.cause],
      ['open until', r.openUntil ? fmtTime(r.openUntil) : ''],
      ['opened', r.openCount ? `${r.openCount} time(s) since last CLOSED` : ''],
      ['override', overrideText(r.override)],
      ['shadow', r.shadow ? el('span', {}, 'would enforce ', pill(r.shadow.state), ` (generation ${r.shadow.generation})`) : ''],
      ['policy version', r.policyVersion === -1 ? 'default policy' : String(r.policyVersion)],
    ]));
    $('act-clear').hidden = !r.override;

    $('detail-live').replaceChildren(evidenceView(d.live));
    const tripView = (trip) => el('div', {},
      el('p', {class: 'small'}, `${fmtTime(trip.at)}: ${trip.from} → ${trip.to}, cause ${trip.cause || '?'}`,
        trip.shadow ? ' (shadow: recorded only, not enforced)' : '',
        trip.openUntil ? `, open until ${fmtTime(trip.openUntil)}` : ''),
      evidenceView(trip.evidence));
    $('detail-trip').replaceChildren(d.lastTrip
      ? tripView(d.lastTrip)
      : el('p', {class: 'muted', text: `no trip in the last ${d.history.length} history entries`}));
    if (d.tripFromClosed) {
      $('detail-trip').append(el('p', {class: 'small muted', text: 'It first opened from CLOSED on this evidence:'}), tripView(d.tripFromClosed));
    }

    const probes = Object.entries(r.probes || {}).sort();
    $('detail-probes').replaceChildren(probes.length
      ? table(['caller instance', 'permits#'], probes.map(([i, n]) => el('tr', {}, el('td', {text: i}), el('td', {class: 'num', text: String(n)}))))
      : el('p', {class: 'muted', text: r.state === 'HALF_OPEN' ? 'none assigned' : 'none: probe permits are handed out only in HALF_OPEN'}));
    if (r.shadow && r.shadow.probes) {
      $('detail-probes').append(el('p', {class: 'small muted', text: 'shadow probes: ' + Object.entries(r.shadow.probes).map(([i, n]) => `${i}:${n}`).join(', ')}));
    }

    $('detail-policy').replaceChildren(policyView(d.policy || {}));

    const hist = [...d.history].reverse();
    $('detail-history').replaceChildren(hist.length ? table(['at', 'what', 'state', 'gen#', 'why', 'who'], hist.map((h) => {
      let what = h.kind;
      let why = h.cause || '';
      let who = '';
      if (h.kind === 'override' && h.override) { what = `override ${h.override.mode}`; why = h.override.reason; who = h.override.by || ''; if (h.override.until) why += ` (until ${fmtTime(h.override.until)})`; }
      if (h.kind === 'cleared') { what = `cleared ${h.override ? h.override.mode : ''}`; why = h.reason || ''; who = h.by || ''; }
      if (h.kind === 'expired') { what = `expired ${h.override ? h.override.mode : ''}`; }
      if (h.kind === 'probes') why = Object.entries(h.probes || {}).map(([i, n]) => `${i}:${n}`).join(', ');
      const ev = h.evidence;
      if (h.kind === 'transition' && ev && h.to === 'OPEN') {
        why += h.from === 'HALF_OPEN'
          ? ` · probes ${ev.probeSuccesses || 0} ok, ${ev.probeFailures || 0} failed`
          : ` · ${ev.failures}/${ev.calls} failed on ${ev.failingInstances} of ${ev.reportingInstances} inst.`;
      }
      return el('tr', {class: `kind-${h.kind}` + (h.shadow ? ' shadow' : '')},
        el('td', {text: fmtTime(h.at)}),
        el('td', {text: what + (h.shadow ? ' (shadow)' : '')}),
        el('td', {}, h.from === h.to && h.kind !== 'transition' ? pill(h.to) : el('span', {}, pill(h.from), ' → ', pill(h.to))),
        el('td', {class: 'num', text: String(h.generation)}),
        el('td', {text: why}),
        el('td', {text: who}));
    }), 'history') : el('p', {class: 'muted', text: 'no history yet'}));
  }

  function renderEnforcement(e) {
    $('enforcement-note').textContent = e.note;
    if (!e.sidecars.length) {
      $('detail-enforcement').replaceChildren(el('p', {class: 'muted', text: `no registered instances of ${e.caller}`}));
      return;
    }
    $('detail-enforcement').replaceChildren(table(
      ['instance', 'sidecar', 'mode', 'stale#', 'enforces', 'gen#', 'decided by', 'learned after#', 'data-plane clients: trip-to-enforce'],
      e.sidecars.map((s) => {
        const p = s.pair;
        if (s.error) {
          return el('tr', {}, el('td', {text: s.instance}), el('td', {text: s.sidecar}), el('td', {colspan: 7, class: 'flag-bad', text: s.error}));
        }
        return el('tr', {class: s.degraded ? 'slow' : null},
          el('td', {text: s.instance}),
          el('td', {text: s.sidecar}),
          el('td', {class: s.degraded ? 'flag-bad' : null, text: s.mode + (s.degraded ? ' (degraded)' : '')}),
          staleCell(s.staleMs, s.degraded),
          el('td', {}, p ? pill(p.state) : el('span', {class: 'muted', text: 'not enforced here'})),
          el('td', {class: 'num', text: p ? String(p.generation) : ''}),
          el('td', {text: p ? p.source : ''}),
          el('td', {class: 'num', text: s.learnedAfterMs !== undefined ? fmtMs(s.learnedAfterMs) : ''}),
          el('td', {}, clientList(s.clients || []),
            el('details', {}, el('summary', {class: 'muted small', text: 'data planes'}),
              el('pre', {class: 'enforcers', text: (s.enforcers || []).join('\n')}))));
      })));
    if (e.truncated) $('detail-enforcement').append(el('p', {class: 'muted', text: 'more instances are registered than shown'}));
  }

  // clientList shows each data-plane client's newest enforcement of the pair.
  function clientList(clients) {
    if (!clients.length) return el('span', {class: 'muted', text: 'no client has ACKed a transition of this pair'});
    return el('ul', {class: 'clients'}, clients.map((c) => el('li', {data: {client: c.client}},
      el('span', {text: c.client + ' '}), pill(c.state), el('span', {text: ` gen ${c.generation}: `}),
      c.initial ? el('span', {class: 'muted', text: 'found at start'})
        : el('span', {class: 'num enforce-ms', text: `${c.tripToEnforceMs.toFixed(1)}ms`, title: `${c.fromSeenMs.toFixed(1)}ms after the sidecar learned it`}))));
  }

  let detailSeq = 0;
  async function loadDetail() {
    if (!selected) return;
    const {caller, callee} = selected;
    const seq = ++detailSeq;
    const base = `api/breakers/${encodeURIComponent(caller)}/${encodeURIComponent(callee)}`;
    const enforcement = api(`${base}/enforcement`).catch((err) => ({error: err}));
    try {
      const d = await api(base);
      if (seq !== detailSeq) return;
      showError('detail-error', null);
      renderDetail(d);
    } catch (err) {
      if (seq === detailSeq) showError('detail-error', err);
    }
    const e = await enforcement;
    if (seq !== detailSeq) return;
    if (e.error) $('detail-enforcement').replaceChildren(el('p', {class: 'error', text: String(e.error.message || e.error)}));
    else renderEnforcement(e);
  }

  // ---- overrides ----
  const modeText = {
    'force-open': ['Force OPEN', (c, e) => `Every call from ${c} to ${e} will be rejected until the override is cleared or expires.`],
    'force-closed': ['Force CLOSED', (c, e) => `Every call from ${c} to ${e} will go through; the breaker is not evaluated.`],
    'disabled': ['Disable', (c, e) => `Every call from ${c} to ${e} will go through and reports are ignored: the pair never trips.`],
    'shadow': ['Shadow', (c, e) => `The breaker for ${c} → ${e} keeps deciding and records what it would do, but callers enforce CLOSED.`],
    'clear': ['Clear the override', (c, e) => `${c} → ${e} starts again CLOSED with a fresh window.`],
  };
  let pendingMode = null;

  function openConfirm(mode) {
    if (!selected) return;
    pendingMode = mode;
    const [title, text] = modeText[mode];
    $('confirm-title').textContent = `${title}: ${selected.caller} → ${selected.callee}?`;
    $('confirm-text').textContent = text(selected.caller, selected.callee);
    $('confirm-ttl-row').hidden = mode === 'clear';
    $('confirm-reason').value = '';
    $('confirm-ttl').value = '';
    $('confirm-ok').textContent = title;
    $('confirm-ok').disabled = false;
    showError('confirm-error', null);
    $('confirm').showModal();
    $('confirm-reason').focus();
  }

  async function submitConfirm(ev) {
    ev.preventDefault();
    const reason = $('confirm-reason').value.trim();
    if (!reason) {
      showError('confirm-error', 'A reason is required: it goes into the audit trail.');
      return;
    }
    const {caller, callee} = selected;
    const base = `api/breakers/${encodeURIComponent(caller)}/${encodeURIComponent(callee)}`;
    $('confirm-ok').disabled = true;
    try {
      const res = pendingMode === 'clear'
        ? await post(`${base}/clear`, {reason})
        : await post(`${base}/override`, {mode: pendingMode, reason, ttl: $('confirm-ttl').value.trim()});
      $('confirm').close();
      const r = res.record;
      applyPair({
        caller: r.caller, callee: r.callee, state: r.state, generation: r.generation, cause: r.cause,
        override: r.override ? r.override.mode : '', shadowState: r.shadow ? r.shadow.state : '',
      });
      loadDetail();
    } catch (err) {
      showError('confirm-error', err);
    } finally {
      $('confirm-ok').disabled = false;
    }
  }

  // ---- cluster ----
  async function loadCluster() {
    let st;
    try {
      st = await api('api/cluster');
      showError('cluster-error', null);
    } catch (err) {
      showError('cluster-error', err);
      $('leader-summary').textContent = 'coordinator unreachable';
      loaded('cluster');
      return;
    }
    $('leader-summary').textContent = st.leaderId ? `leader ${st.leaderId}, term ${st.term}` : 'no leader';
    loaded('cluster');
    const slow = [];
    const members = table(
      ['member', 'state', 'suffrage', 'term#', 'applied#', 'commit#', 'heard from leader#', 'lag (entries)#', 'heartbeat rtt#', 'leader last reply#', 'failed heartbeats#', 'slow', 'error'],
      (st.members || []).map((m) => {
        const r = m.replication;
        if (r && r.slow) slow.push(`${m.id} (${r.slowReason})`);
        const rep = (f) => (r ? f(r) : '');
        return el('tr', {class: [m.leader ? 'leader' : '', r && r.slow ? 'slow' : ''].join(' ').trim() || null, data: {member: m.id}},
          el('td', {text: m.id + (m.leader ? ' ★' : ''), title: `raft ${m.raftAddress}, gRPC ${m.grpcAddress}`}),
          el('td', {text: m.state || '?'}),
          el('td', {text: enumName(m.suffrage, 'SUFFRAGE_')}),
          el('td', {class: 'num', text: m.term}),
          el('td', {class: 'num', text: m.appliedIndex}),
          el('td', {class: 'num', text: m.commitIndex}),
          el('td', {class: 'num', text: m.leader ? '—' : fmtMs(num(m.lastContactMs)) + ' ago'}),
          el('td', {class: 'num', text: rep((x) => (num(x.lastContactMs) >= 0 ? x.lagEntries : '—'))}),
          el('td', {class: 'num', text: rep((x) => (x.heartbeatRttMs ? `${Number(x.heartbeatRttMs).toFixed(2)}ms` : '—'))}),
          el('td', {class: 'num', text: rep((x) => (num(x.lastContactMs) >= 0 ? fmtMs(num(x.lastContactMs)) + ' ago' : 'never'))}),
          el('td', {class: 'num', text: rep((x) => x.failedHeartbeats)}),
          el('td', {class: r && r.slow ? 'flag-slow' : null, text: rep((x) => (x.slow ? `slow: ${x.slowReason}` : 'no'))}),
          el('td', {class: 'flag-bad', text: m.error}));
      }));
    const history = (st.leaderHistory || []).length
      ? table(['term#', 'leader', 'previous', 'at', 'cause', 'detail'], st.leaderHistory.map((h) => el('tr', {},
        el('td', {class: 'num', text: h.term}),
        el('td', {text: h.leaderId}),
        el('td', {text: h.previousLeaderId}),
        el('td', {text: fmtTime(h.atMs)}),
        el('td', {text: enumName(h.cause, 'ELECTION_CAUSE_')}),
        el('td', {text: h.detail}))))
      : el('p', {class: 'muted', text: 'none known'});
    $('cluster').replaceChildren(
      kv([
        ['leader', st.leaderId ? `${st.leaderId} (${st.leaderGrpcAddress})` : 'none'],
        ['term', st.term],
        ['commit / applied index', `${st.commitIndex} / ${st.appliedIndex}`],
        ['answered by', st.header ? st.header.memberId : ''],
        ['slow follower', slow.length ? el('span', {class: 'flag-slow', text: slow.join(', ') + ': a slow voter can hold every write back'}) : el('span', {class: 'flag-good', text: 'none'})],
      ]),
      el('h3', {}, 'Members ', el('span', {class: 'muted small', text: '(replication columns: the leader’s view of each follower)'})),
      members,
      el('h3', {}, 'Elections ', el('span', {class: 'muted small', text: '(newest first)'})),
      history);
  }

  // ---- sidecars ----
  // outgoing shows the breakers a sidecar enforces on its service's calls.
  // A sidecar without a callee list serves every registered service, so
  // callees it has never called (no breaker record) are listed apart.
  function outgoing(service, list) {
    const called = list.filter((p) => pairs.has(pairKey(service, p.callee)) || p.state !== 'CLOSED');
    const idle = list.filter((p) => !called.includes(p));
    const out = called.map((p) => el('span', {class: 'out-pair', title: `${service} → ${p.callee}: generation ${p.generation}, decided by ${p.source}`},
      `→ ${p.callee} `, pill(p.state)));
    if (idle.length) {
      out.push(el('span', {class: 'muted small', title: 'these would be CLOSED: no breaker record, as this service has not called them',
        text: `${called.length ? 'not called: ' : 'calls nothing yet; could call '}${idle.map((p) => p.callee).join(', ')}`}));
    }
    return out.length ? out : el('span', {class: 'muted', text: 'none'});
  }
  // staleCell colours how long ago a sidecar last heard from the
  // coordinator: at least every session keep-alive (TTL/3, 2s by default),
  // and it enters its degraded mode after DegradedAfter (5s).
  function staleCell(ms, degraded) {
    const cls = degraded || ms >= 5000 ? 'stale-bad' : (ms >= 3000 ? 'stale-warn' : 'stale-ok');
    const meaning = {
      'stale-ok': 'fresh: a sidecar hears from the coordinator at least every keep-alive (2s by default) and at every event',
      'stale-warn': 'lagging: a keep-alive went unanswered; past 5s (DegradedAfter) the sidecar enters its degraded mode',
      'stale-bad': 'stale: the sidecar no longer hears the coordinator and enforces its degraded mode (last-known records by default)',
    }[cls];
    return el('td', {class: `num ${cls}`, title: `${fmtMs(ms)} since the coordinator last answered this sidecar. ${meaning}`, text: fmtMs(ms)});
  }
  async function loadSidecars() {
    let res;
    try {
      res = await api('api/sidecars');
      showError('sidecars-error', null);
    } catch (err) {
      showError('sidecars-error', err);
      loaded('sidecars');
      return;
    }
    loaded('sidecars');
    if (!res.sidecars.length) {
      $('sidecars').replaceChildren(el('p', {class: 'muted', text: 'No registered instances (sidecars register under /colony/services).'}));
      return;
    }
    $('sidecars').replaceChildren(table(
      ['service', 'instance', 'sidecar', 'mode', 'degraded', 'stale#', 'session', 'its outgoing breakers (service → callee)'],
      res.sidecars.map((s) => {
        const reg = s.registration;
        const st = s.status;
        if (!st) {
          return el('tr', {data: {service: reg.service, instance: reg.instance}},
            el('td', {text: reg.service}), el('td', {text: reg.instance}), el('td', {text: reg.sidecar || ''}),
            el('td', {colspan: 5, class: 'flag-bad', text: s.error}));
        }
        return el('tr', {class: st.degraded ? 'slow' : null, data: {service: reg.service, instance: reg.instance}},
          el('td', {text: reg.service}),
          el('td', {text: reg.instance}),
          el('td', {text: reg.sidecar}),
          el('td', {text: st.mode}),
          el('td', {class: st.degraded ? 'flag-bad' : 'flag-good', text: st.degraded ? 'yes' : 'no'}),
          staleCell(num(st.staleMs), st.degraded),
          el('td', {text: sessionHex(st.sessionId)}),
          el('td', {class: 'outgoing'}, outgoing(reg.service, st.pairs || [])));
      })));
    if (res.truncated) $('sidecars').append(el('p', {class: 'muted', text: `only the first ${res.limit} instances are shown`}));
  }

  // ---- who am I ----
  // me is GET api/me: who the dashboard verified this browser as, and
  // whether it may act. Only operators get the override buttons.
  let me = {operator: false};

  async function loadMe() {
    try { me = await api('api/me'); } catch (e) { me = {operator: false, help: String(e.message || e)}; }
    $('me').textContent = me.by || 'anonymous (read only)';
    $('login').hidden = !me.login || me.via === 'token' || me.operator;
    $('logout').hidden = me.via !== 'token';
    $('read-only').hidden = me.operator;
    $('read-only').textContent = me.operator ? '' : `Read only: ${me.help || ''}`;
    for (const b of document.querySelectorAll('#actions button[data-mode]')) b.disabled = !me.operator;
  }

  async function login(token) {
    await post('api/login', {token});
    await loadMe();
  }

  // ---- start ----
  document.addEventListener('DOMContentLoaded', () => {
    for (const b of document.querySelectorAll('#actions button[data-mode]')) {
      b.addEventListener('click', () => openConfirm(b.dataset.mode));
    }
    $('confirm-form').addEventListener('submit', submitConfirm);
    $('confirm-cancel').addEventListener('click', () => $('confirm').close());
    $('detail-close').addEventListener('click', () => { selected = null; $('detail').hidden = true; renderMatrix(); });
    $('login').addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const t = $('login-token').value.trim();
      $('login-token').value = '';
      try { await login(t); } catch (err) { $('me').textContent = String(err.message || err); }
    });
    $('logout').addEventListener('click', async () => { try { await post('api/logout', {}); } finally { loadMe(); } });
    // colony dev prints a URL with #token=...: trade it for a session
    // cookie and drop it from the address bar and history.
    const m = /^#token=([^&]+)/.exec(location.hash);
    if (m) {
      history.replaceState(null, '', location.pathname + location.search);
      login(decodeURIComponent(m[1])).catch((err) => { $('me').textContent = String(err.message || err); });
    } else {
      loadMe();
    }
    $('filter').addEventListener('input', () => {
      filterText = $('filter').value.trim().toLowerCase();
      renderMatrix();
    });
    const q = new URLSearchParams(location.search);
    if (q.get('filter')) {
      $('filter').value = q.get('filter');
      filterText = q.get('filter').trim().toLowerCase();
    }
    if (snapshotMode) {
      // One read of everything, no stream: for screenshots.
      $('conn').textContent = 'snapshot';
      Promise.all([api('api/traffic'), api('api/breakers')]).then(([h, list]) => {
        applyHistory(h);
        applySnapshot(list);
      }).catch((err) => { showError('feed-error', err); loaded('breakers'); });
      loadCluster();
      loadSidecars();
      return;
    }
    connectEvents();
    every(3000, loadCluster);
    every(5000, loadSidecars);
    every(5000, () => (selected && !$('confirm').open ? loadDetail() : null));
  });
})();
