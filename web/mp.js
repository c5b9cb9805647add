// mp protocol version 2 over the network: the signaling server (§3), the sealed conversation
// (§6–§8), WebRTC (§10) and the data-channel transfer (§11), for both sides.
//
// The page drives one transfer with sendFiles() or receive(); what happens is reported
// through the `ui` callbacks (see app.js). Errors are MpError, with a kind like mp's (§12.1).

import * as P from './proto.js';
import { Hashing } from './hash.js';

const SECOND = 1000;
const T = {
  connectServer: 10 * SECOND,
  joined: 10 * SECOND,
  handshake: 30 * SECOND,
  step: 60 * SECOND,
  reply: 600 * SECOND,
  localSdp: 30 * SECOND,
  gather: 10 * SECOND,
  connect: 30 * SECOND,
  leftGrace: 5 * SECOND,
  ackStall: 60 * SECOND,
  verdict: 120 * SECOND,
  keepalive: 10 * SECOND,
  senderSilence: 60 * SECOND,
  ackInterval: 1 * SECOND,
  closeGrace: 2 * SECOND,
};
const MAX_CANDIDATES = 64;
const MAX_TEXT = 16 * 1024;
const ROOM_ATTEMPTS = 20;
/** What the page holds in memory when it cannot write files as they arrive. */
export const MEMORY_LIMIT = 1024 * 1024 * 1024;

export class MpError extends Error {
  /** `tell`: the peer should hear why (abort or FAIL); off when the peer ended it. */
  constructor(kind, message, tell = true) {
    super(message);
    this.kind = kind;
    this.tell = tell;
  }
}

const violation = (why) => new MpError('integrity', `protocol violation: ${why}`);
const quiet = (err) => {
  err.tell = false;
  return err;
};

/** A queue of events with a deadline on each wait. */
class Events {
  constructor() {
    this.items = [];
    this.waiter = null;
  }

  push(event) {
    if (this.waiter) {
      const { resolve, timer } = this.waiter;
      this.waiter = null;
      clearTimeout(timer);
      resolve(event);
    } else {
      this.items.push(event);
    }
  }

  /** The next event, or { kind: 'timeout' } once `ms` passed (Infinity: no limit). */
  next(ms) {
    if (this.items.length) return Promise.resolve(this.items.shift());
    return new Promise((resolve) => {
      const timer = Number.isFinite(ms) ? setTimeout(() => {
        this.waiter = null;
        resolve({ kind: 'timeout' });
      }, Math.max(0, ms)) : null;
      this.waiter = { resolve, timer };
    });
  }
}

const silent = (ms) => new MpError('peer-gone', `the other side stopped answering (no message for ${Math.round(ms / SECOND)} s)`);

// ---------------------------------------------------------------------------------------------
// §3 The signaling server

/** The WebSocket address of the server that serves this page. */
export function signalUrl(location) {
  return `${location.protocol === 'https:' ? 'wss:' : 'ws:'}//${location.host}/`;
}

class Signal {
  constructor(url, events) {
    this.url = url;
    this.events = events;
    this.iceServers = [];
    this.closed = false;
  }

  /**
   * Connects and joins `room` as `side`, or with `room` null asks the server to open a room
   * (`allocate`, §3.2: its lowest free number, which `this.room` then holds). Resolves with
   * 'joined', 'busy', 'unsupported' (a server from before `allocate` or `if_waiting`), or,
   * with `ifWaiting` (§3.2: only if the other side waits), 'no-peer'.
   */
  async join(room, side, host, ifWaiting = false) {
    const ws = new WebSocket(this.url);
    ws.binaryType = 'arraybuffer';
    this.ws = ws;
    const control = new Events();
    this.control = control;
    ws.onopen = () => control.push({ kind: 'open' });
    ws.onclose = () => {
      if (!this.closed) {
        this.closed = true;
        const why = new MpError('peer-gone', 'the connection to the signaling server was lost', false);
        control.push({ kind: 'closed', error: why });
        this.events.push({ kind: 'rendezvous-closed', error: why });
      }
    };
    ws.onmessage = (e) => this.onMessage(e.data);
    const unreachable = () => new MpError('server', `the signaling server at ${this.url} did not answer`);
    let ev = await control.next(T.connectServer);
    if (ev.kind !== 'open') throw unreachable();
    const allocate = room === null;
    let request = { type: 'join', room, side };
    if (allocate) request = { type: 'allocate', side };
    else if (ifWaiting) request = { type: 'join', room, side, if_waiting: true };
    ws.send(JSON.stringify(request));
    ev = await control.next(T.joined);
    if (ev.kind === 'timeout' || ev.kind === 'closed') throw unreachable();
    if (ev.kind === 'error') {
      if (ev.message.kind === 'room-full' || ev.message.kind === 'side-taken') return 'busy';
      if (ifWaiting && ev.message.kind === 'no-peer') return 'no-peer';
      // An older server refuses a first message it does not know.
      if ((allocate || ifWaiting) && ev.message.kind === 'bad-request') return 'unsupported';
      throw new MpError('server', `signaling server: ${P.display(ev.message.message ?? '')}`);
    }
    if (allocate) {
      const given = ev.message.room;
      if (typeof given !== 'string' || !/^[1-9][0-9]{0,8}$/.test(given)) {
        throw new MpError('server', 'the signaling server gave no valid room number');
      }
      this.room = given;
    } else {
      this.room = room;
    }
    this.iceServers = iceServers(ev.message, host);
    this.joined = true;
    return 'joined';
  }

