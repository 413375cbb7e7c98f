/**
 * Just enough of a CRI RuntimeService over gRPC for crictl to reach the
 * streaming server: Version, Exec, Attach and PortForward answer from the
 * StreamingUrls given; protobuf is encoded by hand for these few messages
 * (field numbers of runtime.v1). Tests only: the real CRI server lives in
 * src/cri/.
 */
import * as grpc from "@grpc/grpc-js";
import type { StreamingUrls } from "../../../src/cri/streaming/types.js";

type Fields = Map<number, (Buffer | number)[]>;

function readVarint(buf: Buffer, at: number): [number, number] {
  let value = 0;
  let shift = 0;
  for (;;) {
    const byte = buf[at++]!;
    value += (byte & 0x7f) * 2 ** shift;
    if ((byte & 0x80) === 0) return [value, at];
    shift += 7;
  }
}

function decode(buf: Buffer): Fields {
  const fields: Fields = new Map();
  let at = 0;
  while (at < buf.length) {
    const [key, next] = readVarint(buf, at);
    at = next;
    const field = Math.floor(key / 8);
    const wire = key & 7;
    const list = fields.get(field) ?? [];
    fields.set(field, list);
    if (wire === 0) {
      const [v, n] = readVarint(buf, at);
      list.push(v);
      at = n;
    } else if (wire === 2) {
      const [len, n] = readVarint(buf, at);
      list.push(buf.subarray(n, n + len));
      at = n + len;
    } else throw new Error(`unexpected wire type ${wire}`);
  }
  return fields;
}

function varint(n: number): Buffer {
  const out: number[] = [];
  do {
    let byte = n & 0x7f;
    n = Math.floor(n / 128);
    if (n > 0) byte |= 0x80;
    out.push(byte);
  } while (n > 0);
  return Buffer.from(out);
}

function stringField(field: number, value: string): Buffer {
  const bytes = Buffer.from(value, "utf8");
  return Buffer.concat([varint(field * 8 + 2), varint(bytes.length), bytes]);
}

const str = (f: Fields, n: number) => (f.get(n)?.[0] as Buffer | undefined)?.toString("utf8") ?? "";
const bool = (f: Fields, n: number) => f.get(n)?.[0] === 1;
function ints(f: Fields, n: number): number[] {
  const out: number[] = [];
  for (const v of f.get(n) ?? []) {
    if (typeof v === "number") out.push(v);
    else for (let at = 0; at < v.length; ) [out[out.length], at] = readVarint(v, at);
  }
  return out;
}

function method(name: string): grpc.MethodDefinition<Fields, Buffer> {
  return {
    path: `/runtime.v1.RuntimeService/${name}`,
    requestStream: false,
    responseStream: false,
    requestSerialize: () => Buffer.alloc(0),
    requestDeserialize: decode,
    responseSerialize: (b: Buffer) => b,
    responseDeserialize: (b: Buffer) => b,
  };
}

/** Starts the fake CRI server on a unix socket. */
export async function startFakeCri(socketPath: string, urls: StreamingUrls): Promise<{ close(): Promise<void> }> {
  const server = new grpc.Server();
  const unary = (handle: (f: Fields) => Buffer): grpc.handleUnaryCall<Fields, Buffer> => (call, callback) => {
    try {
      callback(null, handle(call.request));
    } catch (err) {
      callback({ code: grpc.status.INVALID_ARGUMENT, details: String(err) });
    }
  };
  server.addService(
    { Version: method("Version"), Exec: method("Exec"), Attach: method("Attach"), PortForward: method("PortForward") },
    {
      Version: unary(() => Buffer.concat([stringField(1, "0.1.0"), stringField(2, "vmpod-test"), stringField(3, "0.1.0"), stringField(4, "v1")])),
      Exec: unary((f) =>
        stringField(
          1,
          urls.execUrl({
            containerId: str(f, 1),
            command: (f.get(2) ?? []).map((b) => (b as Buffer).toString("utf8")),
            tty: bool(f, 3),
            stdin: bool(f, 4),
            stdout: bool(f, 5),
            stderr: bool(f, 6),
          }),
        ),
      ),
      Attach: unary((f) => stringField(1, urls.attachUrl({ containerId: str(f, 1), stdin: bool(f, 2), tty: bool(f, 3), stdout: bool(f, 4), stderr: bool(f, 5) }))),
      PortForward: unary((f) => stringField(1, urls.portForwardUrl({ podId: str(f, 1), ports: ints(f, 2) }))),
    },
  );
  await new Promise<void>((resolve, reject) =>
    server.bindAsync(`unix://${socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(err) : resolve())),
  );
  return {
    close: () => new Promise<void>((resolve) => server.tryShutdown(() => resolve())),
  };
}
