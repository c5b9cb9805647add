// The page: what a person sees and does. The protocol is in mp.js and proto.js.

import { sendFiles, receive, signalUrl, MEMORY_LIMIT, asMpError, MpError } from './mp.js';
import { display } from './proto.js';
import { qrEncode } from './vendor/noble.js';

const $ = (id) => document.getElementById(id);
const show = (id, on = true) => {
  $(id).hidden = !on;
};
const setState = (state) => {
  document.body.dataset.state = state;
};

function size(n) {
  const units = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i++;
  }
  return `${i === 0 ? n : n.toFixed(n < 10 ? 2 : 1)} ${units[i]}`;
}

const context = {
  url: signalUrl(window.location),
  host: window.location.hostname,
};

function status(text) {
  $('status').textContent = text;
}

/** Shows a failure the way mp prints it, with a hint for the common ones. */
function failed(err) {
  const failure = asMpError(err);
  const hints = {
    'wrong-code': 'Check the code with the sender and try again.',
    'peer-gone': '',
    connect: 'The two devices could not reach each other directly (a strict firewall or separate networks).',
    version: '',
  };
  const hint = hints[failure.kind] ? ` ${hints[failure.kind]}` : '';
  const message = display(failure.message);
  $('error').textContent = `${message.charAt(0).toUpperCase()}${message.slice(1)}.${hint}`;
  $('error').dataset.kind = failure.kind;
  show('error');
  show('offer', false);
  show('again');
  status('');
  setState('error');
  $('again-link').focus();
}

function progress(done, total, rate) {
  show('transfer');
  const bar = $('progress');
  bar.max = total || 1;
  bar.value = done;
  const percent = total ? ` (${Math.floor((done / total) * 100)} %)` : '';
  $('rate').textContent = `${size(done)} of ${size(total)}${percent}, ${size(rate)}/s`;
}

function listEntries(list, entries) {
  list.replaceChildren();
  for (const entry of entries) {
    const li = document.createElement('li');
    const name = document.createElement('span');
    name.className = 'name';
    name.textContent = display(entry.path) + (entry.dir ? '/' : '');
    const bytes = document.createElement('span');
    bytes.className = 'size';
    bytes.textContent = entry.dir ? 'folder' : size(entry.size ?? 0);
    li.append(name, bytes);
    list.append(li);
  }
}

// ---------------------------------------------------------------------------------------------
// QR code: the link, drawn as SVG (black on white, with its quiet zone).

function drawQr(target, text) {
  const { data, size: n } = qrEncode(text, { ecc: 'M', border: 4 });
  const svgNs = 'http://www.w3.org/2000/svg';
  const svg = document.createElementNS(svgNs, 'svg');
  svg.setAttribute('viewBox', `0 0 ${n} ${n}`);
  svg.setAttribute('shape-rendering', 'crispEdges');
  const bg = document.createElementNS(svgNs, 'rect');
  bg.setAttribute('width', n);
  bg.setAttribute('height', n);
  bg.setAttribute('fill', '#ffffff');
  let d = '';
  data.forEach((row, y) => row.forEach((dark, x) => {
    if (dark) d += `M${x} ${y}h1v1h-1z`;
  }));
  const path = document.createElementNS(svgNs, 'path');
  path.setAttribute('d', d);
  path.setAttribute('fill', '#000000');
  svg.append(bg, path);
  target.replaceChildren(svg);
}

// ---------------------------------------------------------------------------------------------
// Where received files go.

/** Keeps each file in memory and offers it as a download once verified. */
class MemorySink {
  constructor(entries) {
    this.entries = entries;
    this.parts = null;
    this.kept = 0;
  }

  async open(index) {
    this.index = index;
    this.parts = [];
  }

  async write(bytes) {
    this.parts.push(bytes.slice());
  }

