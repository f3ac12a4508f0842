// What the page needs to know about job settings, read from the proto's own descriptor (protobuf-es reflection) and
// the engine's defaults, so the form and the settings labels follow the schema: an enum value the proto gains (an
// optimizer, a schedule) appears in the page with no edit to it.
import { toJson } from '@bufbuild/protobuf';
import type { DescEnum } from '@bufbuild/protobuf';
import { JobSettingsSchema } from '../../sdk/gen/recite/v1/recite_pb.js';
import { storedInversionSettings } from '../engine/settings.js';
import type { InversionLimits } from '../engine/settings.js';
import { settingsToProto } from '../service/proto-convert.js';

/** One value of a settings enum: its proto JSON name and the short name the CLI and the page show. */
export interface EnumChoice {
  value: string;
  label: string;
}

/** The page's view of the settings: the choices of every enum field, the defaults and the request limits. */
export interface SettingsSchemaJson {
  /** By the field's JSON name (optimizer, schedule). */
  choices: Record<string, EnumChoice[]>;
  /** JobSettings as a job that sets nothing runs it (proto JSON, zero values included). */
  defaults: Record<string, unknown>;
  /** The server's limits on one request (the form's bounds; the server states them in its errors too). */
  limits: InversionLimits;
}

/** Return the short name of an enum value: OPTIMIZER_ADAM → adam (the name the CLI's flags take). */
export function enumChoiceLabel(desc: DescEnum, number: number): string {
  const value = desc.value[number];
  if (!value) throw new Error(`${desc.typeName} has no value ${number}`);
  return value.localName.toLowerCase();
}

/** Build the settings schema the dashboard serves at /settings-schema.json, with the server's `limits`. */
export function settingsSchemaJson(limits: InversionLimits): SettingsSchemaJson {
  const choices: Record<string, EnumChoice[]> = {};
  for (const field of JobSettingsSchema.fields) {
    if (field.fieldKind !== 'enum') continue;
    const desc = field.enum;
    choices[field.jsonName] = desc.values
      .filter((v) => v.number !== 0) // UNSPECIFIED: "the default", which the defaults name
      .map((v) => ({ value: v.name, label: enumChoiceLabel(desc, v.number) }));
  }
  const defaults = toJson(JobSettingsSchema, settingsToProto(storedInversionSettings({})), { alwaysEmitImplicit: true });
  return { choices, defaults: defaults as Record<string, unknown>, limits: { ...limits } };
}
