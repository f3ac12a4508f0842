// Print buf/validate/validate.proto from the descriptor that @bufbuild/protovalidate embeds, so that proto/ compiles
// with nothing but itself: protoc -Iproto, buf build and buf lint find the import there, with no schema registry and
// no network. The package ships the descriptor only (no .proto), so this prints .proto source from it: messages,
// oneofs, enums, extensions, reserved and extension ranges, and options, the rule extensions as text format. It
// covers what that file uses and throws on anything else, rather than printing a file that compiles differently;
// test/proto/self-contained.test.ts checks that protoc compiles the printed file back to the same descriptor.
// Plain JavaScript: proto/generate.sh runs it before the TypeScript build.
//
// Usage: node proto/tools/print-validate-proto.mjs OUT.proto
import fs from 'node:fs';
import { getExtension, isFieldSet } from '@bufbuild/protobuf';
import { protoCamelCase, reflect } from '@bufbuild/protobuf/reflect';
import { FieldDescriptorProto_Label as Label, FieldDescriptorProto_Type as Type, FieldDescriptorProtoSchema } from '@bufbuild/protobuf/wkt';
import { file_buf_validate_validate } from '@bufbuild/protovalidate/gen/buf/validate/validate_pb.js';

/** The largest field number plus one: the exclusive end that `to max` stands for. */
const fieldNumberEnd = 536870912;

const scalarNames = {
  [Type.DOUBLE]: 'double', [Type.FLOAT]: 'float', [Type.INT64]: 'int64', [Type.UINT64]: 'uint64',
  [Type.INT32]: 'int32', [Type.FIXED64]: 'fixed64', [Type.FIXED32]: 'fixed32', [Type.BOOL]: 'bool',
  [Type.STRING]: 'string', [Type.BYTES]: 'bytes', [Type.UINT32]: 'uint32', [Type.SFIXED32]: 'sfixed32',
  [Type.SFIXED64]: 'sfixed64', [Type.SINT32]: 'sint32', [Type.SINT64]: 'sint64',
};

function unsupported(what) {
  throw new Error(`print-validate-proto: ${what} is not supported by this printer; extend it and its test`);
}

/** Return `bytes` as a text-format string literal: printable ASCII as is, everything else as octal escapes. */
function quoteBytes(bytes) {
  let out = '"';
  for (const b of bytes) {
    if (b === 0x22) out += '\\"';
    else if (b === 0x5c) out += '\\\\';
    else if (b === 0x0a) out += '\\n';
    else if (b >= 0x20 && b < 0x7f) out += String.fromCharCode(b);
    else out += `\\${b.toString(8).padStart(3, '0')}`;
  }
  return `${out}"`;
}

const quote = (text) => quoteBytes(new TextEncoder().encode(text));

function scalarText(type, value) {
  switch (type) {
    case Type.STRING: return quote(value);
    case Type.BYTES: return quoteBytes(value);
    case Type.FLOAT:
    case Type.DOUBLE:
      if (Number.isNaN(value)) return 'nan';
      if (value === Infinity) return 'inf';
      if (value === -Infinity) return '-inf';
      return String(value);
    default: return String(value);
  }
}

/** Return one value of `field` in text format: `kind` says whether it is a scalar, an enum or a message. */
function valueText(field, kind, value, indent) {
  if (kind === 'message') return messageText(value, indent);
  if (kind === 'enum') {
    const known = field.enum.values.find((v) => v.number === value);
    return known ? known.name : String(value);
  }
  return scalarText(field.scalar, value);
}

/** Return a reflected message in text format as a `{ … }` block whose fields are indented by `indent` + 2. */
function messageText(r, indent) {
  const pad = ' '.repeat(indent + 2);
  const lines = [];
  for (const field of r.fields) {
    if (!r.isSet(field)) continue;
    if (field.fieldKind === 'map') unsupported('a map field in an option value');
    if (field.fieldKind === 'list') {
      for (const item of r.get(field)) lines.push(`${pad}${field.name}: ${valueText(field, field.listKind, item, indent + 2)}`);
    } else {
      lines.push(`${pad}${field.name}: ${valueText(field, field.fieldKind, r.get(field), indent + 2)}`);
    }
  }
  if ((r.message.$unknown ?? []).length > 0) unsupported(`an unknown field in an option value of ${r.desc.typeName}`);
  return lines.length === 0 ? '{}' : `{\n${lines.join('\n')}\n${' '.repeat(indent)}}`;
}

/**
 * Return the options set on `options` (a FileOptions, FieldOptions, … message) as `name = value` strings: the plain
 * ones by name, extensions as `(full.name)` decoded with `extensions`.
 */
