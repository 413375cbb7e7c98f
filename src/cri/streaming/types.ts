/**
 * The streaming server as the CRI handlers see it: Exec, Attach and
 * PortForward answer with a URL on it, good for one use and a short while.
 */
export interface ExecRequest {
  readonly containerId: string;
  readonly command: readonly string[];
  readonly tty: boolean;
  readonly stdin: boolean;
  readonly stdout: boolean;
  readonly stderr: boolean;
}

export interface AttachRequest {
  readonly containerId: string;
  readonly tty: boolean;
  readonly stdin: boolean;
  readonly stdout: boolean;
  readonly stderr: boolean;
}

export interface PortForwardRequest {
  readonly podId: string;
  /** Ports named in the request; empty means any port the client asks for. */
  readonly ports: readonly number[];
}

export interface StreamingUrls {
  execUrl(request: ExecRequest): string;
  attachUrl(request: AttachRequest): string;
  portForwardUrl(request: PortForwardRequest): string;
}
