/**
 * A connection to a port on a runc pod's loopback: the pod has its own
 * network namespace, which a daemon thread cannot enter for one socket, so
 * a helper does: `nsenter --net=<pod netns> busybox nc 127.0.0.1 PORT`,
 * its stdin and stdout being the two directions of the connection. A
 * refused connection shows as the helper exiting with an error before any
 * data, and becomes the stream's error.
 */
import { spawn } from "node:child_process";
import { Duplex } from "node:stream";
import { VmpodError } from "../../common/errors.js";

export interface PortHelper {
  readonly nsenter: string;
  readonly busybox: string;
}

export function openPodPort(netns: string, port: number, helper: PortHelper): Promise<Duplex> {
  if (!Number.isInteger(port) || port < 1 || port > 65535) return Promise.reject(new VmpodError("InvalidArgument", `port ${port} is not a TCP port`));
  const child = spawn(helper.nsenter, [`--net=${netns}`, "--", helper.busybox, "nc", "127.0.0.1", String(port)], { stdio: ["pipe", "pipe", "pipe"] });
  return new Promise<Duplex>((resolve, reject) => {
    const errText: Buffer[] = [];
    child.stderr.on("data", (b: Buffer) => errText.push(b));
    child.stdin.on("error", () => undefined);
    child.on("error", (err) => reject(new VmpodError("FailedPrecondition", `connect to port ${port} in the pod`, { cause: err })));
    child.once("spawn", () => {
      const duplex = Duplex.from({ readable: child.stdout, writable: child.stdin });
      child.on("close", (code) => {
        if (code !== 0 && code !== null) {
          const why = Buffer.concat(errText).toString().trim();
          duplex.destroy(new VmpodError("Unavailable", `port ${port} in the pod: ${why || `exit ${code}`}`));
        }
      });
      duplex.on("close", () => {
        if (child.exitCode === null) child.kill();
      });
      resolve(duplex);
    });
  });
}
