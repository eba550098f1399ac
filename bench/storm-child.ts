/**
 * storm-child: one process of the refresh-storm benchmark. Loads an AuthKeeper on `<home>`, prints
 * READY, and on "go" asks for `<url>`'s access token (due: the parent expired it), then prints one
 * JSON line: when it held the token (epoch ms) and the token's fingerprint (never the token).
 */
import { createHash } from 'node:crypto';
import { AuthKeeper } from '../src/index.js';
import { readyForGo } from '../test/helpers/child-process.js';

const [home, url] = process.argv.slice(2);
if (!home || !url) throw new Error('usage: storm-child <home> <url>');

const keeper = new AuthKeeper({ home, allowInsecureLoopback: true });
await readyForGo();
const token = await keeper.getAccessToken(url);
const doneAt = Date.now();
const fingerprint = createHash('sha256').update(token).digest('hex').slice(0, 16);
process.stdout.write(`${JSON.stringify({ doneAt, fingerprint })}\n`);
await keeper.close();
