/**
 * AUTHKEEP_DPOP: the CLI's and the proxy's way to the keeper option `dpop` (docs/CLI.md,
 * docs/SPEC.md): `when-required` reaches the keeper options of every command and of the proxy;
 * anything but `auto` or `when-required` is a usage error naming the variable.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { parseProxyOptions } from '../../src/cli/commands/proxy.js';
import { UsageError } from '../../src/cli/errors.js';
import { keeperOptions, parseGlobalOptions } from '../../src/cli/global-options.js';
import { BufferWriter } from '../helpers/cli-fakes.js';

test('AUTHKEEP_DPOP=when-required reaches the keeper options of commands and of the proxy; unset leaves the default', () => {
  const deps = { stderr: new BufferWriter() };
  const global = parseGlobalOptions({ home: '/tmp/h' }, { AUTHKEEP_DPOP: 'when-required' });
  assert.equal(global.dpop, 'when-required');
  assert.equal(keeperOptions(global, deps).dpop, 'when-required');
  const proxy = parseProxyOptions('https://mcp.example.com/mcp', undefined, {}, global, {
    env: {},
    stderr: deps.stderr,
  });
  assert.equal(proxy.proxy.keeperOptions?.dpop, 'when-required');

  const plain = parseGlobalOptions({ home: '/tmp/h' }, {});
  assert.equal(plain.dpop, undefined);
  assert.equal('dpop' in keeperOptions(plain, deps), false);
  assert.equal(parseGlobalOptions({ home: '/tmp/h' }, { AUTHKEEP_DPOP: 'auto' }).dpop, 'auto');
});

test('AUTHKEEP_DPOP with another value is a usage error naming it', () => {
  assert.throws(
    () => parseGlobalOptions({ home: '/tmp/h' }, { AUTHKEEP_DPOP: 'off' }),
    (err: unknown) => err instanceof UsageError && /AUTHKEEP_DPOP/.test(err.message),
  );
});
