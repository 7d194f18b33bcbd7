// Baseline for bench/oauth.sh: the `oidc-provider` npm package (v9) configured like
// Bóveda for the client_credentials benchmark: one confidential client authenticating
// with client_secret_basic, the client_credentials grant, JWT access tokens (RFC 9068,
// ES256) for one resource server, 5-minute lifetime, in-memory storage (its default
// adapter, which favours it: Bóveda persists nothing for these tokens either).
//
//   node bench/oidc-provider-baseline.mjs PORT CLIENT_ID CLIENT_SECRET
// Prints {"msg":"listening","url":...} on stderr when ready. Resolves packages from
// tests/api/node_modules.
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const require = createRequire(path.join(here, '..', 'tests', 'api', 'package.json'));
const { default: Provider } = await import(require.resolve('oidc-provider'));
const jose = await import(require.resolve('jose'));

const [port, clientId, clientSecret] = process.argv.slice(2);
const issuer = `http://127.0.0.1:${port}`;
const resource = issuer; // the audience, as Bóveda's (the issuer)

const { privateKey } = await jose.generateKeyPair('ES256', { extractable: true });
const jwk = { ...(await jose.exportJWK(privateKey)), kid: 'es256-1', alg: 'ES256', use: 'sig' };

const provider = new Provider(issuer, {
    clients: [{
        client_id: clientId,
        client_secret: clientSecret,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        token_endpoint_auth_method: 'client_secret_basic',
        id_token_signed_response_alg: 'ES256',
        scope: 'ledger:read ledger:write',
    }],
    jwks: { keys: [jwk] },
    scopes: ['ledger:read', 'ledger:write'],
    features: {
        clientCredentials: { enabled: true },
        introspection: { enabled: true },
        devInteractions: { enabled: false },
        resourceIndicators: {
            enabled: true,
            defaultResource: () => resource,
            useGrantedResource: () => true,
            getResourceServerInfo: () => ({
                scope: 'ledger:read ledger:write',
                audience: resource,
                accessTokenTTL: 300,
                accessTokenFormat: 'jwt',
                jwt: { sign: { alg: 'ES256' } },
            }),
        },
    },
    ttl: { ClientCredentials: 300 },
});
provider.proxy = false;
const server = provider.listen(Number(port), '127.0.0.1', () => {
    process.stderr.write(`${JSON.stringify({ msg: 'listening', url: issuer })}\n`);
});
process.on('SIGTERM', () => server.close(() => process.exit(0)));
