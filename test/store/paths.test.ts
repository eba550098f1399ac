import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { AuthkeepError } from '../../src/errors.js';
import { canonicalServerUrl, defaultHome, RECORD_KEY_PATTERN, recordKey, storeLayout } from '../../src/store/paths.js';

describe('store paths', () => {
  it('defaultHome: $AUTHKEEP_HOME wins, then the platform per-user data dir', () => {
    assert.equal(defaultHome({ AUTHKEEP_HOME: '/srv/ak' }, 'linux', '/home/u'), '/srv/ak');
    assert.equal(defaultHome({ XDG_DATA_HOME: '/x/data' }, 'linux', '/home/u'), '/x/data/authkeep');
    assert.equal(defaultHome({ XDG_DATA_HOME: 'relative' }, 'linux', '/home/u'), '/home/u/.local/share/authkeep');
    assert.equal(defaultHome({}, 'linux', '/home/u'), '/home/u/.local/share/authkeep');
    assert.equal(defaultHome({}, 'darwin', '/Users/u'), '/Users/u/Library/Application Support/authkeep');
    assert.equal(
      defaultHome({ LOCALAPPDATA: 'C:\\Users\\u\\AppData\\Local' }, 'win32', 'C:\\Users\\u'),
      'C:\\Users\\u\\AppData\\Local\\authkeep',
    );
  });

  it('recordKey is stable, file-safe, readable, and distinguishes URLs', () => {
    const key = recordKey('https://MCP.Example.com:443/v1/mcp#frag');
    assert.equal(key, recordKey('https://mcp.example.com/v1/mcp'));
    assert.match(key, /^mcp\.example\.com-v1-mcp-[0-9a-f]{16}$/);
    assert.match(key, RECORD_KEY_PATTERN);
    assert.notEqual(recordKey('https://mcp.example.com/v1/mcp'), recordKey('https://mcp.example.com/v1/mcp/'));
    assert.notEqual(recordKey('https://mcp.example.com/v1/MCP'), recordKey('https://mcp.example.com/v1/mcp'));
    assert.match(recordKey('http://127.0.0.1:8080/'), /^127\.0\.0\.1-8080-[0-9a-f]{16}$/);
    const long = recordKey(`https://a.example/${'seg/'.repeat(100)}`);
    assert.ok(long.length < 80, long);
    assert.match(long, RECORD_KEY_PATTERN);
    assert.equal(canonicalServerUrl('HTTPS://A.example:443/x?q=1#f'), 'https://a.example/x?q=1');
  });

  it('recordKey rejects a non-URL with invalid_argument', () => {
    assert.throws(
      () => recordKey('not a url'),
      (err: unknown) => err instanceof AuthkeepError && err.code === 'invalid_argument',
    );
  });

  it('layout: servers/<key>.json, locks/<key>.<purpose>.lock, quarantine/', () => {
    const layout = storeLayout('/h');
    assert.equal(layout.recordPath('k'), '/h/servers/k.json');
    assert.equal(layout.lockName('k', 'refresh'), 'k.refresh');
    assert.equal(layout.locksDir, '/h/locks');
    assert.equal(layout.quarantineDir, '/h/quarantine');
  });
});
