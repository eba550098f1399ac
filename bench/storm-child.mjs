/**
 * storm-child: one process of the refresh-storm benchmark, running the package as users run it
 * (the built dist/, plain Node). A running agent process: before READY it has been handed
 * `<url>`'s access token (read from the record, still valid) and has made a call with it. On "go"
 * (the parent has made the stored token due meanwhile) it asks for the token again as a process
 * whose cached token fell due does, then prints one JSON line: when it held the token (epoch ms),
 * the token's fingerprint (never the token), the CPU time it spent from "go" until then, and, in
 * the one process that refreshed, when its refresh landed in the record; and goes on running until
 * the parent ends it.
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
// When this process's own refresh landed in the record (its `refresh.ok` comes after the write).
let landedAt;
const keeper = new AuthKeeper({
  home,
  allowInsecureLoopback: true,
  log: (event) => {
    if (event.event === 'refresh.ok') landedAt = Date.now();
  },
});
await new Promise((resolve) => {
  process.stdin.once('data', resolve);
  process.stdout.write('READY\n');
});
const cpuAtGo = process.cpuUsage();
const token = await keeper.getAccessToken(url);
const doneAt = Date.now();
const cpu = process.cpuUsage(cpuAtGo);
const cpuMs = (cpu.user + cpu.system) / 1000;
const fingerprint = createHash('sha256').update(token).digest('hex').slice(0, 16);
process.stdout.write(`${JSON.stringify({ doneAt, fingerprint, landedAt, cpuMs })}\n`);
// It goes on running, as an agent does, until the parent ends it: a process that exited here would
// take CPU, tearing down, from the others still on their way to the token.
process.stdin.resume();
