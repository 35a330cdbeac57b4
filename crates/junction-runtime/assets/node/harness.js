'use strict';
// Junction's Node.js runtime harness: protocol v1 (docs/runtime-protocol.md).
// Loads one user script (CommonJS) and serves exec/introspect requests for it,
// one at a time, for as long as the worker keeps this process warm.

const util = require('util');
const Module = require('module');
const fs = require('fs');
const path = require('path');
const net = require('net');
const timers = require('timers');
const readline = require('readline');

const PROTOCOL = 1;

// The protocol has fds of its own: requests on 3, events on 4. Fds 1 and 2
// are plain log output for the worker, so a raw fs.writeSync(1, ...) is a
// log line, never a broken protocol. The functions the protocol relies on
// are captured now, before any script can replace them.
const EVENTS_FD = 4;
const writeSync = fs.writeSync;
const stringify = JSON.stringify;
const activeResources = process.getActiveResourcesInfo;
// A lone surrogate (half an emoji) would make the line invalid JSON for
// the worker; it becomes U+FFFD.
const wellFormed = (key, value) => (typeof value === 'string' ? value.toWellFormed() : value);
// JSON.stringify escapes a lone surrogate as \udXXX, which the worker's
// parser refuses: only a line that may hold one (rare) is made again with
// the replacer, which is much slower than the plain stringify.
const loneSurrogate = /\\ud[89a-f][0-9a-f]{2}/i;
function send(event) {
  let text = stringify(event);
  if (loneSurrogate.test(text)) text = stringify(event, wellFormed);
  const bytes = Buffer.from(text + '\n', 'utf8');
  let off = 0;
  while (off < bytes.length) off += writeSync(EVENTS_FD, bytes, off, bytes.length - off);
}

// Raw output on fds 1 and 2 (fs.writeSync(1, ...), process.stderr.write,
// a stream on those fds) travels on other pipes than the result, so an
// execution that wrote some ends it with marks the worker waits for. One
// that wrote none (console is the protocol's) skips them: two writes and
// two wakeups less per execution.
let rawOutput = false;
{
  const rawFd = (fd) => fd === 1 || fd === 2;
  const fsWrite = fs.write;
  fs.writeSync = function (fd, ...rest) {
    if (rawFd(fd)) rawOutput = true;
    return writeSync.call(this, fd, ...rest);
  };
  fs.write = function (fd, ...rest) {
    if (rawFd(fd)) rawOutput = true;
    return fsWrite.call(this, fd, ...rest);
  };
  const stderrWrite = process.stderr.write;
  process.stderr.write = function (...args) {
    rawOutput = true;
    return stderrWrite.apply(this, args);
  };
}

