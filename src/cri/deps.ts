/**
 * What the CRI handlers work with: the sandbox layer's Runtime, the image
 * service, the streaming server's URLs, and a few facts of the daemon.
 * Every handler takes these and its request, and returns its response.
 */
import type { MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { GenServiceMethods } from "@bufbuild/protobuf/codegenv2";
import type { Logger } from "../common/log.js";
import type { ImageService } from "../image/types.js";
import type { Runtime } from "../sandbox/runtime.js";
import type { ImageService as CriImageService, RuntimeService } from "../gen/cri/api_pb.js";
import type { CallContext, MethodsOf } from "./grpc.js";
import type { StreamingUrls } from "./streaming/types.js";
import type { CpuRates } from "./translate-stats.js";

/** The part of the image service the CRI's ImageService uses. */
export type CriImages = Pick<ImageService, "pull" | "find" | "list" | "remove" | "describe" | "fsInfo">;

export interface CriDeps {
  readonly runtime: Runtime;
  readonly images: CriImages;
  readonly streaming: StreamingUrls;
  /** vmpod's version (package.json's), reported by Version. */
  readonly version: string;
  readonly logger: Logger;
  /** Previous CPU samples, for the CPU rates of stats calls. */
  readonly rates: CpuRates;
}

type Method = GenServiceMethods[string];

/** A unary handler of one method, given the handlers' dependencies. */
export type Unary<M extends Method> = (deps: CriDeps, request: MessageShape<M["input"]>, context: CallContext) => Promise<MessageInitShape<M["output"]>>;

/** A server-streaming handler of one method. */
export type Streaming<M extends Method> = (deps: CriDeps, request: MessageShape<M["input"]>, context: CallContext) => AsyncIterable<MessageInitShape<M["output"]>>;

/** RuntimeService's methods by local name: `RuntimeMethods["version"]`. */
export type RuntimeMethods = MethodsOf<typeof RuntimeService>;
/** ImageService's methods by local name. */
export type ImageMethods = MethodsOf<typeof CriImageService>;
