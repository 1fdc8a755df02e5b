// keyshift dashboard: a single-page app over /api/v1, no dependencies.
//
// Everything is built with DOM calls (never innerHTML with data), so names
// and messages from the cluster are always text. The token lives in
// localStorage and goes only into the Authorization header: the event
// stream is read with fetch() for that reason (EventSource cannot send
// headers, and a token in a URL ends up in logs).
'use strict';

const API = '/api/v1';
const TOKEN_KEY = 'keyshift.token';

const STATE_LABEL = {
  pending: 'Pending', copying: 'Copying', running: 'Running', stopped: 'Stopped',
  error: 'Error', switched_replicas: 'Reads switched', switched_primaries: 'Writes switched',
  completed: 'Completed', cancelled: 'Cancelled',
};
const ALL_STATES = Object.keys(STATE_LABEL);

const KIND_LABEL = {
  move_tables: 'Move tables', import: 'Import', reshard: 'Reshard', materialize: 'Materialize',
};

function kindTag(kind) {
  return h('span', { class: `tag kind kind-${kind}`, 'data-kind': kind }, KIND_LABEL[kind] || kind);
}

// The main path of a workflow's life, for the timeline.
const TIMELINE = [
  ['pending', 'Created'], ['copying', 'Copying'], ['running', 'Running'],
  ['switched_replicas', 'Reads switched'], ['switched_primaries', 'Writes switched'],
  ['completed', 'Completed'],
];

// One button per action; switch-traffic has two (reads only, or all).
const BUTTONS = [
  { id: 'stop', action: 'stop', label: 'Stop' },
  { id: 'start', action: 'start', label: 'Start' },
  { id: 'retry', action: 'retry', label: 'Retry' },
  { id: 'verify-data', action: 'verify-data', label: 'Verify data' },
  {
    id: 'switch-reads', action: 'switch-traffic', label: 'Switch reads', body: { replicas_only: true },
    confirm: { title: 'Switch reads to the target?', danger: false,
      text: 'Queries to replicas for the moved tables will be served by the target keyspace. Writes stay on the source. You can switch back with Reverse traffic.' },
  },
  {
    id: 'switch-traffic', action: 'switch-traffic', label: 'Switch traffic', body: { replicas_only: false },
    confirm: { title: 'Switch all traffic to the target?', danger: false,
      text: 'Reads and writes for the moved tables go to the target keyspace. Queries pause briefly while the target catches up; a reverse workflow keeps the source in sync so you can switch back.' },
  },
  {
    id: 'reverse-traffic', action: 'reverse-traffic', label: 'Reverse traffic',
    confirm: { title: 'Switch traffic back to the source?', danger: false,
      text: 'Traffic for the moved tables returns to the source keyspace. Nothing written on the target is lost: the reverse workflow carried it to the source.' },
  },
  {
    id: 'complete', action: 'complete', label: 'Complete', kind: 'warn',
    confirm: { title: 'Complete this workflow?', danger: true, typeName: true, mode: true,
      text: 'The reverse workflow and the routing-rule artefacts are removed, and the source tables are dropped, renamed or kept as you choose. After this you can no longer switch back.' },
  },
  {
    id: 'cancel', action: 'cancel', label: 'Cancel workflow', kind: 'warn',
    confirm: { title: 'Cancel this workflow?', danger: true, typeName: true, keepData: true,
      text: 'The streams stop and the copies on the target keyspace are dropped. The source keeps serving all traffic.' },
  },
];

// ---------------------------------------------------------------- helpers

function h(tag, attrs, ...children) {
  const el = document.createElementNS(
    tag.startsWith('svg:') ? 'http://www.w3.org/2000/svg' : 'http://www.w3.org/1999/xhtml',
    tag.replace(/^svg:/, ''));
  for (const [k, v] of Object.entries(attrs || {})) {
    if (v === null || v === undefined || v === false) continue;
    if (k === 'class') el.setAttribute('class', v);
    else if (k === 'text') el.textContent = v;
    else if (k === 'style') Object.assign(el.style, v);
    else if (k.startsWith('on')) el.addEventListener(k.slice(2), v);
    else if (k === 'value') el.value = v;
    else if (k === 'checked' || k === 'disabled' || k === 'selected') el[k] = !!v;
    else el.setAttribute(k, v === true ? '' : v);
  }
  const add = (c) => {
    if (c === null || c === undefined || c === false) return;
    if (Array.isArray(c)) { c.forEach(add); return; }
    el.appendChild(c instanceof Node ? c : document.createTextNode(String(c)));
  };
  children.forEach(add);
  return el;
}

const $ = (sel, root) => (root || document).querySelector(sel);

function fmtDuration(ms) {
  if (ms === null || ms === undefined) return '—';
  let s = Math.max(0, Math.round(ms / 1000));
  if (s < 60) return `${s}s`;
  const d = Math.floor(s / 86400); s -= d * 86400;
  const hh = Math.floor(s / 3600); s -= hh * 3600;
  const m = Math.floor(s / 60); s -= m * 60;
  if (d) return `${d}d ${hh}h`;
  if (hh) return `${hh}h ${String(m).padStart(2, '0')}m`;
  return `${m}m ${String(s).padStart(2, '0')}s`;
}

function fmtAgo(ms) {
  if (!ms) return '—';
  const d = Date.now() - ms;
  if (d < 5000) return 'just now';
  if (d < 60000) return `${Math.round(d / 1000)}s ago`;
  if (d < 3600000) return `${Math.round(d / 60000)} min ago`;
  if (d < 86400000) return `${Math.round(d / 3600000)} h ago`;
  return new Date(ms).toLocaleDateString();
}

function fmtTime(ms) {
  if (!ms) return '—';
  const d = new Date(ms);
  const today = new Date().toDateString() === d.toDateString();
  return today ? d.toLocaleTimeString() : d.toLocaleString();
}

function fmtInt(n) {
  return (n || 0).toLocaleString();
}

function timeEl(ms, ago) {
  return h('time', { datetime: ms ? new Date(ms).toISOString() : null, title: ms ? new Date(ms).toLocaleString() : null },
    ago ? fmtAgo(ms) : fmtTime(ms));
}

function pill(state) {
  return h('span', { class: `pill s-${state}`, 'data-state': state }, STATE_LABEL[state] || state);
}

function byTag(by) {
  return h('span', { class: `tag by-${by}`, title: `triggered by the ${by}` }, by);
}

function progressBar(percent, done) {
  const p = Math.max(0, Math.min(100, percent || 0));
  return h('div', { class: `progress${done ? ' done' : ''}`, role: 'progressbar', 'aria-valuenow': p.toFixed(0), 'aria-valuemin': 0, 'aria-valuemax': 100 },
    h('span', { style: { width: `${p}%` } }));
}

function toast(message, kind) {
  const t = h('div', { class: `toast ${kind || ''}` }, message);
  $('#toasts').appendChild(t);
  setTimeout(() => t.remove(), kind === 'error' ? 9000 : 4500);
}

// ---------------------------------------------------------------- api

class ApiError extends Error {
  constructor(status, body) {
    const e = (body && body.error) || {};
    super(e.message || `HTTP ${status}`);
    this.status = status;
    this.code = e.code || 'http';
    this.details = e.details;
  }
}

const app = {
  token: null,
  live: null,
  route: null,
  // Workflow name -> [{at_ms, lag_seconds}], seeded from /lag, extended live.
  lag: new Map(),
  // The workflow page's current view, updated by events.
  current: null,
  listTimer: null,
  clusterTimer: null,
};

async function api(method, path, body, opt) {
  const opts = { method, headers: { Authorization: `Bearer ${app.token}` } };
  if (body !== undefined) {
    opts.headers['Content-Type'] = 'application/json';
    opts.body = JSON.stringify(body);
  }
  let resp;
  try {
    resp = await fetch(API + path, opts);
  } catch (e) {
    throw new ApiError(0, { error: { code: 'network', message: `keyshift is not reachable (${e.message})` } });
  }
  let data = null;
  const text = await resp.text();
  if (text) {
    try { data = JSON.parse(text); } catch (_) { data = null; }
  }
  if (!resp.ok) {
    const err = new ApiError(resp.status, data);
    if (resp.status === 401 && !(opt && opt.probe)) signOut('The token was refused. Enter the current token.');
    throw err;
  }
  return data;
}

// ---------------------------------------------------------------- live updates

