import assert from "node:assert/strict";
import { PassThrough } from "node:stream";
import { VmpodError } from "../../../src/common/errors.js";
import { StreamBuffer } from "../../../guest/agent/stdio/stream-buffer.js";

const tick = () => new Promise((r) => setImmediate(r));

async function isPending(p: Promise<unknown>): Promise<boolean> {
  const marker = Symbol();
  return (await Promise.race([p, tick().then(() => marker)])) === marker;
}

describe("guest agent: stream buffer", () => {
  it("answers a read at once with what is buffered, up to the length asked", async () => {
    const source = new PassThrough();
    const buffer = new StreamBuffer(source);
    source.write("hello ");
    source.write("world");
    await tick();
    assert.equal((await buffer.read(3)).toString(), "hel");
    assert.equal((await buffer.read(100)).toString(), "lo world");
  });

  it("keeps a read waiting until bytes come, then returns them", async () => {
    const source = new PassThrough();
    const buffer = new StreamBuffer(source);
    const pending = buffer.read(10);
    assert.ok(await isPending(pending));
    source.write("late");
    assert.equal((await pending).toString(), "late");
  });

  it("returns what is left, then empty data at the end of the stream, and keeps doing so", async () => {
    const source = new PassThrough();
    const buffer = new StreamBuffer(source);
    const waiting = buffer.read(10);
    source.end("tail");
    assert.equal((await waiting).toString(), "tail");
    await tick();
    assert.equal(buffer.ended, true);
    assert.equal((await buffer.read(10)).length, 0);
    assert.equal((await buffer.read(10)).length, 0);
  });

  it("ends a stream whose source fails (a pty master reads EIO when the slave is gone)", async () => {
    const source = new PassThrough();
    const buffer = new StreamBuffer(source);
    const pending = buffer.read(10);
    source.destroy(Object.assign(new Error("read EIO"), { code: "EIO" }));
    assert.equal((await pending).length, 0);
  });

  it("serves concurrent reads in order", async () => {
    const source = new PassThrough();
    const buffer = new StreamBuffer(source);
    const a = buffer.read(2);
    const b = buffer.read(2);
    source.write("abcd");
    assert.deepEqual([(await a).toString(), (await b).toString()], ["ab", "cd"]);
  });

  it("takes nothing for a read whose caller went away", async () => {
    const source = new PassThrough();
    const buffer = new StreamBuffer(source);
    const controller = new AbortController();
    const abandoned = buffer.read(10, controller.signal);
    controller.abort();
    await assert.rejects(abandoned, (err: unknown) => err instanceof VmpodError && err.kind === "Canceled");
    source.write("kept");
    await tick();
    assert.equal((await buffer.read(10)).toString(), "kept");
  });

  it("stops taking from the source when full, so the writer blocks, and resumes as the host reads; nothing is dropped", async () => {
    const source = new PassThrough({ highWaterMark: 16 });
    const buffer = new StreamBuffer(source, 64);
    const chunk = Buffer.alloc(16, 1);
    let accepted = 0;
    // Write until the source itself pushes back: the buffer has stopped taking.
    for (let i = 0; i < 100 && source.write(chunk); i++) {
      accepted++;
      await tick();
    }
    await tick();
    assert.ok(buffer.isFull, "the buffer holds the source back");
    assert.ok(buffer.length >= 64 && buffer.length <= 64 + 16, `bounded: ${buffer.length}`);
    assert.ok(source.writableNeedDrain, "the writer sees back-pressure");
    await buffer.settled(); // a full buffer counts as settled: the host must read first
    let total = 0;
    const drained = new Promise((r) => source.once("drain", r));
    total += (await buffer.read(1000)).length;
    await drained;
    assert.equal(buffer.isFull, false);
    source.end();
    for (;;) {
      const data = await buffer.read(1000);
      if (data.length === 0) break;
      total += data.length;
    }
    assert.equal(total, (accepted + 1) * 16);
  });

  it("settles once the source has ended", async () => {
    const source = new PassThrough();
    const buffer = new StreamBuffer(source);
    const settled = buffer.settled();
    assert.ok(await isPending(settled));
    source.end();
    await settled;
  });

  it("closes: pending reads see the end, buffered bytes are dropped, the source is destroyed", async () => {
    const source = new PassThrough();
    const buffer = new StreamBuffer(source);
    source.write("x");
    await tick();
    buffer.close();
    assert.equal(source.destroyed, true);
    assert.equal((await buffer.read(10)).length, 0);
    assert.equal(StreamBuffer.ended().ended, true);
    assert.throws(() => buffer.read(0), (err: unknown) => err instanceof VmpodError && err.kind === "InvalidArgument");
  });
});
