// The demo chat page of `chatgate dev` (dev only): gets a dev token for the chosen user name from
// POST /dev/token, connects to the gateway with the chatgate.v1 subprotocol and an `auth` frame
// (a browser cannot set an Authorization header), joins rooms and sends to a room or a user, as
// docs/protocol.md describes. Received text goes in with textContent only.
'use strict';

const $ = (id) => document.getElementById(id);

let ws;
let nextId = 1;
/** id -> what to do with its ack */
const pending = new Map();
const rooms = new Set();

function log(text, className = '', data = {}) {
  const item = document.createElement('li');
  item.textContent = text;
  item.className = className;
  Object.assign(item.dataset, data);
  $('log').append(item);
  item.scrollIntoView({ block: 'nearest' });
}

const status = (text) => ($('status').textContent = text);
const show = (body) => (typeof body === 'string' ? body : JSON.stringify(body));

async function mint(user) {
  const res = await fetch('/dev/token', {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify({ user }),
  });
  const answer = await res.json();
  if (!res.ok) throw new Error(answer.error ?? `HTTP ${res.status}`);
  return answer;
}

/** Sends a frame with a fresh id; `onAck` runs when its ack comes. */
function request(frame, onAck) {
  const id = nextId++;
  pending.set(id, onAck);
  ws.send(JSON.stringify({ ...frame, id }));
}

function receive(frame) {
  switch (frame.type) {
    case 'welcome':
      status(`connected as ${frame.user} (session ${frame.session}, node ${frame.node})`);
      $('status').dataset.user = frame.user;
      $('chat').hidden = false;
      $('user').disabled = true;
      $('connect').disabled = true;
      break;
    case 'ack': {
      const onAck = pending.get(frame.id);
      pending.delete(frame.id);
      onAck?.(frame);
      break;
    }
    case 'error':
      pending.delete(frame.id);
      log(`error ${frame.code}: ${frame.message}`, 'error');
      break;
    case 'message': {
      const where = frame.to.room !== undefined ? `#${frame.to.room}` : 'you';
      log(`${frame.from} → ${where}: ${show(frame.body)}`, 'message', { from: frame.from });
      break;
    }
    case 'expiring':
      // Dev tokens last an hour: get a new one before this one runs out.
      mint($('status').dataset.user).then(
        ({ token }) => request({ type: 'refresh', token }, () => log('token refreshed', 'own')),
        (err) => log(`cannot refresh the token: ${err.message}`, 'error'),
      );
      break;
  }
}

async function connect(user) {
  status('getting a dev token…');
  const { token, url } = await mint(user);
  status(`connecting to ${url}…`);
  ws = new WebSocket(url, ['chatgate.v1']);
  ws.addEventListener('open', () => ws.send(JSON.stringify({ type: 'auth', token })));
  ws.addEventListener('message', (e) => receive(JSON.parse(e.data)));
  ws.addEventListener('close', (e) => {
    status(`disconnected (${e.code}${e.reason ? ` ${e.reason}` : ''}); reload the page to connect again`);
    $('chat').hidden = true;
  });
}

$('connect-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const user = $('user').value.trim();
  if (user) connect(user).catch((err) => status(`cannot connect: ${err.message}`));
});

$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const room = $('room').value.trim();
  if (!room) return;
  request({ type: 'join', room }, () => {
    rooms.add(room);
    $('rooms').textContent = `joined: ${[...rooms].map((r) => `#${r}`).join(' ')}`;
    $('rooms').dataset.rooms = [...rooms].join(',');
    log(`joined #${room}`, 'own');
  });
});

$('send-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const kind = $('to-kind').value;
  const target = $('to').value.trim();
  const text = $('text').value;
  if (!target || !text) return;
  const to = kind === 'room' ? { room: target } : { user: target };
  request({ type: 'send', to, body: text }, () => log(`you → ${kind === 'room' ? `#${target}` : target}: ${text}`, 'own'));
  $('text').value = '';
});
