/**
 * The auto-approving login and consent "UI" of the test authorization server.
 *
 * For: completing oidc-provider interactions without a person: the host app answers the
 * interaction URL itself, logs in a fixed account and grants every requested scope and resource
 * (or denies with access_denied when told to), then redirects back to the provider. A robot that
 * just follows redirects with a cookie jar thereby finishes the authorization flow.
 *
 * Not for: rendering pages or checking credentials; anything but tests and the arena.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type Provider from 'oidc-provider';
import type { InteractionResults } from 'oidc-provider';

/** What the robot user does at the interaction; mutable while the AS runs. */
export interface InteractionBehavior {
  /** Account id logged in (the `sub` of issued tokens). */
  accountId: string;
  /** Finish consent with access_denied instead of granting. */
  denyConsent: boolean;
}

interface ConsentDetails {
  missingOIDCScope?: string[];
  missingOIDCClaims?: string[];
  missingResourceScopes?: Record<string, string[]>;
}

/** Answer one interaction request (GET <issuerPath>/interaction/<uid>) and redirect back. */
export async function completeInteraction(
  provider: Provider,
  behavior: InteractionBehavior,
  req: IncomingMessage,
  res: ServerResponse,
): Promise<void> {
  const interaction = await provider.interactionDetails(req, res);
  const { prompt, params, session } = interaction;
  let result: InteractionResults;

  if (prompt.name === 'login') {
    result = { login: { accountId: behavior.accountId } };
  } else if (prompt.name === 'consent') {
    if (behavior.denyConsent) {
      result = { error: 'access_denied', error_description: 'the robot user denied consent' };
    } else {
      const details = prompt.details as ConsentDetails;
      const existing = interaction.grantId ? await provider.Grant.find(interaction.grantId) : undefined;
      const grant =
        existing ??
        new provider.Grant({
          accountId: session?.accountId ?? behavior.accountId,
          clientId: String(params.client_id),
        });
      if (details.missingOIDCScope?.length) grant.addOIDCScope(details.missingOIDCScope.join(' '));
      if (details.missingOIDCClaims?.length) grant.addOIDCClaims(details.missingOIDCClaims);
      for (const [indicator, scopes] of Object.entries(details.missingResourceScopes ?? {})) {
        grant.addResourceScope(indicator, scopes.join(' '));
      }
      const grantId = await grant.save();
      result = { consent: { grantId } };
    }
  } else {
    result = { error: 'access_denied', error_description: `unsupported prompt ${prompt.name}` };
  }

  await provider.interactionFinished(req, res, result, { mergeWithLastSubmission: true });
}
