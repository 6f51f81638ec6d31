/**
 * The package's version, as package.json gives it (written by scripts/write-version.mjs: do not edit by hand).
 *
 * @internal
 */
export const PACKAGE_VERSION = "0.1.0"