class Live {
  constructor(onEvent, onState) {
    this.onEvent = onEvent;
    this.onState = onState;
    this.lastId = null;
    this.stopped = false;
    this.abort = null;
    this.backoff = 500;
  }

  start() { this.loop(); }

  stop() {
    this.stopped = true;
    if (this.abort) this.abort.abort();
  }

  async loop() {
    while (!this.stopped) {
      this.onState('connecting');
      try {
        await this.once();
      } catch (e) {
        if (this.stopped) return;
      }
      if (this.stopped) return;
      this.onState('offline');
      await new Promise((r) => setTimeout(r, this.backoff));
      this.backoff = Math.min(this.backoff * 2, 10000);
    }
  }

  async once() {
    this.abort = new AbortController();
    const headers = { Authorization: `Bearer ${app.token}`, Accept: 'text/event-stream' };
    if (this.lastId) headers['Last-Event-ID'] = this.lastId;
    const resp = await fetch(`${API}/events`, { headers, signal: this.abort.signal, cache: 'no-store' });
    if (resp.status === 401) { signOut('The token was refused. Enter the current token.'); return; }
    if (!resp.ok || !resp.body) throw new Error(`HTTP ${resp.status}`);
    const reader = resp.body.getReader();
    const decoder = new TextDecoder();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buf += decoder.decode(value, { stream: true });
      let i;
      while ((i = buf.indexOf('\n\n')) >= 0) {
        const raw = buf.slice(0, i);
        buf = buf.slice(i + 2);
        this.dispatch(raw);
      }
    }
  }

  dispatch(raw) {
    let event = 'message';
    const data = [];
    for (const line of raw.split('\n')) {
      if (line.startsWith(':')) continue;
      const c = line.indexOf(':');
      const field = c < 0 ? line : line.slice(0, c);
      const value = c < 0 ? '' : line.slice(c + 1).replace(/^ /, '');
      if (field === 'event') event = value;
      else if (field === 'data') data.push(value);
      else if (field === 'id') this.lastId = value;
    }
    if (event === 'ready') { this.backoff = 500; this.onState('live'); }
    if (event === 'resync') { this.lastId = null; }
    let parsed = null;
    try { parsed = data.length ? JSON.parse(data.join('\n')) : null; } catch (_) { return; }
    this.onEvent(event, parsed);
  }
}

function setLive(state) {
  const el = $('#live');
  el.dataset.state = state;
  $('.live-text', el).textContent = { live: 'Live', connecting: 'Connecting', offline: 'Reconnecting' }[state] || state;
}

function onLiveEvent(event, data) {
  if (event === 'workflow' && data) {
    if (data.max_lag_seconds !== null && data.max_lag_seconds !== undefined) {
      pushLag(data.name, { at_ms: Date.now(), lag_seconds: data.max_lag_seconds });
    }
    if (app.route && app.route.view === 'workflow' && app.route.name === data.name) {
      app.current = data;
      renderWorkflowBody();
    }
    if (app.route && app.route.view === 'workflows') scheduleListRefresh();
  } else if (event === 'workflow_deleted' && data) {
    if (app.route && app.route.view === 'workflows') scheduleListRefresh();
  } else if (event === 'vdiff' && data) {
    if (app.route && app.route.view === 'workflow' && app.route.name === data.workflow && app.current) {
      app.current.vdiff = data.vdiff;
      renderWorkflowBody();
    }
  } else if (event === 'ready' || event === 'resync') {
    // After a reconnect the page may have missed changes: re-read it.
    if (app.route && app.route.view === 'workflow') loadWorkflow(app.route.name, true);
    if (app.route && app.route.view === 'workflows') scheduleListRefresh();
  }
}

function pushLag(name, sample) {
  const s = app.lag.get(name) || [];
  const last = s[s.length - 1];
  if (last && sample.at_ms - last.at_ms < 1000) {
    last.lag_seconds = Math.max(last.lag_seconds, sample.lag_seconds);
  } else {
    s.push(sample);
  }
  while (s.length > 3600) s.shift();
  app.lag.set(name, s);
}

// ---------------------------------------------------------------- routing

function parseRoute() {
  const hash = location.hash.replace(/^#\/?/, '').split('?')[0];
  const parts = hash.split('/').filter(Boolean).map(decodeURIComponent);
  if (parts[0] === 'workflows' && parts[1]) return { view: 'workflow', name: parts[1] };
  if (parts[0] === 'workflows') return { view: 'workflows' };
  if (parts[0] === 'new') return { view: 'new' };
  return { view: 'cluster' };
}

function render() {
  clearTimeout(app.listTimer);
  clearInterval(app.clusterTimer);
  if (!app.token) { renderLogin(); return; }
  app.route = parseRoute();
  app.current = null;
  document.querySelectorAll('[data-nav]').forEach((a) => {
    const v = app.route.view === 'workflow' ? 'workflows' : app.route.view;
    a.classList.toggle('active', a.dataset.nav === v);
  });
  const main = $('#app');
  main.replaceChildren();
  ({ cluster: renderCluster, workflows: renderWorkflows, new: renderNew, workflow: renderWorkflow })[app.route.view](main);
}

// ---------------------------------------------------------------- login

function signOut(message) {
  localStorage.removeItem(TOKEN_KEY);
  app.token = null;
  if (app.live) { app.live.stop(); app.live = null; }
  renderLogin(message);
}

function signedIn() {
  $('#nav').hidden = false;
  $('#topbar-right').hidden = false;
  if (!app.live) {
    app.live = new Live(onLiveEvent, setLive);
    app.live.start();
  }
}

function renderLogin(message) {
  $('#nav').hidden = true;
  $('#topbar-right').hidden = true;
  const input = h('input', { type: 'password', id: 'token-input', autocomplete: 'off', spellcheck: 'false', placeholder: '64 hex characters' });
  const err = h('div', { class: 'field-error', id: 'token-error' }, message || '');
  const form = h('form', {
    class: 'card login', id: 'login',
    onsubmit: async (e) => {
      e.preventDefault();
      const t = input.value.trim();
      if (!t) { err.textContent = 'Paste the token first.'; return; }
      err.textContent = '';
      app.token = t;
      try {
        await api('GET', '/keyspaces', undefined, { probe: true });
      } catch (x) {
        app.token = null;
        err.textContent = x.status === 401 ? 'That token was refused.' : x.message;
        return;
      }
      localStorage.setItem(TOKEN_KEY, t);
      signedIn();
      if (!location.hash || location.hash === '#/') location.hash = '#/cluster';
      else render();
    },
  },
  h('div', { class: 'card-body' },
    h('h1', {}, 'Connect to keyshift'),
    h('p', { class: 'muted', style: { margin: 0 } },
      'The API token was created by ', h('code', {}, 'keyshift up'), ' in the data directory. Paste it once; this browser keeps it.'),
    h('pre', {}, 'cat keyshift-data/api-token'),
    h('label', { class: 'field' }, 'API token', input),
    err,
    h('button', { type: 'submit', class: 'btn btn-primary', id: 'token-submit' }, 'Connect')));
  $('#app').replaceChildren(form);
  input.focus();
}

// ---------------------------------------------------------------- cluster

function renderCluster(main) {
  const body = h('div', { class: 'stack', id: 'cluster' }, h('div', { class: 'empty' }, 'Probing tablets…'));
  main.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Cluster'), h('p', {}, 'Keyspaces, their shards and the servers (tablets) that serve them.')),
      h('button', { class: 'btn', onclick: () => loadCluster(body) }, 'Refresh')),
    body);
  loadCluster(body);
  app.clusterTimer = setInterval(() => loadCluster(body), 10000);
}

