// The two oidc-provider modules the testbed's JWT bearer grant reuses (no typings ship for them).
declare module 'oidc-provider/lib/actions/grants/client_credentials.js' {
  import type Provider from 'oidc-provider';
  import type { KoaContextWithOIDC } from 'oidc-provider';
  export function handler(provider: Provider, helpers: Record<string, unknown>, ctx: KoaContextWithOIDC): Promise<void>;
}
declare module 'oidc-provider/lib/helpers/grants.js' {
  const helpers: Record<string, unknown>;
  export = helpers;
}
