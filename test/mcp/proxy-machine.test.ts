/**
 * `authkeep proxy URL --client-credentials ...`: a CI job's stdio proxy with no browser anywhere.
 * The real proxy (child process) under a real MCP SDK client, against oidc-provider: it gets its
 * first token with the client credentials grant ($BROWSER points at a command that records any
 * start, and none may happen), calls tools, and renews from the grant as its 2 s tokens fall due.
 * No secret in the proxy's stderr.
 */
import assert from 'node:assert/strict';
import { readFile, writeFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { startBed } from '../helpers/bed.js';
import { connectThroughProxy, resultText } from '../helpers/mcp-proxy-client.js';
import { readRecord } from '../helpers/records.js';
import { allSecrets, assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

const SECRET = 'proxy-ci-secret-0123456789abcdef';

test('proxy --client-credentials: no browser, tool calls across renewals from the grant; no secret on stderr', async (t) => {
  const bed = await startBed(t, {
    as: {
      accessTokenTtlSeconds: 2,
      clientCredentials: true,
      staticClients: [
        {
          client_id: 'ci-proxy',
          client_secret: SECRET,
          grant_types: ['client_credentials'],
          response_types: [],
          redirect_uris: [],
          scope: 'mcp:read mcp:write mcp:admin',
        },
      ],
    },
  });
  const witness = witnessSecrets(bed.as);
  const server = bed.servers[0]!;
  const opened = path.join(bed.home, 'browser-opened');
  const browser = path.join(bed.home, 'no-browser.sh');
  await writeFile(browser, `#!/bin/sh\necho "$@" >> '${opened}'\nexit 1\n`, { mode: 0o755 });

  const proxy = await connectThroughProxy(
    t,
    [server.url, '--allow-http', '--client-credentials', '--client-id', 'ci-proxy', '--client-secret-env', 'CI_SECRET'],
    { AUTHKEEP_HOME: bed.home, BROWSER: browser, CI_SECRET: SECRET },
  );
  assert.equal(resultText(await proxy.client.callTool({ name: 'echo', arguments: { text: 'first' } })), 'first');
  // At least the first token (a saturated machine can take longer than its 2 s life to get from
  // the proxy's start to this call, and the proxy then rightly renews before calling).
  assert.ok(bed.as.audit.counts().clientCredentialsGrants >= 1, 'a token from the client credentials grant');
  assert.equal(bed.as.audit.counts().authorizationRequests, 0);
  assert.equal((await readRecord(bed.home, server.url)).grant?.type, 'client_credentials');

  // 2 s tokens: the proxy itself renews from the grant as they fall due, call after call, until
  // the AS has seen two renewals (a loop until that event, capped).
  const capAt = Date.now() + 120_000;
  for (let i = 0; bed.as.audit.counts().clientCredentialsGrants < 3; i++) {
    assert.ok(Date.now() < capAt, 'the proxy renewed twice');
    assert.equal(
      resultText(await proxy.client.callTool({ name: 'echo', arguments: { text: `call ${i}` } })),
      `call ${i}`,
    );
  }
  assert.equal(bed.as.audit.counts().authorizationRequests, 0, 'still no browser, no authorization request');
  assert.equal(bed.as.audit.counts().refreshGrants, 0, 'no refresh token involved');

  await proxy.close();
  assert.equal(await readFile(opened, 'utf8').catch(() => ''), '', 'no browser was ever started');
  assertNoSecrets(proxy.stderr(), allSecrets(witness.secrets(), [SECRET]), 'the proxy stderr');
});
