/**
 * device-sign-in: one interactive sign-in through the OAuth 2.0 device authorization grant
 * (RFC 8628), the sibling of sign-in.ts for machines without a browser: the user opens the
 * verification URI on any device and enters (or confirms) the user code while we poll.
 *
 *   1. choose the registration exactly as the browser flow does (one per issuer). DCR asks for
 *      the device_code grant when the AS offers it (oauth/registration.ts) and registers a
 *      loopback redirect URI too, so the same registration also serves later browser sign-ins;
 *   2. the device authorization request (scope, RFC 8707 resource);
 *   3. show the verification URI and user code (AuthKeeperOptions.showDeviceCode);
 *   4. poll the token endpoint until approved, denied or expired, bounded by the login timeout;
 *   5. stamp the tokens with client_id and issuer, as sign-in.ts does.
 *
 * Not for: coordinating concurrent sign-ins (sign-in-coordinator.ts) or writing the record;
 * deciding between the flows (deviceFlowUnavailable says why not, session-keeper.ts decides).
 */
import { displayText } from '../display-text.js';
import { AuthkeepError } from '../errors.js';
import { pollDeviceToken, requestDeviceAuthorization } from '../oauth/device-authorization.js';
import { startLoopbackCallback } from '../oauth/loopback-callback.js';
import { DEVICE_CODE_GRANT_TYPE, offersDeviceGrant, registerClient } from '../oauth/registration.js';
import { unionScopes, withOfflineAccess } from '../oauth/scope.js';
import type { AuthorizationServer, Registration } from '../oauth/types.js';
import type { DiscoveredServer } from './discover-server.js';
import { dpopOutcome, prepareDpop, refusedClientDropped, type SignInContext, type SignInResult } from './sign-in.js';
import { stampTokens } from './stamp-tokens.js';

/** What the user must be shown to complete a device sign-in (RFC 8628 section 3.3). */
export interface DeviceCodeInfo {
  verificationUri: string;
  /** The verification URI with the user code in it (section 3.3.1), when the AS gave one. */
  verificationUriComplete?: string;
  userCode: string;
  expiresInSeconds: number;
}

export type ShowDeviceCode = (info: DeviceCodeInfo) => void | Promise<void>;

export interface DeviceSignInContext extends Omit<SignInContext, 'openAuthorizationUrl'> {
  showDeviceCode: ShowDeviceCode;
}

/** The default `showDeviceCode`: two lines on stderr (the AS's strings through displayText). */
export function printDeviceCode(info: DeviceCodeInfo): void {
  process.stderr.write(
    `To sign in, open ${displayText(info.verificationUri, 8000)} and enter the code ${displayText(info.userCode, 100)}` +
      `${info.verificationUriComplete ? `\n(or open ${displayText(info.verificationUriComplete, 8000)})` : ''}\n`,
  );
}

/**
 * Why the device flow cannot be used for this sign-in, or undefined when it can: the AS must
 * publish a device_authorization_endpoint, and the client must be allowed the grant. A stored
 * dynamic registration says which grants it has (one made without the device_code grant cannot
 * use it); a new DCR asks for it only when the AS lists it in grant_types_supported; for
 * pre-registered and metadata-document clients we cannot know, so we try (the AS answers
 * unauthorized_client when it is not allowed).
 */
export function deviceFlowUnavailable(
  as: AuthorizationServer,
  registration: Registration | undefined,
  configured: { staticClient?: boolean; clientMetadataUrl?: boolean },
): string | undefined {
  if (!as.device_authorization_endpoint)
    return `authorization server ${as.issuer} does not offer the device authorization grant (no device_authorization_endpoint)`;
  if (registration && registration.issuer === as.issuer) {
    if (registration.method !== 'dynamic') return undefined;
    return registration.grantTypes?.includes(DEVICE_CODE_GRANT_TYPE)
      ? undefined
      : `the stored client registration ${registration.clientId} at ${as.issuer} was made without the device_code grant (by an earlier authkeep, or when the AS did not offer it)`;
  }
  if (configured.staticClient) return undefined;
  if (configured.clientMetadataUrl && as.client_id_metadata_document_supported === true) return undefined;
  if (!offersDeviceGrant(as)) {
    return `authorization server ${as.issuer} does not list ${DEVICE_CODE_GRANT_TYPE} in grant_types_supported, so dynamic registration cannot ask for it`;
  }
  return undefined;
}