// The secrets of the request being served, longest first: masked in the
// values a script logs before util.format/inspect turn them into text
// (inspect escapes quotes, backslashes and control characters, and the
// worker's text-level redaction is only the second line).
let secrets = [];
const MASK = '********';
function maskString(text) {
  for (const secret of secrets) if (text.includes(secret)) text = text.split(secret).join(MASK);
  return text;
}
function masked(value, seen = new Map(), depth = 0) {
  if (typeof value === 'string') return maskString(value);
  if (value === null || typeof value !== 'object' || depth > 50) return value;
  if (seen.has(value)) return seen.get(value);
  if (ArrayBuffer.isView(value) || value instanceof Date || value instanceof RegExp) return value;
  try {
    if (Array.isArray(value)) {
      const copy = [];
      seen.set(value, copy);
      for (const item of value) copy.push(masked(item, seen, depth + 1));
      return copy;
    }
    if (value instanceof Map) {
      const copy = new Map();
      seen.set(value, copy);
      for (const [k, v] of value) copy.set(masked(k, seen, depth + 1), masked(v, seen, depth + 1));
      return copy;
    }
    if (value instanceof Set) {
      const copy = new Set();
      seen.set(value, copy);
      for (const v of value) copy.add(masked(v, seen, depth + 1));
      return copy;
    }
    // Only plain objects and errors are copied: a class with internal
    // slots or #private fields (URL, Headers, a Response) would throw when
    // inspected as a copy. Anything else is left to the worker's text-level
    // redaction.
    const proto = Object.getPrototypeOf(value);
    const plain = proto === Object.prototype || proto === null;
    if (!plain && !(value instanceof Error)) return value;
    const copy = value instanceof Error ? new Error(maskString(String(value.message))) : {};
    Object.setPrototypeOf(copy, Object.getPrototypeOf(value));
    seen.set(value, copy);
    if (value instanceof Error) {
      Object.defineProperty(copy, 'stack', { value: maskString(String(value.stack)), enumerable: false, writable: true, configurable: true });
    }
    for (const key of Reflect.ownKeys(value)) {
      const d = Object.getOwnPropertyDescriptor(value, key);
      if (!d || (value instanceof Error && (key === 'stack' || key === 'message'))) continue;
      if ('value' in d) d.value = masked(d.value, seen, depth + 1);
      const name = typeof key === 'string' ? maskString(key) : key;
      Object.defineProperty(copy, name, d);
    }
    return copy;
  } catch (_) {
    return value; // a Proxy or an exotic object: the text-level redaction still applies
  }
}
const maskedArgs = (args) => (secrets.length ? args.map((a) => masked(a)) : args);

// Timers a script starts are tracked (unref'd ones too, which
// getActiveResourcesInfo does not list), so one still pending when its
// execution ends ends the process rather than running into the next one.
const pendingTimers = new Set();
function tracked(start, repeats) {
  const wrapper = function (callback, ...rest) {
    if (typeof callback !== 'function') return start.call(this, callback, ...rest);
    let handle;
    const fire = function (...a) {
      if (!repeats) pendingTimers.delete(handle);
      return callback.apply(this, a);
    };
    handle = start.call(this, fire, ...rest);
    pendingTimers.add(handle);
    return handle;
  };
  if (start[util.promisify.custom]) wrapper[util.promisify.custom] = start[util.promisify.custom];
  return wrapper;
}
function untracked(clear) {
  return function (handle) {
    pendingTimers.delete(handle);
    return clear.call(this, handle);
  };
}
for (const [name, repeats] of [['setTimeout', false], ['setInterval', true], ['setImmediate', false]]) {
  const wrapped = tracked(timers[name], repeats);
  global[name] = wrapped;
  timers[name] = wrapped;
}
for (const name of ['clearTimeout', 'clearInterval', 'clearImmediate']) {
  const wrapped = untracked(timers[name]);
  global[name] = wrapped;
  timers[name] = wrapped;
}

function resourceCounts() {
  const counts = new Map();
  for (const r of activeResources()) counts.set(r, (counts.get(r) || 0) + 1);
  return counts;
}
// What an execution left running: more timers than none, or more active
// handles and requests (sockets, servers, file operations) than before it.
function leftovers(before) {
  const left = [];
  if (pendingTimers.size) left.push(`${pendingTimers.size} timer(s)`);
  for (const [kind, n] of resourceCounts()) {
    const extra = n - (before.get(kind) || 0);
    if (extra > 0 && kind !== 'Timeout' && kind !== 'Immediate') left.push(`${extra} ${kind}`);
  }
  return left.length ? left.join(', ') : undefined;
}

let current = null; // id of the request being served

function stamp() {
  return new Date().toISOString();
}

function log(level, text) {
  send({ t: 'log', id: current, level, line: `[${stamp()}] [${level}] \u2013 ${text}` });
}

