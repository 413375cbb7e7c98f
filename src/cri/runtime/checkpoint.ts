/** CheckpointContainer: not offered; UNIMPLEMENTED says so. */
import { VmpodError } from "../../common/errors.js";
import type { RuntimeMethods, Unary } from "../deps.js";

export const checkpointContainer: Unary<RuntimeMethods["checkpointContainer"]> = async (_deps, request) => {
  throw new VmpodError("Unimplemented", `CheckpointContainer (${request.containerId || "no container"}): vmpod does not checkpoint containers`);
};