async function loadCluster(body) {
  let ks;
  try {
    ks = await api('GET', '/cluster');
  } catch (e) {
    body.replaceChildren(h('div', { class: 'banner error' }, e.message));
    return;
  }
  const tablets = ks.flatMap((k) => k.shards.flatMap((s) => s.tablets));
  const healthy = tablets.filter((t) => t.status.healthy).length;
  const shards = ks.reduce((n, k) => n + k.shards.length, 0);
  const stats = h('div', { class: 'stats' },
    stat('Keyspaces', ks.length),
    stat('Shards', shards),
    stat('Tablets', tablets.length),
    stat('Healthy', `${healthy} / ${tablets.length}`, healthy === tablets.length ? null : 'diff-bad'));
  const cards = ks.map((k) => h('section', { class: 'card keyspace', 'data-keyspace': k.name },
    h('div', { class: 'card-head' },
      h('div', { class: 'row' }, h('h2', {}, k.name),
        h('span', { class: 'tag' }, k.sharded ? `sharded · ${k.shards.length} shards` : 'unsharded')),
      h('a', { href: `#/new?source=${encodeURIComponent(k.name)}`, class: 'small' }, 'Move tables from here')),
    h('div', { class: 'card-body flush' },
      h('table', {},
        h('thead', {}, h('tr', {}, ['Shard', 'Key range', 'Tablet', 'Role', 'Address', 'Health'].map((c) => h('th', {}, c)))),
        h('tbody', {}, k.shards.flatMap((s) => (s.tablets.length ? s.tablets : [null]).map((t, i) => h('tr', {},
          h('td', {}, i === 0 ? h('strong', {}, s.name) : ''),
          h('td', { class: 'mono' }, i === 0 ? (s.key_range && s.key_range !== '-' ? s.key_range : 'full range') : ''),
          t ? [
            h('td', { class: 'mono' }, t.alias),
            h('td', {}, h('span', { class: `tag ${t.role === 'primary' ? 'primary' : ''}` }, t.role)),
            h('td', { class: 'mono' }, t.address),
            h('td', {}, health(t.status)),
          ] : h('td', { colspan: 4, class: 'muted' }, 'no tablet')))))))));
  body.replaceChildren(stats, ...(cards.length ? cards : [h('div', { class: 'card empty' }, 'No keyspaces yet.')]));
}

function stat(label, value, cls) {
  return h('div', { class: 'stat', 'data-stat': label }, h('div', { class: 'stat-label' }, label), h('div', { class: `stat-value ${cls || ''}` }, value));
}

function health(st) {
  if (st.healthy) {
    const bits = [st.version && st.version.split('-')[0], st.read_only ? 'read-only' : null].filter(Boolean);
    return h('span', { class: 'health', title: st.gtid_binlog_pos ? `GTID ${st.gtid_binlog_pos}` : null },
      h('span', { class: 'dot ok' }), 'healthy', bits.length ? h('span', { class: 'faint small' }, ` · ${bits.join(' · ')}`) : null);
  }
  return h('span', { class: 'health', title: st.error || '' }, h('span', { class: 'dot bad' }),
    h('span', { class: 'diff-bad' }, 'unreachable'), h('span', { class: 'faint small' }, st.error ? ` · ${st.error.slice(0, 60)}` : ''));
}

// ---------------------------------------------------------------- workflow list

const PAGE = 20;
const list = { state: '', since: '', offset: 0 };

function renderWorkflows(main) {
  const stateSel = h('select', { id: 'filter-state', onchange: (e) => { list.state = e.target.value; list.offset = 0; loadList(); } },
    h('option', { value: '' }, 'All states'),
    ALL_STATES.map((s) => h('option', { value: s, selected: list.state === s }, STATE_LABEL[s])));
  const sinceSel = h('select', { id: 'filter-since', onchange: (e) => { list.since = e.target.value; list.offset = 0; loadList(); } },
    [['', 'Any time'], ['3600000', 'Last hour'], ['86400000', 'Last 24 hours'], ['604800000', 'Last 7 days'], ['2592000000', 'Last 30 days']]
      .map(([v, l]) => h('option', { value: v, selected: list.since === v }, l)));
  main.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('h1', {}, 'Workflows'), h('p', {}, 'Every data move, running and past, with how long each phase took.')),
      h('a', { class: 'btn btn-primary', href: '#/new', id: 'new-workflow' }, 'New workflow')),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('div', { class: 'row' }, stateSel, sinceSel), h('div', { class: 'row', id: 'pager' })),
      h('div', { class: 'card-body flush', id: 'wf-list' }, h('div', { class: 'empty' }, 'Loading…'))));
  loadList();
}

function scheduleListRefresh() {
  clearTimeout(app.listTimer);
  app.listTimer = setTimeout(loadList, 400);
}

async function loadList() {
  const box = $('#wf-list');
  if (!box) return;
  const q = new URLSearchParams({ limit: String(PAGE), offset: String(list.offset) });
  if (list.state) q.set('state', list.state);
  if (list.since) q.set('created_after', String(Date.now() - Number(list.since)));
  let page;
  try {
    page = await api('GET', `/workflows?${q}`);
  } catch (e) {
    box.replaceChildren(h('div', { class: 'banner error' }, e.message));
    return;
  }
  const pager = $('#pager');
  const from = page.total ? page.offset + 1 : 0;
  const to = page.offset + page.workflows.length;
  pager.replaceChildren(
    h('span', { class: 'muted small' }, `${from}–${to} of ${page.total}`),
    h('button', { class: 'btn btn-small', disabled: page.offset === 0, onclick: () => { list.offset = Math.max(0, list.offset - PAGE); loadList(); } }, 'Previous'),
    h('button', { class: 'btn btn-small', disabled: page.next_offset === null || page.next_offset === undefined, onclick: () => { list.offset = page.next_offset; loadList(); } }, 'Next'));
  if (!page.workflows.length) {
    box.replaceChildren(h('div', { class: 'empty' },
      page.total === 0 && !list.state && !list.since ? ['No workflows yet. ', h('a', { href: '#/new' }, 'Create the first one'), '.'] : 'No workflow matches these filters.'));
    return;
  }
  box.replaceChildren(h('table', { id: 'workflows-table' },
    h('thead', {}, h('tr', {},
      h('th', {}, 'Workflow'), h('th', {}, 'Kind'), h('th', {}, 'State'), h('th', {}, 'Route'), h('th', {}, 'Progress'),
      h('th', { class: 'num' }, 'Lag'), h('th', {}, 'Created'), h('th', { class: 'num' }, 'Duration'),
      h('th', { class: 'num' }, 'Time to copy'), h('th', { class: 'num' }, 'Time to complete'))),
    h('tbody', {}, page.workflows.map((w) => h('tr', {
      class: 'link', 'data-workflow': w.name,
      onclick: () => { location.hash = `#/workflows/${encodeURIComponent(w.name)}`; },
    },
    h('td', {}, h('a', { href: `#/workflows/${encodeURIComponent(w.name)}` }, h('strong', {}, w.name)),
      h('div', { class: 'faint small' }, w.tables.join(', '))),
    h('td', {}, kindTag(w.type)),
    h('td', {}, pill(w.state)),
    h('td', {}, `${w.source_keyspace} → ${w.target_keyspace}`),
    h('td', {}, h('div', { class: 'row', style: { flexWrap: 'nowrap', gap: '8px' } },
      progressBar(w.copy_percent, w.copy_percent >= 100), h('span', { class: 'small muted' }, `${Math.floor(w.copy_percent)}%`))),
    h('td', { class: 'num' }, w.max_lag_seconds === null || w.max_lag_seconds === undefined ? '—' : `${w.max_lag_seconds}s`),
    h('td', {}, timeEl(w.created_ms, true)),
    h('td', { class: 'num' }, fmtDuration(w.durations.total_ms)),
    h('td', { class: 'num' }, fmtDuration(w.durations.copy_ms)),
    h('td', { class: 'num' }, fmtDuration(w.durations.complete_ms)))))));
}

// ---------------------------------------------------------------- new workflow

function renderNew(main) {
  const params = new URLSearchParams((location.hash.split('?')[1]) || '');
  const form = h('form', { class: 'stack', id: 'new-form', novalidate: true });
  const kind = params.get('kind') === 'import' ? 'import' : 'move';
  const choice = (value, label, text) => h('label', { class: `kind-choice${kind === value ? ' chosen' : ''}`, 'data-kind': value },
    h('input', {
      type: 'radio', name: 'wf-kind', id: `wf-kind-${value}`, value, checked: kind === value,
      onchange: () => {
        document.querySelectorAll('.kind-choice').forEach((el) => el.classList.toggle('chosen', el.dataset.kind === value));
        // A fresh form: nothing typed into the other one (a password
        // included) is kept.
        const fresh = h('form', { class: 'stack', id: 'new-form', novalidate: true });
        $('#new-form').replaceWith(fresh);
        if (value === 'import') buildImportForm(fresh); else buildNewForm(fresh, params.get('source') || '');
      },
    }),
    h('span', { class: 'kind-text' }, h('strong', {}, label), h('span', { class: 'muted small' }, text)));
  main.append(
    h('div', { class: 'page-head' },
      h('div', {}, h('div', { class: 'crumbs' }, h('a', { href: '#/workflows' }, 'Workflows'), ' / New'),
        h('h1', {}, 'New workflow'),
        h('p', {}, 'Move tables between keyspaces, or import a database from a MySQL or MariaDB server keyshift does not run, with no downtime. Validate first: every pre-check runs and every problem is listed.'))),
    h('div', { class: 'kind-choices', id: 'wf-kind', role: 'radiogroup', 'aria-label': 'Kind of workflow' },
      choice('move', 'Move tables', 'From one keyspace of this cluster to another.'),
      choice('import', 'Import from an external server', 'Bring a database from your own MySQL/MariaDB server into a keyspace while its application keeps writing.')),
    form);
  if (kind === 'import') buildImportForm(form); else buildNewForm(form, params.get('source') || '');
}