// Raw writes are buffered up to each newline, so a line written in pieces
// is one log line (and a secret split across pieces is still masked).
let pending = '';
function flushPending() {
  if (pending) {
    log('LOG', pending);
    pending = '';
  }
}
process.stdout.write = function (chunk, encoding, callback) {
  const text = Buffer.isBuffer(chunk) ? chunk.toString('utf8') : String(chunk);
  const parts = (pending + text).split('\n');
  pending = parts.pop();
  for (const part of parts) log('LOG', part);
  const cb = typeof encoding === 'function' ? encoding : callback;
  if (typeof cb === 'function') cb();
  return true;
};

// Spec 000's console: each method is one log level.
const levels = { log: 'LOG', info: 'INFO', warn: 'WARN', error: 'ERROR', debug: 'LOG' };
for (const [method, level] of Object.entries(levels)) {
  console[method] = (...args) => log(level, util.format(...maskedArgs(args)));
}
console.dir = (obj, options) => log('DIR', util.inspect(secrets.length ? masked(obj) : obj, options));
console.trace = function trace(...args) {
  const holder = {};
  Error.captureStackTrace(holder, trace);
  const frames = String(holder.stack).split('\n').slice(1).join('\n');
  log('TRACE', `Trace: ${util.format(...maskedArgs(args))}\n${frames}`);
};

// Real public scripts call notifier.progress(msg).
global.notifier = {
  progress(message) {
    send({ t: 'progress', id: current, message: typeof message === 'string' ? message : util.format(message) });
  },
};

// What a script may require: spec 000's supported modules plus the
// harmless built-ins scripts use with them. Anything else (child_process,
// vm, worker_threads, cluster, net, ...) is refused.
const BUILTINS = new Set([
  'querystring', 'https', 'http', 'fs', 'url', 'util', 'path', 'crypto', 'events', 'stream',
  'buffer', 'zlib', 'string_decoder', 'timers', 'assert', 'os',
]);
const PACKAGES = new Set([
  'aws-sdk', 'lodash', 'xml2js', 'xlsx', 'ssh2', 'ldapjs', 'csvtojson', 'oauth', 'request',
  'openpgp', 'axios', 'showdown', 'jsonwebtoken', 'crypto-js', 'uuid', 'node-fetch',
]);
const UUID_SUBPATHS = new Set(['uuid/v1', 'uuid/v3', 'uuid/v4', 'uuid/v5']);
const MODULES_DIR = process.env.JUNCTION_NODE_MODULES || '';

function allowedRequire(id) {
  const bare = id.startsWith('node:') ? id.slice(5) : id;
  if (BUILTINS.has(bare)) return { builtin: bare };
  const pkg = bare.startsWith('@') ? bare.split('/').slice(0, 2).join('/') : bare.split('/')[0];
  if (pkg === 'uuid' && bare !== 'uuid' && !UUID_SUBPATHS.has(bare)) return null;
  if (PACKAGES.has(pkg)) return { pkg: bare };
  return null;
}

function loadScript(step) {
  // The script's own name, not where the server keeps it, in its stack
  // traces (relative requires are refused anyway).
  const filename = `${step.name}.js`;
  const mod = new Module(filename, null);
  mod.filename = filename;
  mod.paths = MODULES_DIR ? [MODULES_DIR] : [];
  mod.require = function (id) {
    const allowed = allowedRequire(String(id));
    if (!allowed) {
      throw new Error(`module '${id}' is not supported`);
    }
    if (allowed.builtin) return require(allowed.builtin);
    try {
      return Module.prototype.require.call(mod, allowed.pkg);
    } catch (e) {
      if (e && e.code === 'MODULE_NOT_FOUND' && String(e.message).includes(`'${allowed.pkg}'`)) {
        throw new Error(`module '${id}' is supported but not installed on this server`);
      }
      throw e;
    }
  };
  mod._compile(step.source, filename);
  return mod;
}

// A package (an extension stack's version): a directory of modules with
// their own node_modules, loaded with Node's own require (the allowlist
// above is for spec-000 steps; Node's permission model still applies). The
// step's source is the stack configuration naming the module files:
// {"diy": FILE} or {"connectors": {ID: FILE}}.
const PACKAGE_DIR = process.env.JUNCTION_PACKAGE_DIR || '';

