/**
 * The CRI server: both runtime.v1 services on a unix socket, each handler
 * behind the instrument wrapper. The socket's directory is made if
 * missing; a stale socket file (nobody listening) is removed, a live one or
 * a file that is not a socket is refused. The socket is mode 0660. Closing
 * lets calls finish for a while, then cuts them, and removes the socket
 * file only if it is still the one this server made.
 */
import { chmod, lstat, mkdir, stat, unlink } from "node:fs/promises";
import { connect } from "node:net";
import { dirname } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { VmpodError } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { ImageService, RuntimeService } from "../gen/cri/api_pb.js";
import type { Runtime } from "../sandbox/runtime.js";
import type { CriImages } from "./deps.js";
import { serviceDefinition, serviceImplementation } from "./grpc.js";
import { imageServiceHandlers } from "./image-service.js";
import { instrument, type CallObserver } from "./instrument.js";
import { runtimeServiceHandlers } from "./runtime-service.js";
import type { StreamingUrls } from "./streaming/types.js";
import { CpuRates } from "./translate-stats.js";

/** kubelet's own limit for CRI messages. */
const MAX_MESSAGE_BYTES = 16 * 1024 * 1024;

export interface CriServerOptions {
  /** The unix socket to listen on ("/run/vmpod/vmpod.sock"). */
  readonly socketPath: string;
  readonly runtime: Runtime;
  readonly images: CriImages;
  readonly streaming: StreamingUrls;
  /** vmpod's version, as Version reports it. */
  readonly version: string;
  readonly logger: Logger;
  /** Whether the runtime is ready; until it is, calls other than Version, Status and RuntimeConfig fail with UNAVAILABLE. Ready when omitted. */
  readonly ready?: () => boolean;
  /** How long close() lets calls finish before cutting them; 5 s when omitted. */
  readonly closeGraceMs?: number;
  /** Told of every call as it ends (the daemon's metrics). */
  readonly observer?: CallObserver;
}

export interface CriServer {
  readonly socketPath: string;
  start(): Promise<void>;
  /** Idempotent. */
  close(): Promise<void>;
}

/** Removes `path` if it is a socket nobody listens on; refuses a live socket or any other file. */
async function clearStaleSocket(path: string): Promise<void> {
  const info = await lstat(path).catch((err: NodeJS.ErrnoException) => {
    if (err.code === "ENOENT") return undefined;
    throw err;
  });
  if (info === undefined) return;
  if (!info.isSocket()) throw new VmpodError("FailedPrecondition", `${path} exists and is not a socket`);
  const live = await new Promise<boolean>((resolve) => {
    const socket = connect(path);
    socket.once("connect", () => {
      socket.destroy();
      resolve(true);
    });
    socket.once("error", () => resolve(false));
  });
  if (live) throw new VmpodError("AlreadyExists", `another server listens on ${path}`);
  await unlink(path);
}

export function createCriServer(options: CriServerOptions): CriServer {
  const logger = options.logger;
  const deps = { runtime: options.runtime, images: options.images, streaming: options.streaming, version: options.version, logger, rates: new CpuRates() };
  const instrumentOptions = { logger, ready: options.ready ?? (() => true), ...(options.observer ? { observer: options.observer } : {}) };
  const server = new grpc.Server({ "grpc.max_receive_message_length": MAX_MESSAGE_BYTES, "grpc.max_send_message_length": MAX_MESSAGE_BYTES });
  server.addService(serviceDefinition(RuntimeService), serviceImplementation(RuntimeService, instrument(RuntimeService, runtimeServiceHandlers(deps), instrumentOptions)));
  server.addService(serviceDefinition(ImageService), serviceImplementation(ImageService, instrument(ImageService, imageServiceHandlers(deps), instrumentOptions)));

  let socketIno: number | undefined;
  let closing: Promise<void> | undefined;

  async function start(): Promise<void> {
    await mkdir(dirname(options.socketPath), { recursive: true, mode: 0o755 });
    await clearStaleSocket(options.socketPath);
    await new Promise<void>((resolve, reject) => {
      server.bindAsync(`unix:${options.socketPath}`, grpc.ServerCredentials.createInsecure(), (err) => (err ? reject(new VmpodError("Unavailable", `listen on ${options.socketPath}`, { cause: err })) : resolve()));
    });
    await chmod(options.socketPath, 0o660);
    socketIno = (await stat(options.socketPath)).ino;
    logger.info("cri server listening", { socket: options.socketPath });
  }

  async function shutdown(): Promise<void> {
    const grace = options.closeGraceMs ?? 5000;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        logger.warn("cri server: calls still running after the grace period, cutting them", { graceMs: grace });
        server.forceShutdown();
        resolve();
      }, grace);
      server.tryShutdown(() => {
        clearTimeout(timer);
        resolve();
      });
    });
    if (socketIno !== undefined) {
      const now = await lstat(options.socketPath).catch(() => undefined);
      if (now !== undefined && now.isSocket() && now.ino === socketIno) await unlink(options.socketPath).catch(() => {});
    }
    logger.info("cri server closed", { socket: options.socketPath });
  }

  return {
    socketPath: options.socketPath,
    start,
    close: () => (closing ??= shutdown()),
  };
}
