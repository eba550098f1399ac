/**
 * enterprise-world: the two authorization servers of an enterprise-managed authorization test
 * (SEP-990). The enterprise IdP signs in its native client `agent` (OpenID Connect, the robot
 * browser or the device grant) and exchanges the ID tokens it issued for ID-JAGs (RFC 8693); the
 * MCP authorization server redeems them for its confidential client `mcp-client` (RFC 7523).
 *
 * For: the SEP-990 tests of the library, the CLI and the proxy. Not for: an IdP that takes ID
 * tokens from elsewhere (test/session/enterprise.test.ts builds that one itself).
 */
import { generateKeyPairSync, type KeyObject } from 'node:crypto';
import type { TestContext } from 'node:test';
import {
  type AuthorizationServerOptions,
  type RunningAuthorizationServer,
  startAuthorizationServer,
} from '../../arena/testbed/index.js';

export const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const JWT_BEARER = 'urn:ietf:params:oauth:grant-type:jwt-bearer';
const DEVICE_CODE = 'urn:ietf:params:oauth:grant-type:device_code';

/** The key the IdP signs ID-JAGs with, and the MCP authorization server checks them with. */
export interface JagKeys {
  publicKey: KeyObject;
  privateKey: KeyObject;
}

export function jagKeyPair(): JagKeys {
  return generateKeyPairSync('ec', { namedCurve: 'P-256' });
}

/** Options of the MCP authorization server that redeems ID-JAGs for `mcp-client` (secret `secret`). */
export function jagRedeemingAs(jagKeys: JagKeys, secret: string): AuthorizationServerOptions {
  return {
    jwtBearer: { publicKey: jagKeys.publicKey },
    staticClients: [
      {
        client_id: 'mcp-client',
        client_secret: secret,
        grant_types: [JWT_BEARER],
        response_types: [],
        redirect_uris: [],
        scope: 'mcp:read mcp:write mcp:admin',
      },
    ],
  };
}

/**
 * The enterprise IdP, closed after the test: its client `agent` signs in (authorization code and
 * refresh tokens; with `deviceFlow` the device grant too) and exchanges its ID tokens for ID-JAGs
 * issued to `mcp-client`, for the resources `allowResource` lets through (default all).
 */
export async function startEnterpriseIdp(
  t: TestContext,
  jagKeys: JagKeys,
  options: Pick<AuthorizationServerOptions, 'auditSink' | 'deviceFlow' | 'idTokenTtlSeconds'> & {
    allowResource?: (resource: string) => boolean;
  } = {},
): Promise<RunningAuthorizationServer> {
  const { allowResource, ...server } = options;
  const idp = await startAuthorizationServer({
    ...server,
    tokenExchange: {
      signingKey: jagKeys.privateKey,
      clientIdAtAudience: 'mcp-client',
      ...(allowResource ? { allowResource } : {}),
    },
    staticClients: [
      {
        client_id: 'agent',
        token_endpoint_auth_method: 'none',
        application_type: 'native',
        grant_types: [
          'authorization_code',
          'refresh_token',
          TOKEN_EXCHANGE,
          ...(options.deviceFlow ? [DEVICE_CODE] : []),
        ],
        response_types: ['code'],
        redirect_uris: ['http://127.0.0.1/callback'],
      },
    ],
  });
  t.after(() => idp.close());
  return idp;
}
