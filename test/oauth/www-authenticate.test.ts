/**
 * Tests for the RFC 9110 section 11.6.1 WWW-Authenticate parser: the 54 shared corpus vectors
 * (test/fixtures/README.md says where they come from), then the cases the MCP SDK's regex parser
 * gets wrong, then the Bearer-challenge reader.
 *
 * Not for: what the session layer does with a challenge.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { describe, test } from 'node:test';
import { AuthkeepError } from '../../src/errors.js';
import {
  bearerChallengeFromResponse,
  type Challenge,
  findBearerChallenge,
  parseWwwAuthenticate,
} from '../../src/oauth/www-authenticate.js';

interface Vector {
  description: string;
  header: string;
  expected?: Challenge[];
}

const vectors = JSON.parse(
  readFileSync(new URL('../fixtures/www-authenticate.json', import.meta.url), 'utf8'),
) as Vector[];

function assertMalformed(header: string): void {
  assert.throws(
    () => parseWwwAuthenticate(header),
    (err: unknown) => {
      assert.ok(err instanceof AuthkeepError);
      assert.equal(err.code, 'www_authenticate_malformed');
      assert.match(err.message, /expected .+ at position \d+/);
      return true;
    },
  );
}

function responseWith(...fields: string[]): Response {
  const headers = new Headers();
  for (const field of fields) headers.append('WWW-Authenticate', field);
  return new Response(null, { status: 401, headers });
}

describe('corpus vectors (test/fixtures/www-authenticate.json)', () => {
  test('the corpus holds 54 vectors, 40 valid', () => {
    assert.equal(vectors.length, 54);
    assert.equal(vectors.filter((v) => v.expected !== undefined).length, 40);
  });

  for (const vector of vectors) {
    test(vector.description, () => {
      if (vector.expected === undefined) {
        assertMalformed(vector.header);
      } else {
        assert.deepStrictEqual(parseWwwAuthenticate(vector.header), vector.expected);
      }
    });
  }
});

describe('what a regex parser gets wrong', () => {
  test('a Basic challenge before Bearer', () => {
    const challenges = parseWwwAuthenticate(
      'Basic realm="legacy", Bearer resource_metadata="https://mcp.example/.well-known/oauth-protected-resource", scope="read write"',
    );
    assert.deepStrictEqual(challenges, [
      { scheme: 'basic', parameters: { realm: 'legacy' } },
      {
        scheme: 'bearer',
        parameters: {
          resource_metadata: 'https://mcp.example/.well-known/oauth-protected-resource',
          scope: 'read write',
        },
      },
    ]);
    assert.deepStrictEqual(findBearerChallenge(challenges), challenges[1]);
  });

  test("resource_metadata= inside another parameter's quoted value is not picked up", () => {
    const header =
      'Bearer error_description="see resource_metadata=\\"https://evil.example/prm\\", please", scope="read"';
    const [bearer] = parseWwwAuthenticate(header);
    assert.deepStrictEqual(bearer, {
      scheme: 'bearer',
      parameters: { error_description: 'see resource_metadata="https://evil.example/prm", please', scope: 'read' },
    });
    const fields = bearerChallengeFromResponse(responseWith(header));
    assert.equal(fields?.resourceMetadata, undefined);
    assert.deepStrictEqual(fields, {
      scope: 'read',
      errorDescription: 'see resource_metadata="https://evil.example/prm", please',
    });
  });

  test('resource_metadata= inside a Basic realm does not leak into the Bearer challenge', () => {
    const header = 'Basic realm="resource_metadata=https://evil.example/prm", Bearer scope="read"';
    assert.deepStrictEqual(bearerChallengeFromResponse(responseWith(header)), { scope: 'read' });
  });

  test('x_scope= is not scope=', () => {
    const header = 'Bearer x_scope="admin", scope="read"';
    assert.deepStrictEqual(parseWwwAuthenticate(header)[0]?.parameters, { x_scope: 'admin', scope: 'read' });
    assert.deepStrictEqual(bearerChallengeFromResponse(responseWith('Bearer x_scope="admin"')), {});
  });

  test('escaped quotes and backslashes inside a value', () => {
    const header =
      'Bearer error="insufficient_scope", error_description="needs \\"files:write\\" \\\\ now", scope="files:write"';
    assert.deepStrictEqual(bearerChallengeFromResponse(responseWith(header)), {
      error: 'insufficient_scope',
      errorDescription: 'needs "files:write" \\ now',
      scope: 'files:write',
    });
  });

  test('a comma inside a quoted value does not split the challenge', () => {
    const [bearer, ...rest] = parseWwwAuthenticate('Bearer scope="a, b=c", error="x"');
    assert.deepStrictEqual(bearer?.parameters, { scope: 'a, b=c', error: 'x' });
    assert.equal(rest.length, 0);
  });

  test('two header fields joined with ", " by a real Headers object', () => {
    const response = responseWith(
      'Basic realm="mcp"',
      'Bearer error="invalid_token", resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp"',
    );
    const joined = response.headers.get('www-authenticate');
    assert.equal(
      joined,
      'Basic realm="mcp", Bearer error="invalid_token", resource_metadata="https://mcp.example/.well-known/oauth-protected-resource/mcp"',
    );
    assert.deepStrictEqual(parseWwwAuthenticate(joined ?? ''), [
      { scheme: 'basic', parameters: { realm: 'mcp' } },
      {
        scheme: 'bearer',
        parameters: {
          error: 'invalid_token',
          resource_metadata: 'https://mcp.example/.well-known/oauth-protected-resource/mcp',
        },
      },
    ]);
    assert.deepStrictEqual(bearerChallengeFromResponse(response), {
      error: 'invalid_token',
      resourceMetadata: 'https://mcp.example/.well-known/oauth-protected-resource/mcp',
    });
  });

  test('two Bearer-less fields joined, one of them a token68 challenge', () => {
    const response = responseWith('Negotiate abc==', 'DPoP algs="ES256"');
    assert.deepStrictEqual(parseWwwAuthenticate(response.headers.get('www-authenticate') ?? ''), [
      { scheme: 'negotiate', parameters: {}, token68: 'abc==' },
      { scheme: 'dpop', parameters: { algs: 'ES256' } },
    ]);
    assert.equal(bearerChallengeFromResponse(response), undefined);
  });
});

describe('duplicate parameters', () => {
  // RFC 9110 section 11.2 says a parameter name MUST only occur once per challenge, but that is a
  // sender requirement; the corpus ("duplicate parameters, second one overwrites the first",
  // "Challenge with duplicated keys") decides recipients keep the last value, so we follow it.
  test('the last occurrence wins, as the corpus decides', () => {
    assert.deepStrictEqual(parseWwwAuthenticate('Bearer scope="a", SCOPE="b"')[0]?.parameters, { scope: 'b' });
  });

  test('the same name in two challenges stays in its own challenge', () => {
    assert.deepStrictEqual(
      parseWwwAuthenticate('Bearer scope="a", Bearer scope="b"').map((c) => c.parameters),
      [{ scope: 'a' }, { scope: 'b' }],
    );
  });
});

describe('grammar edges', () => {
  test('errors name the position and what was expected', () => {
    assert.throws(
      () => parseWwwAuthenticate('Bearer realm="x" scope="y"'),
      /expected ',' after the auth-param at position 17/,
    );
    assert.throws(
      () => parseWwwAuthenticate('Bearer realm="unclosed'),
      /closing '"' of the quoted-string at position 22/,
    );
  });

  test('a parameter named __proto__ is kept as data, not as a prototype', () => {
    const [challenge] = parseWwwAuthenticate('Bearer __proto__="x", scope="y"');
    assert.equal(Object.getPrototypeOf(challenge?.parameters), Object.prototype);
    assert.deepStrictEqual(Object.keys(challenge?.parameters ?? {}), ['__proto__', 'scope']);
    assert.equal(Object.getOwnPropertyDescriptor(challenge?.parameters, '__proto__')?.value, 'x');
  });

  test('inherited names are not read as Bearer parameters', () => {
    assert.deepStrictEqual(bearerChallengeFromResponse(responseWith('Bearer realm="x"')), {});
  });

  test('control characters inside a quoted-string are rejected', () => {
    assertMalformed('Bearer realm="a\u0001b"');
  });

  test('a response without WWW-Authenticate gives undefined', () => {
    assert.equal(bearerChallengeFromResponse(new Response(null, { status: 401 })), undefined);
  });

  test('a malformed WWW-Authenticate on a response throws the typed error', () => {
    assert.throws(
      () => bearerChallengeFromResponse(responseWith('Bearer realm="x" ???')),
      (err: unknown) => {
        return err instanceof AuthkeepError && err.code === 'www_authenticate_malformed';
      },
    );
  });
});