  onMessage(data) {
    if (typeof data !== 'string') {
      this.events.push({ kind: 'envelope', bytes: new Uint8Array(data) });
      return;
    }
    let message;
    try {
      message = JSON.parse(data);
    } catch {
      message = {};
    }
    switch (message.type) {
      case 'joined':
        this.control.push({ kind: 'joined', message });
        break;
      case 'paired':
        this.events.push({ kind: 'paired' });
        break;
      case 'peer-left':
        this.closed = true;
        this.events.push({ kind: 'rendezvous-closed', error: new MpError('peer-gone', 'the other side left', false) });
        break;
      case 'error': {
        if (!this.joined) {
          this.control.push({ kind: 'error', message });
          return;
        }
        const why = new MpError('server', `signaling server: ${P.display(String(message.message ?? ''))}`, false);
        this.closed = true;
        this.events.push({ kind: 'rendezvous-closed', error: why });
        break;
      }
      default:
        this.closed = true;
        this.events.push({ kind: 'rendezvous-closed', error: new MpError('server', 'the server does not speak the mp signaling protocol', false) });
    }
  }

  send(bytes) {
    if (this.ws && this.ws.readyState === WebSocket.OPEN) this.ws.send(bytes);
  }

  close() {
    this.closed = true;
    if (this.ws) this.ws.close();
  }
}

/** The ICE servers `joined` names (§3.2): the server's own STUN, then its TURN. */
function iceServers(joined, host) {
  const servers = [];
  const port = joined.stun_port;
  if (Number.isInteger(port) && port > 0 && port < 65536) servers.push({ urls: [`stun:${host}:${port}`] });
  const turn = joined.turn;
  if (turn && Array.isArray(turn.urls) && typeof turn.username === 'string' && typeof turn.credential === 'string') {
    const urls = turn.urls.filter((u) => typeof u === 'string' && /^turns?:/.test(u));
    if (urls.length && turn.username && turn.credential) servers.push({ urls, username: turn.username, credential: turn.credential });
  }
  return servers;
}

// ---------------------------------------------------------------------------------------------
// §4–§8 The sealed conversation

class Conversation {
  constructor(signal, events, code, side) {
    this.signal = signal;
    this.events = events;
    this.code = code;
    this.side = side; // 'send' or 'receive'
    this.confirmed = false;
    this.features = [];
  }

  /** SPAKE2 and the two hellos (§4–§6). */
  async handshake() {
    const [idA, idB] = P.identities(this.code.room);
    const pake = new P.Spake2(this.side === 'send' ? 'A' : 'B', new TextEncoder().encode(this.code.full), idA, idB);
    this.signal.send(pake.message);
    const theirs = await this.envelope(T.handshake);
    let secret;
    try {
      secret = pake.finish(theirs);
    } catch (err) {
      throw new MpError(err.kind === 'same-side' ? 'usage' : 'wrong-code', err.message, false);
    }
    const keys = P.deriveKeys(secret);
    this.sealer = new P.Sealer(this.side === 'send' ? keys.s2r : keys.r2s);
    this.opener = new P.Opener(this.side === 'send' ? keys.r2s : keys.s2r);
    this.signal.send(this.sealer.seal(P.encodeMessage({ type: 'hello', version: P.VERSION, features: P.FEATURES })));
    const envelope = await this.envelope(T.handshake);
    const wrongCode = () => new MpError('wrong-code', 'wrong code, or the signaling server tampered with the key exchange', false);
    let hello;
    try {
      hello = P.decodeMessage(this.opener.open(envelope));
    } catch (err) {
      if (err instanceof P.SealError) throw wrongCode();
      throw new MpError('wrong-code', 'protocol violation: expected hello', false);
    }
    const features = hello.features ?? [];
    if (hello.type !== 'hello' || !Number.isInteger(hello.version) || hello.version < 0
      || !Array.isArray(features) || features.some((f) => typeof f !== 'string')) {
      throw new MpError('wrong-code', 'protocol violation: expected hello', false);
    }
    if (hello.version !== P.VERSION) {
      throw new MpError('version', `the other side speaks protocol version ${hello.version}, this is version ${P.VERSION}: update mp on the side with the older version`, false);
    }
    this.features = features.filter((f) => P.FEATURES.includes(f));
    this.confirmed = true;
  }

  get trickle() {
    return this.features.includes('trickle');
  }

  /** The next envelope before the deadline; the rendezvous closing is a failure. */
  async envelope(ms) {
    for (;;) {
      const ev = await this.events.next(ms);
      if (ev.kind === 'envelope') return ev.bytes;
      if (ev.kind === 'timeout') throw silent(ms);
      if (ev.kind === 'rendezvous-closed') throw ev.error;
      // Other events (a late ICE candidate of our own) are handled by whoever waits for them.
      if (ev.kind === 'local-candidate' && this.onLocalCandidate) this.onLocalCandidate(ev.candidate);
    }
  }

  /** Opens one envelope into a message (§7–§8); the peer's abort is a failure. */
  open(envelope) {
    let message;
    try {
      message = this.opener.open(envelope);
    } catch (err) {
      throw new MpError('wrong-code', `signaling message tampered with (${err.message})`, false);
    }
    try {
      message = checkMessage(P.decodeMessage(message));
    } catch (err) {
      throw quiet(violation(`bad message: ${err.message}`));
    }
    if (message.type === 'abort') throw new MpError('peer-gone', `the other side stopped: ${P.display(message.reason)}`, false);
    return message;
  }

