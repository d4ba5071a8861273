/**
 * The operations a policy grants. Crypto verbs mirror the CLI commands; admin verbs cover the
 * KeyService RPCs. `hash` and `random` use no key, so a rule's key patterns do not apply to them.
 */
export const CRYPTO_OPERATIONS = ['encrypt', 'decrypt', 'reencrypt', 'datakey', 'mac', 'verify', 'hash', 'random'] as const;
export const ADMIN_OPERATIONS = ['create', 'import', 'read', 'rotate', 'update', 'disable', 'enable', 'delete'] as const;
export const OPERATIONS = [...CRYPTO_OPERATIONS, ...ADMIN_OPERATIONS] as const;
export type Operation = (typeof OPERATIONS)[number];

/** Operations that name no key. */
export const KEYLESS_OPERATIONS: ReadonlySet<Operation> = new Set(['hash', 'random']);

/** Shorthands a rule may use in `operations`. */
export const OPERATION_GROUPS: Readonly<Record<string, readonly Operation[]>> = {
  '*': OPERATIONS,
  use: ['encrypt', 'decrypt', 'reencrypt', 'datakey', 'mac', 'verify'],
  admin: ADMIN_OPERATIONS,
};

export function isOperation(s: string): s is Operation {
  return (OPERATIONS as readonly string[]).includes(s);
}
