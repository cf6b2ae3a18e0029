/** A currently free localhost TCP port: the CLI's own helper. */
export { freePort } from '../../lib/cli/util.js';