async function buildNewForm(form, presetSource) {
  let keyspaces = [];
  try {
    keyspaces = await api('GET', '/keyspaces');
  } catch (e) {
    form.replaceChildren(h('div', { class: 'banner error' }, e.message));
    return;
  }
  const names = keyspaces.map((k) => k.name);
  const nameIn = h('input', { type: 'text', id: 'wf-name', name: 'name', placeholder: 'e.g. move_customers', autocomplete: 'off' });
  const ksOption = (k, sel) => h('option', { value: k.name, selected: sel }, `${k.name}${k.sharded ? ` (${k.shards.length} shards)` : ''}`);
  const source = presetSource && names.includes(presetSource) ? presetSource : (names[0] || '');
  const sourceSel = h('select', { id: 'wf-source', name: 'source_keyspace' }, keyspaces.map((k) => ksOption(k, k.name === source)));
  const defaultTarget = (keyspaces.find((k) => k.name !== source && k.sharded) || keyspaces.find((k) => k.name !== source) || {}).name;
  const targetSel = h('select', { id: 'wf-target', name: 'target_keyspace' }, keyspaces.map((k) => ksOption(k, k.name === defaultTarget)));
  const picker = h('div', { class: 'tables-picker', id: 'wf-tables' }, h('span', { class: 'muted' }, 'Loading tables…'));
  const onDdl = h('select', { id: 'wf-on-ddl' }, ['stop', 'ignore', 'exec', 'exec_ignore'].map((v) => h('option', { value: v }, v)));
  const defer = h('input', { type: 'checkbox', id: 'wf-defer', checked: true });
  const stopAfter = h('input', { type: 'checkbox', id: 'wf-stop-after-copy' });
  const batch = h('input', { type: 'number', id: 'wf-batch', value: '10000', min: '1' });
  const result = h('div', { id: 'validation' });
  const errors = {};
  const fieldError = (name) => (errors[name] = h('div', { class: 'field-error', 'data-field': name }));
  const validateBtn = h('button', { type: 'button', class: 'btn', id: 'wf-validate' }, 'Validate');
  const createBtn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'wf-create', disabled: true, title: 'Validate first' }, 'Create workflow');
  let validated = null;

  const request = () => ({
    name: nameIn.value.trim(),
    source_keyspace: sourceSel.value,
    target_keyspace: targetSel.value,
    tables: [...picker.querySelectorAll('input[name=table]:checked')].map((c) => c.value),
    options: {
      on_ddl: onDdl.value,
      defer_secondary_keys: defer.checked,
      stop_after_copy: stopAfter.checked,
      copy_batch_rows: Number(batch.value),
    },
  });
  const invalidate = () => {
    validated = null;
    createBtn.disabled = true;
    createBtn.title = 'Validate first';
  };
  const showFieldErrors = (fields) => {
    for (const el of Object.values(errors)) el.textContent = '';
    form.querySelectorAll('.invalid').forEach((e) => e.classList.remove('invalid'));
    for (const f of fields || []) {
      const key = f.field.split(/[.[]/)[0] === 'options' ? f.field.split('.')[1] : f.field.split('[')[0];
      const el = errors[key] || errors.form;
      el.textContent = el.textContent ? `${el.textContent}; ${f.problem}` : f.problem;
    }
  };

  async function loadTables() {
    invalidate();
    picker.replaceChildren(h('span', { class: 'muted' }, 'Loading tables…'));
    let tables;
    try {
      tables = await api('GET', `/keyspaces/${encodeURIComponent(sourceSel.value)}/tables`);
    } catch (e) {
      picker.replaceChildren(h('span', { class: 'field-error' }, e.message));
      return;
    }
    if (!tables.length) {
      picker.replaceChildren(h('span', { class: 'muted' }, 'This keyspace has no tables.'));
      return;
    }
    const all = h('input', { type: 'checkbox', id: 'wf-all-tables', onchange: (e) => {
      picker.querySelectorAll('input[name=table]').forEach((c) => { c.checked = e.target.checked; });
      invalidate();
    } });
    picker.replaceChildren(
      h('label', { class: 'check', style: { gridColumn: '1 / -1', fontWeight: '600' } }, all, 'All tables'),
      ...tables.map((t) => h('label', { class: 'check' },
        h('input', { type: 'checkbox', name: 'table', value: t.name, onchange: invalidate }),
        h('span', {}, t.name),
        h('span', { class: 'pk' }, t.primary_key.length ? `pk ${t.primary_key.join(', ')}` : 'no pk'))));
  }

  async function validate() {
    invalidate();
    validateBtn.disabled = true;
    result.replaceChildren(h('div', { class: 'muted' }, 'Running pre-checks…'));
    try {
      const report = await api('POST', '/workflows', { ...request(), validate_only: true });
      showFieldErrors([]);
      if (report.ok) {
        validated = JSON.stringify(request());
        createBtn.disabled = false;
        createBtn.title = '';
      }
      result.replaceChildren(...reportView(report, 'the tables'));
    } catch (e) {
      if (e.code === 'invalid' && e.details && e.details.fields) {
        showFieldErrors(e.details.fields);
        result.replaceChildren(h('div', { class: 'banner error' }, 'Some fields need attention.'));
      } else {
        result.replaceChildren(h('div', { class: 'banner error' }, e.message));
      }
    } finally {
      validateBtn.disabled = false;
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!validated || validated !== JSON.stringify(request())) { invalidate(); return; }
    createBtn.disabled = true;
    try {
      const w = await api('POST', '/workflows', request());
      toast(`Workflow ${w.name} created`, 'ok');
      location.hash = `#/workflows/${encodeURIComponent(w.name)}`;
    } catch (x) {
      if (x.code === 'invalid' && x.details && x.details.findings) {
        result.replaceChildren(findingsList(x.details.findings));
      } else if (x.code === 'invalid' && x.details && x.details.fields) {
        showFieldErrors(x.details.fields);
      } else {
        result.replaceChildren(h('div', { class: 'banner error' }, x.message));
      }
      createBtn.disabled = false;
    }
  });
  validateBtn.addEventListener('click', validate);
  sourceSel.addEventListener('change', loadTables);
  for (const el of [nameIn, targetSel, onDdl, defer, stopAfter, batch]) {
    el.addEventListener('input', invalidate);
    el.addEventListener('change', invalidate);
  }

  form.replaceChildren(
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, '1. What to move')),
      h('div', { class: 'card-body stack' },
        h('div', { class: 'form-grid' },
          h('label', { class: 'field' }, 'Workflow name', nameIn, h('span', { class: 'hint' }, 'Letters, digits and underscores.'), fieldError('name')),
          h('label', { class: 'field' }, 'Source keyspace', sourceSel, fieldError('source_keyspace')),
          h('label', { class: 'field' }, 'Target keyspace', targetSel, fieldError('target_keyspace'))),
        h('div', { class: 'field' }, h('span', {}, 'Tables'), picker, fieldError('tables')),
        h('details', { class: 'options' }, h('summary', {}, 'Options'),
          h('div', { class: 'form-grid' },
            h('label', { class: 'field' }, 'On DDL', onDdl, h('span', { class: 'hint' }, 'What the streams do with schema changes on the source.'), fieldError('on_ddl')),
            h('label', { class: 'field' }, 'Copy batch (rows)', batch, fieldError('copy_batch_rows')),
            h('div', { class: 'stack', style: { gap: '10px', paddingTop: '24px' } },
              h('label', { class: 'check' }, defer, 'Add secondary keys after the copy'),
              h('label', { class: 'check' }, stopAfter, 'Stop once the copy is done')))))),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, '2. Validate and create')),
      h('div', { class: 'card-body stack' },
        result, fieldError('form'),
        h('div', { class: 'form-actions' }, validateBtn, createBtn))));
  loadTables();
}

