#!/usr/bin/env node
/**
 * The installer's command line, what the DaemonSet runs
 * (deploy/installer/daemonset.yaml), and what an operator runs on a node:
 *
 *   node dist/src/installer/main.js install   [options]
 *   node dist/src/installer/main.js uninstall [options]
 *
 *   --host-root DIR      the node's filesystem (default /; /host in the DaemonSet)
 *   --node-name NAME     this node (the DaemonSet passes the downward API's NODE_NAME)
 *   --kubeconfig FILE    the cluster from a kubeconfig (default: the pod's service account)
 *   --no-kube            no cluster: no RuntimeClasses, no label (a node by hand)
 *   --source DIR         vmpod's package to install (default: the one this program is part of)
 *   --guest-dir DIR      the guest assets (default SOURCE/guest/out/current)
 *   --node-binary FILE   the node the daemon runs with (default: this one)
 *   --restart-kubelet    restart kubelet when its drop-in changes (install or uninstall)
 *   --ready-timeout SEC  how long vmpod may take to become ready (default 120)
 *   --stay               install, then stay: label the node once kubelet uses vmpod,
 *                        and on SIGTERM uninstall (unless kubelet uses vmpod)
 *   --force              uninstall even though kubelet uses vmpod
 *   --purge              uninstall also removes /var/lib/vmpod and /run/vmpod (no pods left)
 *
 * Arguments only: the DaemonSet hands the node's name over as
 * `--node-name=$(NODE_NAME)`, which Kubernetes expands from the container's env.
 */
import { dirname, join, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { parseArgs } from "node:util";
import { VmpodError, invalidArgument, messageOf } from "../common/errors.js";
import { findRepoRoot } from "../common/fs.js";
import { createLogger } from "../common/log.js";
import { NodeSystemctl } from "./host-commands.js";
import { install, runUntilTerminated, uninstall, type InstallerDeps } from "./installer.js";
import { ClientNodeKubeApi, kubeConfigFrom } from "./kube-client.js";
import { HostRoot } from "./layout.js";

const USAGE = "usage: main.js install|uninstall [--host-root DIR] [--node-name NAME | --no-kube] [--kubeconfig FILE] [--source DIR] [--guest-dir DIR] [--node-binary FILE] [--restart-kubelet] [--ready-timeout SEC] [--stay] [--force] [--purge]";

async function main(): Promise<number> {
  const { positionals, values } = parseArgs({
    allowPositionals: true,
    options: {
      "host-root": { type: "string", default: "/" },
      "node-name": { type: "string" },
      kubeconfig: { type: "string" },
      "no-kube": { type: "boolean", default: false },
      source: { type: "string" },
      "guest-dir": { type: "string" },
      "node-binary": { type: "string", default: process.execPath },
      "restart-kubelet": { type: "boolean", default: false },
      "ready-timeout": { type: "string", default: "120" },
      stay: { type: "boolean", default: false },
      force: { type: "boolean", default: false },
      purge: { type: "boolean", default: false },
      debug: { type: "boolean", default: false },
    },
  });
  const command = positionals[0];
  if (command !== "install" && command !== "uninstall") {
    process.stderr.write(`${USAGE}\n`);
    return 2;
  }
  const logger = createLogger({ level: values.debug ? "debug" : "info", fields: { component: "installer" } });
  const readyTimeoutMs = Number(values["ready-timeout"]) * 1000;
  if (!Number.isFinite(readyTimeoutMs) || readyTimeoutMs <= 0) throw invalidArgument(`--ready-timeout ${values["ready-timeout"]} is not a positive number of seconds`);
  const packageDir = resolve(values.source ?? (await findRepoRoot(dirname(fileURLToPath(import.meta.url)))));
  const source = { packageDir, guestDir: resolve(values["guest-dir"] ?? join(packageDir, "guest/out/current")), nodeBinary: resolve(values["node-binary"]) };
  const host = new HostRoot(resolve(values["host-root"]));

  const terminated = new AbortController();
  for (const sig of ["SIGINT", "SIGTERM"] as const) process.once(sig, () => terminated.abort(new VmpodError("Canceled", `${sig} received`)));

  const deps: InstallerDeps = {
    host,
    commands: new NodeSystemctl({ inHostNamespace: host.isSlash }),
    ...clusterOf(values["no-kube"], values["node-name"], values.kubeconfig),
    logger,
  };
  if (command === "uninstall") {
    await uninstall(deps, { source, force: values.force, purge: values.purge, restartKubelet: values["restart-kubelet"] });
    return 0;
  }
  if (values.stay) {
    await runUntilTerminated(deps, { source, restartKubelet: values["restart-kubelet"], readyTimeoutMs }, terminated.signal);
    return 0;
  }
  const outcome = await install(deps, { source, restartKubelet: values["restart-kubelet"], readyTimeoutMs, signal: terminated.signal });
  logger.info("vmpod installed", { upgraded: outcome.host.payloadChanged, runtimeClassesCreated: outcome.createdRuntimeClasses, labelled: outcome.labelled });
  return 0;
}

function clusterOf(noKube: boolean, nodeName: string | undefined, kubeconfig: string | undefined): Pick<InstallerDeps, "cluster"> {
  if (noKube) return {};
  if (nodeName === undefined || nodeName === "") throw invalidArgument("--node-name is needed to label the node (or --no-kube to leave the cluster alone)");
  const api = new ClientNodeKubeApi(kubeConfigFrom(kubeconfig === undefined ? { inCluster: true } : { kubeconfig }));
  return { cluster: { api, nodeName } };
}

main().then(
  (code) => process.exit(code),
  (err: unknown) => {
    process.stderr.write(`vmpod-installer: ${messageOf(err)}\n`);
    process.exit(1);
  },
);
