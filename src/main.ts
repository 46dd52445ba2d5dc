#!/usr/bin/env node
/**
 * The `userfan` binary: the product's commands (src/cli/) and `demo`, which builds its two hosts with the
 * lab (src/lab/). This file is the only one that joins the two: the product never imports the lab.
 */
import { main } from './cli/cli.js';
import { demoCommand } from './lab/demo.js';

main(process.argv.slice(2), { demo: demoCommand }).then(
  (code) => {
    process.exitCode = code;
  },
  (e: unknown) => {
    console.error(`userfan: ${(e as Error)?.stack ?? e}`);
    process.exitCode = 1;
  },
);
