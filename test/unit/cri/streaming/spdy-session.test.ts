import assert from "node:assert/strict";
import net from "node:net";
import { once } from "node:events";
import { silentLogger } from "../../../../src/common/log.js";
import { FrameParser, SettingId, encodeFrame, type Frame } from "../../../../src/cri/streaming/spdy-frames.js";
import { HeaderCompressor, HeaderDecompressor, headerMap } from "../../../../src/cri/streaming/spdy-headers.js";
import { SpdySession } from "../../../../src/cri/streaming/spdy-session.js";
import type { SpdyStream } from "../../../../src/cri/streaming/spdy-stream.js";

/** A connected pair of loopback sockets. */
async function socketPair(): Promise<[net.Socket, net.Socket, () => Promise<void>]> {
  const server = net.createServer({ allowHalfOpen: true });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
  const accepted = once(server, "connection") as Promise<[net.Socket]>;
  const client = net.connect({ port: (server.address() as net.AddressInfo).port, host: "127.0.0.1", allowHalfOpen: true });
  const [serverSide] = await accepted;
  await once(client, "connect").catch(() => undefined);
  return [serverSide, client, () => new Promise<void>((r) => server.close(() => r()))];
}

/** Reads a stream to its end without destroying it (unlike an async iteration). */
function readAll(stream: SpdyStream): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    stream.on("data", (c: Buffer) => parts.push(c));
    stream.resume();
    stream.once("end", () => resolve(Buffer.concat(parts)));
    stream.once("error", reject);
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function waitFor(cond: () => boolean, what: string, ms = 3000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) assert.fail(`timed out waiting for ${what}`);
    await sleep(5);
  }
}

