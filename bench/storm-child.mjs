/**
 * storm-child: one process of the refresh-storm benchmark, running the package as users run it
 * (the built dist/, plain Node). A running agent process: before READY it has been handed
 * `<url>`'s access token (read from the record, still valid) and has made a call with it. On "go"
 * (the parent has made the stored token due meanwhile) it asks for the token again as a process
 * whose cached token fell due does, then prints one JSON line: when it held the token (epoch ms)
 * and the token's fingerprint (never the token).
 */
import { createHash } from 'node:crypto';
import { AuthKeeper } from '../dist/index.js';

const [home, url] = process.argv.slice(2);
if (!home || !url) throw new Error('usage: storm-child <home> <url>');

// The process has been running: its code is loaded and has served the token and a call.
const running = new AuthKeeper({ home, allowInsecureLoopback: true });
await running.getAccessToken(url);
await running
  .fetch(url)(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({ jsonrpc: '2.0', id: 1, method: 'ping' }),
  })
  .then((response) => response.arrayBuffer());
await running.close();

// Its cache holds nothing now, as a cache whose token fell due: the next ask goes to the record.
const keeper = new AuthKeeper({ home, allowInsecureLoopback: true });
await new Promise((resolve) => {
  process.stdin.once('data', resolve);
  process.stdout.write('READY\n');
});
process.stdin.pause();
const token = await keeper.getAccessToken(url);
const doneAt = Date.now();
const fingerprint = createHash('sha256').update(token).digest('hex').slice(0, 16);
process.stdout.write(`${JSON.stringify({ doneAt, fingerprint })}\n`);
await keeper.close();
