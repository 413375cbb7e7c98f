/**
 * vmpod's agent: runs inside every pod VM, serves the host over ttRPC and
 * runs the pod's containers with crun. Started by the guest's init; when it
 * exits the VM stops, so it survives any single failure: unexpected errors
 * are logged, never fatal.
 *
 *   node agent.js [--listen unix:PATH|serial:NAME] [--state-dir DIR] [--crun PATH] [--cgroup-root DIR] ...
 */
import { existsSync } from "node:fs";
import { mkdir } from "node:fs/promises";
import { messageOf } from "../../src/common/errors.js";
import { createLogger } from "../../src/common/log.js";
import { TtrpcServer } from "../../src/agent/ttrpc/server.js";
import { Agent } from "./agent.js";
import { parseOptions, USAGE } from "./options.js";
import { CommandRunner } from "./run.js";
import { registerAgentServices } from "./services.js";
import type { Transport } from "./transport.js";
import type { Logger } from "../../src/common/log.js";
import type { AgentOptions } from "./options.js";

// A virtio-serial port keeps one thread-pool thread in a blocking read and
// may keep another in a write; leave room for the file system work.
process.env["UV_THREADPOOL_SIZE"] ??= "8";

async function main(): Promise<void> {
  let options;
  try {
    options = parseOptions(process.argv.slice(2), existsSync("/usr/bin/crun") ? "/usr/bin/crun" : "crun");
  } catch (err) {
    process.stderr.write(`${messageOf(err)}\n${USAGE}\n`);
    process.exit(2);
  }
  const log = createLogger({ level: options.logLevel, fields: { component: "agent" } });
  process.on("unhandledRejection", (err) => log.error("unhandled rejection", { err, stack: err instanceof Error ? err.stack : undefined }));
  process.on("uncaughtException", (err) => log.error("uncaught exception", { err, stack: err.stack }));

  await mkdir(options.stateDir, { recursive: true, mode: 0o700 });
  const agent = new Agent(options, log, new CommandRunner());
  const server = new TtrpcServer({ onError: (method, err) => log.error("handler failed", { method, err }) });
  registerAgentServices(server, agent);

  // While the channel's driver loads: once the host is answered, a VM saved as a template has this done.
  const warmStart = performance.now();
  const warmed = agent.warmUp().then(
    () => log.info("agent warmed up", { ms: Math.round(performance.now() - warmStart) }),
    (err: unknown) => log.warn("agent warm-up failed; the first sandbox sets up again", { err }),
  );
  const transport = await openTransport(options, log);
  await warmed;
  await transport.start((stream) => {
    stream.on("error", (err) => log.debug("channel error", { err }));
    void server.serve(stream);
  });
  log.info("agent listening", { listen: transport.description, pid: process.pid });

  let stopping = false;
  const stop = (signal: string) => {
    if (stopping) return;
    stopping = true;
    log.info("agent stopping", { signal });
    agent.close();
    transport.close().finally(() => process.exit(0));
  };
  process.on("SIGTERM", () => stop("SIGTERM"));
  process.on("SIGINT", () => stop("SIGINT"));
}

/** The transport `--listen` names; each is loaded only when chosen. */
async function openTransport(options: AgentOptions, log: Logger): Promise<Transport> {
  const listen = options.listen;
  if (listen.kind === "unix") {
    const { UnixTransport } = await import("./transport-unix.js");
    return new UnixTransport(listen.path, log);
  }
  const { openSerialTransport } = await import("./transport-serial.js");
  return openSerialTransport({ name: listen.name, portsDir: options.virtioPortsDir, devDir: options.devDir }, log);
}

main().catch((err: unknown) => {
  process.stderr.write(`${JSON.stringify({ time: new Date().toISOString(), level: "error", msg: "agent failed to start", err: messageOf(err) })}\n`);
  process.exit(1);
});
