/**
 * Hints that fit (issue 14, item 6), as real `authkeep` processes: a login to a URL that is not an
 * MCP server says so (not "pass --client-id"); `authkeep help` exits 0; every command's --help
 * lists the global options; descriptions are paragraphs commander wraps, not hard-broken lines.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { cliEnv, runCliProcess } from '../helpers/cli-run.js';
import { startHostileServer } from '../helpers/hostile-server.js';

const COMMANDS = ['login', 'token', 'status', 'logout', 'doctor', 'proxy', 'setup'];

test('login to a URL that answers 404 and has no metadata says it is not an MCP server', async (t) => {
  const web = await startHostileServer(); // every request: 404
  t.after(() => web.close());
  const cli = await cliEnv(t);
  const url = `${web.url}/wrong/path`;
  const result = await runCliProcess(cli, ['login', url, '--allow-http']);
  assert.equal(result.code, 1, `exit 1\n${result.stderr}`);
  assert.match(
    result.stderr,
    new RegExp(`${url.replace(/[.:/]/g, '\\$&')} is not an MCP server: it answered HTTP 404`),
  );
  assert.match(result.stderr, /hint: is \S+ the MCP endpoint itself/);
  assert.doesNotMatch(result.stderr, /--client-id|register/, 'no registration hint for a URL that is not a server');
  assert.deepEqual(web.requestsTo('POST', '/register'), [], 'no registration attempted');
});

test('`authkeep help` and `authkeep help <command>` exit 0 with the help on stdout', async (t) => {
  const cli = await cliEnv(t);
  const help = await runCliProcess(cli, ['help']);
  assert.equal(help.code, 0, help.stderr);
  assert.match(help.stdout, /^Usage: authkeep /);
  const login = await runCliProcess(cli, ['help', 'login']);
  assert.equal(login.code, 0, login.stderr);
  assert.match(login.stdout, /^Usage: authkeep login /);
});

test("every command's --help lists the global options and wraps its description as paragraphs", async (t) => {
  const cli = await cliEnv(t);
  for (const name of COMMANDS) {
    const result = await runCliProcess(cli, [name, '--help']);
    assert.equal(result.code, 0, `${name} --help: ${result.stderr}`);
    const global = /\nGlobal Options:\n([\s\S]*?)\n\n/.exec(result.stdout)?.[1];
    assert.ok(global, `${name} --help has a Global Options section`);
    for (const flag of ['--home <dir>', '--debug', '--allow-http'])
      assert.ok(global.includes(flag), `${name}: ${flag}`);

    // The description: the paragraph(s) between the usage line and the first section.
    const description = /^Usage: [^\n]*\n\n([\s\S]*?)\n\n(?:Arguments|Options):/.exec(result.stdout)?.[1];
    assert.ok(description, `${name} --help has a description`);
    if (name === 'setup') continue; // a preformatted table of clients, printed as written
    const lines = description.split('\n');
    for (const [i, line] of lines.entries()) {
      assert.ok(line.length <= 80, `${name}: line ${i} fits 80 columns: ${JSON.stringify(line)}`);
      // A hard break wrapped again leaves a short line in the middle of a paragraph.
      if (i < lines.length - 1) assert.ok(line.length >= 60, `${name}: line ${i} is filled: ${JSON.stringify(line)}`);
    }
  }
});