  async recv(ms) {
    return this.open(await this.envelope(ms));
  }

  send(message) {
    this.signal.send(this.sealer.seal(P.encodeMessage(message)));
  }

  /** Tells the peer why we stop, if the conversation is still ours to speak in. */
  abort(err) {
    if (this.confirmed && err.tell && !this.signal.closed) {
      try {
        this.send({ type: 'abort', reason: publicReason(err.kind) });
      } catch {
        // best effort
      }
    }
  }
}

const isUint = (n) => Number.isSafeInteger(n) && n >= 0;
const isStr = (s) => typeof s === 'string';

/** The fields a message of a known type must have (§8), or an error. */
function checkMessage(m) {
  const bad = (what) => {
    throw new Error(`${m.type}: ${what}`);
  };
  switch (m.type) {
    case 'hello':
      if (!isUint(m.version)) bad('version');
      break;
    case 'offer':
      if (typeof m.manifest !== 'object' || m.manifest === null || !Array.isArray(m.manifest.entries)) bad('manifest');
      if (m.more !== undefined && m.more !== null && typeof m.more !== 'boolean') bad('more');
      break;
    case 'text':
    case 'reject':
    case 'abort':
      if (!isStr(m.type === 'text' ? m.text : m.reason)) bad('missing field');
      break;
    case 'accept':
      m.resume = m.resume ?? [];
      if (!Array.isArray(m.resume) || m.resume.some((k) => !k || !isUint(k.index) || !isUint(k.offset))) bad('resume');
      break;
    case 'prefixes':
      if (!Array.isArray(m.prefixes) || m.prefixes.some((p) => !p || !isUint(p.index) || !(p.sha256 === null || p.sha256 === undefined || isStr(p.sha256)))) bad('prefixes');
      break;
    case 'resume':
      if (!Array.isArray(m.files) || m.files.some((f) => !isUint(f))) bad('files');
      break;
    case 'sdp':
      if ((m.kind !== 'offer' && m.kind !== 'answer') || !isStr(m.sdp)) bad('kind or sdp');
      break;
    case 'candidate':
      if (!isStr(m.candidate)) bad('candidate');
      break;
    default:
      throw new Error(`unknown variant \`${m.type}\``);
  }
  return m;
}

function publicReason(kind) {
  switch (kind) {
    case 'integrity': return P.REASON.integrity;
    case 'connect': return P.REASON.connect;
    case 'local-io': return P.REASON.localIo;
    case 'interrupted': return P.REASON.interrupted;
    case 'peer-gone':
    case 'timeout': return P.REASON.peerGone;
    default: return P.REASON.internal;
  }
}

function failKind(kind) {
  switch (kind) {
    case 'integrity': return P.FAIL_KIND.integrity;
    case 'local-io': return P.FAIL_KIND.localIo;
    case 'interrupted': return P.FAIL_KIND.interrupted;
    default: return P.FAIL_KIND.other;
  }
}

// ---------------------------------------------------------------------------------------------
// §10 WebRTC

/** The largest data-channel message the peer takes, from its SDP (§10.3). */
function peerMaxMessage(sdp) {
  const match = /^a=max-message-size:(\d+)/m.exec(sdp);
  if (!match) return 65536;
  const value = Number(match[1]);
  return value === 0 ? P.MAX_FRAME : Math.min(value, P.MAX_FRAME);
}

class Link {
  constructor(conversation, events, iceServers) {
    this.conversation = conversation;
    this.events = events;
    this.pc = new RTCPeerConnection({ iceServers });
    this.sdpSent = false;
    this.waiting = [];
    this.early = [];
    this.remoteSet = false;
    this.taken = 0;
    this.pc.onicecandidate = (e) => {
      if (e.candidate && e.candidate.candidate) events.push({ kind: 'local-candidate', candidate: e.candidate });
      else if (!e.candidate) events.push({ kind: 'gathered' });
    };
    conversation.onLocalCandidate = (c) => this.localCandidate(c);
    // Lost once the connection failed, or stayed disconnected for 8 s (as mp gives up on ICE
    // without inbound traffic); `onLost` is the transfer's, once it runs.
    this.onLost = null;
    const lost = () => {
      events.push({ kind: 'link-failed' });
      if (this.onLost) this.onLost();
    };
    this.pc.onconnectionstatechange = () => {
      const state = this.pc.connectionState;
      if (state === 'failed') lost();
      if (state === 'disconnected') {
        setTimeout(() => {
          if (this.pc.connectionState === 'disconnected') lost();
        }, 8 * SECOND);
      }
    };
  }

  localCandidate(c) {
    // mp speaks ICE over UDP only: a TCP candidate is of no use to it (§10.2).
    if (!this.conversation.trickle || / tcp /i.test(c.candidate)) return;
    const message = { type: 'candidate', candidate: c.candidate };
    if (c.sdpMid !== null && c.sdpMid !== undefined) message.mid = c.sdpMid;
    if (c.sdpMLineIndex !== null && c.sdpMLineIndex !== undefined) message.mline = c.sdpMLineIndex;
    if (this.sdpSent) this.conversation.send(message);
    else this.waiting.push(message);
  }

