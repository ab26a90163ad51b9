// The chatgate inspector page: every machine drawn with the bundled mermaid (served from this
// node, never a CDN), each state labelled with the live count of actors in it (GET /api/counts,
// server-sent events), the live connections (GET /api/connections, polled) and, for the one
// picked, its current states highlighted and what it lives through (GET /api/events, SSE).
// Everything shown comes from the server already redacted; text goes in with textContent only.
'use strict';

const CONNECTIONS_POLL_MS = 2000;
const MAX_EVENTS_SHOWN = 200;

const view = {
  node: '',
  machines: [],
  /** machine id -> state path -> actors */
  counts: {},
  /** the picked session, and the state paths it is in */
  selected: null,
  current: new Set(),
  events: null,
  /** machine id -> the Mermaid text last drawn */
  drawn: {},
};

const $ = (id) => document.getElementById(id);

function element(tag, props = {}, text) {
  const el = document.createElement(tag);
  Object.assign(el, props);
  if (text !== undefined) el.textContent = text;
  return el;
}

async function api(path) {
  const res = await fetch(path, { credentials: 'same-origin', headers: { accept: 'application/json' } });
  if (res.status === 401) {
    // The login expired: the page itself shows the form again.
    location.reload();
    throw new Error('logged out');
  }
  if (!res.ok) throw new Error(`${path}: HTTP ${res.status}`);
  return res.json();
}

/** Like the server's activePaths: every state a value is in, parents included. */
function activePaths(value, prefix = '') {
  if (typeof value === 'string') return [prefix + value];
  const out = [];
  for (const [key, child] of Object.entries(value ?? {})) {
    out.push(prefix + key);
    if (child !== undefined) out.push(...activePaths(child, `${prefix}${key}.`));
  }
  return out;
}

const leaves = (paths) => paths.filter((p) => !paths.some((q) => q.startsWith(`${p}.`)));

/** The machine's Mermaid text with the counts in the labels and the picked states highlighted. */
function diagramText(machine) {
  const counts = view.counts[machine.id] ?? {};
  const byId = new Map(machine.states.map((s) => [s.id, s]));
  let text = machine.mermaid.replace(/^(\s*)state "([^"]*)" as (\S+)/gm, (line, indent, label, id) => {
    const state = byId.get(id);
    return state ? `${indent}state "${label} (${counts[state.path] ?? 0})" as ${id}` : line;
  });
  // The breaker has one actor per node: its states are highlighted as it moves. A connection's
  // are highlighted once it is picked.
  const highlighted =
    machine.id === 'connection'
      ? machine.states.filter((s) => view.current.has(s.path))
      : machine.id === 'breaker'
        ? machine.states.filter((s) => (counts[s.path] ?? 0) > 0)
        : [];
  const leafIds = new Set(leaves(highlighted.map((s) => s.path)));
  const ids = highlighted.filter((s) => leafIds.has(s.path)).map((s) => s.id);
  if (ids.length) {
    text = `${text.trimEnd()}\n  classDef current fill:#ffe082,stroke:#e65100,stroke-width:3px\n  class ${ids.join(',')} current\n`;
  }
  return text;
}

let drawing = Promise.resolve();
let renders = 0;

/** Draws a machine again when its text changed; draws run one at a time, the latest wins. */
function draw(machine) {
  const text = diagramText(machine);
  if (view.drawn[machine.id] === text) return;
  view.drawn[machine.id] = text;
  drawing = drawing
    .then(async () => {
      if (view.drawn[machine.id] !== text) return;
      const { svg } = await mermaid.render(`diagram-${machine.id}-${++renders}`, text);
      const target = document.querySelector(`.machine[data-machine="${machine.id}"] .diagram`);
      target.innerHTML = svg;
      // Drawn at its own size (mermaid sets it as the max-width), scrolled if wider than the column.
      const drawn = target.querySelector('svg');
      if (drawn?.style.maxWidth) drawn.style.width = drawn.style.maxWidth;
      target.dataset.counts = JSON.stringify(view.counts[machine.id] ?? {});
    })
    .catch((err) => {
      document.querySelector(`.machine[data-machine="${machine.id}"] .diagram`).textContent = `cannot draw: ${err.message}`;
    });
}

const drawAll = () => view.machines.forEach(draw);