function loadPackage(step) {
  // The stack's env, before its modules read it at load time.
  for (const [name, value] of Array.isArray(step.env) ? step.env : []) process.env[name] = String(value);
  const config = JSON.parse(step.source);
  const files = config.diy ? [config.diy] : Object.values(config.connectors || {});
  const requireHere = Module.createRequire(path.join(PACKAGE_DIR, 'package.json'));
  const modules = new Map();
  for (const file of files) {
    if (!modules.has(file)) modules.set(file, requireHere('./' + file));
  }
  return { package: true, modules };
}

// lodash's isPlainObject, which integrator-extension uses to accept a result.
const objectCtorString = Function.prototype.toString.call(Object);
function isPlainObject(value) {
  if (value === null || typeof value !== 'object') return false;
  const proto = Object.getPrototypeOf(value);
  // The common case first: a literal (its tag can still be changed).
  if (proto === Object.prototype) return Object.prototype.toString.call(value) === '[object Object]';
  if (Object.prototype.toString.call(value) !== '[object Object]') return false;
  if (proto === null) return true;
  const Ctor = Object.prototype.hasOwnProperty.call(proto, 'constructor') && proto.constructor;
  return typeof Ctor === 'function' && Ctor instanceof Ctor && Function.prototype.toString.call(Ctor) === objectCtorString;
}

// integrator-extension's validateObject: plain data only, recursively.
function plainData(value) {
  const t = typeof value;
  if (value === undefined || value === null || t === 'number' || t === 'boolean' || t === 'string') return true;
  const tag = Object.prototype.toString.call(value);
  if (t === 'object' && (tag === '[object Number]' || tag === '[object Boolean]' || tag === '[object String]')) return true;
  if (!isPlainObject(value) && !Array.isArray(value)) return false;
  for (const key in value) {
    if (Object.prototype.hasOwnProperty.call(value, key) && !plainData(value[key])) return false;
  }
  return true;
}

// The error an extension reports: the library's {message, code} (a value
// that is not an Error gives neither field).
function extensionError(err) {
  const keep = (v) => (typeof v === 'string' ? maskString(v) : v);
  return { message: keep(err && err.message), code: keep(err && (err.code || err.name)) };
}

// One call of a stack function, with integrator-extension's callFunction
// semantics after the request's own validation (done by the worker): the
// object of the module, the function, the Date options, `this` = the
// object, the callback or a promise, then the result's checks. Every
// answer is a successful protocol result: a function's failure is the
// call's answer, not the process's.
function callExtension(pkg, input, settle) {
  const answer = (data) => settle({ ok: true, message: '', data });
  const mod = pkg.modules.get(input.module);
  const object = input.object === null || input.object === undefined ? mod : mod && mod[input.object];
  if (!object) return answer({ outcome: 'object_not_found' });
  const fn = object[input.function];
  if (typeof fn !== 'function') return answer({ outcome: 'invalid_function' });
  const options = input.options;
  if (options && typeof options === 'object') {
    for (const key of ['lastExportDateTime', 'currentExportDateTime']) {
      if (options[key]) options[key] = new Date(options[key]);
    }
  }
  let answered = false;
  const callback = (err, result) => {
    if (answered) return log('WARN', 'the extension function answered more than once; later answers are ignored');
    answered = true;
    if (err) return answer({ outcome: 'error', error: extensionError(err) });
    let json;
    try {
      json = stringify(result);
    } catch (_) {
      return answer({ outcome: 'invalid_extension_response' });
    }
    if (!plainData(result)) return answer({ outcome: 'invalid_extension_response' });
    answer({ outcome: 'ok', json: json === undefined ? null : json, size: json === undefined ? 0 : json.length });
  };
  const rejected = (e) => callback(e || new Error(`the promise was rejected with ${String(e)}`));
  let ret;
  try {
    ret = fn.call(object, options, callback);
  } catch (e) {
    return rejected(e);
  }
  if (ret && typeof ret.then === 'function') {
    ret.then((value) => callback(null, value), rejected);
  } else if (fn.length < 2 && ret !== undefined) {
    // A function that takes no callback answers with what it returns.
    callback(null, ret);
  }
}