function optionTexts(options, extensions, indent) {
  if (!options) return [];
  const r = reflect(extensionsTarget(options), options);
  const texts = [];
  for (const field of r.fields) {
    if (field.name === 'uninterpreted_option' || !r.isSet(field)) continue;
    if (field.fieldKind === 'list' || field.fieldKind === 'map') unsupported(`the repeated option ${field.name}`);
    texts.push(`${field.name} = ${valueText(field, field.fieldKind, r.get(field), indent)}`);
  }
  const numbers = [...new Set((options.$unknown ?? []).map((u) => u.no))];
  for (const no of numbers) {
    const extension = extensions.find((e) => e.extendee.typeName === options.$typeName && e.number === no);
    if (!extension) unsupported(`option field ${no} of ${options.$typeName}`);
    const value = getExtension(options, extension);
    if (extension.fieldKind === 'list') unsupported(`the repeated option extension ${extension.typeName}`);
    const text = extension.fieldKind === 'message' ? messageText(reflect(extension.message, value), indent)
      : valueText(extension, extension.fieldKind, value, indent);
    texts.push(`(${extension.typeName}) = ${text}`);
  }
  return texts;
}

// The descriptor of an options message, from the WKT registry of @bufbuild/protobuf.
const optionSchemas = new Map();
function extensionsTarget(options) {
  const schema = optionSchemas.get(options.$typeName);
  if (!schema) unsupported(`options of type ${options.$typeName}`);
  return schema;
}

/** Return a type reference as it is written in `pkg`: the package's own types by their name within it. */
function typeRef(typeName, pkg) {
  const name = typeName.replace(/^\./, '');
  return name.startsWith(`${pkg}.`) ? name.slice(pkg.length + 1) : name;
}

function fieldLine(field, file, extensions, indent, { inOneof, extension = false }) {
  const pad = ' '.repeat(indent);
  const proto3 = file.syntax === 'proto3';
  let label = '';
  if (field.label === Label.REPEATED) label = 'repeated ';
  else if (field.label === Label.REQUIRED) label = 'required ';
  else if (!inOneof && (!proto3 || field.proto3Optional || extension)) label = 'optional ';
  if (field.type === Type.GROUP) unsupported('a group field');
  const type = field.type === Type.MESSAGE || field.type === Type.ENUM ? typeRef(field.typeName, file.package) : scalarNames[field.type];
  const options = [];
  if (isFieldSet(field, FieldDescriptorProtoSchema.field.defaultValue)) unsupported('a default value');
  if (field.jsonName && field.jsonName !== protoCamelCase(field.name)) options.push(`json_name = ${quote(field.jsonName)}`);
  options.push(...optionTexts(field.options, extensions, indent));
  const suffix = options.length === 0 ? '' : ` [${options.join(', ')}]`;
  return `${pad}${label}${type} ${field.name} = ${field.number}${suffix};`;
}

function rangeText(start, endInclusive) {
  if (endInclusive === fieldNumberEnd - 1) return `${start} to max`;
  return start === endInclusive ? `${start}` : `${start} to ${endInclusive}`;
}

function reservedLines(ranges, names, pad, endIsInclusive) {
  const lines = [];
  if (ranges.length > 0) lines.push(`${pad}reserved ${ranges.map((r) => rangeText(r.start, endIsInclusive ? r.end : r.end - 1)).join(', ')};`);
  if (names.length > 0) lines.push(`${pad}reserved ${names.map(quote).join(', ')};`);
  return lines;
}

function enumLines(e, extensions, indent) {
  const pad = ' '.repeat(indent);
  const lines = [`${pad}enum ${e.name} {`];
  for (const option of optionTexts(e.options, extensions, indent + 2)) lines.push(`${pad}  option ${option};`);
  for (const v of e.value) {
    const options = optionTexts(v.options, extensions, indent + 2);
    lines.push(`${pad}  ${v.name} = ${v.number}${options.length ? ` [${options.join(', ')}]` : ''};`);
  }
  lines.push(...reservedLines(e.reservedRange, e.reservedName, `${pad}  `, true), `${pad}}`);
  return lines;
}