  async remoteCandidate(m) {
    if (++this.taken > MAX_CANDIDATES) throw violation('too many ICE candidates');
    const init = {
      candidate: m.candidate.startsWith('candidate:') ? m.candidate : `candidate:${m.candidate}`,
      sdpMid: isStr(m.mid) ? m.mid : undefined,
      sdpMLineIndex: Number.isInteger(m.mline) ? m.mline : (isStr(m.mid) ? undefined : 0),
    };
    if (!this.remoteSet) {
      this.early.push(init);
      return;
    }
    try {
      await this.pc.addIceCandidate(init);
    } catch {
      // A candidate this browser cannot use (another address family, mDNS): not fatal.
    }
  }

  /** Our SDP, at once with trickle, else once gathering completed (§10.2). */
  async localSdp(make, what) {
    const deadline = Date.now() + T.localSdp;
    let description = await make();
    if (description.type === 'answer') {
      // §10.1: answer as the DTLS server, so the offerer is the DTLS and SCTP client.
      description = { type: 'answer', sdp: description.sdp.replace(/^a=setup:active(\r?)$/gm, 'a=setup:passive$1') };
    }
    try {
      await this.pc.setLocalDescription(description);
    } catch {
      await this.pc.setLocalDescription(await make());
    }
    if (!this.conversation.trickle) {
      // Every candidate goes into the SDP: wait for gathering to complete, keeping whatever
      // else arrives meanwhile for later.
      const until = Math.min(deadline, Date.now() + T.gather);
      const kept = [];
      while (this.pc.iceGatheringState !== 'complete') {
        const ev = await this.events.next(until - Date.now());
        if (ev.kind === 'timeout') throw new MpError('connect', `WebRTC did not produce an ${what} (ICE gathering did not complete)`);
        if (ev.kind === 'envelope') kept.push(ev);
        if (ev.kind === 'rendezvous-closed') throw ev.error;
      }
      this.events.items.unshift(...kept);
    }
    return this.pc.localDescription.sdp;
  }

  /** Sends our SDP, then the candidates gathered meanwhile. */
  sendSdp(kind, sdp) {
    this.conversation.send({ type: 'sdp', kind, sdp });
    this.sdpSent = true;
    for (const message of this.waiting.splice(0)) this.conversation.send(message);
  }

  async setRemote(type, sdp) {
    try {
      await this.pc.setRemoteDescription({ type, sdp });
    } catch (err) {
      throw new MpError('connect', `the other side's SDP ${type} was refused by this browser: ${err.message}`);
    }
    this.remoteSet = true;
    this.maxMessage = peerMaxMessage(sdp);
    for (const init of this.early.splice(0)) {
      try {
        await this.pc.addIceCandidate(init);
      } catch {
        // as above
      }
    }
  }

  /**
   * Waits for the data channel (§10.4), taking the peer's candidates meanwhile; resolves with
   * the open channel.
   */
  async connected(channelPromise, who) {
    let deadline = Date.now() + T.connect;
    let left = null;
    channelPromise.then((dc) => this.events.push({ kind: 'channel-open', dc }));
    for (;;) {
      const ev = await this.events.next(deadline - Date.now());
      switch (ev.kind) {
        case 'channel-open':
          return ev.dc;
        case 'timeout':
          if (left) throw left;
          throw new MpError('connect', `no direct connection could be established with the ${who}`);
        case 'link-failed':
          throw new MpError('connect', 'no direct connection could be established with the other side');
        case 'rendezvous-closed':
          left = ev.error;
          deadline = Math.min(deadline, Date.now() + T.leftGrace);
          break;
        case 'local-candidate':
          this.localCandidate(ev.candidate);
          break;
        case 'envelope': {
          const m = this.conversation.open(ev.bytes);
          if (m.type === 'candidate' && this.conversation.trickle) await this.remoteCandidate(m);
          else throw violation(`got ${m.type} while waiting for the connection`);
          break;
        }
        default:
          break;
      }
    }
  }

  close() {
    try {
      this.pc.close();
    } catch {
      // already closed
    }
  }
}

/** Resolves with `dc` once open; messages that arrive before the transfer takes over wait. */
function channelOpen(dc) {
  dc.binaryType = 'arraybuffer';
  const early = [];
  dc.onmessage = (e) => early.push(e);
  dc.early = early;
  return new Promise((resolve) => {
    if (dc.readyState === 'open') resolve(dc);
    else dc.addEventListener('open', () => resolve(dc), { once: true });
  });
}

// ---------------------------------------------------------------------------------------------
// Progress

class Meter {
  constructor(ui, total) {
    this.ui = ui;
    this.total = total;
    this.done = 0;
    this.start = null; // the first byte: the rate leaves the connection's setup out
    this.lastShown = 0;
  }

  add(n) {
    if (this.start === null) this.start = performance.now();
    this.done += n;
    const now = performance.now();
    if (now - this.lastShown > 200 || this.done === this.total) {
      this.lastShown = now;
      this.show();
    }
  }

  get seconds() {
    return this.start === null ? 0 : (performance.now() - this.start) / 1000;
  }

  show() {
    const seconds = this.seconds;
    this.ui.progress(this.done, this.total, seconds > 0 ? this.done / seconds : 0);
  }
}

// ---------------------------------------------------------------------------------------------
// Sending (the page as `mp send`)

/**
 * Sends `files` (File objects, shown under their names) to whoever types the code.
 * `ui`: { code(code), status(text), progress(done, total, rate), done(summary) }.
 */
