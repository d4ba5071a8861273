/** Proto Suite enum <-> the suite names of src/capabilities/suites.ts. */
import { Suite } from '../../gen/ringfence/v1/suite_pb.js';
import { KeyPurpose, KeyView } from '../../gen/ringfence/v1/key_pb.js';
import type { Purpose } from '../keys/model.js';
import { invalidField } from './errors.js';

const BY_ENUM: Record<Exclude<Suite, Suite.UNSPECIFIED>, string> = {
  [Suite.AES_256_GCM]: 'aes-256-gcm',
  [Suite.CHACHA20_POLY1305]: 'chacha20-poly1305',
  [Suite.AES_256_CCM]: 'aes-256-ccm',
  [Suite.AES_256_CTR_HMAC_SHA256]: 'aes-256-ctr-hmac-sha256',
  [Suite.HMAC_SHA256]: 'hmac-sha256',
  [Suite.HMAC_SHA384]: 'hmac-sha384',
  [Suite.HMAC_SHA512]: 'hmac-sha512',
};
const BY_NAME = new Map(Object.entries(BY_ENUM).map(([k, v]) => [v, Number(k) as Suite]));

/** Undefined for UNSPECIFIED; INVALID_FIELD for numbers outside the enum. */
export function suiteName(suite: Suite): string | undefined {
  if (suite === Suite.UNSPECIFIED) return undefined;
  const name = BY_ENUM[suite as keyof typeof BY_ENUM];
  if (!name) throw invalidField('suite', `unknown suite ${suite}`);
  return name;
}

export function suiteEnum(name: string): Suite {
  return BY_NAME.get(name) ?? Suite.UNSPECIFIED;
}

export function purposeName(purpose: KeyPurpose): Purpose | undefined {
  switch (purpose) {
    case KeyPurpose.UNSPECIFIED:
      return undefined;
    case KeyPurpose.AEAD:
      return 'aead';
    case KeyPurpose.MAC:
      return 'mac';
    default:
      throw invalidField('purpose', `unknown purpose ${purpose}`);
  }
}

/** The view asked for, `fallback` for UNSPECIFIED; INVALID_FIELD for numbers outside the enum (they gave the full view). */
export function keyView(view: KeyView, fallback: KeyView.BASIC | KeyView.FULL): KeyView.BASIC | KeyView.FULL {
  switch (view) {
    case KeyView.UNSPECIFIED:
    case undefined: // a message made without create() (tests, in-process callers)
      return fallback;
    case KeyView.BASIC:
    case KeyView.FULL:
      return view;
    default:
      throw invalidField('view', `unknown key view ${view}: use KEY_VIEW_BASIC (1) or KEY_VIEW_FULL (2)`);
  }
}