// What a package's modules offer: per module file, the function names of
// each object member ("" for the top level).
function packageFunctions(pkg) {
  const out = {};
  for (const [file, mod] of pkg.modules) {
    const entry = {};
    const names = (obj) => {
      const found = new Set();
      for (let o = obj; o && o !== Object.prototype && o !== Function.prototype; o = Object.getPrototypeOf(o)) {
        for (const key of Object.getOwnPropertyNames(o)) {
          if (key === 'constructor') continue;
          try {
            if (typeof obj[key] === 'function') found.add(key);
          } catch (_) {
            // a getter that throws is no function
          }
        }
      }
      return [...found].sort();
    };
    if (mod && (typeof mod === 'object' || typeof mod === 'function')) {
      const top = names(mod);
      if (top.length) entry[''] = top;
      for (const key of Object.keys(mod)) {
        const value = mod[key];
        if (value && typeof value === 'object') {
          const fns = names(value);
          if (fns.length) entry[key] = fns;
        }
      }
    }
    out[file] = entry;
  }
  return out;
}

// One process serves one script; it is loaded once (warm reuse keeps module state).
let loaded = null; // { sha256, module } or { sha256, error }

function script(step) {
  if (loaded && loaded.sha256 !== step.sha256) {
    throw new Error('this runtime process already serves another script');
  }
  if (!loaded) {
    try {
      loaded = { sha256: step.sha256, module: step.package ? loadPackage(step) : loadScript(step) };
    } catch (e) {
      loaded = { sha256: step.sha256, error: e };
    }
  }
  if (loaded.error) throw loaded.error;
  return loaded.module;
}

function describe(value) {
  if (value instanceof Error) return value.message || value.name || 'Error';
  if (typeof value === 'string') return value;
  if (value === undefined) return 'undefined';
  try {
    return JSON.stringify(value);
  } catch (_) {
    return util.inspect(value);
  }
}

function asMessage(value) {
  if (value === undefined || value === null) return '';
  return typeof value === 'string' ? value : describe(value);
}

function jsonSafe(value) {
  if (value === undefined) return null;
  return JSON.parse(JSON.stringify(value));
}

// Stack traces without the harness's own frames and Node's internals.
function userStack(stack) {
  return String(stack)
    .split('\n')
    .filter((line) => !line.includes(__filename) && !line.includes('node:internal'))
    .join('\n');
}

let settle = null; // ends the request in progress (also from global error handlers)

