// mp protocol version 2, the parts without I/O: codes, SPAKE2, keys, sealed envelopes,
// messages, manifests and data-channel frames (docs/PROTOCOL.md §2, §4–§9, §11).
//
// A second implementation of what src/protocol/ does in Rust; the cryptography is the noble
// libraries' (web/vendor/noble.js). Nothing here touches the network or the page.

import { ed25519, sha256, hkdf, hkdfExtract, hkdfExpand, chacha20poly1305 } from './vendor/noble.js';

export { sha256 };

const utf8 = new TextEncoder();
const fromUtf8 = new TextDecoder('utf-8', { fatal: true });

export const VERSION = 2;
export const FEATURES = ['trickle'];

// ---------------------------------------------------------------------------------------------
// §2 The code

// Unicode White_Space, as Rust's str::trim uses it (JavaScript's trim differs: it strips U+FEFF
// and keeps U+0085).
const WHITE = '\\t\\n\\v\\f\\r \\u0085\\u00a0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';
const TRIM = new RegExp(`^[${WHITE}]+|[${WHITE}]+$`, 'g');

export class CodeError extends Error {}

/**
 * Parses a code as §2 says; returns { room, full, generated } or throws CodeError. `generated`:
 * of the generated form (a number and two words of the list), whose sender waits before the
 * code is shown.
 */
export function parseCode(text, words) {
  const spelled = normaliseGenerated(String(text).replace(TRIM, ''), words);
  const full = spelled ?? String(text).replace(TRIM, '');
  if (utf8.encode(full).length > 256) throw new CodeError('the code is too long (at most 256 bytes)');
  const dash = full.indexOf('-');
  const malformed = () => new CodeError('a code looks like 7-guitar-ocean: a number, a dash, then words');
  if (dash < 0) throw malformed();
  const room = full.slice(0, dash);
  const secret = full.slice(dash + 1);
  if (!/^[0-9]{1,9}$/.test(room) || secret === '' || /\p{Cc}/u.test(full)) throw malformed();
  const normal = room.replace(/^0+/, '') || '0';
  return { room: normal, full: `${normal}-${secret}`, generated: spelled !== null && spelled.split('-').length === 3 };
}

/**
 * §2: a generated code (a number, then words of the list) is forgiven its case and its
 * separators: `7 Guitar ocean` is `7-guitar-ocean`. Anything else is kept as typed.
 */
function normaliseGenerated(text, words) {
  if (!words) return null;
  const parts = text.split(/[-\s]+/).filter(Boolean);
  if (parts.length < 2 || !/^[0-9]+$/.test(parts[0])) return null;
  const rest = parts.slice(1).map((w) => w.toLowerCase());
  if (!rest.every((w) => words.includes(w))) return null;
  return `${parts[0]}-${rest.join('-')}`;
}

/** A fresh code `<1..=99>-<word>-<word>` from `words` (the 256 words of §2). */
export function generateCode(words, room) {
  const pick = () => words[randomBelow(words.length)];
  return parseCode(`${room ?? randomRoom()}-${pick()}-${pick()}`);
}

export function randomRoom() {
  return 1 + randomBelow(99);
}

function randomBelow(n) {
  // Rejection sampling on 32-bit values: uniform.
  const limit = Math.floor(0x100000000 / n) * n;
  const word = new Uint32Array(1);
  for (;;) {
    crypto.getRandomValues(word);
    if (word[0] < limit) return word[0] % n;
  }
}

// ---------------------------------------------------------------------------------------------
// §4 SPAKE2 (the `spake2` 0.4 crate's Ed25519Group, asymmetric), composed from noble's points.

const Point = ed25519.Point;
const L = Point.Fn.ORDER;
const M = Point.fromHex('15cfd18e385952982b6a8f8c7854963b58e34388c8e6dae891db756481a02312');
const N = Point.fromHex('f04f2e7eb734b2a8f8b472eaf9c3c632576ac64aea650b496a8a20ff00e583c3');

export function hex(bytes) {
  return Array.from(bytes, (b) => b.toString(16).padStart(2, '0')).join('');
}

export function unhex(text) {
  const out = new Uint8Array(text.length / 2);
  for (let i = 0; i < out.length; i++) out[i] = parseInt(text.slice(2 * i, 2 * i + 2), 16);
  return out;
}

function bigFromBytesBE(bytes) {
  let n = 0n;
  for (const b of bytes) n = (n << 8n) | BigInt(b);
  return n;
}

function mulOrZero(point, scalar) {
  return scalar === 0n ? Point.ZERO : point.multiply(scalar);
}

