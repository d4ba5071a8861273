/** The access policy, shared by the daemon (enforcement) and the CLI (`ringfence policy check`): pure, no daemon code. */
export { ADMIN_OPERATIONS, CRYPTO_OPERATIONS, KEYLESS_OPERATIONS, OPERATIONS, OPERATION_GROUPS, isOperation, type Operation } from './operations.js';
export { compileGlob } from './glob.js';
export { parseAccounts, readAccounts, type Accounts } from './accounts.js';
export { PolicyError, parsePolicy, type Policy, type PrincipalMatcher, type Rule } from './parse.js';
export { decide, mayEverDo, type Decision, type Subject } from './evaluate.js';
export { defaultPolicyPath } from './default-path.js';
export { MAX_POLICY_BYTES, policyFileRefusal, policyPathRefusal, readPolicyFile } from './file-mode.js';