function messageLines(m, file, extensions, indent) {
  const pad = ' '.repeat(indent);
  const inner = `${pad}  `;
  const lines = [`${pad}message ${m.name} {`];
  for (const option of optionTexts(m.options, extensions, indent + 2)) lines.push(`${inner}option ${option};`);
  // Fields in declaration order (the descriptor keeps it); a oneof's fields are consecutive, as protoc requires.
  let openOneof;
  for (const field of m.field) {
    // descriptor.proto is proto2: an unset oneof_index reads as 0, so ask whether it is set
    const inAnyOneof = isFieldSet(field, FieldDescriptorProtoSchema.field.oneofIndex) && !field.proto3Optional;
    const oneof = inAnyOneof ? field.oneofIndex : undefined;
    if (openOneof !== undefined && oneof !== openOneof) {
      lines.push(`${inner}}`);
      openOneof = undefined;
    }
    if (oneof !== undefined && openOneof === undefined) {
      const decl = m.oneofDecl[oneof];
      lines.push(`${inner}oneof ${decl.name} {`);
      for (const option of optionTexts(decl.options, extensions, indent + 4)) lines.push(`${inner}  option ${option};`);
      openOneof = oneof;
    }
    lines.push(fieldLine(field, file, extensions, indent + (openOneof === undefined ? 2 : 4), { inOneof: openOneof !== undefined }));
  }
  if (openOneof !== undefined) lines.push(`${inner}}`);
  for (const nested of m.nestedType) lines.push(...messageLines(nested, file, extensions, indent + 2));
  for (const nested of m.enumType) lines.push(...enumLines(nested, extensions, indent + 2));
  if (m.extension.length > 0) unsupported('an extension declared inside a message');
  for (const range of m.extensionRange) {
    if (range.options) unsupported('extension range options');
    lines.push(`${inner}extensions ${rangeText(range.start, range.end - 1)};`);
  }
  lines.push(...reservedLines(m.reservedRange, m.reservedName, inner, false), `${pad}}`);
  return lines;
}

/** Return the .proto source of `desc` (a protobuf-es DescFile) under `header` comment lines. */
export function printFile(desc, header) {
  const file = desc.proto;
  if (file.syntax !== '' && file.syntax !== 'proto2' && file.syntax !== 'proto3') unsupported(`syntax "${file.syntax}"`);
  if (file.service.length > 0) unsupported('a service');
  const extensions = [];
  const collect = (d) => {
    extensions.push(...d.extensions);
    d.dependencies.forEach(collect);
  };
  collect(desc);
  const lines = [...header.map((h) => `// ${h}`.trimEnd()), ''];
  lines.push(`syntax = "${file.syntax || 'proto2'}";`, '', `package ${file.package};`, '');
  for (const dep of file.dependency) lines.push(`import ${quote(dep)};`);
  if (file.publicDependency.length > 0 || file.weakDependency.length > 0) unsupported('a public or weak import');
  lines.push('');
  for (const option of optionTexts(file.options, extensions, 0)) lines.push(`option ${option};`);
  for (const m of file.messageType) lines.push('', ...messageLines(m, file, extensions, 0));
  for (const e of file.enumType) lines.push('', ...enumLines(e, extensions, 0));
  // Consecutive extensions of one type share an `extend` block; the descriptor keeps their order either way.
  let open;
  for (const ext of file.extension) {
    const extendee = ext.extendee.replace(/^\./, '');
    if (open !== extendee) {
      if (open !== undefined) lines.push('}');
      lines.push('', `extend ${extendee} {`);
      open = extendee;
    }
    lines.push(fieldLine(ext, file, extensions, 2, { inOneof: false, extension: true }));
  }
  if (open !== undefined) lines.push('}');
  return `${lines.join('\n')}\n`;
}

async function main() {
  const wkt = await import('@bufbuild/protobuf/wkt');
  for (const name of ['FileOptions', 'MessageOptions', 'FieldOptions', 'OneofOptions', 'EnumOptions', 'EnumValueOptions']) {
    const schema = wkt[`${name}Schema`];
    optionSchemas.set(schema.typeName, schema);
  }
  const out = process.argv[2];
  if (!out) throw new Error('usage: print-validate-proto.mjs OUT.proto');
  // the package exports no package.json; the script runs from the repository, beside its node_modules
  const version = JSON.parse(fs.readFileSync(new URL('../../node_modules/@bufbuild/protovalidate/package.json', import.meta.url), 'utf8')).version;
  const header = [
    `Generated by proto/tools/print-validate-proto.mjs from the descriptor of ${file_buf_validate_validate.name}.proto`,
    `in @bufbuild/protovalidate ${version} (protovalidate, Apache-2.0, Buf Technologies). Do not edit: npm run generate`,
    'prints it again. The descriptor carries no comments; the rules are documented with protovalidate.',
  ];
  fs.writeFileSync(out, printFile(file_buf_validate_validate, header));
}

await main();