/** w: HKDF-SHA256(salt "", pw, "SPAKE2 pw", 48 bytes) as a big-endian integer mod l (§4.3). */
export function passwordScalar(pw) {
  return bigFromBytesBE(hkdf(sha256, pw, new Uint8Array(0), utf8.encode('SPAKE2 pw'), 48)) % L;
}

function randomScalar() {
  for (;;) {
    const s = bigFromBytesBE(crypto.getRandomValues(new Uint8Array(64))) % L;
    if (s !== 0n) return s;
  }
}

function concat(...parts) {
  const out = new Uint8Array(parts.reduce((n, p) => n + p.length, 0));
  let at = 0;
  for (const p of parts) {
    out.set(p, at);
    at += p.length;
  }
  return out;
}

export class PakeError extends Error {
  constructor(kind, message) {
    super(message);
    this.kind = kind; // 'same-side' or 'wrong-code'
  }
}

/**
 * One side of SPAKE2: side 'A' (sender) or 'B' (receiver), password bytes and identities.
 * `scalar` is for test vectors only. `message` is what to send (33 bytes).
 */
export class Spake2 {
  constructor(side, pw, idA, idB, scalar) {
    this.side = side;
    this.pw = pw;
    this.idA = idA;
    this.idB = idB;
    this.w = passwordScalar(pw);
    this.x = scalar ?? randomScalar();
    const blind = side === 'A' ? M : N;
    this.element = Point.BASE.multiply(this.x).add(mulOrZero(blind, this.w)).toBytes();
    this.message = concat([side === 'A' ? 0x41 : 0x42], this.element);
  }

  /** The 32-byte secret from the other side's message (§4.5). */
  finish(inbound) {
    const own = this.side === 'A' ? 0x41 : 0x42;
    if (inbound[0] === own) {
      throw new PakeError('same-side', `the other side is also ${this.side === 'A' ? 'sending' : 'receiving'}: one side sends, the other receives`);
    }
    const wrong = () => new PakeError('wrong-code', 'wrong code, or the signaling server tampered with the key exchange');
    if (inbound.length !== 33 || inbound[0] !== (this.side === 'A' ? 0x42 : 0x41)) throw wrong();
    const theirs = inbound.slice(1);
    let peer;
    try {
      peer = Point.fromBytes(theirs);
    } catch {
      throw wrong();
    }
    const unblind = this.side === 'A' ? N : M;
    const k = peer.subtract(mulOrZero(unblind, this.w)).multiply(this.x).toBytes();
    const [x, y] = this.side === 'A' ? [this.element, theirs] : [theirs, this.element];
    return transcriptHash(this.pw, this.idA, this.idB, x, y, k);
  }
}

export function transcriptHash(pw, idA, idB, x, y, k) {
  return sha256(concat(sha256(pw), sha256(idA), sha256(idB), x, y, k));
}

export function identities(room) {
  return [utf8.encode(`mp/1 sender room=${room}`), utf8.encode(`mp/1 receiver room=${room}`)];
}

// ---------------------------------------------------------------------------------------------
// §5 Keys

export function deriveKeys(secret) {
  const prk = hkdfExtract(sha256, secret, utf8.encode('mp/1 hkdf salt'));
  return {
    s2r: hkdfExpand(sha256, prk, utf8.encode('mp/1 seal sender->receiver'), 32),
    r2s: hkdfExpand(sha256, prk, utf8.encode('mp/1 seal receiver->sender'), 32),
  };
}

// ---------------------------------------------------------------------------------------------
// §7 Sealed envelopes

export const MAX_MESSAGE = 32768;
const MAX_ENVELOPE = 8 + 4 + MAX_MESSAGE + 256 + 16;

function counterBytes(counter) {
  const header = new Uint8Array(8);
  new DataView(header.buffer).setBigUint64(0, counter);
  return header;
}

export class SealError extends Error {}

export class Sealer {
  constructor(key) {
    this.key = key;
    this.counter = 0n;
  }

  seal(message) {
    if (message.length > MAX_MESSAGE) throw new SealError(`a message of ${message.length} bytes is too large to seal`);
    const padded = new Uint8Array(Math.ceil((4 + message.length) / 256) * 256);
    new DataView(padded.buffer).setUint32(0, message.length);
    padded.set(message, 4);
    const header = counterBytes(this.counter);
    const nonce = concat(new Uint8Array(4), header);
    const sealed = chacha20poly1305(this.key, nonce, header).encrypt(padded);
    this.counter += 1n;
    return concat(header, sealed);
  }
}

