/**
 * A `$BROWSER` for child processes: `node --import tsx arena/testbed/robot-browser-cli.ts <url>`
 * opens one URL with a fresh robot browser (see robot-browser.ts) and, when `$ROBOT_BROWSER_LOG`
 * names a file, appends one line to it, so tests can count browser opens across processes.
 *
 * For: processes that open the authorization URL through `$BROWSER`. Build the command with
 * robot-browser-command.ts. Not for: importing (it runs on load). The log line holds the time,
 * pid, outcome, and the authorize request's client_id and resource, never the URL itself.
 * `$ROBOT_BROWSER_EVENTS` names a JSON-lines file that gets one `open` line when the tab opens and
 * one `done` line when it ends (epoch ms `t`, pid, resource, and for `done` the outcome), so the
 * arena can time a tab opened by a process it does not control (a stdio proxy).
 */
import { appendFileSync } from 'node:fs';

import { createRobotBrowser } from './robot-browser.js';

async function main(): Promise<number> {
  const target = process.argv[2];
  if (!target) {
    process.stderr.write('usage: robot-browser-cli <url>\n');
    return 2;
  }
  const parsed = new URL(target);
  const resource = parsed.searchParams.get('resource') ?? '';
  const events = process.env.ROBOT_BROWSER_EVENTS;
  const event = (fields: Record<string, unknown>): void => {
    if (events) appendFileSync(events, `${JSON.stringify({ t: Date.now(), pid: process.pid, resource, ...fields })}\n`);
  };
  event({ phase: 'open' });
  let status = 0;
  let reachedRedirectUri = false;
  let outcome: string;
  let code: number;
  try {
    const visit = await createRobotBrowser().open(target);
    status = visit.status;
    reachedRedirectUri = visit.reachedRedirectUri;
    const ok = visit.reachedRedirectUri && visit.status < 400;
    outcome = `status=${visit.status} reached_redirect_uri=${visit.reachedRedirectUri}`;
    code = ok ? 0 : 1;
  } catch (err) {
    outcome = `failed=${JSON.stringify(err instanceof Error ? err.message : String(err))}`;
    code = 1;
  }
  const log = process.env.ROBOT_BROWSER_LOG;
  if (log) {
    const line = [
      new Date().toISOString(),
      `pid=${process.pid}`,
      `client_id=${JSON.stringify(parsed.searchParams.get('client_id') ?? '')}`,
      `resource=${JSON.stringify(parsed.searchParams.get('resource') ?? '')}`,
      outcome,
    ].join(' ');
    appendFileSync(log, `${line}\n`);
  }
  event({ phase: 'done', status, reachedRedirectUri, ok: code === 0 });
  if (code !== 0) process.stderr.write(`robot-browser: ${outcome}\n`);
  return code;
}

process.exitCode = await main();
