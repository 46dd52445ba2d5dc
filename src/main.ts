#!/usr/bin/env node
/**
 * The `userfan` binary: the product's commands (src/cli/) and `demo`, which builds its two hosts with the
 * lab (src/lab/). This file is the only one that joins the two: the product never imports the lab.
 */
import { main } from './cli/cli.js';

// Loaded only for `demo`: a daemon does not carry the lab in its memory.
const demo = async (args: string[]) => (await import('./lab/demo.js')).demoCommand(args);

main(process.argv.slice(2), { demo }).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(`userfan: ${(e as Error)?.stack ?? e}`);
    process.exitCode = 1;
  },
);
