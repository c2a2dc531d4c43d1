/**
 * Home Assistant's documented MQTT discovery schema, for the platforms the gateway announces
 * (home-assistant.io: MQTT discovery, MQTT Event, MQTT Sensor, MQTT Binary sensor; developer docs
 * for the binary sensor device classes). `checkDiscovery` returns every problem it finds in one
 * discovery message: unknown or misspelt keys (Home Assistant refuses a config with an invalid
 * key), missing required keys, values of the wrong kind, and any command topic.
 */

/** `<prefix>/<component>/[<node_id>/]<object_id>/config`, as Home Assistant's discovery matches it. */
export function discoveryTopicParts(prefix: string, topic: string): { component: string; node?: string; object: string } | undefined {
  const m = new RegExp(`^${prefix}/(\\w+)/(?:([a-zA-Z0-9_-]+)/)?([a-zA-Z0-9_-]+)/config$`).exec(topic);
  if (m === null) return undefined;
  return { component: m[1] as string, ...(m[2] !== undefined ? { node: m[2] } : {}), object: m[3] as string };
}

const COMMON = ['availability', 'availability_mode', 'availability_template', 'availability_topic', 'default_entity_id', 'device', 'enabled_by_default', 'encoding', 'entity_category', 'entity_picture', 'icon', 'json_attributes_template', 'json_attributes_topic', 'name', 'object_id', 'origin', 'platform', 'qos', 'unique_id', 'value_template', 'state_topic'];

const PLATFORM_KEYS: Record<string, readonly string[]> = {
  event: ['event_types', 'device_class'],
  sensor: ['device_class', 'expire_after', 'force_update', 'last_reset_value_template', 'options', 'suggested_display_precision', 'state_class', 'unit_of_measurement'],
  binary_sensor: ['device_class', 'expire_after', 'force_update', 'off_delay', 'payload_on', 'payload_off'],
};

const DEVICE_KEYS = ['configuration_url', 'connections', 'hw_version', 'identifiers', 'manufacturer', 'model', 'model_id', 'name', 'serial_number', 'suggested_area', 'sw_version', 'via_device'];
const ORIGIN_KEYS = ['name', 'sw_version', 'support_url'];
const AVAILABILITY_KEYS = ['payload_available', 'payload_not_available', 'topic', 'value_template'];

const BINARY_SENSOR_CLASSES = ['battery', 'battery_charging', 'carbon_monoxide', 'cold', 'connectivity', 'door', 'garage_door', 'gas', 'heat', 'light', 'lock', 'moisture', 'motion', 'moving', 'occupancy', 'opening', 'plug', 'power', 'presence', 'problem', 'running', 'safety', 'smoke', 'sound', 'tamper', 'update', 'vibration', 'window'];
const EVENT_CLASSES = ['button', 'doorbell', 'motion'];

const isObject = (v: unknown): v is Record<string, unknown> => typeof v === 'object' && v !== null && !Array.isArray(v);
const isStringList = (v: unknown): v is string[] => Array.isArray(v) && v.length > 0 && v.every((x) => typeof x === 'string' && x.length > 0);

/** Every problem of one discovery config for `component`; empty when Home Assistant would take it. */
export function checkDiscovery(component: string, c: unknown): string[] {
  const problems: string[] = [];
  const platform = PLATFORM_KEYS[component];
  if (platform === undefined) return [`${component} is not a platform the gateway announces`];
  if (!isObject(c)) return ['the config is not a JSON object'];
  for (const k of Object.keys(c)) if (!COMMON.includes(k) && !platform.includes(k)) problems.push(`unknown key ${k}`);
  if (Object.keys(c).some((k) => k.startsWith('command'))) problems.push('a command topic: the gateway offers no control');
  if (typeof c.state_topic !== 'string' || c.state_topic.length === 0) problems.push('state_topic is required');
  if (typeof c.unique_id !== 'string' || c.unique_id.length === 0) problems.push('unique_id is needed for a device entry');
  if (c.qos !== undefined && ![0, 1, 2].includes(c.qos as number)) problems.push('qos must be 0, 1 or 2');
  if (c.entity_category !== undefined && !['config', 'diagnostic'].includes(c.entity_category as string)) problems.push('entity_category must be config or diagnostic');
  if (!isObject(c.device)) problems.push('device is required to group the entities');
  else {
    for (const k of Object.keys(c.device)) if (!DEVICE_KEYS.includes(k)) problems.push(`unknown device key ${k}`);
    if (!isStringList(c.device.identifiers)) problems.push('device.identifiers must be a list of strings');
  }
  if (c.origin !== undefined) {
    if (!isObject(c.origin) || typeof c.origin.name !== 'string') problems.push('origin needs a name');
    else for (const k of Object.keys(c.origin)) if (!ORIGIN_KEYS.includes(k)) problems.push(`unknown origin key ${k}`);
  }
  if (c.availability !== undefined) {
    if (!Array.isArray(c.availability) || c.availability.length === 0) problems.push('availability must be a non-empty list');
    else for (const a of c.availability as unknown[]) {
      if (!isObject(a) || typeof a.topic !== 'string') problems.push('each availability needs a topic');
      else for (const k of Object.keys(a)) if (!AVAILABILITY_KEYS.includes(k)) problems.push(`unknown availability key ${k}`);
    }
  }
  switch (component) {
    case 'event':
      if (!isStringList(c.event_types)) problems.push('event_types (a list of strings) is required');
      if (c.device_class !== undefined && !EVENT_CLASSES.includes(c.device_class as string)) problems.push(`event device_class ${String(c.device_class)} is not one of ${EVENT_CLASSES.join(', ')}`);
      break;
    case 'sensor':
      if (c.device_class === 'enum') {
        if (!isStringList(c.options)) problems.push('an enum sensor needs options');
        if (c.unit_of_measurement !== undefined || c.state_class !== undefined) problems.push('an enum sensor has no unit or state class');
      } else if (c.options !== undefined) problems.push('options are only for enum sensors');
      break;
    case 'binary_sensor':
      if (c.device_class !== undefined && !BINARY_SENSOR_CLASSES.includes(c.device_class as string)) problems.push(`binary_sensor device_class ${String(c.device_class)} is unknown`);
      break;
  }
  return problems;
}