  async close() {
    const entry = this.entries[this.index];
    const blob = new Blob(this.parts, { type: 'application/octet-stream' });
    this.parts = null;
    const url = URL.createObjectURL(blob);
    const li = document.createElement('li');
    const a = document.createElement('a');
    a.href = url;
    a.download = entry.path.split('/').join('_');
    a.textContent = display(entry.path);
    a.className = 'name';
    a.dataset.index = String(this.index);
    const bytes = document.createElement('span');
    bytes.className = 'size';
    bytes.textContent = size(blob.size);
    li.append(a, bytes);
    $('download-list').append(li);
    show('downloads');
    this.kept += 1;
    if (this.entries.filter((e) => !e.dir).length === 1) a.click();
  }

  abort() {
    this.parts = null;
  }
}

/** Writes one file where the person chose, as it arrives; it appears only once verified. */
class FileSink {
  constructor(handle) {
    this.handle = handle;
  }

  async open() {
    this.writable = await this.handle.createWritable();
  }

  async write(bytes) {
    await this.writable.write(bytes);
  }

  async close() {
    await this.writable.close();
    this.writable = null;
    const li = document.createElement('li');
    li.textContent = `${display(this.handle.name)}: saved`;
    $('download-list').append(li);
    show('downloads');
  }

  abort() {
    if (this.writable) this.writable.abort().catch(() => {});
  }
}

/** Writes the offer into a chosen folder, each file appearing once verified. */
class FolderSink {
  constructor(root, entries) {
    this.root = root;
    this.entries = entries;
  }

  async folder(parts) {
    let dir = this.root;
    for (const part of parts) dir = await dir.getDirectoryHandle(part, { create: true });
    return dir;
  }

  async open(index) {
    const parts = this.entries[index].path.split('/');
    const dir = await this.folder(parts.slice(0, -1));
    const handle = await dir.getFileHandle(parts[parts.length - 1], { create: true });
    this.writable = await handle.createWritable();
    this.index = index;
  }

  async write(bytes) {
    await this.writable.write(bytes);
  }

  async close() {
    await this.writable.close();
    this.writable = null;
    const li = document.createElement('li');
    li.textContent = `${display(this.entries[this.index].path)}: saved`;
    $('download-list').append(li);
    show('downloads');
  }

  async finish() {
    for (const entry of this.entries.filter((e) => e.dir)) await this.folder(entry.path.split('/'));
  }

  abort() {
    if (this.writable) this.writable.abort().catch(() => {});
  }
}

/** True if `name` already exists in the folder `dir`. */
async function exists(dir, name) {
  for (const get of [(n) => dir.getFileHandle(n), (n) => dir.getDirectoryHandle(n)]) {
    try {
      await get(name);
      return true;
    } catch {
      // not this kind
    }
  }
  return false;
}

const canStream = () => typeof window.showSaveFilePicker === 'function' && typeof window.showDirectoryPicker === 'function';

/** Shows the offer; resolves with where to put it, or null if declined. */
function ask(entries) {
  const files = entries.filter((e) => !e.dir);
  const total = files.reduce((n, e) => n + (e.size ?? 0), 0);
  $('offer-title').textContent = `Offered to you: ${files.length} file${files.length === 1 ? '' : 's'}, ${size(total)}`;
  listEntries($('offer-list'), entries);
  const streaming = canStream();
  const tooBig = !streaming && total > MEMORY_LIMIT;
  $('save-note').textContent = streaming
    ? (files.length === 1 && entries.length === 1 ? 'You choose where to save it; it is written as it arrives.' : 'You choose a folder; files are written into it as they arrive.')
    : `This browser keeps received files in memory until you save them, so it takes at most ${size(MEMORY_LIMIT)} in all${tooBig ? ': this offer is larger. Receive it with mp, or with a desktop Chromium-based browser over https or on localhost, which writes to disk as it goes.' : ' (a desktop Chromium-based browser over https writes straight to disk).'}`;
  $('accept').disabled = tooBig;
  show('offer');
  setState('offer');
  (tooBig ? $('decline') : $('accept')).focus();
  return new Promise((resolve) => {
    const done = (sink) => {
      $('accept').onclick = null;
      $('decline').onclick = null;
      show('offer', false);
      resolve(sink);
    };
    $('decline').onclick = () => done(null);
    $('accept').onclick = async () => {
      if (!streaming) {
        done(new MemorySink(entries));
        return;
      }
      try {
        if (files.length === 1 && entries.length === 1) {
          const handle = await window.showSaveFilePicker({ suggestedName: entries[0].path });
          done(new FileSink(handle));
          return;
        }
        const dir = await window.showDirectoryPicker({ mode: 'readwrite' });
        const roots = [...new Set(entries.map((e) => e.path.split('/')[0]))];
        for (const root of roots) {
          if (await exists(dir, root)) {
            $('save-note').textContent = `${display(root)} already exists in ${display(dir.name)}: choose another folder.`;
            return;
          }
        }
        done(new FolderSink(dir, entries));
      } catch (err) {
        if (err && err.name === 'AbortError') return; // the picker was closed: still asking
        $('save-note').textContent = `Cannot write there: ${display(err.message)}`;
      }
    };
  });
}