// Findings, each with its severity (errors block creation, warnings do
// not), the problem and the fix.
function findingsList(findings) {
  return h('div', { class: 'findings', id: 'findings' }, findings.map((f) => {
    const sev = f.severity || 'error';
    return h('div', { class: `finding sev-${sev}`, 'data-check': f.check, 'data-table': f.table || '', 'data-severity': sev },
      h('span', { class: 'check-name' }, h('span', { class: `sev sev-${sev}` }, sev === 'warning' ? 'Warning' : 'Error'), ' ', f.check.replace(/_/g, ' ')),
      h('span', { class: 'problem' }, f.table ? [h('code', {}, f.table), ' — ', f.problem] : f.problem),
      h('span', { class: 'fix' }, h('strong', {}, 'Fix: '), f.fix));
  }));
}

// What a validation report says: passed (maybe with warnings) or the
// problems to fix, every finding listed.
function reportView(report, what) {
  const errors = report.findings.filter((f) => (f.severity || 'error') === 'error').length;
  const warnings = report.findings.length - errors;
  const plural = (n, w) => `${n} ${w}${n === 1 ? '' : 's'}`;
  if (report.ok) {
    return [
      h('div', { class: 'validation-ok' }, '✓ All pre-checks passed for ', report.tables.join(', ') || what,
        warnings ? `, with ${plural(warnings, 'warning')} below` : '', '. Ready to create.'),
      warnings ? findingsList(report.findings) : null,
    ].filter(Boolean);
  }
  return [
    h('h3', { style: { margin: '0 0 8px' } }, `${plural(errors, 'problem')} to fix before creating`, warnings ? ` (and ${plural(warnings, 'warning')})` : ''),
    findingsList(report.findings),
  ];
}

// The import form: the external server's URL and password, the keyspace
// that stands for it, the target and the tables. The password is only
// ever sent in the request body; it is not kept anywhere in the page.
async function buildImportForm(form) {
  let keyspaces = [];
  try {
    keyspaces = await api('GET', '/keyspaces');
  } catch (e) {
    form.replaceChildren(h('div', { class: 'banner error' }, e.message));
    return;
  }
  if (!form.isConnected) return;
  const nameIn = h('input', { type: 'text', id: 'wf-name', name: 'name', placeholder: 'e.g. import_shop', autocomplete: 'off' });
  const fromIn = h('input', { type: 'text', id: 'imp-from', name: 'from', placeholder: 'mysql://user@host:3306/database', autocomplete: 'off', spellcheck: 'false' });
  const pwIn = h('input', { type: 'password', id: 'imp-password', name: 'password', autocomplete: 'new-password', placeholder: 'the user\'s password' });
  const srcIn = h('input', { type: 'text', id: 'imp-source-keyspace', name: 'source_keyspace', placeholder: 'ext_<database>', autocomplete: 'off' });
  const ksOption = (k, sel) => h('option', { value: k.name, selected: sel }, `${k.name}${k.sharded ? ` (${k.shards.length} shards)` : ''}`);
  const defaultTarget = (keyspaces.find((k) => k.sharded) || keyspaces[0] || {}).name;
  const targetSel = h('select', { id: 'wf-target', name: 'target_keyspace' }, keyspaces.map((k) => ksOption(k, k.name === defaultTarget)));
  const allIn = h('input', { type: 'checkbox', id: 'imp-all-tables', checked: true });
  const tablesIn = h('input', { type: 'text', id: 'imp-tables', name: 'tables', placeholder: 'orders, customers', autocomplete: 'off', disabled: true });
  const excludeIn = h('input', { type: 'text', id: 'imp-exclude', name: 'exclude_tables', placeholder: 'none', autocomplete: 'off' });
  const sslSel = h('select', { id: 'imp-ssl-mode', name: 'ssl_mode' },
    ['disabled', 'required', 'verify-ca', 'verify-identity'].map((m) => h('option', { value: m }, m)));
  const caIn = h('textarea', { id: 'imp-ssl-ca', name: 'ssl_ca', rows: 3, spellcheck: 'false', placeholder: '-----BEGIN CERTIFICATE----- … (the CA that signed the server\'s certificate)' });
  const vschemaIn = h('textarea', { id: 'imp-target-vschema', name: 'target_vschema', rows: 6, spellcheck: 'false', placeholder: '{"sharded": true, "vindexes": {"hash": {"type": "hash"}}, "tables": {"orders": {"column_vindexes": [{"column": "customer_id", "name": "hash"}]}}}' });
  const result = h('div', { id: 'validation' });
  const errors = {};
  const fieldError = (name) => (errors[name] = h('div', { class: 'field-error', 'data-field': name }));
  const validateBtn = h('button', { type: 'button', class: 'btn', id: 'wf-validate' }, 'Validate');
  const createBtn = h('button', { type: 'submit', class: 'btn btn-primary', id: 'wf-create', disabled: true, title: 'Validate first' }, 'Create import');
  let validated = null;
  const list = (v) => v.split(',').map((t) => t.trim()).filter(Boolean);

  const request = () => {
    const r = {
      name: nameIn.value.trim(),
      from: fromIn.value.trim(),
      target_keyspace: targetSel.value,
    };
    if (pwIn.value) r.password = pwIn.value;
    if (srcIn.value.trim()) r.source_keyspace = srcIn.value.trim();
    if (sslSel.value !== 'disabled') r.ssl_mode = sslSel.value;
    if (caIn.value.trim()) r.ssl_ca = caIn.value.trim();
    if (vschemaIn.value.trim()) {
      // Sent as JSON; text that does not parse is sent as text, and the
      // API names the field.
      try { r.target_vschema = JSON.parse(vschemaIn.value); } catch (_) { r.target_vschema = vschemaIn.value; }
    }
    if (allIn.checked) {
      r.all_tables = true;
      if (list(excludeIn.value).length) r.exclude_tables = list(excludeIn.value);
    } else {
      r.tables = list(tablesIn.value);
    }
    return r;
  };
  // What validation covered, without the password (compared, not kept).
  const fingerprint = () => JSON.stringify({ ...request(), password: pwIn.value.length });
  const invalidate = () => {
    validated = null;
    createBtn.disabled = true;
    createBtn.title = 'Validate first';
  };
  const showFieldErrors = (fields) => {
    for (const el of Object.values(errors)) el.textContent = '';
    for (const f of fields || []) {
      const key = f.field.split(/[.[]/)[0];
      const el = errors[key] || errors.form;
      el.textContent = el.textContent ? `${el.textContent}; ${f.problem}` : f.problem;
    }
  };
  const suggestKeyspace = () => {
    const m = /\/([^/?]+)(\?.*)?$/.exec(fromIn.value.trim().replace(/^[a-z]+:\/\//, ''));
    let db = m ? m[1] : '';
    try { db = decodeURIComponent(db); } catch (_) { /* shown as typed */ }
    srcIn.placeholder = db ? `ext_${db.replace(/[^A-Za-z0-9_]/g, '_')}` : 'ext_<database>';
  };

  async function validate() {
    invalidate();
    validateBtn.disabled = true;
    result.replaceChildren(h('div', { class: 'muted' }, 'Connecting to the server and running every check…'));
    const fp = fingerprint();
    try {
      const report = await api('POST', '/imports', { ...request(), validate_only: true });
      showFieldErrors([]);
      if (report.ok) {
        validated = fp;
        createBtn.disabled = false;
        createBtn.title = '';
      }
      result.replaceChildren(...reportView(report, 'the import'));
    } catch (e) {
      if (e.code === 'invalid' && e.details && e.details.fields) {
        showFieldErrors(e.details.fields);
        result.replaceChildren(h('div', { class: 'banner error' }, 'Some fields need attention.'));
      } else {
        result.replaceChildren(h('div', { class: 'banner error' }, e.message));
      }
    } finally {
      validateBtn.disabled = false;
    }
  }

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    if (!validated || validated !== fingerprint()) { invalidate(); return; }
    createBtn.disabled = true;
    result.replaceChildren(h('div', { class: 'muted' }, 'Checking again and creating…'));
    try {
      const w = await api('POST', '/imports', request());
      pwIn.value = '';
      toast(`Import ${w.name} created`, 'ok');
      location.hash = `#/workflows/${encodeURIComponent(w.name)}`;
    } catch (x) {
      if (x.code === 'invalid' && x.details && x.details.findings) {
        result.replaceChildren(...reportView({ ok: false, tables: x.details.tables || [], findings: x.details.findings }, 'the import'));
      } else if (x.code === 'invalid' && x.details && x.details.fields) {
        showFieldErrors(x.details.fields);
        result.replaceChildren(h('div', { class: 'banner error' }, 'Some fields need attention.'));
      } else {
        result.replaceChildren(h('div', { class: 'banner error' }, x.message));
      }
      createBtn.disabled = false;
    }
  });
  validateBtn.addEventListener('click', validate);
  allIn.addEventListener('change', () => {
    tablesIn.disabled = allIn.checked;
    excludeIn.disabled = !allIn.checked;
    (allIn.checked ? excludeIn : tablesIn).focus();
  });
  fromIn.addEventListener('input', suggestKeyspace);
  for (const el of [nameIn, fromIn, pwIn, srcIn, targetSel, allIn, tablesIn, excludeIn, sslSel, caIn, vschemaIn]) {
    el.addEventListener('input', invalidate);
    el.addEventListener('change', invalidate);
  }

  form.replaceChildren(
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, '1. The external server')),
      h('div', { class: 'card-body stack' },
        h('div', { class: 'form-grid' },
          h('label', { class: 'field', style: { gridColumn: 'span 2' } }, 'Source URL', fromIn,
            h('span', { class: 'hint' }, 'mysql://user@host:port/database. The server needs binlog_format=ROW, binlog_row_image=FULL and GTIDs; the user REPLICATION SLAVE, REPLICATION CLIENT, SELECT and RELOAD. Validate lists whatever is missing, with the fix.'),
            fieldError('from')),
          h('label', { class: 'field' }, 'Password', pwIn, h('span', { class: 'hint' }, 'Sent once over this connection; stored for the import only, never logged.'), fieldError('password'))),
        h('div', { class: 'form-grid' },
          h('label', { class: 'field' }, 'TLS', sslSel, h('span', { class: 'hint' }, 'As the mysql client\'s --ssl-mode. verify-identity checks that the certificate names the host.'), fieldError('ssl_mode')),
          h('label', { class: 'field', style: { gridColumn: 'span 2' } }, 'CA certificate (PEM, optional)', caIn, fieldError('ssl_ca'))),
        h('div', { class: 'form-grid' },
          h('label', { class: 'field' }, 'Workflow name', nameIn, h('span', { class: 'hint' }, 'Letters, digits and underscores.'), fieldError('name')),
          h('label', { class: 'field' }, 'Source keyspace name (optional)', srcIn, h('span', { class: 'hint' }, 'The name the external server has inside keyshift.'), fieldError('source_keyspace')),
          h('label', { class: 'field' }, 'Target keyspace', targetSel, fieldError('target_keyspace'))),
        h('div', { class: 'field' }, h('span', {}, 'Tables'),
          h('div', { class: 'form-grid' },
            h('label', { class: 'check' }, allIn, 'All tables of the database'),
            h('label', { class: 'field' }, 'Except (comma-separated)', excludeIn),
            h('label', { class: 'field' }, 'Or only these (comma-separated)', tablesIn)),
          fieldError('tables'), fieldError('exclude_tables')),
        h('label', { class: 'field' }, 'Target VSchema (JSON, needed for a sharded target)', vschemaIn,
          h('span', { class: 'hint' }, 'The target keyspace\'s whole VSchema, with a primary vindex for each imported table; checked against the external server\'s tables and stored with the import.'),
          fieldError('target_vschema')))),
    h('section', { class: 'card' },
      h('div', { class: 'card-head' }, h('h2', {}, '2. Validate and create')),
      h('div', { class: 'card-body stack' },
        result, fieldError('form'),
        h('div', { class: 'form-actions' }, validateBtn, createBtn))));
  nameIn.focus();
}

