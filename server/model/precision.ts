// The precisions a model's graphs can be built at, by name, and their parsing. Nothing here loads onnxruntime or
// the graph builder, so the CLI can check --precision without them (gpt2-graph.ts builds the graphs).

/** The element type a model's graphs run weights and activations in; inputs and outputs are float32 either way. */
export type GraphPrecision = 'fp32' | 'fp16';

export const graphPrecisions: readonly GraphPrecision[] = ['fp32', 'fp16'];

/** Parse a precision name; `field` names where it came from in the error. */
export function parseGraphPrecision(value: string, field = 'precision'): GraphPrecision {
  if ((graphPrecisions as readonly string[]).includes(value)) return value as GraphPrecision;
  throw new Error(`${field}: "${value}" is not one of ${graphPrecisions.join(', ')}`);
}
