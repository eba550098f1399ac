/**
 * `authkeep proxy URL --idp ISSUER --idp-client-id ID --client-id ...` (SEP-990 with the IdP
 * session): the real proxy (child process) under a real MCP SDK client. The first proxy signs in
 * to the enterprise IdP (oidc-provider, the robot browser as `$BROWSER`) when its server asks for a
 * token; a second proxy for another server on the same IdP reuses the stored session, no browser.
 * No ID token or secret on either proxy's stderr.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import path from 'node:path';
import { test } from 'node:test';
import { writeRobotBrowserScript } from '../../arena/testbed/robot-browser-command.js';
import { startBed } from '../helpers/bed.js';
import { jagKeyPair, jagRedeemingAs, startEnterpriseIdp } from '../helpers/enterprise-world.js';
import { connectThroughProxy, resultText } from '../helpers/mcp-proxy-client.js';
import { readRecord } from '../helpers/records.js';
import { allSecrets, assertNoSecrets, witnessSecrets } from '../helpers/secrets.js';

const SECRET = 'proxy-enterprise-secret-0123456789abcdef';

test('proxy --idp without --id-token-*: one IdP sign-in for two proxies on two servers; no secret on stderr', async (t) => {
  const jagKeys = jagKeyPair();
  const idp = await startEnterpriseIdp(t, jagKeys);
  const bed = await startBed(t, {
    as: jagRedeemingAs(jagKeys, SECRET),
    servers: [{ discovery: 'header' }, { discovery: 'well-known-path' }],
  });
  const witness = witnessSecrets(bed.as);
  const idpWitness = witnessSecrets(idp);
  const browserLog = path.join(bed.home, 'robot-browser.log');
  const env = {
    AUTHKEEP_HOME: bed.home,
    BROWSER: await writeRobotBrowserScript(bed.home),
    ROBOT_BROWSER_LOG: browserLog,
    MCP_SECRET: SECRET,
    AUTHKEEP_STORE: 'file',
  };
  const flags = [
    '--allow-http',
    '--idp',
    idp.issuer,
    '--idp-client-id',
    'agent',
    '--client-id',
    'mcp-client',
    '--client-secret-env',
    'MCP_SECRET',
  ];
  const [s1, s2] = bed.servers as [(typeof bed.servers)[0], (typeof bed.servers)[0]];

  const first = await connectThroughProxy(t, [s1.url, ...flags], env);
  assert.equal(resultText(await first.client.callTool({ name: 'echo', arguments: { text: 'one' } })), 'one');
  const second = await connectThroughProxy(t, [s2.url, ...flags], env);
  assert.equal(resultText(await second.client.callTool({ name: 'echo', arguments: { text: 'two' } })), 'two');

  assert.equal(idp.audit.counts().authorizationRequests, 1, 'one sign-in at the IdP for two proxies');
  assert.equal((await readFile(browserLog, 'utf8')).split('\n').filter(Boolean).length, 1, 'one browser visit');
  assert.equal(bed.as.audit.counts().authorizationRequests, 0);
  assert.equal(bed.as.audit.counts().jwtBearerGrants, 2);
  const session = await readRecord(bed.home, idp.issuer);
  await first.close();
  await second.close();
  assertNoSecrets(
    [first.stderr(), second.stderr()],
    allSecrets(witness.secrets(), idpWitness.secrets(), {
      'the client secret': SECRET,
      'the ID token': session.idpSession?.token ?? '',
      "the IdP's refresh token": session.tokens?.refreshToken ?? '',
    }),
    'the proxies stderr',
  );
});
