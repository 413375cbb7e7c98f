/** The agent's command line. Pure: main.ts hands it process.argv. */
import { VmpodError } from "../../src/common/errors.js";

export type Listen = { readonly kind: "unix"; readonly path: string } | { readonly kind: "serial"; readonly name: string };

export interface AgentOptions {
  readonly listen: Listen;
  readonly stateDir: string;
  /** crun's path; a bare name is looked up on PATH when run. */
  readonly crun: string;
  readonly cgroupRoot: string;
  /** Where CreateSandbox writes the DNS lines (symlinks are followed). */
  readonly resolvConf: string;
  /** Where CreateSandbox writes the hostname (symlinks are followed). */
  readonly hostnameFile: string;
  /** Made by the guest's init once the modules virtio-fs needs are loaded; waited for before such a mount. */
  readonly modulesReady: string;
  /** Where virtio-serial ports announce their names (tests point it elsewhere). */
  readonly virtioPortsDir: string;
  /** Where the ports' device nodes are. */
  readonly devDir: string;
  readonly logLevel: "debug" | "info" | "warn" | "error";
}

export const USAGE = `usage: agent [--listen unix:PATH|serial:NAME] [--state-dir DIR] [--crun PATH]
             [--cgroup-root DIR] [--resolv-conf PATH] [--hostname-file PATH] [--modules-ready PATH]
             [--virtio-ports-dir DIR] [--dev-dir DIR]
             [--log-level debug|info|warn|error]`;

const DEFAULTS: AgentOptions = {
  listen: { kind: "serial", name: "agent.channel.0" },
  stateDir: "/run/vmpod-agent",
  crun: "crun",
  cgroupRoot: "/sys/fs/cgroup",
  resolvConf: "/etc/resolv.conf",
  hostnameFile: "/etc/hostname",
  modulesReady: "/run/vmpod/modules-ready",
  virtioPortsDir: "/sys/class/virtio-ports",
  devDir: "/dev",
  logLevel: "info",
};

/** Parses the arguments after the script name. `crunDefault` is /usr/bin/crun when it exists. */
export function parseOptions(args: readonly string[], crunDefault = DEFAULTS.crun): AgentOptions {
  const out: { -readonly [K in keyof AgentOptions]: AgentOptions[K] } = { ...DEFAULTS, crun: crunDefault };
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    const eq = arg.indexOf("=");
    const name = eq > 0 ? arg.slice(0, eq) : arg;
    const value = (): string => {
      if (eq > 0) return arg.slice(eq + 1);
      const next = args[++i];
      if (next === undefined) throw new VmpodError("InvalidArgument", `${name} needs a value`);
      return next;
    };
    switch (name) {
      case "--listen":
        out.listen = parseListen(value());
        break;
      case "--state-dir":
        out.stateDir = absolute(name, value());
        break;
      case "--crun":
        out.crun = nonEmpty(name, value());
        break;
      case "--cgroup-root":
        out.cgroupRoot = absolute(name, value());
        break;
      case "--resolv-conf":
        out.resolvConf = absolute(name, value());
        break;
      case "--hostname-file":
        out.hostnameFile = absolute(name, value());
        break;
      case "--modules-ready":
        out.modulesReady = absolute(name, value());
        break;
      case "--virtio-ports-dir":
        out.virtioPortsDir = absolute(name, value());
        break;
      case "--dev-dir":
        out.devDir = absolute(name, value());
        break;
      case "--log-level": {
        const level = value();
        if (level !== "debug" && level !== "info" && level !== "warn" && level !== "error") {
          throw new VmpodError("InvalidArgument", `--log-level: unknown level ${JSON.stringify(level)}`);
        }
        out.logLevel = level;
        break;
      }
      default:
        throw new VmpodError("InvalidArgument", `unknown option ${JSON.stringify(arg)}`);
    }
  }
  return out;
}

export function parseListen(spec: string): Listen {
  if (spec.startsWith("unix:")) return { kind: "unix", path: absolute("--listen unix:", spec.slice("unix:".length)) };
  if (spec.startsWith("serial:")) {
    const name = spec.slice("serial:".length);
    if (!/^[A-Za-z0-9][A-Za-z0-9._-]*$/.test(name)) throw new VmpodError("InvalidArgument", `--listen: bad serial port name ${JSON.stringify(name)}`);
    return { kind: "serial", name };
  }
  throw new VmpodError("InvalidArgument", `--listen: expected unix:PATH or serial:NAME, got ${JSON.stringify(spec)}`);
}

function absolute(name: string, value: string): string {
  if (!value.startsWith("/")) throw new VmpodError("InvalidArgument", `${name}: ${JSON.stringify(value)} is not an absolute path`);
  return value;
}

function nonEmpty(name: string, value: string): string {
  if (value === "") throw new VmpodError("InvalidArgument", `${name}: empty value`);
  return value;
}
