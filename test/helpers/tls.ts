/**
 * A throwaway certificate authority and a server certificate it signed, for
 * 127.0.0.1, ::1 and localhost, made with the openssl command line in a
 * temporary directory that `remove()` deletes.
 */
import { mkdtemp, readFile, rm, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { run } from "../../src/common/exec.js";

export interface TestCertificates {
  readonly dir: string;
  /** PEM file of the CA (what a client is told to trust). */
  readonly caFile: string;
  readonly ca: string;
  /** The server's certificate and key, PEM. */
  readonly cert: string;
  readonly key: string;
  remove(): Promise<void>;
}

export async function makeTestCertificates(): Promise<TestCertificates> {
  const dir = await mkdtemp(join(tmpdir(), "vmpod-tls-"));
  const p = (name: string) => join(dir, name);
  const openssl = (args: string[]) => run("openssl", args, { whenMissing: "install the Debian package openssl" });
  const ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
  try {
    await openssl([
      "req", "-x509", ...ec, "-keyout", p("ca.key"), "-out", p("ca.pem"), "-days", "2", "-subj", "/CN=vmpod test CA",
      "-addext", "basicConstraints=critical,CA:TRUE", "-addext", "keyUsage=critical,keyCertSign,cRLSign",
    ]);
    await openssl(["req", ...ec, "-keyout", p("server.key"), "-out", p("server.csr"), "-subj", "/CN=localhost"]);
    await writeFile(p("server.ext"), "subjectAltName=IP:127.0.0.1,IP:::1,DNS:localhost\nbasicConstraints=CA:FALSE\nextendedKeyUsage=serverAuth\n");
    await openssl([
      "x509", "-req", "-in", p("server.csr"), "-CA", p("ca.pem"), "-CAkey", p("ca.key"), "-CAcreateserial",
      "-out", p("server.pem"), "-days", "2", "-extfile", p("server.ext"),
    ]);
    const [ca, cert, key] = await Promise.all([readFile(p("ca.pem"), "utf8"), readFile(p("server.pem"), "utf8"), readFile(p("server.key"), "utf8")]);
    return { dir, caFile: p("ca.pem"), ca, cert, key, remove: () => rm(dir, { recursive: true, force: true }) };
  } catch (err) {
    await rm(dir, { recursive: true, force: true });
    throw err;
  }
}
