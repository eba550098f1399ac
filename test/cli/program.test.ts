/**
 * program: runCli loads only the command its argv names, so the word that names it must be found
 * past global options and their values, wherever they stand; help and unknown words still see
 * every command.
 */
import assert from 'node:assert/strict';
import path from 'node:path';
import { test } from 'node:test';
import { runCli } from '../../src/cli/program.js';
import { fakeDeps } from '../helpers/cli-fakes.js';

const URL_A = 'https://mcp.example.com/mcp';

test('the command is the first word that is not a global option or the value of --home', async () => {
  const asked: string[] = [];
  const deps = fakeDeps({
    status: async () => {
      asked.push('status');
      return [];
    },
    getAccessToken: async () => 'tok',
  });
  assert.equal(await runCli(['--home', 'token', 'status', '--json'], deps), 0);
  assert.deepEqual(asked, ['status']);
  assert.equal(deps.keeperOptions[0]?.home, path.resolve('token'), '--home took "token" as its value');
  assert.equal(deps.stdout.text, '[]\n');

  const token = fakeDeps({ getAccessToken: async () => 'tok' });
  assert.equal(await runCli(['--debug', '--allow-http', 'token', URL_A], token), 0);
  assert.equal(token.stdout.text, 'tok\n');
});

test('help, no command and unknown words list every command; `help <command>` exits 0', async () => {
  const names = ['login', 'token', 'status', 'logout', 'doctor', 'proxy', 'setup'];
  for (const [argv, code] of [
    [['--help'], 0],
    [['help'], 0],
    [[], 2],
  ] as const) {
    const deps = fakeDeps();
    assert.equal(await runCli([...argv], deps), code, argv.join(' '));
    for (const name of names)
      assert.match(deps.stdout.text, new RegExp(`\\n {2}${name} `), `${argv.join(' ')}: ${name}`);
  }
  const typo = fakeDeps();
  assert.equal(await runCli(['stauts'], typo), 2);
  assert.match(typo.stderr.text, /unknown command 'stauts'\n\(Did you mean status\?\)/);
  const help = fakeDeps();
  assert.equal(await runCli(['help', 'proxy'], help), 0);
  assert.match(help.stdout.text, /Usage: authkeep proxy /);
});