export async function sendFiles(files, { url, host, words, ui, code: fixed }) {
  const entries = files.map((f) => ({ path: f.name, size: f.size }));
  P.validateManifest({ entries });
  const events = new Events();
  let signal;
  let code = fixed ? P.parseCode(fixed) : P.generateCode(words);
  // A generated code takes the room the server allocates (so nobody can squat every short
  // one), and keeps the words drawn here, which the server never sees.
  let allocate = !fixed;
  for (let attempt = 0; ; attempt++) {
    signal = new Signal(url, events);
    const got = await signal.join(allocate ? null : code.room, 'send', host);
    if (got === 'joined') {
      if (allocate) code = P.parseCode(`${signal.room}-${code.full.slice(code.full.indexOf('-') + 1)}`);
      break;
    }
    signal.close();
    if (got === 'unsupported') {
      // A server from before `allocate`: draw rooms in 1..=99, as mp does there.
      allocate = false;
      continue;
    }
    if (fixed) throw new MpError('busy', `the code ${code.full} is already in use on the server; pick another`);
    if (attempt + 1 >= ROOM_ATTEMPTS) throw new MpError('busy', 'every room tried on the signaling server is busy; try again later');
    // Like mp: keep the words, draw another room.
    code = P.parseCode(`${P.randomRoom()}-${code.full.slice(code.full.indexOf('-') + 1)}`);
  }
  ui.code(code.full);
  const conversation = new Conversation(signal, events, code, 'send');
  const hashing = Hashing.start();
  let link = null;
  try {
    ui.status('Waiting for the receiver…');
    await waitPaired(events, T.reply);
    ui.status('Checking the code…');
    await conversation.handshake();
    for (const part of P.offerMessages(entries)) conversation.send(part);
    ui.status('Waiting for the receiver to accept…');
    const answer = await conversation.recv(T.reply);
    if (answer.type === 'reject') throw new MpError('declined', `the receiver declined: ${P.display(answer.reason)}`, false);
    if (answer.type !== 'accept') throw violation(`got ${answer.type} while waiting for accept`);
    const seen = new Set();
    for (const kept of answer.resume) {
      const entry = entries[kept.index];
      if (!entry || kept.offset < 1 || kept.offset > entry.size || seen.has(kept.index)) {
        throw violation('the receiver asked to resume a file that is not offered');
      }
      seen.add(kept.index);
    }
    // §8.4: our own prefixes' hashes; the hash of each goes on from that state if agreed.
    const prefixState = new Map();
    if (answer.resume.length) {
      ui.status('Checking what the receiver kept…');
      const prefixes = [];
      for (const kept of answer.resume) {
        const hash = await hashing.create(files[kept.index].size);
        await readInto(files[kept.index], 0, kept.offset, async (chunk) => {
          await hash.room();
          hash.update(chunk);
        });
        prefixState.set(kept.index, hash);
        prefixes.push({ index: kept.index, sha256: P.hex(await hash.peek()) });
      }
      conversation.send({ type: 'prefixes', prefixes });
    }
    ui.status('Connecting…');
    link = new Link(conversation, events, signal.iceServers);
    const dc = link.pc.createDataChannel('mp', { ordered: true });
    const opened = channelOpen(dc);
    const sdp = await link.localSdp(() => link.pc.createOffer(), 'offer');
    link.sendSdp('offer', sdp);
    let agreed = new Map();
    let resumePending = answer.resume.length > 0;
    for (;;) {
      const m = await conversation.recv(T.step);
      if (m.type === 'resume' && resumePending) {
        resumePending = false;
        agreed = new Map();
        for (const index of m.files) {
          const kept = answer.resume.find((k) => k.index === index);
          if (!kept || agreed.has(index)) throw violation('a resume that was not offered');
          agreed.set(index, kept.offset);
        }
        continue;
      }
      if (m.type === 'sdp' && m.kind === 'answer' && !resumePending) {
        await link.setRemote('answer', m.sdp);
        break;
      }
      throw violation(`got ${m.type} while waiting for ${resumePending ? 'resume' : 'an SDP answer'}`);
    }
    const channel = await link.connected(opened, 'receiver');
    signal.close();
    ui.status('Sending…');
    const summary = await streamFiles(channel, link, files, agreed, prefixState, hashing, ui);
    link.close();
    return summary;
  } catch (err) {
    const failure = asMpError(err);
    conversation.abort(failure);
    signal.close();
    if (link) link.close();
    throw failure;
  } finally {
    hashing.close();
  }
}

async function waitPaired(events, ms) {
  for (;;) {
    const ev = await events.next(ms);
    if (ev.kind === 'paired') return;
    if (ev.kind === 'timeout') throw new MpError('timeout', `the other side did not arrive within ${ms / SECOND} s`);
    if (ev.kind === 'rendezvous-closed') throw ev.error;
  }
}

export function asMpError(err) {
  if (err instanceof MpError) return err;
  if (err instanceof P.ManifestError) return new MpError('usage', `cannot send this: ${err.message}`, false);
  if (err instanceof P.CodeError) return new MpError('usage', err.message, false);
  return new MpError('internal', `unexpected error: ${err && err.message ? err.message : err}`);
}

const READ_BLOCK = 4 * 1024 * 1024;

/** Reads bytes [from, to) of `file` in blocks, handing each to `take`. */
async function readInto(file, from, to, take) {
  for (let at = from; at < to;) {
    const end = Math.min(to, at + READ_BLOCK);
    let block;
    try {
      block = new Uint8Array(await file.slice(at, end).arrayBuffer());
    } catch (err) {
      throw new MpError('local-io', `cannot read ${P.display(file.name)}: ${err.message}`);
    }
    if (block.length !== end - at) throw new MpError('local-io', `${P.display(file.name)} changed while being sent`);
    await take(block);
    at = end;
  }
}

