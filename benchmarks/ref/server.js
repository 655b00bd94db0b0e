// benchmarks/fanout.py's node reference: what its `websockets.broadcast` reference server does,
// on node's `ws`. It sends `hello` on connect; `identify` is answered with a fixed community
// with one channel; `subscribe` adds the connection to a set; `message.send` builds an event of
// Agora's shape (same keys, ids of the same size), encodes it once with msgpack, sends that one
// buffer to every subscribed connection, then replies. Any other command gets an empty reply.
// No auth, no validation, no storage, no per-connection queue. GET /healthz answers "ok".
//
// Usage: node server.js --port P   (after `npm ci` in this directory; fanout.py does both)
"use strict";

const http = require("node:http");
const { WebSocketServer } = require("ws");
const { encode, decode } = require("@msgpack/msgpack");

const HOST = "127.0.0.1";
const LIFETIME_MS = 900_000; // as fanout.py's LIFETIME: never outlive the benchmark
const port = Number(process.argv[process.argv.indexOf("--port") + 1]);
if (!Number.isInteger(port) || port <= 0) {
  console.error("usage: node server.js --port P");
  process.exit(2);
}

const channel = "reference-general";
const general = { id: channel, name: "general", kind: "text" };
const community = { id: "1", name: "Reference", role: "member", channels: [general] };
const author = { id: "7000000000000000000", name: "bench" };
const hello = encode({ op: "hello", d: { heartbeat_ms: 30_000, protocol: 1, server: "ref-node" } });
const subscribers = new Set();
let offset = 0;

function answer(ws, op, d) {
  if (op === "message.send") {
    offset += 1;
    const message = {
      id: (7n * 10n ** 18n + BigInt(offset)).toString(),
      channel,
      author,
      text: d.text,
      ts: Date.now(),
    };
    const frame = encode({ op: "event", t: "message.created", ch: channel, o: offset, d: { message } });
    for (const subscriber of subscribers) subscriber.send(frame);
    return { message };
  }
  if (op === "identify") return { user: { id: "1", name: "bench" }, communities: [community] };
  if (op === "subscribe") {
    subscribers.add(ws);
    return { offset, epoch: "reference", recovered: false };
  }
  return {};
}

const server = http.createServer((request, response) => {
  const ok = request.url === "/healthz";
  response.writeHead(ok ? 200 : 404, { "content-type": "text/plain" });
  response.end(ok ? "ok\n" : "not found\n");
});

// As Agora and the Python reference: no permessage-deflate, no pings, 64 KiB frames at most.
const wss = new WebSocketServer({ server, perMessageDeflate: false, maxPayload: 64 * 1024 });
wss.on("connection", (ws) => {
  ws.send(hello);
  ws.on("message", (data) => {
    let frame;
    try {
      frame = decode(data);
    } catch {
      ws.close(1007, "not msgpack");
      return;
    }
    const d = answer(ws, frame.op, frame.d || {});
    ws.send(encode({ op: "reply", id: frame.id, d }));
  });
  ws.on("close", () => subscribers.delete(ws));
  ws.on("error", () => subscribers.delete(ws));
});

server.listen({ host: HOST, port, backlog: 2048 });
const stop = () => process.exit(0);
process.on("SIGTERM", stop);
process.on("SIGINT", stop);
setTimeout(stop, LIFETIME_MS).unref();
