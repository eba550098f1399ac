/**
 * secret-source: reads a machine grant's secret (client secret, private key, assertion) from where
 * the grant says it is, at the moment it is needed: an environment variable of this process, or a
 * file (a Kubernetes service-account token, a CI provider's token file), read again each time
 * because platforms rotate them. A missing or empty source is `credential_unavailable`, naming the
 * variable or the file, never a value; nothing is written to the record (another process, with
 * the variable set, may well succeed).
 *
 * Not for: what the secret is used for (oauth/client-credentials.ts, oauth/jwt-bearer.ts).
 */
import { readFile } from 'node:fs/promises';
import { AuthkeepError } from '../errors.js';
import { describeSource, type SecretSource } from '../oauth/grants.js';

/** Environment and file reads, injectable for tests. Default: this process's. */
export interface SecretReader {
  env: NodeJS.ProcessEnv;
  readFile: (file: string) => Promise<string>;
}

export const processSecretReader: SecretReader = {
  get env() {
    return process.env;
  },
  readFile: (file) => readFile(file, 'utf8'),
};

const NAMES: Record<string, string> = {
  clientSecret: 'client secret',
  privateKey: 'private key',
  idToken: 'ID token',
  'idp.clientSecret': 'client secret at the identity provider',
};

/** The secret at `source`, without a trailing newline. `field` names it in errors (e.g. `assertion`). */
export async function readSecret(
  source: SecretSource,
  field: string,
  reader: SecretReader = processSecretReader,
): Promise<string> {
  const what = NAMES[field] ?? field;
  let text: string | undefined;
  if ('env' in source) {
    text = reader.env[source.env];
    if (text === undefined) {
      throw new AuthkeepError(
        'credential_unavailable',
        `the ${what} is read from ${describeSource(source)}, which is not set`,
        {
          field,
        },
      );
    }
  } else {
    try {
      text = await reader.readFile(source.file);
    } catch (err) {
      const code = (err as NodeJS.ErrnoException).code ?? 'unreadable';
      throw new AuthkeepError('credential_unavailable', `the ${what} is read from ${describeSource(source)}: ${code}`, {
        field,
      });
    }
  }
  const secret = text.replace(/\r?\n$/, '');
  if (secret.trim() === '') {
    throw new AuthkeepError('credential_unavailable', `the ${what} read from ${describeSource(source)} is empty`, {
      field,
    });
  }
  return secret;
}