export class Opener {
  constructor(key) {
    this.key = key;
    this.counter = 0n;
  }

  open(envelope) {
    if (envelope.length < 280 || envelope.length > MAX_ENVELOPE) throw new SealError('sealed message is malformed');
    const header = envelope.slice(0, 8);
    const got = new DataView(header.buffer).getBigUint64(0);
    if (got !== this.counter) throw new SealError(`sealed message out of order (expected #${this.counter}, got #${got})`);
    let padded;
    try {
      padded = chacha20poly1305(this.key, concat(new Uint8Array(4), header), header).decrypt(envelope.slice(8));
    } catch {
      throw new SealError('sealed message failed authentication');
    }
    const len = new DataView(padded.buffer, padded.byteOffset).getUint32(0);
    if (len > padded.length - 4) throw new SealError('sealed message is malformed');
    this.counter += 1n;
    return padded.slice(4, 4 + len);
  }
}

export function encodeMessage(object) {
  return utf8.encode(JSON.stringify(object));
}

/** Parses a sealed message's JSON; throws on anything that is not one object with a type. */
export function decodeMessage(bytes) {
  const value = JSON.parse(fromUtf8.decode(bytes));
  if (value === null || typeof value !== 'object' || Array.isArray(value) || typeof value.type !== 'string') {
    throw new Error('not a message');
  }
  return value;
}

// ---------------------------------------------------------------------------------------------
// §8.2 Split offers, §9 manifests

export const OFFER_PART = 24 * 1024;
export const MAX_ENTRIES = 100000;
export const MAX_PATH_BYTES = 16 * 1024 * 1024;

/** The `offer` messages carrying `entries`, split as mp splits them. */
export function offerMessages(entries) {
  const parts = [[]];
  let used = 0;
  for (const entry of entries) {
    const len = utf8.encode(JSON.stringify(entry)).length + 1;
    if (used + len > OFFER_PART && parts[parts.length - 1].length > 0) {
      parts.push([]);
      used = 0;
    }
    used += len;
    parts[parts.length - 1].push(entry);
  }
  return parts.map((part, i) => {
    const message = { type: 'offer', manifest: { entries: part } };
    if (i + 1 < parts.length) message.more = true;
    return message;
  });
}

const HIDDEN = /[\p{Cc}\p{Cf}\p{Zl}\p{Zp}\p{Co}\p{Cs}\p{Cn}]/gu;

/** A name made safe to show: the characters mp's terminal output escapes become \u{..}. */
export function display(name) {
  return String(name).replace(HIDDEN, (c) => `\\u{${c.codePointAt(0).toString(16)}}`);
}

function displayStart(path) {
  const chars = Array.from(path);
  return chars.length > 60 ? `${display(chars.slice(0, 60).join(''))}…` : display(path);
}

export class ManifestError extends Error {}

function isFile(entry) {
  return entry.kind === undefined || entry.kind === null || entry.kind === 'file';
}

function safePath(path) {
  if (path === '' || path.includes('\0') || path.includes('\\') || /\p{Cc}/u.test(path)) return false;
  const parts = path.split('/');
  if (parts.some((p) => p === '' || p === '.' || p === '..')) return false;
  const first = utf8.encode(parts[0]);
  if (first.length >= 2 && first[1] === 0x3a) return false;
  return !parts[0].startsWith('.mp-partial-');
}

function foldCase(component) {
  return component.normalize('NFD').toUpperCase().toLowerCase();
}

/**
 * Checks a manifest as §9.1 does and returns its entries with sizes as Numbers. Sizes beyond
 * 2^53 − 1 cannot be counted exactly in JavaScript and are refused as too large.
 */