// ---------------------------------------------------------------- workflow page

function renderWorkflow(main) {
  main.append(h('div', { id: 'workflow', 'data-name': app.route.name }, h('div', { class: 'empty' }, 'Loading…')));
  loadWorkflow(app.route.name, false);
}

async function loadWorkflow(name, quiet) {
  try {
    const [w, lag] = await Promise.all([
      api('GET', `/workflows/${encodeURIComponent(name)}`),
      api('GET', `/workflows/${encodeURIComponent(name)}/lag`).catch(() => ({ samples: [] })),
    ]);
    if (!app.route || app.route.name !== name) return;
    const merged = new Map();
    for (const s of [...lag.samples, ...(app.lag.get(name) || [])]) merged.set(Math.round(s.at_ms / 1000), s);
    app.lag.set(name, [...merged.values()].sort((a, b) => a.at_ms - b.at_ms));
    app.current = w;
    renderWorkflowBody();
  } catch (e) {
    if (quiet) return;
    const box = $('#workflow');
    if (box) box.replaceChildren(h('div', { class: 'banner error' }, e.code === 'not_found' ? `No workflow named ${name}.` : e.message));
  }
}

function renderWorkflowBody() {
  const box = $('#workflow');
  const w = app.current;
  if (!box || !w) return;
  const active = document.activeElement && document.activeElement.dataset ? document.activeElement.dataset.button : null;
  // Progress updates arrive several times a second: keep the action bar
  // (and so a click in progress, a focused button, a hover) unless what it
  // offers changed.
  const actionsKey = JSON.stringify([w.state, w.actions]);
  const oldActions = $('#actions');
  const actions = oldActions && oldActions.dataset.key === actionsKey ? oldActions : actionButtons(w);
  actions.dataset.key = actionsKey;
  const historyOpen = !!(box.querySelector('#phase-history') || {}).open;
  box.replaceChildren(
    workflowHeader(w),
    h('div', { class: 'stack', style: { marginTop: '20px' } },
      banners(w),
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', {}, 'Actions'), h('span', { class: 'sub' }, 'Only what is safe in the current state is enabled; hover a disabled action to see why.')),
        h('div', { class: 'card-body' }, actions)),
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', {}, 'Phases')),
        h('div', { class: 'card-body' }, timeline(w))),
      h('div', { class: 'stats' },
        stat('Copied', `${Math.floor(w.copy_percent)}%`),
        stat('Max lag', w.max_lag_seconds === null || w.max_lag_seconds === undefined ? '—' : `${w.max_lag_seconds}s`),
        stat('Duration', fmtDuration(w.durations.total_ms)),
        stat('Time to copy', fmtDuration(w.durations.copy_ms)),
        stat('Time to complete', fmtDuration(w.durations.complete_ms))),
      h('div', { class: 'grid-2' },
        h('section', { class: 'card' },
          h('div', { class: 'card-head' }, h('h2', {}, 'Copy progress'), h('span', { class: 'sub' }, w.copy_done ? 'copy finished' : 'per table')),
          h('div', { class: 'card-body' }, tableProgress(w))),
        h('section', { class: 'card' },
          h('div', { class: 'card-head' }, h('h2', {}, 'Replication lag'), h('span', { class: 'sub' }, 'highest over streams')),
          h('div', { class: 'card-body' }, lagChart(app.lag.get(w.name) || [])))),
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', {}, 'Streams'), h('span', { class: 'sub' }, `${w.streams.length} source → target shard pipe${w.streams.length === 1 ? '' : 's'}`)),
        h('div', { class: 'card-body flush' }, streamsTable(w))),
      h('section', { class: 'card', id: 'vdiff' },
        h('div', { class: 'card-head' }, h('h2', {}, 'Data verification (VDiff)')),
        h('div', { class: 'card-body' }, vdiffReport(w.vdiff))),
      h('section', { class: 'card' },
        h('div', { class: 'card-head' }, h('h2', {}, 'Event log'), h('span', { class: 'sub' }, `${w.events.length} events`)),
        h('div', { class: 'card-body flush' }, eventLog(w)))));
  if (historyOpen) $('#phase-history').open = true;
  if (active) {
    const again = box.querySelector(`[data-button="${active}"]`);
    if (again && !again.disabled) again.focus();
  }
}

function workflowHeader(w) {
  const first = w.phases[0];
  return h('div', { class: 'page-head' },
    h('div', {},
      h('div', { class: 'crumbs' }, h('a', { href: '#/workflows' }, 'Workflows'), ` / ${w.name}`),
      h('div', { class: 'wf-title' }, h('h1', {}, w.name), h('span', { id: 'wf-state' }, pill(w.state))),
      h('div', { class: 'wf-meta' },
        h('span', {}, 'Route ', h('strong', {}, `${w.source_keyspace} → ${w.target_keyspace}`)),
        h('span', {}, 'Tables ', h('strong', {}, w.tables.map((t) => t.name).join(', '))),
        h('span', { id: 'wf-kind', 'data-kind': w.type }, 'Kind ', h('strong', {}, KIND_LABEL[w.type] || w.type.replace('_', ' '))),
        h('span', {}, 'Created ', h('strong', {}, timeEl(w.created_ms, true)), first ? [' by ', byTag(first.by)] : null))));
}

