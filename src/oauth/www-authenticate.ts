/**
 * www-authenticate: parses a WWW-Authenticate field value into its challenges, per RFC 9110
 * section 11.6.1, and reads the Bearer challenge's parameters (RFC 6750 section 3, RFC 9728
 * section 5.1). It is a tokenizer that walks the value once, left to right, so a comma or a
 * `name=` inside a quoted-string never splits or injects anything. It works on the comma-joined
 * value of several header fields (Node's `Headers.get` joins them with ", ").
 *
 * Not for: deciding what to do about a challenge (refresh, step-up, discovery: see session/), or
 * fetching the resource metadata it names (see discovery).
 *
 * Grammar (RFC 9110 sections 5.6.1-5.6.4 and 11.2-11.3):
 *   WWW-Authenticate = #challenge
 *   challenge   = auth-scheme [ 1*SP ( token68 / #auth-param ) ]
 *   auth-param  = token BWS "=" BWS ( token / quoted-string )
 *   token68     = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="
 *   quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE
 *   #element    = [ element ] *( OWS "," OWS [ element ] )   (empty elements are allowed)
 *
 * Where the shared test corpus decides a question the RFC leaves to the recipient, the corpus wins:
 * a repeated parameter within one challenge keeps its last value (RFC 9110 says a sender MUST NOT
 * repeat one; the corpus's recipients accept it), and whitespace around "=" is allowed (BWS).
 */
import { AuthkeepError } from '../errors.js';

/** One challenge: scheme and parameter names lowercased, parameter values unescaped. */
export interface Challenge {
  scheme: string;
  parameters: Record<string, string>;
  token68?: string;
}

/** The Bearer challenge fields an MCP client acts on (RFC 6750 section 3, RFC 9728 section 5.1). */
export interface BearerChallenge {
  resourceMetadata?: string;
  scope?: string;
  error?: string;
  errorDescription?: string;
}

/**
 * Parses a WWW-Authenticate field value into every challenge it holds (RFC 9110 section 11.6.1).
 * Throws AuthkeepError `www_authenticate_malformed`, naming the position and what was expected,
 * when the value does not match the grammar or holds no challenge.
 */
export function parseWwwAuthenticate(header: string): Challenge[] {
  return new ChallengeTokenizer(header).challengeList();
}

/** The first challenge whose scheme is `Bearer` (RFC 6750 section 3), if any. */
export function findBearerChallenge(challenges: readonly Challenge[]): Challenge | undefined {
  return challenges.find((challenge) => challenge.scheme === 'bearer');
}

/**
 * Reads the Bearer challenge of a response's WWW-Authenticate field: `resource_metadata` (RFC
 * 9728 section 5.1), `scope`, `error` and `error_description` (RFC 6750 section 3). Returns
 * undefined when the response has no such field or no Bearer challenge; throws
 * `www_authenticate_malformed` when the field is present but malformed.
 */
export function bearerChallengeFromResponse(response: Response): BearerChallenge | undefined {
  const header = response.headers.get('www-authenticate');
  if (header === null) return undefined;
  const bearer = findBearerChallenge(parseWwwAuthenticate(header));
  if (bearer === undefined) return undefined;
  const result: BearerChallenge = {};
  const resourceMetadata = ownParameter(bearer, 'resource_metadata');
  const scope = ownParameter(bearer, 'scope');
  const error = ownParameter(bearer, 'error');
  const errorDescription = ownParameter(bearer, 'error_description');
  if (resourceMetadata !== undefined) result.resourceMetadata = resourceMetadata;
  if (scope !== undefined) result.scope = scope;
  if (error !== undefined) result.error = error;
  if (errorDescription !== undefined) result.errorDescription = errorDescription;
  return result;
}

/** A Bearer challenge, or a DPoP one (RFC 9449 section 7.1: the same parameters, plus `algs`). */
export interface AuthChallenge extends BearerChallenge {
  scheme: 'bearer' | 'dpop';
  /** RFC 9449 section 7.1 `algs`: the proof algorithms the resource server accepts. */
  algs?: string[];
}

/**
 * The challenge an MCP client acts on: the first Bearer challenge, else the first DPoP challenge
 * (RFC 9449 section 7.1: a server that accepts only DPoP-bound tokens challenges with `DPoP`
 * alone, carrying `resource_metadata`, `scope` and `error` as a Bearer challenge would). With
 * `prefer: 'dpop'` (the request presented a DPoP-bound token) the DPoP challenge comes first.
 * Undefined when neither is present; throws `www_authenticate_malformed` like
 * bearerChallengeFromResponse.
 */
