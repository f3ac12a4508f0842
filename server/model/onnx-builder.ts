// A small builder for ONNX graphs: named values, standard-domain nodes, initializers that are either small
// constants held inline or checkpoint tensors left in their safetensors file as external data.
import { createRequire } from 'node:module';
import type { onnx as OnnxNamespace } from 'onnx-proto';

// onnx-proto is CommonJS; its generated namespace is reached through require in an ES module.
const { onnx } = createRequire(import.meta.url)('onnx-proto') as { onnx: typeof OnnxNamespace };

export const opsetVersion = 17;
const irVersion = 8; // the IR version that goes with opset 17

/** Element types used by recite's graphs (onnx.TensorProto.DataType values). */
export const ElemType = {
  float: 1,
  int64: 7,
  bool: 9,
  float16: 10,
  bfloat16: 16,
} as const;
export type ElemType = (typeof ElemType)[keyof typeof ElemType];

/** A dimension: a fixed size, or the name of a dimension the caller chooses at run time. */
export type Dim = number | string;

export type AttributeValue = number | number[] | string | { float: number } | { floats: number[] };

export interface ExternalTensor {
  name: string;
  elemType: ElemType;
  dims: readonly number[];
  /** Path of the data file relative to the folder given to the session as the external-data folder. */
  location: string;
  offset: number;
  length: number;
}

/**
 * Build an ONNX graph node by node. Every value is a string name; `op` returns the names of its outputs.
 * Names carry the checkpoint's own vocabulary (`h.3.attn.c_attn`, `ln_f`) so a graph dump reads like the model.
 */
export class OnnxGraphBuilder {
  private readonly nodes: OnnxNamespace.INodeProto[] = [];
  private readonly initializers: OnnxNamespace.ITensorProto[] = [];
  private readonly inputs: OnnxNamespace.IValueInfoProto[] = [];
  private readonly outputs: OnnxNamespace.IValueInfoProto[] = [];
  private readonly used = new Set<string>();
  private readonly constantCache = new Map<string, string>();

  constructor(readonly graphName: string) {}

  /** Return a fresh value name that starts with `base`. */
  fresh(base: string): string {
    let name = base;
    for (let i = 1; this.used.has(name); i++) name = `${base}_${i}`;
    this.used.add(name);
    return name;
  }

  /** Declare a graph input. */
  input(name: string, elemType: ElemType, dims: readonly Dim[]): string {
    if (this.used.has(name)) throw new Error(`graph ${this.graphName}: input name ${name} is taken`);
    this.used.add(name);
    this.inputs.push(valueInfo(name, elemType, dims));
    return name;
  }

  /** Declare `value` as a graph output under `name` (an Identity node renames it when needed). */
  output(value: string, name: string, elemType: ElemType, dims: readonly Dim[]): void {
    if (value !== name) {
      if (this.used.has(name)) throw new Error(`graph ${this.graphName}: output name ${name} is taken`);
      this.used.add(name);
      this.nodes.push({ opType: 'Identity', input: [value], output: [name], name: `${name}.identity` });
    }
    this.outputs.push(valueInfo(name, elemType, dims));
  }

  /** Add a node of the standard domain; returns its output names (as many as `outputCount`). */
  ops(opType: string, inputs: readonly string[], outputCount: number, attributes: Record<string, AttributeValue> = {},
    label = opType): string[] {
    const outputNames = Array.from({ length: outputCount }, (_, i) => this.fresh(outputCount === 1 ? label : `${label}.${i}`));
    this.nodes.push({
      opType,
      input: [...inputs],
      output: outputNames,
      name: this.fresh(`${label}.node`),
      attribute: Object.entries(attributes).map(([key, value]) => attribute(key, value)),
    });
    return outputNames;
  }

  /** Add a single-output node of the standard domain. */
  op(opType: string, inputs: readonly string[], attributes: Record<string, AttributeValue> = {}, label = opType): string {
    return this.ops(opType, inputs, 1, attributes, label)[0]!;
  }

  /** Add (or reuse) an inline int64 constant. */
  int64s(values: readonly number[], dims: readonly number[] = [values.length]): string {
    const key = `i64:${dims.join('x')}:${values.join(',')}`;
    const cached = this.constantCache.get(key);
    if (cached) return cached;
    const data = new BigInt64Array(values.map((v) => BigInt(v)));
    const name = this.fresh(values.length <= 4 ? `const_i64[${values.join(',')}]` : 'const_i64');
    this.initializers.push({ name, dims: [...dims], dataType: ElemType.int64, rawData: bytesOf(data) });
    this.constantCache.set(key, name);
    return name;
  }

  /** Add (or reuse) an inline float32 constant. */
  floats(values: ArrayLike<number>, dims: readonly number[] = [values.length], label = 'const_f32'): string {
    const data = Float32Array.from(values as ArrayLike<number>);
    const key = data.length <= 8 ? `f32:${dims.join('x')}:${Array.from(data).join(',')}` : undefined;
    const cached = key ? this.constantCache.get(key) : undefined;
    if (cached) return cached;
    const name = this.fresh(data.length === 1 ? `const_f32[${data[0]}]` : label);
    this.initializers.push({ name, dims: [...dims], dataType: ElemType.float, rawData: bytesOf(data) });
    if (key) this.constantCache.set(key, name);
    return name;
  }