function formatAge(ms) {
  const s = Math.floor(ms / 1000);
  if (s < 60) return `${s}s`;
  if (s < 3600) return `${Math.floor(s / 60)}m ${s % 60}s`;
  return `${Math.floor(s / 3600)}h ${Math.floor((s % 3600) / 60)}m`;
}

async function refreshConnections() {
  const { total, connections } = await api('/api/connections');
  $('connection-total').textContent = connections.length < total ? `(${connections.length} of ${total})` : `(${total})`;
  const body = $('connections').tBodies[0];
  body.replaceChildren(
    ...connections.map((c) => {
      const row = element('tr', { className: c.session === view.selected ? 'selected' : '' });
      row.dataset.session = c.session;
      row.append(
        element('td', { title: c.session }, c.session.slice(-8)),
        element('td', {}, c.user ?? '—'),
        element('td', { className: 'states' }, c.states.join(' + ')),
        element('td', {}, formatAge(c.ageMs)),
      );
      row.addEventListener('click', () => pick(c.session));
      return row;
    }),
  );
}

function describe(o) {
  if (o.kind === 'event') return `${o.event?.type ?? '?'} ${JSON.stringify({ ...o.event, type: undefined })}`;
  if (o.kind === 'state') return leaves(activePaths(o.state)).join(' + ');
  if (o.kind === 'action') return `${o.action?.type ?? '?'}${o.action?.params === undefined ? '' : ` ${JSON.stringify(o.action.params)}`}`;
  return JSON.stringify(o);
}

function showEvent(o) {
  const list = $('events');
  list.prepend(element('li', { className: o.kind }, `+${Math.round(o.t)}ms ${o.kind} ${describe(o)}`));
  while (list.children.length > MAX_EVENTS_SHOWN) list.lastElementChild.remove();
}

function showCurrent(paths) {
  view.current = new Set(paths);
  $('selected-state').textContent = leaves(paths).join(' + ');
  const machine = view.machines.find((m) => m.id === 'connection');
  if (machine) draw(machine);
}

function pick(session) {
  view.events?.close();
  view.selected = session;
  $('events').replaceChildren();
  $('selected').textContent = session;
  for (const row of $('connections').tBodies[0].rows) row.classList.toggle('selected', row.dataset.session === session);
  const events = new EventSource(`/api/events?session=${encodeURIComponent(session)}`);
  view.events = events;
  events.addEventListener('snapshot', (e) => {
    const s = JSON.parse(e.data);
    $('selected').textContent = `${s.session} (${s.user ?? 'not authenticated yet'})`;
    showCurrent(activePaths(s.value));
  });
  events.addEventListener('observation', (e) => {
    const o = JSON.parse(e.data);
    showEvent(o);
    if (o.kind === 'state' && o.state !== undefined) showCurrent(activePaths(o.state));
  });
  const ended = (why) => () => {
    events.close();
    $('events').prepend(element('li', { className: 'muted' }, why));
  };
  events.addEventListener('end', ended('the connection has ended'));
  events.addEventListener('overflow', ended('too many events to follow: pick the connection again'));
  events.addEventListener('error', () => {
    if (events.readyState === EventSource.CLOSED) ended('the connection is gone')();
  });
}

async function start() {
  mermaid.initialize({ startOnLoad: false, securityLevel: 'strict', theme: 'neutral' });
  const { node, machines } = await api('/api/machines');
  view.node = node;
  view.machines = machines;
  $('node').textContent = `node ${node}`;
  for (const machine of machines) {
    const section = element('section', { className: 'machine' });
    section.dataset.machine = machine.id;
    section.append(
      element('h2', {}, `${machine.id} `),
      element('p', { className: 'hint' }, `${machine.description} (${machine.file})`),
      element('div', { className: 'diagram' }, 'drawing…'),
    );
    $('machines').append(section);
  }
  drawAll();

  const counts = new EventSource('/api/counts');
  counts.addEventListener('counts', (e) => {
    view.counts = JSON.parse(e.data);
    $('live').textContent = 'live';
    $('live').classList.remove('down');
    drawAll();
  });
  counts.addEventListener('error', () => {
    $('live').textContent = 'reconnecting…';
    $('live').classList.add('down');
  });

  const poll = () =>
    refreshConnections().catch((err) => {
      $('connection-total').textContent = `(${err.message})`;
    });
  await poll();
  setInterval(poll, CONNECTIONS_POLL_MS);
}

start().catch((err) => {
  document.body.prepend(element('p', { className: 'error' }, `The inspector could not start: ${err.message}`));
});