export function authChallengeFromResponse(
  response: Response,
  prefer: 'bearer' | 'dpop' = 'bearer',
): AuthChallenge | undefined {
  const header = response.headers.get('www-authenticate');
  if (header === null) return undefined;
  const challenges = parseWwwAuthenticate(header);
  const other = prefer === 'bearer' ? 'dpop' : 'bearer';
  const chosen =
    challenges.find((challenge) => challenge.scheme === prefer) ??
    challenges.find((challenge) => challenge.scheme === other);
  if (chosen === undefined) return undefined;
  const result: AuthChallenge = { scheme: chosen.scheme === 'dpop' ? 'dpop' : 'bearer' };
  const fields = [
    ['resource_metadata', 'resourceMetadata'],
    ['scope', 'scope'],
    ['error', 'error'],
    ['error_description', 'errorDescription'],
  ] as const;
  for (const [name, key] of fields) {
    const value = ownParameter(chosen, name);
    if (value !== undefined) result[key] = value;
  }
  const algs = ownParameter(chosen, 'algs');
  if (result.scheme === 'dpop' && algs !== undefined) result.algs = algs.split(' ').filter(Boolean);
  return result;
}

function ownParameter(challenge: Challenge, name: string): string | undefined {
  return Object.hasOwn(challenge.parameters, name) ? challenge.parameters[name] : undefined;
}

/** tchar (RFC 9110 section 5.6.2). */
const TCHAR = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]$/;
/** The characters of token68 before its trailing "=" padding (RFC 9110 section 11.2). */
const TOKEN68_CHAR = /^[A-Za-z0-9\-._~+/]$/;

/** A single left-to-right pass over one field value; `pos` only ever moves forward on success. */
class ChallengeTokenizer {
  private pos = 0;

  constructor(private readonly input: string) {}

  /**
   * WWW-Authenticate = #challenge (RFC 9110 sections 11.6.1 and 5.6.1): challenges separated by
   * commas, empty list elements allowed, at least one challenge required.
   */
  challengeList(): Challenge[] {
    const challenges: Challenge[] = [];
    let atElement = true; // at the start of the list, or just after a comma
    for (;;) {
      this.skipOws();
      if (this.atEnd()) break;
      if (this.peek() === ',') {
        this.pos++;
        atElement = true;
        continue;
      }
      if (!atElement) this.fail("',' between challenges");
      challenges.push(this.challenge());
      atElement = false;
    }
    if (challenges.length === 0) this.fail('at least one challenge');
    return challenges;
  }

  /** challenge = auth-scheme [ 1*SP ( token68 / #auth-param ) ] (RFC 9110 section 11.3). */
  private challenge(): Challenge {
    const scheme = this.token('an auth-scheme').toLowerCase();
    const challenge: Challenge = { scheme, parameters: {} };
    if (this.atEnd() || this.peek() === ',') return challenge;
    if (this.peek() !== ' ') this.fail("a space, ',' or the end after the auth-scheme");
    while (this.peek() === ' ') this.pos++;
    const token68 = this.token68();
    if (token68 !== undefined) {
      challenge.token68 = token68;
      return challenge;
    }
    challenge.parameters = this.authParamList();
    return challenge;
  }

  /**
   * token68 (RFC 9110 section 11.2), taken only when it is the whole rest of the challenge, i.e.
   * followed by OWS and then ',' or the end. Otherwise the position is left unchanged.
   */
  private token68(): string | undefined {
    const start = this.pos;
    let end = start;
    while (end < this.input.length && TOKEN68_CHAR.test(this.input.charAt(end))) end++;
    if (end === start) return undefined;
    while (this.input[end] === '=') end++;
    let after = end;
    while (isOws(this.input[after])) after++;
    if (after < this.input.length && this.input[after] !== ',') return undefined;
    this.pos = end;
    return this.input.slice(start, end);
  }

