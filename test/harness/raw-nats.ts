/**
 * A message published byte by byte, the way a hostile or buggy client on the bus could: the raw
 * header block is written as given (nats.js would refuse to build a malformed one). For tests of
 * what chatgate does with whatever a role that may publish on a subject puts there.
 */
import { connect as tcpConnect } from 'node:net';

/** Publishes one message with the raw header block `header` (may be malformed) and `payload`. */
export function rawPublish(url: string, subject: string, header: string, payload = '', timeoutMs = 5000): Promise<void> {
  const { hostname, port } = new URL(url.replace(/^nats:/, 'http:'));
  return new Promise((resolve, reject) => {
    const socket = tcpConnect({ host: hostname, port: Number(port) });
    let seen = '';
    const timer = setTimeout(() => finish(new Error(`no PONG within ${timeoutMs} ms: ${seen.slice(0, 200)}`)), timeoutMs);
    const finish = (err?: Error) => {
      clearTimeout(timer);
      socket.destroy();
      if (err) reject(err);
      else resolve();
    };
    socket.on('error', finish);
    socket.on('data', (chunk) => {
      const first = seen === '';
      seen += chunk.toString('latin1');
      if (first) {
        const h = Buffer.from(header, 'latin1');
        const p = Buffer.from(payload, 'utf8');
        socket.write(`CONNECT {"verbose":false,"pedantic":false,"headers":true,"protocol":1}\r\n`);
        socket.write(`HPUB ${subject} ${h.length} ${h.length + p.length}\r\n`);
        socket.write(Buffer.concat([h, p, Buffer.from('\r\n')]));
        socket.write('PING\r\n');
      }
      if (seen.includes('-ERR')) finish(new Error(`server refused: ${seen.slice(seen.indexOf('-ERR'), 200)}`));
      else if (seen.includes('PONG')) finish();
    });
  });
}
