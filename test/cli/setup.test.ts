/**
 * `authkeep setup <client> <url>` as a real child process (bin/authkeep.cjs) against sample config
 * files of every client format (test/fixtures/client-configs/): with --write --config <tmp file>
 * the new entry is right, every other byte of the original is kept, the backup equals the
 * original, a second run without --force fails and changes nothing, --force replaces only the
 * entry, and a broken file, a bad argument or a literal secret leaves everything untouched (those
 * last cases mostly in-process through runCli, one of each kind as a real process).
 */
import assert from 'node:assert/strict';
import { copyFile, mkdtemp, readdir, readFile, realpath, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { type TestContext, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { parse as parseToml } from 'smol-toml';
import ts from 'typescript';
import { runCli } from '../../src/cli/program.js';
import { fakeDeps } from '../helpers/cli-fakes.js';
import { BIN, type CliEnv, type CliResult, cliEnv, runCliProcess } from '../helpers/cli-run.js';

const FIXTURES = fileURLToPath(new URL('../fixtures/client-configs/', import.meta.url));
const URL_A = 'https://mcp.example.com/mcp';
const NAME = 'mcp-example-com';

interface Case {
  client: string;
  fixture: string;
  format: 'json' | 'jsonc' | 'toml';
  containerKey: string;
  /** The entry `setup <client> URL_A` writes with the default command. */
  entry: (args: string[]) => Record<string, unknown>;
}

const CASES: Case[] = [
  {
    client: 'claude-code',
    fixture: 'claude-code.mcp.json',
    format: 'json',
    containerKey: 'mcpServers',
    entry: (args) => ({ type: 'stdio', command: 'npx', args }),
  },
  {
    client: 'claude-desktop',
    fixture: 'claude_desktop_config.json',
    format: 'json',
    containerKey: 'mcpServers',
    entry: (args) => ({ command: 'npx', args }),
  },
  {
    client: 'cursor',
    fixture: 'cursor-mcp.json',
    format: 'json',
    containerKey: 'mcpServers',
    entry: (args) => ({ command: 'npx', args }),
  },
  {
    client: 'vscode',
    fixture: 'vscode-mcp.json',
    format: 'jsonc',
    containerKey: 'servers',
    entry: (args) => ({ type: 'stdio', command: 'npx', args }),
  },
  {
    client: 'codex',
    fixture: 'codex-config.toml',
    format: 'toml',
    containerKey: 'mcp_servers',
    entry: (args) => ({ command: 'npx', args }),
  },
];

/** TOML as plain objects (smol-toml's tables have no prototype). */
function toml(text: string): Record<string, unknown> {
  return JSON.parse(JSON.stringify(parseToml(text))) as Record<string, unknown>;
}

const proxyArgs = (...extra: string[]) => ['-y', 'authkeep', 'proxy', URL_A, ...extra];

function parseDocument(text: string, format: Case['format']): Record<string, unknown> {
  if (format === 'toml') return toml(text);
  if (format === 'json') return JSON.parse(text) as Record<string, unknown>;
  // An independent JSONC parser: TypeScript's own (comments and trailing commas, as VS Code reads).
  const { config, error } = ts.parseConfigFileTextToJson('mcp.json', text);
  assert.equal(error, undefined, 'the result parses as JSON with comments');
  return config as Record<string, unknown>;
}

/**
 * `result` is `original` with text inserted at one or two places and nothing else changed; returns
 * the inserted text (both pieces, concatenated).
 */
function insertedText(original: string, result: string): string {
  let p = 0;
  while (p < original.length && p < result.length && original[p] === result[p]) p++;
  let s = 0;
  while (
    s < original.length - p &&
    s < result.length - p &&
    original[original.length - 1 - s] === result[result.length - 1 - s]
  ) {
    s++;
  }
  const originalMiddle = original.slice(p, original.length - s);
  const resultMiddle = result.slice(p, result.length - s);
  const at = resultMiddle.indexOf(originalMiddle);
  assert.ok(at >= 0, `only insertions: the original's ${JSON.stringify(originalMiddle)} is kept`);
  return resultMiddle.slice(0, at) + resultMiddle.slice(at + originalMiddle.length);
}

/** The JSON members that were inserted, parsed: `, "name": {...}` -> {name: {...}}. */
function insertedMembers(inserted: string): unknown {
  const body = inserted.trim().replace(/^,/, '').replace(/,$/, '');
  return JSON.parse(`{${body}}`);
}

async function tempDir(t: TestContext): Promise<string> {
  const dir = await mkdtemp(path.join(tmpdir(), 'authkeep-setup-'));
  t.after(() => rm(dir, { recursive: true, force: true }));
  return dir;
}

async function backupsOf(file: string): Promise<string[]> {
  const base = `${path.basename(file)}.authkeep-backup-`;
  return (await readdir(path.dirname(file)))
    .filter((f) => f.startsWith(base))
    .map((f) => path.join(path.dirname(file), f));
}

function exitsWith(result: CliResult, code: number, what: string): void {
  assert.equal(result.code, code, `${what} exits ${code}\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
}

async function setup(cli: CliEnv, args: string[]): Promise<CliResult> {
  return runCliProcess(cli, ['setup', ...args]);
}

/** The same command in this process (runCli with fake dependencies), where no child is needed. */
async function setupInProcess(args: string[]): Promise<CliResult> {
  const deps = fakeDeps();
  const code = await runCli(['setup', ...args], deps);
  return { code, signal: null, stdout: deps.stdout.text, stderr: deps.stderr.text };
}

for (const c of CASES) {
  test(`setup ${c.client} --write: adds the entry, keeps every other byte, backs up, refuses a duplicate, --force replaces`, async (t) => {
    const cli = await cliEnv(t);
    const dir = await tempDir(t);
    const file = path.join(dir, c.fixture);
    await copyFile(path.join(FIXTURES, c.fixture), file);
    const original = await readFile(file, 'utf8');
    const originalDoc = parseDocument(original, c.format);
    if (c.client === 'claude-desktop') assert.ok(original.includes('\r\n'), 'the fixture keeps its CRLF line endings');

    // 1. Add.
    const added = await setup(cli, [c.client, URL_A, '--write', '--config', file]);
    exitsWith(added, 0, 'setup --write');
    assert.match(
      added.stdout,
      new RegExp(`Added the server "${NAME}" in ${file.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`),
    );
    const first = await readFile(file, 'utf8');
    const doc = parseDocument(first, c.format);
    const servers = doc[c.containerKey] as Record<string, unknown>;
    assert.deepEqual(servers[NAME], c.entry(proxyArgs()), 'the new entry runs authkeep proxy <url>');
    assert.deepEqual(
      { ...doc, [c.containerKey]: { ...servers, [NAME]: undefined } },
      {
        ...originalDoc,
        [c.containerKey]: { ...((originalDoc[c.containerKey] as object | undefined) ?? {}), [NAME]: undefined },
      },
      'everything else in the document is as it was',
    );
    if (c.format === 'toml') {
      assert.ok(first.startsWith(original), 'the original is a prefix of the result (the table is appended)');
      assert.deepEqual(toml(first.slice(original.length)), { mcp_servers: { [NAME]: c.entry(proxyArgs()) } });
    } else {
      const inserted = insertedText(original, first);
      const expected = originalDoc[c.containerKey]
        ? { [NAME]: c.entry(proxyArgs()) }
        : { [c.containerKey]: { [NAME]: c.entry(proxyArgs()) } };
      assert.deepEqual(insertedMembers(inserted), expected, 'the only inserted text is the entry');
      if (original.includes('\r\n')) assert.ok(!/[^\r]\n/.test(first), 'inserted lines end with CRLF like the rest');
    }
    const backups = await backupsOf(file);
    assert.equal(backups.length, 1, 'one backup beside the file');
    assert.equal(await readFile(backups[0] as string, 'utf8'), original, 'the backup is the original, byte for byte');
    assert.ok(added.stdout.includes(backups[0] as string), 'and setup says where it is');

    // 2. Again without --force: refused, nothing changes, no new backup.
    const again = await setup(cli, [c.client, URL_A, '--write', '--config', file]);
    exitsWith(again, 1, 'a second setup without --force');
    assert.match(again.stderr, new RegExp(`already has a server named "${NAME}"`));
    assert.ok(again.stderr.includes(file), 'the error names the file');
    assert.match(again.stderr, /hint: .*--force/);
    assert.equal(await readFile(file, 'utf8'), first, 'the file is unchanged');
    assert.equal((await backupsOf(file)).length, 1, 'and no backup was made');

    // 3. --force with other proxy flags: only the entry changes.
    const forced = await setup(cli, [
      c.client,
      URL_A,
      '--write',
      '--force',
      '--config',
      file,
      '--transport',
      'sse-only',
    ]);
    exitsWith(forced, 0, 'setup --force');
    assert.match(forced.stdout, /Replaced the server/);
    const second = await readFile(file, 'utf8');
    const newEntry = c.entry(proxyArgs('--transport', 'sse-only'));
    assert.deepEqual((parseDocument(second, c.format)[c.containerKey] as Record<string, unknown>)[NAME], newEntry);
    if (c.format === 'toml') {
      assert.ok(second.startsWith(original), 'the original is still a prefix');
      assert.deepEqual(toml(second.slice(original.length)), { mcp_servers: { [NAME]: newEntry } });
    } else {
      const expected = originalDoc[c.containerKey] ? { [NAME]: newEntry } : { [c.containerKey]: { [NAME]: newEntry } };
      assert.deepEqual(
        insertedMembers(insertedText(original, second)),
        expected,
        'against the original, only the entry',
      );
    }
    const backups2 = await backupsOf(file);
    assert.equal(backups2.length, 2, 'a second backup');
    const newest = backups2.find((b) => b !== backups[0]) as string;
    assert.equal(await readFile(newest, 'utf8'), first, 'holding the file as it was before --force');
  });
}

test('setup refuses a file it cannot parse and leaves it untouched (no backup)', async (t) => {
  const dir = await tempDir(t);
  const cases: Array<[string, string, RegExp]> = [
    ['cursor', 'broken.json', /is not valid JSON: expected "," or "}" at line 4, column 5/],
    ['vscode', 'broken-vscode.json', /is not valid JSON with comments: unterminated \/\* comment at line 3/],
    ['codex', 'broken.toml', /is not valid TOML: .* at line 4/],
    // Comments are fine for VS Code, not in a strict JSON client's file.
    ['claude-desktop', 'vscode-mcp.json', /is not valid JSON: comments are not allowed/],
  ];
  for (const [client, fixture, message] of cases) {
    const file = path.join(dir, `${client}-${fixture}`);
    await copyFile(path.join(FIXTURES, fixture), file);
    const original = await readFile(file, 'utf8');
    // The TOML case through the real process, the others in-process (same code, faster).
    const result =
      client === 'codex'
        ? await setup(await cliEnv(t), [client, URL_A, '--write', '--config', file])
        : await setupInProcess([client, URL_A, '--write', '--config', file]);
    exitsWith(result, 1, `setup ${client} on ${fixture}`);
    assert.match(result.stderr, message);
    assert.ok(result.stderr.includes(file), 'the error names the file');
    assert.match(result.stderr, /left it untouched/);
    assert.equal(await readFile(file, 'utf8'), original, `${fixture} is untouched`);
    assert.deepEqual(await backupsOf(file), [], 'no backup');
  }
});

test('setup: bad input is a usage error (exit 2) naming the field, and nothing is written', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'mcp.json');
  const cases: Array<[string[], RegExp]> = [
    [['emacs', URL_A], /<client> must be one of claude-code, claude-desktop, cursor, vscode, codex, got "emacs"/],
    [['cursor', 'not a url'], /serverUrl is not an absolute URL/],
    [['cursor', 'ftp://mcp.example.com/mcp'], /serverUrl must be http\(s\)/],
    [['cursor', 'http://mcp.example.com/mcp'], /<url> must be https/],
    [['cursor', 'http://127.0.0.1:8080/mcp'], /--allow-http/],
    [['cursor', URL_A, '--name', 'bad name!'], /--name "bad name!" is not a server name Cursor accepts/],
    [['codex', URL_A, '--name', 'a.b'], /--name "a.b" is not a server name Codex accepts/],
    [['vscode', URL_A, '--project'], /--project applies to cursor only/],
    [['cursor', URL_A, '--transport', 'carrier-pigeon'], /--transport must be one of/],
    [['cursor', URL_A, '--callback-port', '99999'], /--callback-port must be a port number/],
    [['cursor', URL_A, '--header', 'no colon here'], /--header "no colon here" is not "Name: value"/],
    // A literal credential would be written into the file: refused.
    [
      ['cursor', URL_A, '--header', 'Authorization: Bearer abc123'],
      /--header Authorization: its value would be written/,
    ],
    [['cursor', URL_A, '--header', 'X-Api-Key: abc123'], /--header X-Api-Key: its value would be written/],
    [
      ['cursor', URL_A, '--static-oauth-client-info', '{"client_id":"a","client_secret":"s3cr3t"}'],
      /client_secret would be written into the config file/,
    ],
    [['cursor', URL_A, '--client-id', 'a', '--static-oauth-client-info', '{"client_id":"b"}'], /pass one/],
  ];
  for (const [index, [args, message]] of cases.entries()) {
    // The first through the real process (exit code 2 end to end), the rest in-process.
    const argv = [...args, '--write', '--config', file];
    const result = index === 0 ? await setup(await cliEnv(t), argv) : await setupInProcess(argv);
    exitsWith(result, 2, `setup ${args.join(' ')}`);
    assert.match(result.stderr, message);
    assert.match(result.stderr, /^hint: /m);
    assert.ok(!result.stderr.includes('s3cr3t') && !result.stderr.includes('abc123'), 'the error repeats no secret');
    await assert.rejects(readFile(file), { code: 'ENOENT' }, 'nothing was written');
  }
});

test('setup prints the entry without --write: JSON document, TOML table, the claude mcp add line, --json', async (t) => {
  const dir = await tempDir(t);
  const file = path.join(dir, 'never-written.json');

  const code = await setupInProcess([
    'claude-code',
    URL_A,
    '--config',
    file,
    '--name',
    'example',
    '--header',
    'Authorization: Bearer ${EXAMPLE_TOKEN}',
  ]);
  exitsWith(code, 0, 'setup claude-code (print)');
  const args = proxyArgs('--header', 'Authorization: Bearer ${EXAMPLE_TOKEN}');
  const json = code.stdout.slice(code.stdout.indexOf('{'), code.stdout.indexOf('\n}\n') + 2);
  assert.deepEqual(JSON.parse(json), { mcpServers: { example: { type: 'stdio', command: 'npx', args } } });
  assert.ok(
    code.stdout.includes(
      "claude mcp add --scope project example -- npx -y authkeep proxy https://mcp.example.com/mcp --header 'Authorization: Bearer ${EXAMPLE_TOKEN}'",
    ),
    'the claude mcp add line, single-quoted so the shell leaves ${EXAMPLE_TOKEN} alone',
  );
  assert.match(
    code.stderr,
    /Claude Code replaces \$\{EXAMPLE_TOKEN\}/,
    'says what Claude Code does with the reference',
  );
  await assert.rejects(readFile(file), { code: 'ENOENT' }, 'printing writes nothing');

  const codex = await setupInProcess([
    'codex',
    URL_A,
    '--json',
    '--header',
    'X-Api-Key: ${API_KEY}',
    '--client-id',
    'my-app',
    '--callback-port',
    '3334',
    '--home',
    dir,
  ]);
  exitsWith(codex, 0, 'setup codex --json');
  const out = JSON.parse(codex.stdout) as { name: string; entry: unknown; snippet: string; configPath: string };
  const codexArgs = [
    '-y',
    'authkeep',
    'proxy',
    URL_A,
    '3334',
    '--header',
    'X-Api-Key: ${API_KEY}',
    '--static-oauth-client-info',
    '{"client_id":"my-app"}',
    '--home',
    dir,
  ];
  assert.equal(out.name, NAME);
  assert.deepEqual(out.entry, { command: 'npx', args: codexArgs, env_vars: ['API_KEY'] });
  assert.deepEqual(toml(out.snippet), { mcp_servers: { [NAME]: out.entry } }, 'the snippet is that TOML table');
  assert.ok(out.configPath.endsWith(path.join('.codex', 'config.toml')));
});

test('setup --command-path: the entry runs this node and this authkeep by absolute path', async (t) => {
  const cli = await cliEnv(t);
  const pinned = await setup(cli, [
    'claude-desktop',
    'http://127.0.0.1:8080/mcp',
    '--allow-http',
    '--command-path',
    '--json',
  ]);
  exitsWith(pinned, 0, 'setup --command-path');
  const out = JSON.parse(pinned.stdout) as { name: string; entry: { command: string; args: string[] } };
  assert.equal(out.entry.command, process.execPath, 'this node binary, by absolute path');
  assert.deepEqual(out.entry.args, [await realpath(BIN), 'proxy', 'http://127.0.0.1:8080/mcp', '--allow-http']);
  assert.equal(out.name, '127-0-0-1-8080', 'the name comes from host and port');
});

test('setup --help lists the clients and their files, with examples and the exit codes', async () => {
  const help = await setupInProcess(['--help']);
  exitsWith(help, 0, 'setup --help');
  for (const client of ['claude-code', 'claude-desktop', 'cursor', 'vscode', 'codex']) {
    assert.ok(help.stdout.includes(`authkeep setup ${client} `), `an example for ${client}`);
  }
  assert.match(help.stdout, /~\/\.codex\/config\.toml/);
  assert.match(help.stdout, /Exit codes:/);
});