/** The data phase of the sender (§11.1–§11.3). */
function streamFiles(dc, link, files, agreed, prefixState, hashing, ui) {
  const maxData = Math.min(link.maxMessage, P.MAX_FRAME) - 1;
  const total = files.reduce((n, f) => n + f.size, 0);
  const meter = new Meter(ui, total);
  const sent = { bytes: 0, messages: 0 };
  const acked = { bytes: 0, messages: 0 };
  let lastFrameAt = performance.now();
  let finished = false;
  let verdictBy = null;
  let blockedSince = null;
  let wake = null; // resolves a sender waiting for room
  let settle;
  const verdict = new Promise((resolve, reject) => {
    settle = { resolve, reject };
  });
  const stop = (err) => {
    if (finished) return;
    finished = true;
    clearInterval(tick);
    if (err.tell) {
      try {
        dc.send(P.frameFail(failKind(err.kind), publicReason(err.kind)));
      } catch {
        // the channel is gone
      }
    }
    settle.reject(err);
    if (wake) wake();
  };
  const open = () => sent.bytes - acked.bytes < P.WINDOW && sent.messages - acked.messages < P.WINDOW_MESSAGES;
  const send = (frame, counted) => {
    dc.send(frame);
    lastFrameAt = performance.now();
    if (counted) {
      sent.messages += 1;
      if (frame[0] === P.FRAME.DATA) sent.bytes += frame.length - 1;
    }
  };
  dc.bufferedAmountLowThreshold = 1024 * 1024;
  dc.onbufferedamountlow = () => wake && wake();
  const tick = setInterval(() => {
    const now = performance.now();
    if (blockedSince !== null && now - blockedSince > T.ackStall) stop(new MpError('peer-gone', `the receiver stopped taking data for ${T.ackStall / SECOND} s`));
    else if (verdictBy !== null && now > verdictBy) stop(new MpError('peer-gone', 'the receiver never confirmed the transfer'));
    else if (now - lastFrameAt >= T.keepalive) {
      try {
        send(P.frameKeepalive(), false);
      } catch {
        // noticed by the close handler
      }
    }
  }, 500);
  let allHandedOver = false;
  dc.onmessage = (e) => {
    if (finished) return;
    let frame;
    try {
      frame = P.decodeFrame(new Uint8Array(e.data));
    } catch (err) {
      stop(violation(`bad frame from the receiver: ${err.message}`));
      return;
    }
    switch (frame.type) {
      case P.FRAME.ACK: {
        const progressed = frame.bytes > acked.bytes || frame.messages > acked.messages;
        acked.bytes = Math.max(acked.bytes, frame.bytes);
        acked.messages = Math.max(acked.messages, frame.messages);
        if (acked.bytes > sent.bytes || acked.messages > sent.messages) {
          stop(violation('an ACK for more than was sent'));
          return;
        }
        if (progressed && blockedSince !== null) blockedSince = performance.now();
        if (verdictBy !== null) verdictBy = performance.now() + T.verdict;
        if (wake) wake();
        break;
      }
      case P.FRAME.DONE:
        if (!allHandedOver) {
          stop(violation('the receiver confirmed before everything was sent'));
          return;
        }
        finished = true;
        clearInterval(tick);
        settle.resolve();
        break;
      case P.FRAME.FAIL:
        stop(new MpError(frame.kind === 1 ? 'integrity' : 'peer-gone', `the receiver stopped: ${P.display(frame.reason)}`, false));
        break;
      default:
        stop(violation(`the receiver sent a ${P.FRAME_NAMES[frame.type]} frame`));
    }
  };
  dc.onclose = () => stop(new MpError('peer-gone', 'the connection to the receiver was lost', false));
  link.onLost = dc.onclose;
  for (const e of dc.early.splice(0)) dc.onmessage(e);

  /** Waits until the window (and the browser's own buffer) has room. */
  const room = async () => {
    while (!finished && (!open() || dc.bufferedAmount > 8 * 1024 * 1024)) {
      if (!open() && blockedSince === null) blockedSince = performance.now();
      await new Promise((resolve) => {
        wake = resolve;
        setTimeout(resolve, 1000);
      });
      wake = null;
    }
    blockedSince = null;
    if (finished) throw new MpError('internal', 'stopped');
  };

  const pump = async () => {
    for (let index = 0; index < files.length; index++) {
      const file = files[index];
      const start = agreed.get(index) ?? 0;
      const hash = start > 0 ? prefixState.get(index) : await hashing.create(file.size);
      if (start > 0) {
        await room();
        send(P.frameBegin(start), true);
        meter.add(start);
      }
      await readInto(file, start, file.size, async (block) => {
        // The worker hashes this block while its frames go out.
        await hash.room();
        hash.update(block);
        for (let at = 0; at < block.length; at += maxData) {
          await room();
          const frame = P.frameData(block.subarray(at, Math.min(block.length, at + maxData)));
          send(frame, true);
          meter.add(frame.length - 1);
        }
      });
      const digest = await hash.digest();
      await room();
      send(P.frameEnd(digest), true);
      ui.fileDone && ui.fileDone(index);
    }
    allHandedOver = true;
    verdictBy = performance.now() + T.verdict;
    ui.status('Waiting for the receiver to confirm…');
  };
  pump().catch((err) => stop(asMpError(err)));
  return verdict.then(() => {
    meter.show();
    return { bytes: total - [...agreed.values()].reduce((n, v) => n + v, 0), seconds: meter.seconds };
  });
}