function banners(w) {
  const out = [];
  if (w.state === 'error' && w.error) out.push(h('div', { class: 'banner error', id: 'wf-error' }, h('strong', {}, 'Stopped on an error. '), w.error));
  if (w.state === 'stopped') out.push(h('div', { class: 'banner warn' }, 'The streams are stopped. Start resumes from what the targets committed.'));
  if (w.paused) out.push(h('div', { class: 'banner info' }, `Streams held by ${w.paused.by} until ${fmtTime(w.paused.until_ms)}.`));
  if (w.switch_notice) out.push(h('div', { class: 'banner warn', id: 'wf-switch-notice' }, h('strong', {}, 'Before switching traffic: '), w.switch_notice));
  return out;
}

function buttonState(w, b) {
  // Bodies spell actions in snake_case; URLs in kebab-case.
  const key = b.action.replace(/-/g, '_');
  const a = w.actions.find((x) => x.action === key) || { allowed: false, reason: 'unknown action' };
  if (!a.allowed) return a;
  if (b.id === 'switch-reads' && w.state !== 'running') return { allowed: false, reason: 'reads are already switched; switch the rest of the traffic or reverse' };
  return a;
}

function actionButtons(w) {
  return h('div', { class: 'actions', id: 'actions' }, BUTTONS.map((b) => {
    const st = buttonState(w, b);
    const cls = st.allowed && b.kind === 'warn' ? 'btn btn-warn' : (st.allowed && b.id.startsWith('switch') ? 'btn btn-primary' : 'btn');
    const btn = h('button', {
      type: 'button', class: cls, 'data-button': b.id, 'data-action': b.action,
      disabled: !st.allowed, title: st.allowed ? null : st.reason, 'data-reason': st.allowed ? null : st.reason,
      onclick: () => runAction(w.name, b),
    }, b.label);
    return h('span', { class: 'action-wrap' }, btn, st.allowed ? null : h('span', { class: 'why', role: 'tooltip' }, st.reason));
  }));
}

async function runAction(name, b) {
  let body = b.body ? { ...b.body } : undefined;
  if (b.confirm) {
    // An import's primary switch: say plainly what it means for writers.
    const notice = b.id === 'switch-traffic' && app.current && app.current.name === name ? app.current.switch_notice : null;
    const extra = await confirmDialog(name, notice ? { ...b.confirm, notice } : b.confirm);
    if (!extra) return;
    if (b.confirm.keepData) body = { ...(body || {}), keep_data: extra.keepData };
    if (b.confirm.mode) body = { ...(body || {}), mode: extra.mode };
  }
  const bar = $('#actions');
  document.querySelectorAll('#actions button').forEach((x) => { x.disabled = true; });
  // Whatever happens next, the bar is rebuilt from the workflow's state.
  if (bar) delete bar.dataset.key;
  try {
    const w = await api('POST', `/workflows/${encodeURIComponent(name)}/${b.action}`, body);
    toast(`${b.label}: done — ${STATE_LABEL[w.state] || w.state}`, 'ok');
    if (w.notice) toast(w.notice, 'warn');
    if (app.route && app.route.name === name) { app.current = w; renderWorkflowBody(); }
  } catch (e) {
    const allowed = e.details && e.details.allowed_actions ? ` Allowed now: ${e.details.allowed_actions.join(', ') || 'none'}.` : '';
    toast(`${b.label} failed: ${e.message}${allowed}`, 'error');
    loadWorkflow(name, true);
  }
}

function confirmDialog(name, c) {
  const dlg = $('#confirm');
  $('#confirm-title').textContent = c.title;
  const typed = h('input', { type: 'text', id: 'confirm-name', autocomplete: 'off', placeholder: name });
  const keep = h('input', { type: 'checkbox', id: 'confirm-keep' });
  const mode = h('select', { id: 'confirm-mode' },
    h('option', { value: 'drop' }, 'Drop the source tables'),
    h('option', { value: 'rename_tables' }, 'Rename them to _<table>_old'),
    h('option', { value: 'keep_data' }, 'Keep them as they are'));
  const body = $('#confirm-body');
  // (replaceChildren would print a null as "null".)
  body.replaceChildren(...[
    c.notice ? h('div', { class: 'banner warn', id: 'confirm-notice', role: 'alert' }, c.notice) : null,
    h('p', { style: { margin: 0 } }, c.text),
    h('p', { style: { margin: 0 } }, 'Workflow: ', h('strong', {}, name)),
    c.keepData ? h('label', { class: 'check' }, keep, 'Keep the copied data on the target') : null,
    c.mode ? h('label', { class: 'field' }, h('span', {}, 'Source tables'), mode) : null,
    c.typeName ? h('label', { class: 'field' }, h('span', {}, 'Type the workflow name to confirm'), typed) : null,
  ].filter(Boolean));
  const ok = $('#confirm-ok');
  ok.className = c.danger ? 'btn btn-danger' : 'btn btn-primary';
  ok.textContent = c.title.replace(/\?$/, '').split(' ')[0];
  ok.disabled = !!c.typeName;
  typed.addEventListener('input', () => { ok.disabled = typed.value.trim() !== name; });
  return new Promise((resolve) => {
    const done = (v) => {
      dlg.removeEventListener('close', onClose);
      $('#confirm-form').removeEventListener('submit', onSubmit);
      $('#confirm-cancel').removeEventListener('click', onCancel);
      if (dlg.open) dlg.close();
      resolve(v);
    };
    const onSubmit = (e) => { e.preventDefault(); if (!ok.disabled) done({ keepData: keep.checked, mode: mode.value }); };
    const onCancel = () => done(null);
    const onClose = () => done(null);
    dlg.addEventListener('close', onClose);
    $('#confirm-form').addEventListener('submit', onSubmit);
    $('#confirm-cancel').addEventListener('click', onCancel);
    dlg.showModal();
    (c.typeName ? typed : $('#confirm-cancel')).focus();
  });
}

function timeline(w) {
  // When each step was first reached (what the durations count from); the
  // phase history below lists every entry, switches back included.
  const stamp = (s) => w.phases.find((p) => p.state === s);
  const reachedIdx = TIMELINE.reduce((acc, [s], i) => (stamp(s) ? i : acc), -1);
  const currentIdx = TIMELINE.findIndex(([s]) => s === w.state);
  const steps = TIMELINE.map(([s, label], i) => {
    const p = stamp(s);
    const finished = w.state === 'completed';
    const isCurrent = i === currentIdx && !finished;
    const done = !!p && (finished || i < (currentIdx >= 0 ? currentIdx : reachedIdx + 1));
    return h('div', { class: `step${done ? ' done' : ''}${isCurrent ? ' current' : ''}`, 'data-phase': s },
      h('div', { class: 'marker' }, done ? '✓' : String(i + 1)),
      h('div', { class: 'bar' }),
      h('div', { class: 'label' }, label),
      h('div', { class: 'when' }, p ? [fmtTime(p.at_ms), ' ', byTag(p.by)] : '—'));
  });
  const off = ['stopped', 'error', 'cancelled'].includes(w.state) ? stamp(w.state) : null;
  const history = h('details', { id: 'phase-history', style: { marginTop: '14px' } },
    h('summary', { class: 'muted small', style: { cursor: 'pointer' } }, `Phase history (${w.phases.length})`),
    h('table', { style: { marginTop: '8px' } },
      h('thead', {}, h('tr', {}, h('th', {}, 'Phase'), h('th', {}, 'Entered'), h('th', {}, 'By'), h('th', { class: 'num' }, 'Time in phase'))),
      h('tbody', {}, w.phases.map((p, i) => h('tr', {},
        h('td', {}, pill(p.state)), h('td', {}, fmtTime(p.at_ms)), h('td', {}, byTag(p.by)),
        h('td', { class: 'num' }, fmtDuration((i + 1 < w.phases.length ? w.phases[i + 1].at_ms : (['completed', 'cancelled'].includes(p.state) ? p.at_ms : Date.now())) - p.at_ms)))))));
  return [
    off ? h('div', { class: `banner ${w.state === 'error' ? 'error' : 'warn'}`, style: { marginBottom: '14px' } },
      `${STATE_LABEL[w.state]} since ${fmtTime(off.at_ms)} `, byTag(off.by)) : null,
    h('div', { class: 'timeline' }, steps),
    history,
  ];
}