  /**
   * #auth-param (RFC 9110 sections 11.2 and 5.6.1). The list ends at the end of input or at a
   * list element that is not an auth-param (the next challenge); the comma before that element is
   * left for challengeList() to consume.
   */
  private authParamList(): Record<string, string> {
    const parameters: Record<string, string> = {};
    let separatorAt: number | undefined; // first comma since the last element
    let atElement = true;
    for (;;) {
      this.skipOws();
      if (this.atEnd()) break;
      if (this.peek() === ',') {
        separatorAt ??= this.pos;
        this.pos++;
        atElement = true;
        continue;
      }
      if (!atElement) this.fail("',' after the auth-param");
      if (!this.atAuthParam()) {
        if (separatorAt === undefined)
          this.fail('token68 or an auth-param (token BWS "=" BWS value) after the auth-scheme');
        this.pos = separatorAt;
        break;
      }
      const [name, value] = this.authParam();
      Object.defineProperty(parameters, name, { value, enumerable: true, writable: true, configurable: true });
      separatorAt = undefined;
      atElement = false;
    }
    return parameters;
  }

  /** Whether the input at `pos` begins `token BWS "="`, i.e. an auth-param rather than a challenge. */
  private atAuthParam(): boolean {
    let i = this.pos;
    while (i < this.input.length && TCHAR.test(this.input.charAt(i))) i++;
    if (i === this.pos) return false;
    while (isOws(this.input[i])) i++;
    return this.input[i] === '=';
  }

  /** auth-param = token BWS "=" BWS ( token / quoted-string ) (RFC 9110 section 11.2). */
  private authParam(): [string, string] {
    const name = this.token('an auth-param name').toLowerCase();
    this.skipOws();
    this.expect('=');
    this.skipOws();
    const value = this.peek() === '"' ? this.quotedString() : this.token('a token or quoted-string value');
    return [name, value];
  }

  /** token = 1*tchar (RFC 9110 section 5.6.2). */
  private token(what: string): string {
    const start = this.pos;
    while (!this.atEnd() && TCHAR.test(this.peek())) this.pos++;
    if (this.pos === start) this.fail(what);
    return this.input.slice(start, this.pos);
  }

  /**
   * quoted-string = DQUOTE *( qdtext / quoted-pair ) DQUOTE (RFC 9110 section 5.6.4); returns the
   * value with quoted-pairs unescaped.
   */
  private quotedString(): string {
    this.expect('"');
    let value = '';
    for (;;) {
      if (this.atEnd()) this.fail("a closing '\"' of the quoted-string");
      const c = this.peek();
      if (c === '"') {
        this.pos++;
        return value;
      }
      if (c === '\\') {
        this.pos++;
        if (this.atEnd()) this.fail("a character after '\\' in the quoted-string");
        if (!isQuotedPairChar(this.peek())) this.fail("HTAB, SP, VCHAR or obs-text after '\\'");
        value += this.peek();
        this.pos++;
        continue;
      }
      if (!isQdtext(c)) this.fail('qdtext (no control characters) in the quoted-string');
      value += c;
      this.pos++;
    }
  }

  private expect(c: string): void {
    if (this.peek() !== c) this.fail(`'${c}'`);
    this.pos++;
  }

  private skipOws(): void {
    while (isOws(this.input[this.pos])) this.pos++;
  }

  private peek(): string {
    return this.input[this.pos] ?? '';
  }

  private atEnd(): boolean {
    return this.pos >= this.input.length;
  }

  private fail(expected: string): never {
    const found = this.atEnd() ? 'the end of the value' : JSON.stringify(this.peek());
    throw new AuthkeepError(
      'www_authenticate_malformed',
      `malformed WWW-Authenticate: expected ${expected} at position ${this.pos}, found ${found}`,
      { field: 'WWW-Authenticate', detail: { position: this.pos, expected } },
    );
  }
}

/** OWS = *( SP / HTAB ) (RFC 9110 section 5.6.3). */
function isOws(c: string | undefined): boolean {
  return c === ' ' || c === '\t';
}

/** qdtext = HTAB / SP / %x21 / %x23-5B / %x5D-7E / obs-text (RFC 9110 section 5.6.4). */
function isQdtext(c: string): boolean {
  const code = c.charCodeAt(0);
  return (
    c === '\t' ||
    c === ' ' ||
    code === 0x21 ||
    (code >= 0x23 && code <= 0x5b) ||
    (code >= 0x5d && code <= 0x7e) ||
    (code >= 0x80 && code <= 0xff)
  );
}

/** quoted-pair = "\" ( HTAB / SP / VCHAR / obs-text ) (RFC 9110 section 5.6.4). */
function isQuotedPairChar(c: string): boolean {
  const code = c.charCodeAt(0);
  return c === '\t' || c === ' ' || (code >= 0x21 && code <= 0x7e) || (code >= 0x80 && code <= 0xff);
}