// ---------------------------------------------------------------------------------------------
// Receiving (the page as `mp receive`)

/**
 * Receives with `code`. `ui`: { status(text), ask(offer) → Promise<sink | null> (null:
 * declined), text(text), progress(done, total, rate), fileDone(index) }. A sink stores the
 * files: { open(index), write(bytes), close(), abort() } (see app.js).
 */
export async function receive(codeText, { url, host, ui, words }) {
  const code = P.parseCode(codeText, words);
  let events = new Events();
  let signal = new Signal(url, events);
  // A generated code's sender waits before it shows the code: if none does, say so at once.
  let joined = await signal.join(code.room, 'receive', host, code.generated);
  if (joined === 'unsupported') {
    signal.close();
    events = new Events();
    signal = new Signal(url, events);
    joined = await signal.join(code.room, 'receive', host);
  }
  if (joined === 'no-peer') {
    signal.close();
    throw new MpError('no-sender', `no sender is waiting with the code ${code.full}: it was used already, it expired, or the sender stopped; ask the sender for a new code`, false);
  }
  if (joined === 'busy') {
    signal.close();
    throw new MpError('busy', `the code ${code.full} is already in use by another receiver or transfer`, false);
  }
  const conversation = new Conversation(signal, events, code, 'receive');
  const hashing = Hashing.start();
  let link = null;
  let sink = null;
  try {
    ui.status('Waiting for the sender…');
    await waitPaired(events, T.reply);
    ui.status('Checking the code…');
    await conversation.handshake();
    ui.status('Waiting for the offer…');
    let manifest = null;
    const parts = [];
    let count = 0;
    let pathBytes = 0;
    for (;;) {
      const m = await conversation.recv(T.step);
      if (m.type === 'text' && parts.length === 0) {
        if (new TextEncoder().encode(m.text).length > MAX_TEXT) {
          conversation.send({ type: 'reject', reason: 'the text is too long' });
          throw new MpError('integrity', 'refused a text longer than allowed', false);
        }
        ui.text(m.text);
        conversation.send({ type: 'accept' });
        signal.close();
        return { text: true };
      }
      if (m.type !== 'offer') throw violation(`got ${m.type} while waiting for an offer`);
      const entries = m.manifest.entries;
      count += entries.length;
      pathBytes += entries.reduce((n, e) => n + (isStr(e && e.path) ? new TextEncoder().encode(e.path).length : 0), 0);
      let tooLarge = null;
      if (count > P.MAX_ENTRIES) tooLarge = `the offer lists too many entries (at most ${P.MAX_ENTRIES})`;
      else if (pathBytes > P.MAX_PATH_BYTES) tooLarge = "the offer's paths add up to more than the receiver holds before asking";
      else if (m.more && entries.length === 0) tooLarge = 'the offer has an empty part';
      if (tooLarge) {
        conversation.send({ type: 'reject', reason: 'the offer is too large' });
        throw new MpError('integrity', `refused the offer: ${tooLarge}`, false);
      }
      parts.push(...entries);
      if (!m.more) break;
    }
    try {
      manifest = P.validateManifest({ entries: parts });
    } catch (err) {
      conversation.send({ type: 'reject', reason: 'the offer was refused as unsafe' });
      throw new MpError('integrity', `refused the offer: ${err.message}`, false);
    }
    ui.status('');
    // The user decides: no limit (§8.1), but the rendezvous may close meanwhile.
    let closedWhileAsking = null;
    const asking = ui.ask(manifest);
    sink = await asking;
    for (const ev of events.items.splice(0)) {
      if (ev.kind === 'rendezvous-closed') closedWhileAsking = ev.error;
      else if (ev.kind === 'envelope') throw violation(`got ${conversation.open(ev.bytes).type} while waiting for the receiver's decision`);
    }
    if (closedWhileAsking) throw closedWhileAsking;
    if (!sink) {
      conversation.send({ type: 'reject', reason: 'declined' });
      throw new MpError('declined', 'you declined the offer', false);
    }
    // The page never keeps a prefix: nothing to resume.
    conversation.send({ type: 'accept' });
    ui.status('Connecting…');
    const offer = await conversation.recv(T.step);
    if (offer.type !== 'sdp' || offer.kind !== 'offer') throw violation(`got ${offer.type} while waiting for an SDP offer`);
    link = new Link(conversation, events, signal.iceServers);
    const incoming = new Promise((resolve) => {
      link.pc.ondatachannel = (e) => {
        resolve(channelOpen(e.channel));
      };
    });
    await link.setRemote('offer', offer.sdp);
    const sdp = await link.localSdp(() => link.pc.createAnswer(), 'answer');
    link.sendSdp('answer', sdp);
    const channel = await link.connected(incoming, 'sender');
    signal.close();
    ui.status('Receiving…');
    const summary = await takeFiles(channel, link, manifest, sink, hashing, ui);
    setTimeout(() => link.close(), T.closeGrace);
    return summary;
  } catch (err) {
    const failure = asMpError(err);
    conversation.abort(failure);
    signal.close();
    if (link) link.close();
    if (sink) sink.abort();
    throw failure;
  } finally {
    hashing.close();
  }
}