function serve(request) {
  return new Promise((resolve) => {
    let done = false;
    const before = resourceCounts();
    pendingTimers.clear();
    secrets = (Array.isArray(request.secrets) ? request.secrets : [])
      .filter((x) => typeof x === 'string' && x)
      .sort((a, b) => b.length - a.length);
    settle = (event) => {
      if (done) return;
      done = true;
      settle = null;
      flushPending();
      if (!event.ok && event.error) log('ERROR', event.error);
      const leftover = leftovers(before);
      // Ends this execution's raw output on fds 1 and 2 for the worker.
      const marks = rawOutput;
      rawOutput = false;
      for (const fd of marks ? [1, 2] : []) {
        try {
          writeSync(fd, `\0junction-end:${request.id}\n`);
        } catch (_) {
          // the script closed it; the worker waits briefly instead
        }
      }
      send(Object.assign({ t: 'result', id: request.id, marks }, event, leftover ? { leftover } : {}));
      secrets = [];
      resolve();
    };
    const fail = (reason, prefix) => {
      const traceback = reason instanceof Error && reason.stack ? userStack(reason.stack) : undefined;
      settle({ ok: false, error: (prefix || '') + describe(reason), kind: reason && reason.name, traceback });
    };
    try {
      process.chdir(request.workdir || process.cwd());
      let mod;
      try {
        mod = script(request.step);
      } catch (e) {
        return fail(e, e instanceof SyntaxError ? 'the script does not load: SyntaxError: ' : 'the script does not load: ');
      }
      const entry = request.entry || 'run';
      if (mod.package) {
        if (entry !== 'extension') return fail(`a package serves extension calls, not '${entry}'`);
        return callExtension(mod, request.input || {}, settle);
      }
      const fn = mod.exports && mod.exports[entry];
      if (typeof fn !== 'function') {
        return fail(`the script does not export a function named '${entry}'`);
      }
      const input = request.input || {};
      if (entry === 'run') {
        const ret = fn.call(mod.exports, input.args || {});
        if (!ret || typeof ret.then !== 'function') {
          return fail(`run must return a promise; it returned ${ret === null ? 'null' : typeof ret}`);
        }
        ret.then((value) => settle({ ok: true, message: asMessage(value), data: null }), (e) => fail(e));
      } else {
        // Spec 001 hooks: (options, callback) or a promise.
        const callback = (err, value) => (err ? fail(err) : settle({ ok: true, message: '', data: jsonSafe(value) }));
        const ret = fn.call(mod.exports, input.options || {}, callback);
        if (ret && typeof ret.then === 'function') {
          ret.then((value) => settle({ ok: true, message: '', data: jsonSafe(value) }), (e) => fail(e));
        } else if (fn.length < 2) {
          settle({ ok: true, message: '', data: jsonSafe(ret) });
        }
      }
    } catch (e) {
      fail(e);
    }
  });
}

function introspect(request) {
  let info;
  try {
    process.chdir(request.workdir || process.cwd());
    const mod = script(request.step);
    if (mod.package) {
      return send({ t: 'introspection', id: request.id, ok: true, info: { functions: packageFunctions(mod) } });
    }
    const exported = mod.exports && typeof mod.exports === 'object' ? mod.exports : {};
    info = {
      exports: Object.keys(exported).filter((k) => typeof exported[k] === 'function'),
      parameters: [],
    };
  } catch (e) {
    const prefix = e instanceof SyntaxError ? 'syntax error: ' : 'the script does not load: ';
    return send({ t: 'introspection', id: request.id, ok: false, error: prefix + describe(e) });
  }
  send({ t: 'introspection', id: request.id, ok: true, info });
}

process.on('unhandledRejection', (reason) => {
  if (settle) settle({ ok: false, error: 'unhandled promise rejection: ' + describe(reason) });
  else log('ERROR', 'unhandled promise rejection: ' + describe(reason));
});
process.on('uncaughtException', (e) => {
  if (settle) settle({ ok: false, error: 'uncaught exception: ' + describe(e), traceback: e && userStack(e.stack) });
  else log('ERROR', 'uncaught exception: ' + describe(e));
});

send({ t: 'ready', v: PROTOCOL, runtime: 'node', version: process.version });

// Requests are served strictly one after another.
const requests = new net.Socket({ fd: 3, readable: true, writable: false });
const rl = readline.createInterface({ input: requests, crlfDelay: Infinity });
let queue = Promise.resolve();
rl.on('line', (line) => {
  if (!line.trim()) return;
  queue = queue.then(async () => {
    let request;
    try {
      request = JSON.parse(line);
    } catch (e) {
      return log('ERROR', 'bad request line: ' + e.message);
    }
    if (request.op === 'shutdown') process.exit(0);
    current = request.id;
    try {
      if (request.op === 'exec') await serve(request);
      else if (request.op === 'introspect') introspect(request);
      else send({ t: 'result', id: request.id, ok: false, error: `unknown op '${request.op}'` });
    } finally {
      current = null;
    }
  });
});
rl.on('close', () => process.exit(0));