describe("SPDY session", () => {
  const cleanup: (() => unknown)[] = [];
  afterEach(async () => {
    for (const undo of cleanup.splice(0).reverse()) await undo();
  });

  async function sessions(flowControl: boolean): Promise<{ server: SpdySession; client: SpdySession; accepted: SpdyStream[] }> {
    const [a, b, closeServer] = await socketPair();
    const server = new SpdySession(a, { role: "server", logger: silentLogger });
    const client = new SpdySession(b, { role: "client", logger: silentLogger });
    if (flowControl) client.settings([{ id: SettingId.InitialWindowSize, value: 64 * 1024 }]);
    const accepted: SpdyStream[] = [];
    server.on("stream", (s) => accepted.push(s));
    cleanup.push(async () => {
      server.destroy();
      client.destroy();
      await Promise.all([server.closed, client.closed]);
      await closeServer();
    });
    return { server, client, accepted };
  }

  it("opens streams with headers, carries data both ways and half-closes each side", async () => {
    const { client, accepted } = await sessions(false);
    const stream = await client.openStream(headerMap({ streamtype: "stdin", port: "80" }));
    assert.equal(accepted.length, 1);
    const peer = accepted[0]!;
    assert.equal(peer.header("streamtype"), "stdin");
    assert.equal(peer.header("port"), "80");
    stream.end("ping");
    assert.equal((await readAll(peer)).toString(), "ping");
    peer.end("pong");
    assert.equal((await readAll(stream)).toString(), "pong");
    await waitFor(() => client.streamCount === 0, "the stream to be forgotten");
  });

  it("enforces the peer's window once it announced one, and resumes as the peer reads", async () => {
    const { client, accepted } = await sessions(true);
    const stream = await client.openStream(headerMap({ streamtype: "stdout" }));
    const peer = accepted[0]!;
    stream.pause();
    let written = false;
    const payload = Buffer.alloc(200 * 1024, 7);
    peer.write(payload, () => (written = true));
    peer.end();
    // The unread stream holds exactly one window of data; the rest waits on the server.
    await waitFor(() => stream.readableLength === 64 * 1024, "one window of data");
    await sleep(100);
    assert.equal(stream.readableLength, 64 * 1024);
    assert.equal(written, false);
    assert.deepEqual(await readAll(stream), payload);
    assert.equal(written, true);
  });

  it("does not wait for WINDOW_UPDATE from a peer that never announced flow control", async () => {
    const { client, accepted } = await sessions(false);
    const stream = await client.openStream(headerMap({ streamtype: "stdout" }));
    const peer = accepted[0]!;
    stream.pause();
    const payload = Buffer.alloc(200 * 1024, 1);
    // Kubernetes' clients never send WINDOW_UPDATE; the write must complete anyway.
    await new Promise<void>((resolve, reject) => peer.write(payload, (err) => (err ? reject(err) : resolve())));
    await waitFor(() => stream.readableLength > 64 * 1024, "more than a window buffered by the unread client");
  });

  it("gives window back only as the reader consumes, and stops reading the socket while a stream is full", async () => {
    const [a, raw, closeServer] = await socketPair();
    const server = new SpdySession(a, { role: "server", logger: silentLogger });
    const accepted: SpdyStream[] = [];
    server.on("stream", (s) => accepted.push(s));
    const compressor = new HeaderCompressor();
    const decompressor = new HeaderDecompressor();
    cleanup.push(async () => {
      raw.destroy();
      server.destroy();
      await server.closed;
      compressor.close();
      decompressor.close();
      await closeServer();
    });
    const parser = new FrameParser();
    const seen: Frame[] = [];
    raw.on("data", (c: Buffer) => {
      parser.push(c);
      for (let f = parser.next(); f; f = parser.next()) seen.push(f);
    });
    const block = await compressor.compress(headerMap({ streamtype: "stdin" }));
    raw.write(encodeFrame({ kind: "syn_stream", streamId: 1, associatedId: 0, priority: 0, slot: 0, flags: 0, headerBlock: block }));
    await waitFor(() => seen.some((f) => f.kind === "syn_reply" && f.streamId === 1), "SYN_REPLY");
    const reply = seen.find((f) => f.kind === "syn_reply")!;
    assert.equal(reply.kind === "syn_reply" && (await decompressor.decompress(reply.headerBlock)).size, 0);
    const stdin = accepted[0]!;
    stdin.pause();
    // A peer ignoring windows sends 256 KiB; the server holds about one window and leaves the rest in the socket.
    for (let i = 0; i < 16; i++) raw.write(encodeFrame({ kind: "data", streamId: 1, flags: 0, data: Buffer.alloc(16 * 1024, i) }));
    await waitFor(() => stdin.readableLength >= 64 * 1024, "a full window buffered");
    await sleep(100);
    assert.ok(stdin.readableLength <= 80 * 1024, `server buffered ${stdin.readableLength} bytes, expected about one window`);
    const updates = () => seen.filter((f): f is Extract<Frame, { kind: "window_update" }> => f.kind === "window_update");
    assert.equal(updates().filter((u) => u.streamId === 1).length, 0, "no WINDOW_UPDATE before anything was read");
    // Reading 40 KiB gives at least that much window back, for the stream and the session.
    let read = 0;
    while (read < 40 * 1024) {
      const chunk = stdin.read() as Buffer | null;
      if (chunk) read += chunk.length;
      else await sleep(5);
    }
    await waitFor(() => updates().some((u) => u.streamId === 1), "a stream WINDOW_UPDATE");
    const streamDelta = updates().filter((u) => u.streamId === 1).reduce((n, u) => n + u.delta, 0);
    assert.ok(streamDelta >= 32 * 1024 && streamDelta <= read + 64 * 1024, `stream window given back: ${streamDelta}`);
    await waitFor(() => updates().some((u) => u.streamId === 0), "a session WINDOW_UPDATE");
    // Everything arrives once the reader keeps reading.
    raw.write(encodeFrame({ kind: "data", streamId: 1, flags: 1, data: Buffer.alloc(0) }));
    let rest = 0;
    stdin.on("data", (c: Buffer) => (rest += c.length));
    stdin.resume();
    await once(stdin, "end");
    assert.equal(read + rest, 256 * 1024);
  });

  it("answers the peer's pings and resets streams with unknown ids", async () => {
    const [a, raw, closeServer] = await socketPair();
    const server = new SpdySession(a, { role: "server", logger: silentLogger });
    cleanup.push(async () => {
      raw.destroy();
      server.destroy();
      await server.closed;
      await closeServer();
    });
    const parser = new FrameParser();
    const seen: Frame[] = [];
    raw.on("data", (c: Buffer) => {
      parser.push(c);
      for (let f = parser.next(); f; f = parser.next()) seen.push(f);
    });
    raw.write(encodeFrame({ kind: "ping", id: 1 }));
    raw.write(encodeFrame({ kind: "ping", id: 2 }));
    raw.write(encodeFrame({ kind: "data", streamId: 9, flags: 0, data: Buffer.from("x") }));
    await waitFor(() => seen.length >= 2, "answers");
    await sleep(50);
    assert.deepEqual(seen, [
      { kind: "ping", id: 1 },
      { kind: "rst_stream", streamId: 9, status: 2 },
    ]);
  });

  it("closes with GOAWAY, and the peer's streams end", async () => {
    const { server, client } = await sessions(false);
    const stream = await client.openStream(headerMap({ streamtype: "error" }));
    stream.resume();
    const closed = new Promise((r) => stream.once("close", r));
    server.close();
    await Promise.all([client.closed, server.closed, closed]);
    assert.equal(client.streamCount, 0);
  });
});