  /** Add a float32 scalar constant (shape []), for broadcasting. */
  scalar(value: number): string {
    return this.floats([value], []);
  }

  /** Add (or reuse) a float16 scalar constant (shape []), `value` rounded to the nearest float16. */
  scalarFloat16(value: number): string {
    const bits = float16Bits(value);
    const key = `f16::${bits}`;
    const cached = this.constantCache.get(key);
    if (cached) return cached;
    const name = this.fresh(`const_f16[${value}]`);
    this.initializers.push({ name, dims: [], dataType: ElemType.float16, rawData: bytesOf(Uint16Array.of(bits)) });
    this.constantCache.set(key, name);
    return name;
  }

  /** Add an initializer whose bytes stay in an external file. */
  external(tensor: ExternalTensor): string {
    if (this.used.has(tensor.name)) throw new Error(`graph ${this.graphName}: initializer ${tensor.name} is taken`);
    this.used.add(tensor.name);
    this.initializers.push({
      name: tensor.name,
      dims: [...tensor.dims],
      dataType: tensor.elemType,
      dataLocation: onnx.TensorProto.DataLocation.EXTERNAL,
      externalData: [
        { key: 'location', value: tensor.location },
        { key: 'offset', value: String(tensor.offset) },
        { key: 'length', value: String(tensor.length) },
      ],
    });
    return tensor.name;
  }

  /** Return the number of nodes so far (for reports and tests). */
  get nodeCount(): number {
    return this.nodes.length;
  }

  /** Return the op types used, with counts. */
  opCounts(): Map<string, number> {
    const counts = new Map<string, number>();
    for (const node of this.nodes) counts.set(node.opType!, (counts.get(node.opType!) ?? 0) + 1);
    return counts;
  }

  /** Serialize the graph as an ONNX model (opset 17). */
  toBytes(producer = 'recite'): Uint8Array {
    const model = onnx.ModelProto.create({
      irVersion,
      opsetImport: [{ domain: '', version: opsetVersion }],
      producerName: producer,
      graph: {
        name: this.graphName,
        node: this.nodes,
        initializer: this.initializers,
        input: this.inputs,
        output: this.outputs,
      },
    });
    return onnx.ModelProto.encode(model).finish();
  }
}

function valueInfo(name: string, elemType: ElemType, dims: readonly Dim[]): OnnxNamespace.IValueInfoProto {
  return {
    name,
    type: {
      tensorType: {
        elemType,
        shape: { dim: dims.map((d) => (typeof d === 'number' ? { dimValue: d } : { dimParam: d })) },
      },
    },
  };
}

function attribute(name: string, value: AttributeValue): OnnxNamespace.IAttributeProto {
  const T = onnx.AttributeProto.AttributeType;
  if (typeof value === 'number') {
    if (!Number.isInteger(value)) throw new Error(`attribute ${name}: use { float } for non-integer ${value}`);
    return { name, type: T.INT, i: value };
  }
  if (typeof value === 'string') return { name, type: T.STRING, s: new TextEncoder().encode(value) };
  if (Array.isArray(value)) return { name, type: T.INTS, ints: value };
  if ('float' in value) return { name, type: T.FLOAT, f: value.float };
  return { name, type: T.FLOATS, floats: value.floats };
}

/** Return the IEEE binary16 bits nearest to `value` (via float32; ties to even; overflow to ±Infinity). */
export function float16Bits(value: number): number {
  const f32 = new Uint32Array(Float32Array.of(value).buffer)[0]!;
  const sign = (f32 >>> 16) & 0x8000;
  const exponent = (f32 >>> 23) & 0xff;
  const mantissa = f32 & 0x7fffff;
  if (exponent === 0xff) return sign | 0x7c00 | (mantissa ? 0x200 : 0); // Infinity, NaN
  const e = exponent - 127 + 15; // the float16 exponent
  if (e >= 31) return sign | 0x7c00;
  // Normal numbers keep 10 of the 23 mantissa bits; subnormals fewer, the implicit 1 shifted in.
  const shift = e >= 1 ? 13 : 14 - e;
  if (shift > 24) return sign;
  const full = e >= 1 ? mantissa : mantissa | 0x800000;
  let half = e >= 1 ? (e << 10) | (full >>> shift) : full >>> shift;
  const rest = full & ((1 << shift) - 1);
  const halfway = 1 << (shift - 1);
  if (rest > halfway || (rest === halfway && (half & 1))) half++; // a carry rounds up into the exponent, as it should
  return sign | half;
}

function bytesOf(view: ArrayBufferView): Uint8Array {
  return new Uint8Array(view.buffer.slice(view.byteOffset, view.byteOffset + view.byteLength));
}
