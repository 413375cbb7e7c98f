/**
 * Images between the CRI and the image service: an ImageRecord as the
 * CRI's Image (with the user kubelet checks runAsNonRoot against), the
 * list filter, pull credentials, and filesystem usage for ImageFsInfo.
 */
import type { MessageInitShape } from "@bufbuild/protobuf";
import type { AuthConfig, FilesystemUsageSchema, ImageFilter as CriImageFilter, ImageSchema } from "../gen/cri/api_pb.js";
import type { FilesystemUsage, ImageFilter, ImageRecord, RegistryCredentials } from "../image/types.js";

type Mutable<T> = { -readonly [K in keyof T]: T[K] };

/** The image's user: a uid when numeric ("1000", "1000:1000"), else a name. */
export function imageUser(user: string | undefined): { uid?: bigint; username: string } {
  if (user === undefined || user === "") return { username: "" };
  const name = user.split(":")[0] ?? "";
  if (/^\d+$/.test(name)) return { uid: BigInt(name), username: "" };
  return { username: name };
}

export function imageToCri(record: ImageRecord): MessageInitShape<typeof ImageSchema> {
  const user = imageUser(record.config.user);
  return {
    id: record.id,
    repoTags: [...record.repoTags],
    repoDigests: [...record.repoDigests],
    size: BigInt(record.size),
    ...(user.uid === undefined ? {} : { uid: { value: user.uid } }),
    username: user.username,
    spec: { image: record.id },
    pinned: record.pinned,
  };
}

export function imageFilterFromCri(filter: CriImageFilter | undefined): ImageFilter | undefined {
  const image = filter?.image?.image ?? "";
  return image === "" ? undefined : { image };
}

/** Only the fields set; undefined when none is (an anonymous pull). */
export function credentialsFromCri(auth: AuthConfig | undefined): RegistryCredentials | undefined {
  if (auth === undefined) return undefined;
  const out: Mutable<RegistryCredentials> = {};
  if (auth.username !== "") out.username = auth.username;
  if (auth.password !== "") out.password = auth.password;
  if (auth.auth !== "") out.auth = auth.auth;
  if (auth.identityToken !== "") out.identityToken = auth.identityToken;
  if (auth.registryToken !== "") out.registryToken = auth.registryToken;
  return Object.keys(out).length === 0 ? undefined : out;
}

export function filesystemUsageToCri(usage: FilesystemUsage): MessageInitShape<typeof FilesystemUsageSchema> {
  return {
    timestamp: BigInt(Math.round(usage.timestamp)) * 1_000_000n,
    fsId: { mountpoint: usage.mountpoint },
    usedBytes: { value: BigInt(Math.max(0, Math.round(usage.usedBytes))) },
    inodesUsed: { value: BigInt(Math.max(0, Math.round(usage.inodesUsed))) },
  };
}