export function validateManifest(manifest) {
  if (manifest === null || typeof manifest !== 'object' || !Array.isArray(manifest.entries)) {
    throw new ManifestError('the offer is malformed');
  }
  const entries = manifest.entries;
  if (entries.length === 0) throw new ManifestError('the offer lists nothing');
  if (entries.length > MAX_ENTRIES) throw new ManifestError(`the offer lists too many entries (at most ${MAX_ENTRIES})`);
  const seen = new Set();
  let total = 0;
  for (const entry of entries) {
    if (entry === null || typeof entry !== 'object' || typeof entry.path !== 'string') throw new ManifestError('the offer is malformed');
    const { path } = entry;
    if (!(isFile(entry) || entry.kind === 'dir')) throw new ManifestError(`the offer's entry ${display(path)} is malformed`);
    const bytes = utf8.encode(path).length;
    if (bytes > 3072) throw new ManifestError(`the offer's path ${displayStart(path)} is ${bytes} bytes long, more than the 3072 taken`);
    if (!safePath(path)) throw new ManifestError(`unsafe path in the offer: ${display(path)}`);
    const parts = path.split('/');
    if (parts.length > 128) throw new ManifestError(`the offer's path ${displayStart(path)} is ${parts.length} levels deep, more than the 128 taken`);
    for (const part of parts) {
      const n = utf8.encode(part).length;
      if (n > 255) throw new ManifestError(`the offer's path ${displayStart(path)} has a name of ${n} bytes, more than file systems take (255)`);
    }
    const mode = entry.mode ?? null;
    if (mode !== null && !(Number.isInteger(mode) && mode >= 0 && mode <= 0o777)) throw new ManifestError(`the offer's entry ${display(path)} is malformed`);
    if (seen.has(path)) throw new ManifestError(`the offer lists ${display(path)} twice`);
    seen.add(path);
    const size = entry.size ?? null;
    if (size !== null && !(Number.isInteger(size) && size >= 0)) throw new ManifestError(`the offer's entry ${display(path)} is malformed`);
    if (!isFile(entry) && size !== null) throw new ManifestError(`the offer's entry ${display(path)} is malformed`);
    if (isFile(entry) && size === null && entries.length !== 1) throw new ManifestError(`the offer's entry ${display(path)} is malformed`);
    total += size ?? 0;
    if (!Number.isSafeInteger(size ?? 0) || !Number.isSafeInteger(total)) {
      throw new ManifestError('the offer is larger than a browser can count (9 PB)');
    }
  }
  // Letter case and Unicode form, component by component; nothing below a file.
  const folded = new Map();
  const files = new Set(entries.filter(isFile).map((e) => e.path));
  for (const { path } of entries) {
    const parts = path.split('/');
    for (let i = 1; i <= parts.length; i++) {
      const prefix = parts.slice(0, i).join('/');
      const key = parts.slice(0, i).map(foldCase).join('/');
      const other = folded.get(key);
      if (other !== undefined && other !== prefix) {
        throw new ManifestError(`the offer lists ${display(other)} and ${display(prefix)}, which differ only in letter case (or Unicode form); rename one`);
      }
      folded.set(key, prefix);
      if (i < parts.length && files.has(prefix)) throw new ManifestError(`the offer puts ${display(path)} inside a file`);
    }
  }
  return entries.map((e) => ({ path: e.path, dir: !isFile(e), size: e.size ?? null }));
}

// ---------------------------------------------------------------------------------------------
// §11 Frames

export const FRAME = { DATA: 0, END: 1, DONE: 2, FAIL: 3, BEGIN: 4, ACK: 5, KEEPALIVE: 6 };
export const FRAME_NAMES = ['DATA', 'END', 'DONE', 'FAIL', 'BEGIN', 'ACK', 'KEEPALIVE'];
export const MAX_FRAME = 256 * 1024;
export const WINDOW = 4 * 1024 * 1024;
export const WINDOW_MESSAGES = 128;
export const ACK_EVERY = 1024 * 1024;
export const ACK_EVERY_MESSAGES = 32;

export const FAIL_KIND = { other: 0, integrity: 1, localIo: 2, interrupted: 3 };

/** The public reasons of §12.1, as a FAIL or abort carries them. */
export const REASON = {
  integrity: 'integrity check failed (hash or size mismatch), or the other side broke the protocol',
  peerGone: 'the other side left or the connection dropped',
  connect: 'no direct connection could be established',
  localIo: 'a local file could not be read or written (e.g. disk full)',
  interrupted: 'interrupted (Ctrl-C)',
  internal: 'unexpected error',
};

export function frameData(payload) {
  const out = new Uint8Array(1 + payload.length);
  out[0] = FRAME.DATA;
  out.set(payload, 1);
  return out;
}

export function frameEnd(hash) {
  return concat([FRAME.END], hash);
}

export function frameBegin(offset) {
  const out = new Uint8Array(9);
  out[0] = FRAME.BEGIN;
  new DataView(out.buffer).setBigUint64(1, BigInt(offset));
  return out;
}

export function frameAck(bytes, messages) {
  const out = new Uint8Array(17);
  out[0] = FRAME.ACK;
  const view = new DataView(out.buffer);
  view.setBigUint64(1, BigInt(bytes));
  view.setBigUint64(9, BigInt(messages));
  return out;
}

