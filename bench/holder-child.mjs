/**
 * holder-child: the memory benchmark's "process holding N servers", as a user's process runs the
 * package (the built dist/, plain Node, no TypeScript loader): an AuthKeeper on `<home>` (every
 * server already signed in there) gets a token for each URL and makes one `echo` call through
 * keeper.fetch, then prints its RSS in MB as one JSON line.
 */
import { AuthKeeper } from '../dist/index.js';

const [home, ...urls] = process.argv.slice(2);
if (!home || urls.length === 0) throw new Error('usage: holder-child <home> <url>...');

const keeper = new AuthKeeper({ home, allowInsecureLoopback: true });
for (const url of urls) {
  const response = await keeper.fetch(url)(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' },
    body: JSON.stringify({
      jsonrpc: '2.0',
      id: 1,
      method: 'tools/call',
      params: { name: 'echo', arguments: { text: 'hi' } },
    }),
  });
  await response.arrayBuffer();
  if (response.status !== 200) throw new Error(`${url} answered ${response.status}`);
}
const rssMb = Math.round(process.memoryUsage().rss / 104857.6) / 10;
process.stdout.write(`${JSON.stringify({ servers: urls.length, rssMb })}\n`);
await keeper.close();
