// What the web peer uses of the noble libraries; refresh.sh bundles this into noble.js.
export { ed25519 } from '@noble/curves/ed25519.js';
export { sha256 } from '@noble/hashes/sha2.js';
export { hkdf, extract as hkdfExtract, expand as hkdfExpand } from '@noble/hashes/hkdf.js';
export { chacha20poly1305 } from '@noble/ciphers/chacha.js';
export { encode as qrEncode } from 'uqr';
