/**
 * A configuration error that names what was wrong and the rule it broke, so the CLI can print one line
 * ("overlay 250.0.0.1/8: host bits are set; an overlay must be a network address, e.g. 250.0.0.0/8")
 * and exit with status 2.
 */
export class ConfigError extends Error {
  constructor(
    /** The field the user wrote: "overlay", "underlay", "line 3", "--ttl"… */
    readonly field: string,
    /** The value as the user wrote it. */
    readonly value: string,
    /** The rule, in words a user can act on. */
    readonly rule: string,
  ) {
    super(`${field} ${JSON.stringify(value)}: ${rule}`);
    this.name = 'ConfigError';
  }
}
