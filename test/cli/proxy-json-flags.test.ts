/**
 * `authkeep proxy`'s JSON flags are validated by schema, not cast: a bad member of
 * `--static-oauth-client-info` or `--static-oauth-client-metadata` is a usage error (exit 2) that
 * names the member and never echoes its value.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { runCli } from '../../src/cli/program.js';
import { fakeDeps } from '../helpers/cli-fakes.js';

const URL_A = 'https://mcp.example.com/mcp';

test('a bad --static-oauth-client-info or --static-oauth-client-metadata member is a usage error naming it', async () => {
  const cases: Array<[string, string, RegExp]> = [
    ['--static-oauth-client-info', '{"client_secret":"hush-123"}', /"client_id" is missing/],
    ['--static-oauth-client-info', '{"client_id":""}', /"client_id" must not be empty/],
    [
      '--static-oauth-client-info',
      '{"client_id":"a","client_secret":["hush-123"]}',
      /"client_secret" must be a string/,
    ],
    [
      '--static-oauth-client-info',
      '{"client_id":"a","token_endpoint_auth_method":"private_key_jwt"}',
      /"token_endpoint_auth_method" must be one of none, client_secret_basic, client_secret_post/,
    ],
    ['--static-oauth-client-metadata', '{"client_name":42}', /"client_name" must be a string/],
    ['--static-oauth-client-metadata', '{"scope":["mcp:read"]}', /"scope" must be a string/],
  ];
  for (const [flag, value, message] of cases) {
    const deps = fakeDeps();
    assert.equal(await runCli(['proxy', URL_A, flag, value], deps), 2, `${flag} ${value}: ${deps.stderr.text}`);
    assert.match(deps.stderr.text, new RegExp(`authkeep: ${flag}: ${message.source}`));
    assert.doesNotMatch(deps.stderr.text, /hush-123/, 'the value is never echoed');
  }
});
