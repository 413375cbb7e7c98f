/**
 * Free loopback ports for the test registry and its helpers: a port the
 * kernel handed out for a moment. Another process may take it before the
 * caller binds it, so callers retry on a collision.
 */
import type { Server as HttpServer } from "node:http";
import { createServer, type Server } from "node:net";

export async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  await closeServer(server);
  if (address === null || typeof address === "string") throw new Error("loopback listener has no port");
  return address.port;
}

/** Listens on a kernel-chosen loopback port; returns "127.0.0.1:PORT". */
export async function listenLoopback(server: Server | HttpServer): Promise<string> {
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(0, "127.0.0.1", () => resolve());
  });
  const address = server.address();
  if (address === null || typeof address === "string") throw new Error("loopback listener has no port");
  return `127.0.0.1:${address.port}`;
}

/** Closes a server, dropping its open connections (keep-alive clients hold them otherwise). */
export async function closeServer(server: Server | HttpServer): Promise<void> {
  if ("closeAllConnections" in server) server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}