// ---------------------------------------------------------------------------------------------
// The two flows.

async function startReceive(code) {
  show('home', false);
  setState('connecting');
  // The word list, so a generated code is forgiven its case and separators (§2).
  const words = await fetch('words.txt')
    .then((r) => r.text())
    .then((t) => t.split('\n').filter(Boolean))
    .catch(() => null);
  try {
    const summary = await receive(code, {
      ...context,
      words,
      ui: {
        status,
        ask,
        text: (text) => {
          $('text-body').textContent = text.split('\n').map(display).join('\n');
          show('text');
        },
        progress: (done, total, rate) => {
          setState('receiving');
          progress(done, total, rate);
        },
        fileDone: () => {},
      },
    });
    status(summary.text ? 'Text received.' : `Received ${size(summary.bytes)} in ${summary.seconds.toFixed(1)} s, every file checked (SHA-256).`);
    setState('done');
    show('again');
  } catch (err) {
    failed(err);
  }
}

async function startSend(files) {
  show('home', false);
  setState('connecting');
  const words = (await (await fetch('words.txt')).text()).split('\n').filter(Boolean);
  try {
    const summary = await sendFiles(files, {
      ...context,
      words,
      ui: {
        status,
        code: (code) => {
          const link = `${window.location.origin}/#${code}`;
          $('share-code').textContent = code;
          $('share-link').value = link;
          $('share-cli').textContent = `mp receive ${link}`;
          drawQr($('qr'), link);
          show('share');
          setState('sharing');
        },
        progress: (done, total, rate) => {
          show('share', false);
          setState('sending');
          progress(done, total, rate);
        },
        fileDone: () => {},
      },
    });
    status(`Sent ${size(summary.bytes)} in ${summary.seconds.toFixed(1)} s; the receiver checked every file.`);
    setState('done');
    show('share', false);
    show('again');
  } catch (err) {
    show('share', false);
    failed(err);
  }
}

function copyLink() {
  const input = $('share-link');
  const done = () => {
    $('copy-link').textContent = 'Copied';
  };
  if (navigator.clipboard && window.isSecureContext) {
    navigator.clipboard.writeText(input.value).then(done, () => {});
  } else {
    input.select();
    if (document.execCommand('copy')) done();
  }
}

/** Leaving the page ends the transfer: ask first while one runs. */
window.addEventListener('beforeunload', (e) => {
  if (['connecting', 'sharing', 'sending', 'receiving'].includes(document.body.dataset.state)) {
    e.preventDefault();
  }
});

function init() {
  $('copy-link').addEventListener('click', copyLink);
  $('receive-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const code = $('code-input').value;
    // A pasted link works as well as a code.
    const hash = code.indexOf('#');
    startReceive(hash >= 0 ? decodeURIComponent(code.slice(hash + 1)) : code);
  });
  $('send-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const files = [...$('file-input').files];
    if (files.length) startSend(files);
  });
  window.addEventListener('hashchange', () => window.location.reload());
  const fragment = window.location.hash.slice(1);
  if (fragment) {
    let code;
    try {
      code = decodeURIComponent(fragment);
    } catch {
      code = fragment;
    }
    startReceive(code);
  } else {
    show('home');
    setState('home');
  }
}

// For tests and the curious: the page's own check of docs/PROTOCOL.md §13.
export { MpError };
init();
