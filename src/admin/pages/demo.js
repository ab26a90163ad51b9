// The demo chat page of `chatgate dev` (dev only), written with the client SDK (chatgate/client,
// served here as /assets/chatgate-client.js): it gets a dev token for the chosen user name from
// POST /dev/token, and the SDK connects, re-connects, re-joins, refreshes the token and re-sends
// what was not acknowledged. Received text goes in with textContent only.
import { connect } from '/assets/chatgate-client.js';

const $ = (id) => document.getElementById(id);

let client;
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

async function start(user) {
  status('getting a dev token…');
  // The first answer says where the gateway is; the SDK calls `token` again whenever it needs one.
  const { url } = await mint(user);
  status(`connecting to ${url}…`);
  client = connect({ urls: [url], token: async () => (await mint(user)).token, minDelayMs: 200, maxDelayMs: 5000 });
  // For the browser test and the curious: the client, from the console.
  window.chatgateDemo = { client };
  client.on('state', (s) => {
    $('status').dataset.state = s.state;
    if (s.state === 'open') {
      status(`connected as ${client.user} (session ${s.session}, node ${s.node})`);
      $('status').dataset.user = client.user;
      $('chat').hidden = false;
      $('user').disabled = true;
      $('connect').disabled = true;
    } else if (s.state === 'reconnecting') {
      status(`reconnecting in ${s.delayMs} ms (${s.code}${s.reason ? ` ${s.reason}` : ''}); unsent messages wait`);
    } else if (s.state === 'closed') {
      status(`disconnected${s.failure ? ` (${s.failure.code} ${s.failure.reason})` : ''}; reload the page to connect again`);
      $('chat').hidden = true;
    }
  });
  client.on('message', (m) => {
    const where = m.to.room !== undefined ? `#${m.to.room}` : 'you';
    log(`${m.from} → ${where}: ${show(m.body)}`, 'message', { from: m.from });
  });
  client.on('gap', (g) => log(`some messages of ${g.room ? `#${g.room}` : 'your inbox'} could not be recovered`, 'error'));
  client.on('error', (err) => log(`error ${err.code}: ${err.message}`, 'error'));
}

$('connect-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const user = $('user').value.trim();
  if (user) start(user).catch((err) => status(`cannot connect: ${err.message}`));
});

$('join-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const room = $('room').value.trim();
  if (!room) return;
  client.join(room).then(
    () => {
      rooms.add(room);
      $('rooms').textContent = `joined: ${[...rooms].map((r) => `#${r}`).join(' ')}`;
      $('rooms').dataset.rooms = [...rooms].join(',');
      log(`joined #${room}`, 'own');
    },
    (err) => log(`cannot join #${room}: ${err.code}`, 'error'),
  );
});

$('send-form').addEventListener('submit', (e) => {
  e.preventDefault();
  const kind = $('to-kind').value;
  const target = $('to').value.trim();
  const text = $('text').value;
  if (!target || !text) return;
  const to = kind === 'room' ? { room: target } : { user: target };
  client.send(to, text).then(
    () => log(`you → ${kind === 'room' ? `#${target}` : target}: ${text}`, 'own'),
    (err) => log(`not sent (${err.code}): ${text}`, 'error'),
  );
  $('text').value = '';
});
