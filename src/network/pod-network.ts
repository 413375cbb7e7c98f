/**
 * A pod's network, as the sandbox layer asks for it: a named netns, the CNI
 * network added in it as `eth0`, and the VM's end (a tap joined to eth0 by
 * TC redirects, or a macvtap on eth0), described as the guest NIC, routes
 * and pod IPs. Set-up undoes its own steps when one fails; tear-down works
 * from the records on disk, so it finishes what a crash or restart left.
 */
import { isIP } from "node:net";
import { join } from "node:path";
import { VmpodError, kindOf, messageOf, wrap } from "../common/errors.js";
import type { Logger } from "../common/log.js";
import { Rollback } from "../common/rollback.js";
import type { NetworkConfig } from "../config/types.js";
import { createCni, type Cni } from "./cni.js";
import { processPluginExec, type PluginExec } from "./cni-exec.js";
import { cniPortMappings, formatCniArgs, kubernetesCniArgs, type CniRuntimeConf } from "./cni-request.js";
import { guestNic, guestRoutes, podDns, podIps } from "./guest-nic.js";
import { MACVTAP_NAME } from "./macvtap.js";
import { realNetworkHost, type NetworkHost } from "./network-host.js";
import { netnsName, netnsPath } from "./netns.js";
import { readRecord, recordedPods, removeRecord, writeRecord, type PodNetworkRecord } from "./pod-network-record.js";
import { TAP_NAME } from "./tap.js";
import type { PodNetwork, PodNetworkAttachment, PodNetworkRequest, PodNetworkStatus, PortMapping } from "./types.js";

/** The pod's CNI interface inside its netns. */
export const POD_IFNAME = "eth0";

/** What the pod network is built on; tests replace them with fakes. */
export interface PodNetworkDeps {
  readonly exec: PluginExec;
  readonly host: NetworkHost;
}

export function createPodNetwork(config: NetworkConfig, logger: Logger, deps: Partial<PodNetworkDeps> = {}): PodNetwork {
  const host = deps.host ?? realNetworkHost(join(config.cacheDir, "dev"));
  const cni = createCni({ ...config, exec: deps.exec ?? processPluginExec, logger });
  return new CniPodNetwork(config, logger, cni, host);
}

class CniPodNetwork implements PodNetwork {
  /** The operation under way per pod: set-up and tear-down of one pod never overlap. */
  private readonly busy = new Map<string, Promise<unknown>>();

  constructor(
    private readonly config: NetworkConfig,
    private readonly logger: Logger,
    private readonly cni: Cni,
    private readonly host: NetworkHost,
  ) {}

  async status(): Promise<PodNetworkStatus> {
    const s = await this.cni.status();
    if (s.ready) return { ready: true };
    return { ready: false, reason: "NetworkPluginNotReady", message: `CNI network not ready: ${s.message ?? "unknown"}` };
  }

  setUp(request: PodNetworkRequest): Promise<PodNetworkAttachment> {
    return this.serialize(request.podId, () => this.doSetUp(request));
  }

  async find(podId: string): Promise<Omit<PodNetworkAttachment, "tapFd"> | undefined> {
    const record = await readRecord(this.config.cacheDir, podId);
    if (record?.attachment === undefined) return undefined;
    if (!(await this.host.netnsExists(record.netnsName))) return undefined;
    return record.attachment;
  }

  list(): Promise<string[]> {
    return recordedPods(this.config.cacheDir);
  }

  tearDown(podId: string): Promise<void> {
    return this.serialize(podId, () => this.doTearDown(podId));
  }