/** The data phase of the receiver (§11.1, §11.2, §11.4). */
function takeFiles(dc, link, entries, sink, hashing, ui) {
  const files = entries.map((e, index) => ({ ...e, index })).filter((e) => !e.dir);
  const total = files.reduce((n, f) => n + (f.size ?? 0), 0);
  const meter = new Meter(ui, total);
  const received = { bytes: 0, messages: 0 };
  const taken = { bytes: 0, messages: 0 };
  const granted = { bytes: 0, messages: 0 };
  let current = 0; // position in `files`
  let fileBytes = 0;
  let fileOpen = false;
  let hash = null;
  let lastFrameAt = performance.now();
  let lastAckAt = performance.now();
  let finished = false;
  let chain = Promise.resolve();
  let settle;
  const result = new Promise((resolve, reject) => {
    settle = { resolve, reject };
  });
  const ack = () => {
    if (taken.bytes === granted.bytes && taken.messages === granted.messages) return;
    granted.bytes = taken.bytes;
    granted.messages = taken.messages;
    lastAckAt = performance.now();
    try {
      dc.send(P.frameAck(taken.bytes, taken.messages));
    } catch {
      // noticed by the close handler
    }
  };
  const stop = (err) => {
    if (finished) return;
    finished = true;
    clearInterval(tick);
    if (err.tell) {
      try {
        dc.send(P.frameFail(failKind(err.kind), publicReason(err.kind)));
      } catch {
        // gone
      }
    }
    settle.reject(err);
  };
  const tick = setInterval(() => {
    const now = performance.now();
    if (current < files.length && now - lastFrameAt > T.senderSilence) {
      stop(new MpError('peer-gone', `the sender sent nothing for ${T.senderSilence / SECOND} s`));
      return;
    }
    if (now - lastAckAt >= T.ackInterval) ack();
  }, 250);
  const took = (bytes, messages) => {
    taken.bytes += bytes;
    taken.messages += messages;
    if (taken.bytes - granted.bytes >= P.ACK_EVERY || taken.messages - granted.messages >= P.ACK_EVERY_MESSAGES) ack();
  };
  const complete = () => {
    finished = true;
    clearInterval(tick);
    Promise.resolve(sink.finish && sink.finish()).then(() => {
      try {
        dc.send(P.frameDone());
      } catch {
        // the sender is gone; every file was verified all the same
      }
      meter.show();
      settle.resolve({ bytes: total, seconds: meter.seconds });
    }, (err) => stop(new MpError('local-io', err.message)));
  };
  const onFrame = async (bytes) => {
    const frame = P.decodeFrame(bytes);
    if (frame.type === P.FRAME.KEEPALIVE) return;
    if (frame.type === P.FRAME.FAIL) {
      throw new MpError(frame.kind === 1 ? 'integrity' : 'peer-gone', `the sender stopped: ${P.display(frame.reason)}`, false);
    }
    if (frame.type === P.FRAME.ACK || frame.type === P.FRAME.DONE) throw violation(`the sender sent a ${P.FRAME_NAMES[frame.type]} frame`);
    received.messages += 1;
    if (frame.type === P.FRAME.DATA) received.bytes += frame.payload.length;
    if (received.messages - granted.messages > P.WINDOW_MESSAGES || received.bytes - granted.bytes >= P.WINDOW + P.MAX_FRAME - 1) {
      throw violation('the sender exceeded the flow-control window');
    }
    if (current >= files.length) throw violation('the sender sent data after the last file');
    const file = files[current];
    const name = P.display(file.path);
    // We agreed to resume nothing, so BEGIN is never expected (§11.1).
    if (frame.type === P.FRAME.BEGIN) throw violation('an unexpected BEGIN frame');
    if (!fileOpen) {
      fileOpen = true;
      fileBytes = 0;
      hash = await hashing.create(file.size);
      await sink.open(file.index);
    }
    if (frame.type === P.FRAME.DATA) {
      fileBytes += frame.payload.length;
      if (file.size !== null && fileBytes > file.size) throw new MpError('integrity', `integrity check failed: the sender sent more bytes than announced for ${name}`);
      hash.update(frame.payload);
      await sink.write(frame.payload);
      // What waits for the worker counts as not yet taken: the sender's window bounds it.
      await hash.room();
      meter.add(frame.payload.length);
      took(frame.payload.length, 1);
      return;
    }
    // END
    if (file.size !== null && fileBytes !== file.size) throw new MpError('integrity', `integrity check failed: the sender ended ${name} after ${fileBytes} of ${file.size} bytes`);
    if (P.hex(await hash.digest()) !== P.hex(frame.hash)) throw new MpError('integrity', `integrity check failed: SHA-256 of ${name} does not match`);
    await sink.close();
    fileOpen = false;
    took(0, 1);
    ui.fileDone(file.index);
    current += 1;
    if (current === files.length) {
      ack();
      complete();
    }
  };
  dc.onmessage = (e) => {
    lastFrameAt = performance.now();
    const bytes = new Uint8Array(e.data);
    chain = chain.then(() => {
      if (finished) {
        // After DONE: KEEPALIVE and FAIL are ignored, anything else was too late anyway.
        return undefined;
      }
      return onFrame(bytes).catch((err) => {
        stop(err instanceof P.FrameError ? violation(`bad frame from the sender: ${err.message}`) : asMpError(err));
      });
    });
  };
  dc.onclose = () => {
    chain = chain.then(() => stop(new MpError('peer-gone', 'the sender closed the connection before the end', false)));
  };
  link.onLost = () => stop(new MpError('peer-gone', 'the connection to the sender was lost', false));
  for (const e of dc.early.splice(0)) dc.onmessage(e);
  if (files.length === 0) complete();
  return result;
}
