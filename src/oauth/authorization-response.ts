/**
 * authorization-response: validates the query of the redirect back from the authorization server
 * (RFC 6749 section 4.1.2 and 4.1.2.1, RFC 9207 section 2.4) and yields the code, before anything
 * redeems it. It takes plain URLSearchParams, so the loopback server and a pasted redirect URL
 * (`--no-browser`) share one validation.
 *
 * Not for: receiving the redirect (loopback-callback.ts) or redeeming the code (the code exchange).
 * The code is a secret: it never appears in a message or a detail.
 */
import { AuthkeepError } from '../errors.js';

export interface ExpectedAuthorizationResponse {
  /** The state this login sent (RFC 6749 section 4.1.1). */
  readonly state: string;
  /** The issuer identifier of the AS the request went to (RFC 8414 `issuer`). */
  readonly issuer: string;
  /** The AS metadata's `authorization_response_iss_parameter_supported` (RFC 9207 section 3). */
  readonly issParameterSupported: boolean;
}

/**
 * Validates an authorization response in RFC order: the state first (a response to another login
 * is not ours to act on), then the issuer (RFC 9207 section 2.4 applies to error responses too),
 * then an error response, then the code. Returns the code; throws AuthkeepError otherwise.
 */
export function validateAuthorizationResponse(
  params: URLSearchParams,
  expected: ExpectedAuthorizationResponse,
): { code: string } {
  checkState(params, expected.state);
  checkIssuer(params, expected.issuer, expected.issParameterSupported);
  checkErrorResponse(params);
  return { code: extractCode(params) };
}

/**
 * RFC 6749 section 4.1.2: `state` is REQUIRED in the response when the request had one, and must
 * be exactly the value sent; RFC 6749 section 3.1: it must not be repeated.
 */
export function checkState(params: URLSearchParams, expectedState: string): void {
  const states = params.getAll('state');
  if (states.length === 0) {
    throw new AuthkeepError('state_mismatch', 'authorization response has no state', {
      field: 'state',
      detail: { expected: expectedState },
    });
  }
  if (states.length > 1) {
    throw new AuthkeepError('state_mismatch', `authorization response repeats state ${states.length} times`, {
      field: 'state',
    });
  }
  if (states[0] !== expectedState) {
    throw new AuthkeepError(
      'state_mismatch',
      `authorization response state ${JSON.stringify(states[0])} is not the state this login sent`,
      {
        field: 'state',
        detail: { expected: expectedState, actual: states[0] },
      },
    );
  }
}

/**
 * RFC 9207 section 2.4: when `iss` is present it must equal the issuer by simple string
 * comparison; when it is absent while the AS advertises
 * `authorization_response_iss_parameter_supported`, the response is rejected.
 */
export function checkIssuer(params: URLSearchParams, issuer: string, issParameterSupported: boolean): void {
  const values = params.getAll('iss');
  if (values.length === 0) {
    if (issParameterSupported) {
      throw new AuthkeepError(
        'iss_mismatch',
        'authorization response has no iss although the authorization server advertises it (RFC 9207)',
        {
          field: 'iss',
          detail: { expected: issuer },
        },
      );
    }
    return;
  }
  if (values.length > 1) {
    throw new AuthkeepError('iss_mismatch', `authorization response repeats iss ${values.length} times`, {
      field: 'iss',
    });
  }
  if (values[0] !== issuer) {
    throw new AuthkeepError(
      'iss_mismatch',
      `authorization response iss ${JSON.stringify(values[0])} is not the issuer ${JSON.stringify(issuer)} (RFC 9207)`,
      {
        field: 'iss',
        detail: { expected: issuer, actual: values[0] },
      },
    );
  }
}

/** RFC 6749 section 4.1.2.1: an `error` response means the AS or the user refused. */
export function checkErrorResponse(params: URLSearchParams): void {
  const error = params.get('error');
  if (error === null) return;
  const errorDescription = params.get('error_description') ?? undefined;
  const errorUri = params.get('error_uri') ?? undefined;
  throw new AuthkeepError(
    'authorization_denied',
    `authorization server answered ${error}${errorDescription ? `: ${errorDescription}` : ''}`,
    {
      field: 'error',
      detail: { error, error_description: errorDescription, error_uri: errorUri },
    },
  );
}

/** RFC 6749 section 4.1.2: `code` is REQUIRED, once. Messages name the field, never the value. */
export function extractCode(params: URLSearchParams): string {
  const codes = params.getAll('code');
  if (codes.length !== 1 || codes[0] === '' || codes[0] === undefined) {
    const what = codes.length > 1 ? `repeats code ${codes.length} times` : 'has no code';
    throw new AuthkeepError('invalid_argument', `authorization response ${what}`, { field: 'code' });
  }
  return codes[0];
}