  private async doSetUp(request: PodNetworkRequest): Promise<PodNetworkAttachment> {
    const ns = netnsName(request.podId);
    checkPortMappings(request.portMappings);
    const { signal } = request;
    if ((await readRecord(this.config.cacheDir, request.podId)) !== undefined) {
      throw new VmpodError("AlreadyExists", `the network of pod ${request.podId} is set up already (tear it down first)`);
    }
    const record: PodNetworkRecord = {
      podId: request.podId,
      netnsName: ns,
      model: this.config.interNetworkingModel,
      vmLink: request.vmLink ?? true,
      pod: { name: request.name, namespace: request.namespace, uid: request.uid },
      portMappings: request.portMappings,
    };
    const rt = runtimeConf(record.podId, record, netnsPath(ns));
    formatCniArgs(rt.args); // refuses names CNI_ARGS cannot carry before anything is made
    const log = this.logger.child({ pod: request.podId });
    const rb = new Rollback();
    try {
      await writeRecord(this.config.cacheDir, record);
      signal?.throwIfAborted();
      const path = await this.host.createNetns(ns);
      rb.push("netns", () => this.host.removeNetns(ns));
      // Pushed first: a chain that fails halfway leaves what the plugins before made.
      // ADD caches the attachment before its first plugin runs: no entry, nothing to undo.
      rb.push("CNI ADD", async () => {
        if (await this.cni.cached(rt.containerId, rt.ifName)) await this.cni.del(rt);
      });
      const result = await this.cni.add(rt, signal);
      const link = await this.host.readLink(ns, POD_IFNAME);
      if (link === undefined) throw new VmpodError("Internal", `the CNI network left no ${POD_IFNAME} in netns ${ns}`);
      signal?.throwIfAborted();
      const nic = guestNic(result, POD_IFNAME, path, link);
      let fd: number | undefined;
      if (record.vmLink === false) {
        // Containers in the netns itself: eth0 is theirs.
      } else if (record.model === "tcfilter") {
        fd = await this.host.openTap(ns, TAP_NAME, link.mtu);
        const tap = fd;
        rb.push("tap", () => this.host.closeFd(tap));
        rb.push("redirects", () => this.host.removeRedirect(ns, POD_IFNAME, TAP_NAME));
        await this.host.addRedirect(ns, POD_IFNAME, TAP_NAME);
      } else {
        fd = await this.host.openMacvtap(ns, POD_IFNAME, MACVTAP_NAME);
        rb.push("macvtap", () => this.host.deleteLink(ns, MACVTAP_NAME));
        const macvtap = fd;
        rb.push("macvtap descriptor", () => this.host.closeFd(macvtap));
      }
      signal?.throwIfAborted();
      const dns = podDns(result);
      const attachment: Omit<PodNetworkAttachment, "tapFd"> = {
        netnsPath: path,
        nic,
        routes: guestRoutes(result, nic),
        ...(dns ? { dns } : {}),
        ips: podIps(nic),
      };
      await writeRecord(this.config.cacheDir, { ...record, attachment });
      rb.commit();
      log.debug("pod network set up", { netns: ns, ips: attachment.ips, model: record.model });
      return fd === undefined ? attachment : { ...attachment, tapFd: fd };
    } catch (err) {
      const failure = wrap("set up pod network", err);
      try {
        await rb.rollback();
        await removeRecord(this.config.cacheDir, request.podId);
      } catch (undoErr) {
        // The record stays: tearDown finishes the undoing.
        log.error("undoing a failed pod network set-up failed", { error: undoErr });
        throw new VmpodError(kindOf(err) ?? "Internal", "set up pod network", {
          cause: new AggregateError([err, undoErr], `${messageOf(err)}; undoing it failed too (tear the pod's network down to finish): ${messageOf(undoErr)}`),
        });
      }
      throw failure;
    }
  }

  private async doTearDown(podId: string): Promise<void> {
    const log = this.logger.child({ pod: podId });
    let record: PodNetworkRecord | undefined;
    let ns = netnsName(podId);
    try {
      record = await readRecord(this.config.cacheDir, podId);
      if (record) ns = record.netnsName;
    } catch (err) {
      log.warn("tearing down without the pod network record", { error: err });
    }
    try {
      const present = await this.host.netnsExists(ns);
      if (present && record?.vmLink !== false) {
        // The netns's end takes them along anyway; removing them first stops traffic before DEL.
        for (const [what, undo] of [
          ["redirects", () => this.host.removeRedirect(ns, POD_IFNAME, TAP_NAME)],
          ["tap", () => this.host.deleteLink(ns, TAP_NAME)],
          ["macvtap", () => this.host.deleteLink(ns, MACVTAP_NAME)],
        ] as const) {
          await undo().catch((err: unknown) => log.warn(`tear down: remove ${what}`, { error: err }));
        }
      }
      if (await this.cni.cached(podId, POD_IFNAME)) {
        // What ADD was given comes from the CNI cache; the netns is as it is now.
        await this.cni.del(runtimeConf(podId, record, present ? netnsPath(ns) : ""));
      }
      await this.host.removeNetns(ns);
      await removeRecord(this.config.cacheDir, podId);
    } catch (err) {
      throw wrap("tear down pod network", err);
    }
  }

  private serialize<T>(podId: string, op: () => Promise<T>): Promise<T> {
    const before = this.busy.get(podId) ?? Promise.resolve();
    const mine = before.then(op, op);
    const settled = mine.catch(() => {});
    this.busy.set(podId, settled);
    void settled.then(() => {
      if (this.busy.get(podId) === settled) this.busy.delete(podId);
    });
    return mine;
  }
}

/** The pod's attachment for CNI; without its record, only what the pod id tells. */
function runtimeConf(podId: string, record: Pick<PodNetworkRecord, "pod" | "portMappings"> | undefined, path: string): CniRuntimeConf {
  return {
    containerId: podId,
    netnsPath: path,
    ifName: POD_IFNAME,
    args: record ? kubernetesCniArgs(record.pod, podId) : [["IgnoreUnknown", "1"], ["K8S_POD_INFRA_CONTAINER_ID", podId]],
    capabilityArgs: record ? { portMappings: cniPortMappings(record.portMappings) } : {},
  };
}

function checkPortMappings(mappings: readonly PortMapping[]): void {
  for (const m of mappings) {
    const port = (p: number, min: number) => Number.isInteger(p) && p >= min && p <= 65535;
    if (!["tcp", "udp", "sctp"].includes(m.protocol) || !port(m.containerPort, 1) || !port(m.hostPort, 0)) {
      throw new VmpodError("InvalidArgument", `port mapping ${JSON.stringify(m)} is not valid`);
    }
    if (m.hostIp !== "" && isIP(m.hostIp) === 0) throw new VmpodError("InvalidArgument", `port mapping host IP ${JSON.stringify(m.hostIp)} is not an address`);
  }
}
