// The page's SHA-256 on a thread of its own (see hash.js, which starts and feeds it).
//
// Messages in, answered in the order they came:
//   { op: 'update', id, bytes }  add bytes to hash `id` (a new one if `id` is unknown);
//                                answers { op: 'hashed', n } once done, n = bytes.length
//   { op: 'peek', id }           answers { op: 'digest', digest } of what `id` has had so far
//   { op: 'digest', id }         the same, and forgets `id`
// It says { op: 'ready' } once loaded, and { op: 'failed', message } if a step throws.

import { sha256 } from './vendor/noble.js';

const states = new Map();

self.onmessage = ({ data: m }) => {
  try {
    if (m.op === 'update') {
      let state = states.get(m.id);
      if (!state) {
        state = sha256.create();
        states.set(m.id, state);
      }
      state.update(m.bytes);
      self.postMessage({ op: 'hashed', n: m.bytes.length });
    } else if (m.op === 'peek' || m.op === 'digest') {
      const state = states.get(m.id) ?? sha256.create();
      const digest = m.op === 'peek' ? state.clone().digest() : state.digest();
      if (m.op === 'digest') states.delete(m.id);
      self.postMessage({ op: 'digest', digest });
    } else {
      throw new Error(`unknown request ${m.op}`);
    }
  } catch (err) {
    self.postMessage({ op: 'failed', message: String(err && err.message ? err.message : err) });
  }
};

self.postMessage({ op: 'ready' });