export function frameFail(kind, reason) {
  let text = utf8.encode(reason);
  if (text.length > 1024) {
    let cut = 1024;
    while ((text[cut] & 0xc0) === 0x80) cut--;
    text = text.slice(0, cut);
  }
  return concat([FRAME.FAIL, kind], text);
}

export const frameDone = () => new Uint8Array([FRAME.DONE]);
export const frameKeepalive = () => new Uint8Array([FRAME.KEEPALIVE]);

export class FrameError extends Error {}

/** Decodes one data-channel message: { type, payload, ... } or throws FrameError. */
export function decodeFrame(bytes) {
  if (bytes.length > MAX_FRAME) throw new FrameError(`data-channel message too large (${bytes.length} bytes)`);
  if (bytes.length === 0) throw new FrameError('empty data-channel message');
  const type = bytes[0];
  const payload = bytes.subarray(1);
  const malformed = () => new FrameError(`malformed ${FRAME_NAMES[type]} frame`);
  const view = new DataView(payload.buffer, payload.byteOffset, payload.byteLength);
  switch (type) {
    case FRAME.DATA:
      if (payload.length === 0) throw malformed();
      return { type, payload };
    case FRAME.END:
      if (payload.length !== 32) throw malformed();
      return { type, hash: payload };
    case FRAME.DONE:
    case FRAME.KEEPALIVE:
      if (payload.length !== 0) throw malformed();
      return { type };
    case FRAME.FAIL: {
      if (payload.length < 1 || payload.length > 1025) throw malformed();
      let reason;
      try {
        reason = fromUtf8.decode(payload.subarray(1));
      } catch {
        throw malformed();
      }
      return { type, kind: payload[0] > 3 ? 0 : payload[0], reason };
    }
    case FRAME.BEGIN:
      if (payload.length !== 8) throw malformed();
      return { type, offset: view.getBigUint64(0) };
    case FRAME.ACK:
      if (payload.length !== 16) throw malformed();
      return { type, bytes: Number(view.getBigUint64(0)), messages: Number(view.getBigUint64(8)) };
    default:
      throw new FrameError(`unknown frame type 0x${type.toString(16).padStart(2, '0')}`);
  }
}

// ---------------------------------------------------------------------------------------------
// Self-test against docs/PROTOCOL.md §13 (run by tests/web.rs in the browser).

export function selfTest() {
  const results = {};
  const keys = deriveKeys(new Uint8Array(32).fill(0x11));
  results.k_s2r = hex(keys.s2r);
  results.k_r2s = hex(keys.r2s);
  results.sealed = hex(new Sealer(keys.s2r).seal(utf8.encode('{"type":"accept"}')));
  const x = 2611694063369306139794446498317402240796898290761098242657700742213257926693n;
  const y = 7002393159576182977806091886122272758628412261510164356026361256515836884383n;
  const pw = utf8.encode('password');
  const a = new Spake2('A', pw, utf8.encode('idA'), utf8.encode('idB'), x);
  const b = new Spake2('B', pw, utf8.encode('idA'), utf8.encode('idB'), y);
  results.w = passwordScalar(pw).toString();
  results.msgA = hex(a.message);
  results.msgB = hex(b.message);
  results.secretA = hex(a.finish(b.message));
  results.secretB = hex(b.finish(a.message));
  const X = utf8.encode('X'.repeat(32));
  const Y = utf8.encode('Y'.repeat(32));
  const K = utf8.encode('K'.repeat(32));
  results.hash_ab = hex(transcriptHash(utf8.encode('pw'), utf8.encode('idA'), utf8.encode('idB'), X, Y, K));
  // §2: the same forgiving rule as mp for generated codes, none for custom ones.
  results.codes = [
    parseCode('007 Guitar OCEAN', ['guitar', 'ocean']).full,
    parseCode('7-MySecret', ['guitar', 'ocean']).full,
  ];
  const code = parseCode(' 7-guitar-ocean\n');
  const [idA, idB] = identities(code.room);
  const a2 = new Spake2('A', utf8.encode(code.full), idA, idB, x);
  const b2 = new Spake2('B', utf8.encode(code.full), idA, idB, y);
  const secret = a2.finish(b2.message);
  const keys2 = deriveKeys(secret);
  results.e2e = { msgA: hex(a2.message), msgB: hex(b2.message), secret: hex(secret), secretB: hex(b2.finish(a2.message)), k_s2r: hex(keys2.s2r), k_r2s: hex(keys2.r2s) };
  const opened = new Opener(keys.s2r).open(unhex(results.sealed));
  results.opened = fromUtf8.decode(opened);
  return results;
}
