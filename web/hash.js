// SHA-256 of every file the page sends or receives (§11.3), on a worker thread.
//
// Hashing in JavaScript runs at about 45-70 MiB/s on a desktop, less on a phone. On the page's
// main thread it came on top of everything else the page does per byte: of 4.9 s that the
// page took to send 100 MiB to `mp receive`, 2.2 s were hashing, during which nothing was
// handed to the data channel. On a worker thread the hash runs beside the sending (or the
// receiving and storing), and the main thread only copies each block over.
//
// `Hashing.start()` loads the worker (hash-worker.js) in the background; `create(size)` gives
// a hash with one interface whichever way it is computed:
//   update(bytes)   queue bytes (copied to the worker; the caller may reuse them at once)
//   room()          resolves once at most QUEUED_MAX bytes wait for the worker: await it
//                   before queueing more, so memory stays bounded whatever the disk or
//                   network speed
//   peek()          the digest of what was queued so far (for a resumed prefix, §8.4)
//   digest()        the final digest
// A file under WORKER_MIN is hashed in place (a round trip to the worker per small file would
// cost more than it saves), and so is everything if the worker cannot start (no module
// workers in this browser): slower, never wrong.

import { sha256 } from './vendor/noble.js';

/** Bytes queued for the worker before `room()` makes the caller wait. */
export const QUEUED_MAX = 8 * 1024 * 1024;
/** Files smaller than this (and of known size) are hashed in place. */
export const WORKER_MIN = 1024 * 1024;
/** How long the worker may take to load before the page hashes in place instead. */
const READY_WITHIN = 5000;

export class Hashing {
  /** Starts loading the worker; never throws. */
  static start() {
    return new Hashing();
  }

  constructor() {
    this.worker = null;
    this.queued = 0;
    this.nextId = 0;
    this.waiting = []; // room() callers: { resolve, reject }
    this.pending = []; // peek()/digest() callers, answered in order
    this.failure = null;
    this.ready = new Promise((resolve) => {
      let worker;
      try {
        worker = new Worker(new URL('./hash-worker.js', import.meta.url), { type: 'module' });
      } catch {
        resolve(false);
        return;
      }
      this.worker = worker;
      const timer = setTimeout(() => resolve(false), READY_WITHIN);
      worker.onmessage = ({ data: m }) => {
        if (m.op === 'ready') {
          clearTimeout(timer);
          resolve(true);
        } else if (m.op === 'hashed') {
          this.queued -= m.n;
          this.wake();
        } else if (m.op === 'digest') {
          this.pending.shift().resolve(m.digest);
        } else {
          this.fail(new Error(`hashing failed: ${m.message}`));
        }
      };
      worker.onerror = (e) => {
        e.preventDefault();
        clearTimeout(timer);
        resolve(false);
        this.fail(new Error(`the hashing thread failed: ${e.message || 'it did not load'}`));
      };
    });
  }

  /** A hash for a file of `size` bytes (`null`: not known in advance, a stream). */
  async create(size) {
    if ((size === null || size >= WORKER_MIN) && (await this.ready) && !this.failure) {
      if (typeof document !== 'undefined') document.documentElement.dataset.hashing = 'worker';
      return new WorkerHash(this, this.nextId++);
    }
    return new InlineHash();
  }

  /** Stops the worker; hashes still in use fail. */
  close() {
    if (this.worker) this.worker.terminate();
    this.fail(new Error('the hashing thread was stopped'));
  }

  fail(err) {
    if (this.failure) return;
    this.failure = err;
    for (const w of this.waiting.splice(0)) w.reject(err);
    for (const p of this.pending.splice(0)) p.reject(err);
  }

  wake() {
    while (this.waiting.length && this.queued <= QUEUED_MAX) this.waiting.shift().resolve();
  }

  post(message) {
    if (this.failure) throw this.failure;
    this.worker.postMessage(message);
  }

  room() {
    if (this.failure) return Promise.reject(this.failure);
    if (this.queued <= QUEUED_MAX) return Promise.resolve();
    return new Promise((resolve, reject) => this.waiting.push({ resolve, reject }));
  }

  ask(message) {
    return new Promise((resolve, reject) => {
      this.post(message);
      this.pending.push({ resolve, reject });
    });
  }
}

class WorkerHash {
  constructor(hashing, id) {
    this.hashing = hashing;
    this.id = id;
  }

  update(bytes) {
    this.hashing.post({ op: 'update', id: this.id, bytes });
    this.hashing.queued += bytes.length;
  }

  room() {
    return this.hashing.room();
  }

  peek() {
    return this.hashing.ask({ op: 'peek', id: this.id });
  }

  digest() {
    return this.hashing.ask({ op: 'digest', id: this.id });
  }
}

class InlineHash {
  constructor() {
    this.state = sha256.create();
  }

  update(bytes) {
    this.state.update(bytes);
  }

  async room() {}

  async peek() {
    return this.state.clone().digest();
  }

  async digest() {
    return this.state.digest();
  }
}