function tableProgress(w) {
  const rows = w.table_progress.length ? w.table_progress
    : w.tables.map((t) => ({ name: t.name, rows_copied: 0, estimated_rows: 0, percent: 0, done: false }));
  return h('div', { class: 'table-progress', id: 'table-progress' }, rows.map((t) => {
    const pct = t.done ? 100 : t.percent;
    return [
      h('div', { class: 'name mono' }, t.name),
      progressBar(pct, t.done),
      h('div', { class: 'figures', 'data-table': t.name },
        t.done ? `${fmtInt(t.rows_copied)} rows · 100% · done`
          : `${fmtInt(t.rows_copied)} / ${fmtInt(Math.max(t.estimated_rows, t.rows_copied))} rows · ${Math.floor(pct)}%`,
        !t.done && t.eta_seconds ? ` · ${fmtDuration(t.eta_seconds * 1000)} left` : ''),
    ];
  }));
}

function lagChart(samples) {
  if (!samples.length) return h('div', { class: 'empty', id: 'lag-chart' }, 'No lag reported yet. Streams report lag once they replicate.');
  const W = 600; const H = 190; const L = 40; const R = 12; const T = 12; const B = 26;
  const t1 = Math.max(Date.now(), samples[samples.length - 1].at_ms);
  const t0 = Math.min(samples[0].at_ms, t1 - 60000);
  const maxLag = Math.max(5, ...samples.map((s) => s.lag_seconds));
  const yMax = Math.ceil(maxLag * 1.2);
  const x = (t) => L + ((t - t0) / Math.max(1, t1 - t0)) * (W - L - R);
  const y = (v) => T + (1 - v / yMax) * (H - T - B);
  const pts = samples.map((s) => `${x(s.at_ms).toFixed(1)},${y(s.lag_seconds).toFixed(1)}`);
  // Hold the last value until now: lag is a level, not an event.
  pts.push(`${x(t1).toFixed(1)},${y(samples[samples.length - 1].lag_seconds).toFixed(1)}`);
  const ticks = [0, Math.round(yMax / 2), yMax];
  const svg = h('svg:svg', { class: 'chart', id: 'lag-chart', viewBox: `0 0 ${W} ${H}`, preserveAspectRatio: 'none', role: 'img', 'aria-label': 'replication lag over time' },
    ticks.map((v) => [
      h('svg:line', { class: 'grid', x1: L, x2: W - R, y1: y(v), y2: y(v) }),
      h('svg:text', { class: 'axis', x: L - 6, y: y(v) + 4, 'text-anchor': 'end' }, `${v}s`),
    ]),
    h('svg:text', { class: 'axis', x: L, y: H - 6 }, new Date(t0).toLocaleTimeString()),
    h('svg:text', { class: 'axis', x: W - R, y: H - 6, 'text-anchor': 'end' }, 'now'),
    h('svg:polygon', { class: 'area', points: `${x(samples[0].at_ms).toFixed(1)},${y(0)} ${pts.join(' ')} ${x(t1).toFixed(1)},${y(0)}` }),
    h('svg:polyline', { class: 'line', points: pts.join(' ') }),
    h('svg:circle', { class: 'last', cx: x(t1), cy: y(samples[samples.length - 1].lag_seconds), r: 3.5 }));
  return svg;
}

function streamsTable(w) {
  if (!w.streams.length) return h('div', { class: 'empty' }, 'No streams.');
  return h('table', {},
    h('thead', {}, h('tr', {}, h('th', {}, 'Stream'), h('th', {}, 'Shards'), h('th', {}, 'State'), h('th', {}, 'Position (GTID)'),
      h('th', { class: 'num' }, 'Lag'), h('th', { class: 'num' }, 'Transactions'), h('th', {}, 'Last error'))),
    h('tbody', {}, w.streams.map((s) => h('tr', {},
      h('td', { class: 'mono' }, String(s.id)),
      h('td', { class: 'mono' }, `${s.source_shard} → ${s.target_shard}`),
      h('td', {}, s.state || '—'),
      h('td', { class: 'mono', title: s.position || '' }, s.position ? (s.position.length > 42 ? `${s.position.slice(0, 40)}…` : s.position) : '—'),
      h('td', { class: 'num' }, s.lag_seconds === null || s.lag_seconds === undefined ? '—' : `${s.lag_seconds}s`),
      h('td', { class: 'num' }, fmtInt(s.transactions_applied)),
      h('td', { class: s.last_error ? 'diff-bad small' : 'muted' }, s.last_error || '—')))));
}

function vdiffReport(v) {
  if (!v) return h('div', { class: 'muted', id: 'vdiff-report' }, 'No verification yet. Verify data compares every target row with the source at one point in time while traffic continues.');
  const state = v.state || 'unknown';
  const tone = state === 'completed' ? (v.has_mismatch ? 'bad' : 'ok') : (state === 'error' ? 'bad' : '');
  const headline = state === 'completed'
    ? (v.has_mismatch ? 'Differences found' : 'Target matches the source')
    : (STATE_LABEL[state] || state);
  const tables = Array.isArray(v.tables) ? v.tables : [];
  return h('div', { class: 'stack', id: 'vdiff-report', style: { gap: '14px' } },
    h('div', { class: 'row' },
      h('span', { class: `pill s-${tone || state}` }, headline),
      v.stale ? h('span', { class: 'tag' }, 'stale: older than 24 h') : null,
      h('span', { class: 'muted small' },
        v.completed_ms ? `finished ${fmtTime(v.completed_ms)}` : (v.started_ms ? `started ${fmtTime(v.started_ms)}` : (v.requested_ms ? `requested ${fmtTime(v.requested_ms)}` : '')),
        v.trigger ? [' by ', byTag(v.trigger)] : null)),
    v.error ? h('div', { class: 'banner error' }, v.error) : null,
    tables.length ? h('table', {},
      h('thead', {}, h('tr', {}, ['Table', 'Progress', 'Compared', 'Matching', 'Missing', 'Extra', 'Mismatched', 'Misplaced'].map((c, i) => h('th', { class: i > 1 ? 'num' : null }, c)))),
      h('tbody', {}, tables.map((t) => [
        h('tr', {},
          h('td', { class: 'mono' }, t.name),
          h('td', {}, progressBar(t.state === 'done' ? 100 : t.percent, t.state === 'done')),
          h('td', { class: 'num' }, fmtInt(t.rows_compared)),
          h('td', { class: 'num' }, fmtInt(t.matching)),
          ['missing_on_target', 'extra_on_target', 'mismatched', 'misplaced'].map((k) => h('td', { class: `num ${t[k] ? 'diff-bad' : ''}` }, fmtInt(t[k])))),
        (t.samples || []).length ? h('tr', {}, h('td', { colspan: 8 },
          h('ul', { class: 'samples' }, t.samples.map((s) => h('li', {},
            `${s.kind} key (${(s.key || []).join(', ')})`, s.shard ? ` on ${s.shard}` : '',
            (s.columns || []).length ? `: ${s.columns.map((c) => `${c.column} ${c.source} ≠ ${c.target}`).join('; ')}` : '',
            s.note ? ` — ${s.note}` : ''))))) : null,
      ]))) : null);
}

function eventLog(w) {
  if (!w.events.length) return h('div', { class: 'empty' }, 'No events.');
  return h('ul', { class: 'events', id: 'events' }, [...w.events].reverse().map((e) => h('li', {},
    h('time', { title: new Date(e.at_ms).toLocaleString() }, fmtTime(e.at_ms)),
    h('span', {}, byTag(e.by)),
    h('span', {}, e.message))));
}

// ---------------------------------------------------------------- start

function boot() {
  // `?token=` once: stored, then removed from the address bar and history.
  const url = new URL(location.href);
  const fromUrl = url.searchParams.get('token');
  if (fromUrl) {
    localStorage.setItem(TOKEN_KEY, fromUrl.trim());
    url.searchParams.delete('token');
    history.replaceState(null, '', url.pathname + url.search + url.hash);
  }
  app.token = localStorage.getItem(TOKEN_KEY);
  $('#signout').addEventListener('click', () => signOut('Signed out.'));
  window.addEventListener('hashchange', render);
  if (app.token) signedIn();
  render();
}

boot();
