/**
 * ListMetricDescriptors: vmpod reports no metrics through the CRI (kubelet
 * asks only with its PodAndContainerStatsFromCRI gate); stats come through
 * the stats calls.
 */
import type { RuntimeMethods, Unary } from "../deps.js";

export const listMetricDescriptors: Unary<RuntimeMethods["listMetricDescriptors"]> = async () => ({ descriptors: [] });
