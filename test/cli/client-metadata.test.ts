/**
 * Client ID metadata documents from the CLI (issue 9), as real `authkeep` processes:
 * `client-metadata <url>` prints the document (and refuses bad URLs with exit 2); `login
 * --client-metadata-url` (and the proxy `setup --client-metadata-url` writes) signs in to the real oidc-provider with that URL as client_id, and later
 * refreshes and sign-ins without the flag keep it; `doctor` fetches the published document from a
 * real HTTP server on 127.0.0.1 and reports it ok, or names the field at fault.
 *
 * oidc-provider 9.13 fetches metadata documents only over https and refuses loopback addresses, so
 * the testbed AS cannot fetch from 127.0.0.1: the test reads the document the CLI printed from the
 * server it is published on, as an AS would, and the AS knows the client by it
 * (`cimdClients`). The conformance suite's auth/basic-cimd covers the AS side of the protocol.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { Client } from '@modelcontextprotocol/sdk/client/index.js';
import { StdioClientTransport } from '@modelcontextprotocol/sdk/client/stdio.js';
import { startAuthorizationServer, startProtectedMcpServer } from '../../arena/testbed/index.js';
import { type CliResult, cliEnv, runCliProcess } from '../helpers/cli-run.js';
import { startHostileServer } from '../helpers/hostile-server.js';
import { expireStoredTokens, readRecord } from '../helpers/records.js';

function ok(result: CliResult, what: string): void {
  assert.equal(result.code, 0, `${what} exits 0\nstdout: ${result.stdout}\nstderr: ${result.stderr}`);
}

interface DoctorJson {
  ok: boolean;
  checks: Array<{ check: string; status: string; subject: string; message: string; fix?: string }>;
}

function metadataChecks(result: CliResult): DoctorJson['checks'] {
  return (JSON.parse(result.stdout) as DoctorJson).checks.filter((c) => c.check === 'client_metadata');
}

test('client-metadata prints the document to publish: client_id the URL exactly, the loopback redirect, a public client', async (t) => {
  const cli = await cliEnv(t);
  const url = 'https://app.example.com/oauth/client.json';
  const plain = await runCliProcess(cli, ['client-metadata', url]);
  ok(plain, 'client-metadata');
  assert.deepEqual(JSON.parse(plain.stdout), {
    client_id: url,
    client_name: 'authkeep',
    redirect_uris: ['http://127.0.0.1/callback'],
    grant_types: ['authorization_code', 'refresh_token'],
    response_types: ['code'],
    token_endpoint_auth_method: 'none',
    application_type: 'native',
  });

  const custom = await runCliProcess(cli, [
    'client-metadata',
    url,
    '--redirect-uri',
    'http://127.0.0.1:33418/callback',
    '--redirect-uri',
    'http://localhost/callback',
    '--client-name',
    'My agent',
    '--scope',
    'mcp:read mcp:write',
  ]);
  ok(custom, 'client-metadata with flags');
  const doc = JSON.parse(custom.stdout) as Record<string, unknown>;
  assert.deepEqual(doc.redirect_uris, ['http://127.0.0.1:33418/callback', 'http://localhost/callback']);
  assert.equal(doc.client_name, 'My agent');
  assert.equal(doc.scope, 'mcp:read mcp:write');
  assert.equal(doc.client_id, url);
});

test('client-metadata refuses a URL that cannot be a client_id, with exit 2 and the reason', async (t) => {
  const cli = await cliEnv(t);
  const cases: Array<[string[], RegExp]> = [
    [['https://app.example.com'], /must contain a path component/],
    [['https://app.example.com/'], /must contain a path component/],
    [['https://app.example.com/client.json#frag'], /must not contain a fragment/],
    [['http://app.example.com/client.json'], /must use https/],
    [['http://127.0.0.1:8080/client.json'], /uses http .*allowed only/],
    [['https://app.example.com/a/../client.json'], /must not contain "\." or "\.\." path segments/],
    [
      ['https://APP.example.com:443/client.json'],
      /is not in its normal form; use https:\/\/app\.example\.com\/client\.json/,
    ],
    [['https://user:pw@app.example.com/client.json'], /must not carry credentials/],
    [['not a url'], /is not an absolute URL/],
    [
      ['https://app.example.com/c.json', '--redirect-uri', 'http://evil.example/cb'],
      /uses http on a host that is not this machine/,
    ],
    [['https://app.example.com/c.json', '--scope', 'a  b'], /is not a space-separated list/],
  ];
  for (const [args, message] of cases) {
    const result = await runCliProcess(cli, ['client-metadata', ...args]);
    assert.equal(result.code, 2, `${args.join(' ')}: exit 2\n${result.stderr}`);
    assert.match(result.stderr, message, args.join(' '));
    assert.equal(result.stdout, '', `${args.join(' ')}: no document printed`);
  }
  // Loopback over http is for local tests, with --allow-http.
  ok(await runCliProcess(cli, ['client-metadata', 'http://127.0.0.1:8080/client.json', '--allow-http']), 'loopback');
  // login and proxy refuse the same URLs before doing anything.
  const login = await runCliProcess(cli, [
    'login',
    'https://mcp.example.com/mcp',
    '--client-metadata-url',
    'https://app.example.com/',
  ]);
  assert.equal(login.code, 2, login.stderr);
  assert.match(login.stderr, /--client-metadata-url must contain a path component/);
  const both = await runCliProcess(cli, [
    'login',
    'https://mcp.example.com/mcp',
    '--client-metadata-url',
    'https://app.example.com/c.json',
    '--client-id',
    'x',
  ]);
  assert.equal(both.code, 2, both.stderr);
  assert.match(both.stderr, /--client-metadata-url and --client-id both name the client/);
  const proxy = await runCliProcess(cli, [
    'proxy',
    'https://mcp.example.com/mcp',
    '--client-metadata-url',
    'http://app.example.com/c.json',
  ]);
  assert.equal(proxy.code, 2, proxy.stderr);
  assert.match(proxy.stderr, /--client-metadata-url must use https/);
});

test('login --client-metadata-url signs in with the document URL as client_id; refresh and a later sign-in keep it; doctor checks the published document', async (t) => {
  const cli = await cliEnv(t);
  // Where the document is published: a real HTTP server on 127.0.0.1.
  const host = await startHostileServer();
  t.after(() => host.close());
  const docUrl = `${host.url}/oauth/client.json`;
  const printed = await runCliProcess(cli, ['client-metadata', docUrl, '--allow-http', '--client-name', 'cimd test']);
  ok(printed, 'client-metadata');
  host.on('GET', '/oauth/client.json', { body: printed.stdout, headers: { 'content-type': 'application/json' } });
  // The AS reads the published document, as a CIMD AS does when it meets the client_id.
  const published = (await (await fetch(docUrl)).json()) as Record<string, unknown> & { client_id: string };
  assert.equal(published.client_id, docUrl);

  // A second document, for the switch at the end.
  const docUrl2 = `${host.url}/oauth/client-v2.json`;
  const printed2 = await runCliProcess(cli, ['client-metadata', docUrl2, '--allow-http']);
  ok(printed2, 'client-metadata v2');
  const published2 = JSON.parse(printed2.stdout) as Record<string, unknown> & { client_id: string };
  host.on('GET', '/oauth/client-v2.json', { json: published2 });

  const as = await startAuthorizationServer({
    advertiseClientIdMetadataDocument: true,
    cimdClients: [published, published2],
  });
  t.after(() => as.close().catch(() => undefined));
  const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => server.close().catch(() => undefined));

  const login = await runCliProcess(cli, ['login', server.url, '--allow-http', '--client-metadata-url', docUrl]);
  ok(login, 'login --client-metadata-url');
  assert.match(
    login.stdout,
    new RegExp(`client_id +${docUrl.replace(/[.?*+^$()[\]{}|\\/]/g, '\\$&')} \\(client ID metadata document\\)`),
  );
  const record = await readRecord(cli.home, server.url);
  assert.equal(record.registration.method, 'client_id_metadata_document');
  assert.equal(record.registration.clientId, docUrl);
  assert.equal(as.audit.counts().registrations, 0, 'no dynamic registration');
  const authorize = as.audit.http().filter((e) => e.endpoint === 'authorization');
  assert.ok(authorize.length > 0);
  assert.ok(
    authorize.every((e) => e.clientId === docUrl),
    'the authorize request names the document URL',
  );
  const redirect = new URL(record.registration.redirectUris[0] as string);
  assert.equal(redirect.hostname, '127.0.0.1');
  assert.notEqual(redirect.port, '', 'an ephemeral port the portless document entry covers (RFC 8252 section 7.3)');

  // A refresh, without the flag, presents the same client_id.
  await expireStoredTokens(cli.home, server.url);
  ok(await runCliProcess(cli, ['token', server.url]), 'token (refresh due)');
  assert.equal(as.audit.counts({ clientId: docUrl }).refreshGrants, 1, 'refreshed as the document client');
  // A later sign-in without the flag keeps the stored client, registering nothing.
  ok(await runCliProcess(cli, ['login', server.url]), 'login again without the flag');
  assert.equal((await readRecord(cli.home, server.url)).registration.clientId, docUrl);
  assert.equal(as.audit.counts().registrations, 0, 'still no dynamic registration');
  assert.equal(as.audit.counts({ clientId: docUrl }).codeExchanges, 2);

  // doctor: the published document is fine.
  const healthy = await runCliProcess(cli, ['doctor', server.url, '--json']);
  ok(healthy, 'doctor');
  const [good] = metadataChecks(healthy);
  assert.equal(good?.status, 'ok', JSON.stringify(good));
  assert.match(good?.message ?? '', /client_id matches/);
  const fetchesBefore = host.requestsTo('GET', '/oauth/client.json').length;

  // A document whose client_id is another URL: named, with the command that prints the right one.
  host.on('GET', '/oauth/client.json', { json: { ...published, client_id: 'https://other.example/c.json' } });
  const wrongId = await runCliProcess(cli, ['doctor', server.url, '--json']);
  assert.equal(wrongId.code, 1, wrongId.stdout);
  const [bad] = metadataChecks(wrongId);
  assert.equal(bad?.status, 'fail');
  assert.match(
    bad?.message ?? '',
    /\[client_id\]: its client_id is "https:\/\/other\.example\/c\.json", not the document's URL/,
  );
  assert.match(bad?.fix ?? '', /authkeep client-metadata/);
  assert.ok(host.requestsTo('GET', '/oauth/client.json').length > fetchesBefore, 'doctor fetched the document');

  // Not JSON.
  host.on('GET', '/oauth/client.json', { body: '<html>moved</html>', headers: { 'content-type': 'text/html' } });
  const notJson = await runCliProcess(cli, ['doctor', server.url]);
  assert.equal(notJson.code, 1);
  assert.match(notJson.stdout, /✗ client_metadata +.*\[body\]: the document is not JSON/);

  // Redirect URIs that are not authkeep's loopback redirect.
  host.on('GET', '/oauth/client.json', { json: { ...published, redirect_uris: ['https://app.example.com/cb'] } });
  const wrongRedirect = await runCliProcess(cli, ['doctor', server.url, '--json']);
  assert.equal(wrongRedirect.code, 1);
  assert.match(
    metadataChecks(wrongRedirect)[0]?.message ?? '',
    /\[redirect_uris\]: its redirect_uris do not include http:\/\/127\.0\.0\.1:\d+\/callback/,
  );

  // A hostile document's strings reach the terminal escaped.
  host.on('GET', '/oauth/client.json', { json: { ...published, client_id: 'x\u001b[2J\u202eevil' } });
  const hostile = await runCliProcess(cli, ['doctor', server.url]);
  assert.equal(hostile.code, 1);
  assert.doesNotMatch(hostile.stdout, /\u001b|\u202e/, 'no raw escape or bidi characters');
  assert.match(hostile.stdout, /\[client_id\]/);

  // Gone: a failure saying so.
  host.on('GET', '/oauth/client.json', { status: 404, body: 'no' });
  const gone = await runCliProcess(cli, ['doctor', server.url, '--json']);
  assert.equal(gone.code, 1);
  assert.match(metadataChecks(gone)[0]?.message ?? '', /\[status\]: .*answered HTTP 404/);

  // Another document URL given: it wins over the stored client of another id.
  ok(
    await runCliProcess(cli, ['login', server.url, '--allow-http', '--client-metadata-url', docUrl2]),
    'login with another document',
  );
  assert.equal((await readRecord(cli.home, server.url)).registration.clientId, docUrl2);
  assert.equal(as.audit.counts({ clientId: docUrl2 }).codeExchanges, 1);
  assert.equal(as.audit.counts().registrations, 0);
  const switched = await runCliProcess(cli, ['doctor', server.url, '--json']);
  ok(switched, 'doctor after the switch');
  assert.equal(metadataChecks(switched)[0]?.status, 'ok');
});

test('doctor --client-metadata-url checks a document before any sign-in, with the default redirect URI', async (t) => {
  const cli = await cliEnv(t);
  const host = await startHostileServer();
  t.after(() => host.close());
  const docUrl = `${host.url}/client.json`;
  const printed = await runCliProcess(cli, ['client-metadata', docUrl, '--allow-http']);
  ok(printed, 'client-metadata');
  host.on('GET', '/client.json', { body: printed.stdout, headers: { 'content-type': 'application/json' } });
  const good = await runCliProcess(cli, ['doctor', '--client-metadata-url', docUrl, '--allow-http', '--json']);
  ok(good, 'doctor --client-metadata-url');
  const [check] = metadataChecks(good);
  assert.equal(check?.status, 'ok');
  assert.equal(check?.subject, docUrl);

  // The document at another path: its client_id is not this URL.
  const elsewhere = `${host.url}/other.json`;
  host.on('GET', '/other.json', { body: printed.stdout, headers: { 'content-type': 'application/json' } });
  const mismatch = await runCliProcess(cli, ['doctor', '--client-metadata-url', elsewhere, '--allow-http', '--json']);
  assert.equal(mismatch.code, 1);
  assert.match(metadataChecks(mismatch)[0]?.message ?? '', /\[client_id\]/);

  const usage = await runCliProcess(cli, ['doctor', '--client-metadata-url', 'https://app.example.com/#x']);
  assert.equal(usage.code, 2);
  assert.match(usage.stderr, /must not contain a fragment/);
});

test('setup --client-metadata-url passes it to the proxy, whose sign-in uses the document URL as client_id', async (t) => {
  const cli = await cliEnv(t);
  const host = await startHostileServer();
  t.after(() => host.close());
  const docUrl = `${host.url}/proxy-client.json`;
  const printed = await runCliProcess(cli, ['client-metadata', docUrl, '--allow-http']);
  ok(printed, 'client-metadata');
  const published = JSON.parse(printed.stdout) as Record<string, unknown> & { client_id: string };
  host.on('GET', '/proxy-client.json', { json: published });
  const as = await startAuthorizationServer({ advertiseClientIdMetadataDocument: true, cimdClients: [published] });
  t.after(() => as.close().catch(() => undefined));
  const server = await startProtectedMcpServer({ authorizationServer: as, discovery: 'header' });
  t.after(() => server.close().catch(() => undefined));

  const setup = await runCliProcess(cli, [
    'setup',
    'cursor',
    server.url,
    '--client-metadata-url',
    docUrl,
    '--allow-http',
    '--command-path',
    '--json',
  ]);
  ok(setup, 'setup');
  const entry = (JSON.parse(setup.stdout) as { entry: { command: string; args: string[] } }).entry;
  const at = entry.args.indexOf('--client-metadata-url');
  assert.ok(at > entry.args.indexOf('proxy'), `the proxy gets the flag: ${entry.args.join(' ')}`);
  assert.equal(entry.args[at + 1], docUrl);

  // The MCP client runs exactly what setup wrote; the proxy signs in through the robot browser.
  const client = new Client({ name: 'cimd-proxy', version: '1.0.0' });
  const transport = new StdioClientTransport({
    command: entry.command,
    args: entry.args,
    env: cli.env as Record<string, string>,
    stderr: 'pipe',
  });
  t.after(() => client.close().catch(() => undefined));
  await client.connect(transport);
  const echoed = await client.callTool({ name: 'echo', arguments: { text: 'via cimd' } });
  assert.deepEqual(
    (echoed.content as Array<{ text?: string }>).map((c) => c.text),
    ['via cimd'],
  );
  await client.close();
  const record = await readRecord(cli.home, server.url);
  assert.equal(record.registration.method, 'client_id_metadata_document');
  assert.equal(record.registration.clientId, docUrl);
  assert.equal(as.audit.counts().registrations, 0, 'no dynamic registration');
  assert.equal(as.audit.counts({ clientId: docUrl }).codeExchanges, 1);
});