/** A loopback redirect URI for the registration, the way the browser flow would register it. */
async function loopbackRedirectUri(ctx: DeviceSignInContext): Promise<string> {
  const callback = await startLoopbackCallback({
    host: ctx.callback.host ?? '127.0.0.1',
    path: ctx.callback.path ?? '/callback',
    port: ctx.callback.port ?? 0,
    expectedState: 'unused',
    timeoutMs: 1_000,
  });
  await callback.close();
  return callback.redirectUri;
}

export async function deviceSignIn(
  server: DiscoveredServer,
  requestedScope: string | undefined,
  ctx: DeviceSignInContext,
): Promise<SignInResult> {
  const as = server.authorizationServer;
  const scope = withOfflineAccess(requestedScope, as.scopes_supported);

  // 1. Registration, as in sign-in.ts.
  const registrationScope = withOfflineAccess(
    unionScopes(scope, server.resourceScopes?.join(' ')),
    as.scopes_supported,
  );
  const registration =
    ctx.knownRegistration && ctx.knownRegistration.issuer === as.issuer
      ? ctx.knownRegistration
      : await registerClient(
          as,
          {
            clientName: ctx.clientName,
            redirectUris: [await loopbackRedirectUri(ctx)],
            ...(registrationScope ? { scope: registrationScope } : {}),
            ...(ctx.clientMetadataUrl ? { clientMetadataUrl: ctx.clientMetadataUrl } : {}),
            ...(ctx.staticClient ? { staticClient: ctx.staticClient } : {}),
          },
          ctx.http,
        );
  if (registration.method === 'dynamic' && !registration.grantTypes?.includes(DEVICE_CODE_GRANT_TYPE)) {
    throw new AuthkeepError(
      'device_flow_unavailable',
      `the authorization server ${as.issuer} registered client ${registration.clientId} without the device_code grant`,
      {
        field: 'grant_types',
      },
    );
  }

  // 2. Device authorization request.
  // An OpenID Connect sign-in at an IdP (ctx.openid) names no resource and wants an ID token.
  const resource = ctx.openid ? undefined : server.resource;
  const device = await requestDeviceAuthorization(as, registration, { scope, resource }, ctx.http);
  ctx.logger.emit(
    'info',
    'login.device_code',
    `waiting for the user to approve the device code at ${new URL(device.verificationUri).host}`,
    {
      serverUrl: server.serverUrl,
      issuer: as.issuer,
      clientId: registration.clientId,
    },
  );

  // 3. Show the code; 4. poll, bounded by the login timeout as well as by the code's lifetime.
  await ctx.showDeviceCode({
    verificationUri: device.verificationUri,
    ...(device.verificationUriComplete ? { verificationUriComplete: device.verificationUriComplete } : {}),
    userCode: device.userCode,
    expiresInSeconds: device.expiresIn,
  });
  const controller = new AbortController();
  const timer = setTimeout(
    () =>
      controller.abort(
        new AuthkeepError(
          'callback_timeout',
          `the device sign-in was not approved within ${Math.round(ctx.timeoutMs / 1000)} s`,
          {
            field: 'timeoutMs',
          },
        ),
      ),
    ctx.timeoutMs,
  );
  timer.unref?.();
  const dpop = ctx.openid ? undefined : await prepareDpop(server, ctx);
  let tokenSet: Awaited<ReturnType<typeof pollDeviceToken>>;
  try {
    tokenSet = await refusedClientDropped(ctx, registration, () =>
      pollDeviceToken(
        as,
        registration,
        device.deviceCode,
        {
          intervalSeconds: device.intervalSeconds,
          expiresIn: device.expiresIn,
          resource,
          ...(ctx.openid ? { requireIdToken: true } : {}),
          signal: controller.signal,
          ...(dpop ? { dpop: dpop.handle } : {}),
        },
        ctx.http,
      ),
    );
  } finally {
    clearTimeout(timer);
  }
  // 5. Tokens stamped with the client and issuer.
  return {
    registration,
    tokens: stampTokens(tokenSet, { sentAt: tokenSet.requestedAt, registration, requestedScope: scope }),
    ...dpopOutcome(tokenSet, dpop, as.issuer),
    ...(tokenSet.idToken ? { idToken: tokenSet.idToken } : {}),
  };
}
